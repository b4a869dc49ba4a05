#!/usr/bin/env node
// Soak test (outside CI): many generate / abort / dispose cycles over every method, then many model
// load / dispose cycles; the process's RSS must stay flat (drift < 5 %).
//
//   node scripts/soak.mjs [CYCLES] [LOADS]      (defaults 10000 and 500; npm run build first)
//
// Models: stories260K as the target, and as its own draft model (same vocabulary); Medusa and
// EAGLE-3 heads trained for it in a few seconds at the start (trainDrafter, a small corpus of its
// own stories), and a LUD model of it (trainDrafter kind 'lud'). Each cycle takes the next method
// (every one of METHODS, the lossy 'ead' and 'lud' included) and one of three endings, with the full
// sampler chain (temperature, top-k, top-p, min-p, penalties, a stop string, a seed; greedy every
// fourth cycle):
//   0  a generation to its end (maxTokens 8..40, or eos/stop)
//   1  an abort through the signal after the first chunk (the rejection is expected)
//   2  a new session, a generation, and the session disposed while it runs
// RSS is sampled after a forced GC every CYCLES/50 cycles; the drift is the last sample against the
// sample at 20 % (after warm-up: caches, the heads' and the draft's first use, glibc arenas).
// Prints one JSON line per phase and exits 1 when a drift is >= 5 % or anything untyped was thrown.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { loadModel, trainDrafter, SpecdecError, METHODS } = require(path.join(root, 'dist', 'index.js'));

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const CYCLES = Number(process.argv[2] ?? 10000);
const LOADS = Number(process.argv[3] ?? 500);
const shared = process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared');
const stories = path.join(shared, 'models', 'stories260K.gguf');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-soak-'));
const mib = (b) => Math.round((b / 1048576) * 10) / 10;
const rss = () => { gc(); gc(); return process.memoryUsage().rss; };

function drift(samples) {
  const base = samples[Math.floor(samples.length / 5)];
  const last = samples[samples.length - 1];
  return {
    baseMiB: mib(base), lastMiB: mib(last), maxAfterBaseMiB: mib(Math.max(...samples.slice(Math.floor(samples.length / 5)))),
    driftPct: Math.round(((last - base) / base) * 1000) / 10, samplesMiB: samples.map((x) => Math.round(mib(x))),
  };
}

const STARTS = ['Once upon a time', 'The little dog', 'Lily and Tom went to the park', 'One day, a girl named Sue', 'Tim had a red ball'];
let untyped = 0;
const expectTyped = (e, what) => {
  if (e instanceof SpecdecError || (e && e.name === 'AbortError')) return;
  untyped++;
  console.error(`[soak] untyped error in ${what}:`, e);
};

async function main() {
  const t0 = Date.now();
  const model = await loadModel(stories);
  const draft = await loadModel(stories);
  // heads for medusa and eagle: a corpus of the model's own stories, a few seconds of training
  const corpus = path.join(tmp, 'corpus.jsonl');
  const s0 = await model.createSession({ contextSize: 512, threads: 1 });
  const lines = [];
  for (let i = 0; i < 24; i++) {
    s0.truncate(0);
    const r = await s0.generate(STARTS[i % STARTS.length], { maxTokens: 200, temperature: 1, seed: i }).result();
    lines.push(JSON.stringify({ text: STARTS[i % STARTS.length] + r.text }));
  }
  await s0.dispose();
  fs.writeFileSync(corpus, lines.join('\n') + '\n');
  const medusa = path.join(tmp, 'medusa.gguf');
  const eagle = path.join(tmp, 'eagle.gguf');
  await trainDrafter(model, { kind: 'medusa', corpus, out: medusa, tokens: 4000, heads: 3, threads: 1, sequenceLength: 128 });
  await trainDrafter(model, { kind: 'eagle3', corpus, out: eagle, tokens: 4096, threads: 1 });
  const lud = path.join(tmp, 'lud.gguf');
  await trainDrafter(model, { kind: 'lud', corpus, out: lud, tokens: 2000, threads: 1, sequenceLength: 64, lud: { k: 3, alpha: 0.6, groups: 4 } });

  const extra = {
    draft: { draft: { model: draft } }, rsd: { draft: { model: draft } }, rasd: { retrieval: { corpus: lines.slice(0, 8) } },
    medusa: { heads: { file: medusa } }, eagle: { heads: { file: eagle } }, auto: { draft: { model: draft } },
    ead: { draft: { model: draft } },
    lud: { lud: { file: lud } },  // lossy mode
  };
  let session = await model.createSession({ contextSize: 512, threads: 1 });
  const samples = [];
  const every = Math.max(1, Math.floor(CYCLES / 50));
  const counts = { done: 0, aborted: 0, disposed: 0 };
  const tc = Date.now();
  for (let i = 0; i < CYCLES; i++) {
    const method = METHODS[i % METHODS.length];
    const ending = Math.floor(i / METHODS.length) % 3;
    const opts = {
      method, ...(extra[method] ?? {}), maxTokens: 8 + (i % 33), seed: i, stop: ['\n\n', ' the end'],
      ...(i % 4 === 3 ? {} : { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1, frequencyPenalty: 0.1, presencePenalty: 0.1, penaltyLastN: 64 }),
    };
    const prompt = STARTS[i % STARTS.length];
    if (session.info.usedTokens > 400) session.truncate(0);
    if (ending === 0) {
      await session.generate(prompt, opts).result().catch((e) => expectTyped(e, `${method} generate`));
      counts.done++;
    } else if (ending === 1) {
      const ac = new AbortController();
      try {
        for await (const c of session.generate(prompt, { ...opts, maxTokens: 200, signal: ac.signal })) if (c.tokens.length) ac.abort();
      } catch (e) {
        expectTyped(e, `${method} abort`);
      }
      counts.aborted++;
    } else {
      const s = await model.createSession({ contextSize: 256, threads: 1 });
      const run = s.generate(prompt, { ...opts, maxTokens: 200 }).result().catch((e) => expectTyped(e, `${method} dispose`));
      await new Promise((r) => setTimeout(r, i % 5));
      await s.dispose();
      await run;
      counts.disposed++;
    }
    if (i % every === 0 || i === CYCLES - 1) samples.push(rss());
  }
  await session.dispose();
  const gen = { phase: 'generate', cycles: CYCLES, ...counts, seconds: Math.round((Date.now() - tc) / 1000), ...drift(samples), untyped };
  console.log(JSON.stringify(gen));
  await draft.dispose();
  await model.dispose();

  const lsamples = [];
  const levery = Math.max(1, Math.floor(LOADS / 50));
  const tl = Date.now();
  for (let i = 0; i < LOADS; i++) {
    const m = await loadModel(stories, { cpuKernels: i % 2 ? 'ggml' : 'specdec' });
    const s = await m.createSession({ contextSize: 64, threads: 1 });
    await s.generate('Once upon a time', { maxTokens: 4 }).result();
    await s.dispose();
    await m.dispose();
    if (i % levery === 0 || i === LOADS - 1) lsamples.push(rss());
  }
  const load = { phase: 'load', cycles: LOADS, seconds: Math.round((Date.now() - tl) / 1000), ...drift(lsamples) };
  console.log(JSON.stringify(load));
  console.log(JSON.stringify({ totalSeconds: Math.round((Date.now() - t0) / 1000) }));
  fs.rmSync(tmp, { recursive: true, force: true });
  if (gen.driftPct >= 5 || load.driftPct >= 5 || untyped > 0) process.exit(1);
}

main().catch((e) => { console.error(e); process.exit(1); });
