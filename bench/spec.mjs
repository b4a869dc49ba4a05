#!/usr/bin/env node
// npm run bench:spec — speculative decoding, Spec-Bench style. Two suites:
//   code:    the code pair in ../shared/models/code (42 M Q8_0 target, 5 M F16 draft), prompts from
//            ../shared/eval/code-prompts.json;
//   code-q4_k_m: the same with the target re-quantized to Q4_K_M (bench/models.mjs), the most
//            common download format (not run by default);
//   stories: stories260K with story openings (no draft model exists for it: the draft-model
//            methods are left out there).
// A run replaces the results of the suites it ran and keeps the others' (bench/results/spec.json).
// For each suite, thread count (1 and 2) and temperature (0 and 0.8): every specdec method against
// specdec's autoregressive decoding and node-llama-cpp 3.21.1's autoregressive decoding,
// InputLookupTokenPredictor and DraftSequenceTokenPredictor (greedy, as its predictors are used).
// Each run is its own process, runs are interleaved (order reversed every other repetition),
// results are medians. Decode speed is wall clock: (N - 1) / (time of an N-token run - time of a
// 1-token run), so prompt processing (the target's and the draft's) is left out for every engine.
// One-shot mode (BENCH_MODE=oneshot): each method as a fresh `specdec generate --json` process per
// prompt, beside native llama.cpp when built (bench/spec-oneshot.mjs).
// Env: BENCH_REPS (3), BENCH_TOKENS (128), BENCH_PROMPTS (20), BENCH_THREADS ("1,2"), BENCH_SUITES
// ("code,stories"; also "code-q4_k_m"), SPECDEC_SHARED. Writes bench/results/spec.json, spec.md, spec.svg and the
// table between <!-- bench:spec --> markers in the README.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { barChart } from './chart.mjs';
import { codeDraft, codeTarget, codeTargetQ8 } from './models.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const SUITES = {
  code: { label: 'Code pair', target: () => codeTargetQ8, draft: codeDraft },
  'code-q4_k_m': { label: 'Code pair, target re-quantized to Q4_K_M', target: () => codeTarget('q4_k_m'), draft: codeDraft },
  stories: { label: 'stories260K', target: () => path.join(shared, 'models', 'stories260K.gguf'), draft: undefined },
};
const STORY_PROMPTS = [
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.',
  'Tom and his dog went to the park. The dog saw a big red ball and',
  'One day, a little bird was sitting in a tree. It was a sunny day and',
  'Mom said to Ben, "It is time to go to bed." Ben did not want to',
];
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

// name, engine, method, needs a draft model, temperatures
const ENGINES = [
  ['specdec autoregressive', 'specdec', 'autoregressive', false, [0, 0.8]],
  ['specdec lookup', 'specdec', 'lookup', false, [0, 0.8]],
  ['specdec token-recycling', 'specdec', 'token-recycling', false, [0, 0.8]],
  ['specdec aded', 'specdec', 'aded', false, [0, 0.8]],
  ['specdec rasd (retrieval only)', 'specdec', 'rasd', false, [0, 0.8]],
  ['specdec auto', 'specdec', 'auto', false, [0, 0.8]],
  ['specdec draft', 'specdec', 'draft', true, [0, 0.8]],
  ['specdec rsd', 'specdec', 'rsd', true, [0, 0.8]],
  ['specdec rasd + draft', 'specdec', 'rasd', true, [0, 0.8]],
  ['specdec auto + draft', 'specdec', 'auto', true, [0, 0.8]],
  ['node-llama-cpp autoregressive', 'nlc', 'autoregressive', false, [0, 0.8]],
  ['node-llama-cpp InputLookupTokenPredictor', 'nlc', 'lookup', false, [0]],
  ['node-llama-cpp DraftSequenceTokenPredictor', 'nlc', 'draft', true, [0]],
].map(([name, engine, method, draft, temps]) => ({ name, engine, method, draft, temps }));

async function worker([suite, engine, method, useDraft, temp, threadsArg, promptsFile, nArg]) {
  const threads = Number(threadsArg);
  const n = Number(nArg);
  const temperature = Number(temp);
  const { draft } = SUITES[suite];
  const target = SUITES[suite].target();
  const prompts = JSON.parse(readFileSync(promptsFile, 'utf8'));
  const out = { decode: [], tau: [] };
  const now = () => performance.now();
  let gen;
  let cleanup;
  if (engine === 'specdec') {
    const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
    const model = await loadModel(target, { backend: 'cpu' });
    const draftModel = useDraft === 'true' ? await loadModel(draft, { backend: 'cpu' }) : undefined;
    const session = await model.createSession({ threads, contextSize: 1024 });
    gen = async (p, k, seed) => {
      session.truncate(0);
      const t0 = now();
      const r = await session.generate(p, { maxTokens: k, temperature, seed, ignoreEos: true, method, draft: draftModel ? { model: draftModel } : undefined }).result();
      return { ms: now() - t0, tau: r.stats.meanAcceptedLength };
    };
    cleanup = async () => { await model.dispose(); await draftModel?.dispose(); };
  } else {
    const { getLlama, DraftSequenceTokenPredictor, InputLookupTokenPredictor } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
    const model = await llama.loadModel({ modelPath: target });
    const ctx = await model.createContext({ contextSize: 1024, threads, batchSize: 512 });
    let draftModel;
    let draftCtx;
    let tokenPredictor;
    if (method === 'draft') {
      draftModel = await llama.loadModel({ modelPath: draft });
      draftCtx = await draftModel.createContext({ contextSize: 1024, threads, batchSize: 512 });
      tokenPredictor = new DraftSequenceTokenPredictor(draftCtx.getSequence(), { maxTokens: 8 });
    } else if (method === 'lookup') {
      tokenPredictor = new InputLookupTokenPredictor();
    }
    const seq = ctx.getSequence(tokenPredictor ? { tokenPredictor } : undefined);
    gen = async (p, k) => {
      await seq.clearHistory();
      const t0 = now();
      let got = 0;
      for await (const _t of seq.evaluate(p, { temperature, yieldEogToken: true })) if (++got >= k) break;
      return { ms: now() - t0, tau: 0 };
    };
    cleanup = async () => { await ctx.dispose(); await draftCtx?.dispose(); await model.dispose(); await draftModel?.dispose(); };
  }
  await gen(prompts[0], 8, 1);
  for (let i = 0; i < prompts.length; i++) {
    const P = await gen(prompts[i], 1, i + 1);
    const F = await gen(prompts[i], n, i + 1);
    out.decode.push(((n - 1) * 1000) / (F.ms - P.ms));
    out.tau.push(F.tau);
  }
  await cleanup();
  process.stdout.write(JSON.stringify(out));
}

async function main() {
  const reps = Number(process.env.BENCH_REPS ?? 3);
  const n = Number(process.env.BENCH_TOKENS ?? 128);
  const threadList = (process.env.BENCH_THREADS ?? '1,2').split(',').map(Number);
  const nPrompts = Number(process.env.BENCH_PROMPTS ?? 20);
  const suites = (process.env.BENCH_SUITES ?? 'code,stories').split(',');
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  mkdirSync(path.join(root, 'bench', 'tmp'), { recursive: true });
  const results = [];
  for (const suite of suites) {
    if (!SUITES[suite]) throw new Error(`BENCH_SUITES: unknown suite ${suite} (one of ${Object.keys(SUITES).join(', ')})`);
    const { draft } = SUITES[suite];
    const target = SUITES[suite].target();
    if (!existsSync(target) || (draft && !existsSync(draft))) throw new Error(`the ${suite} models are missing in ${shared}/models`);
    const model = await loadModel(target);
    const texts = suite.startsWith('code')
      ? JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts.slice(0, nPrompts).map((p) => p.prompt)
      : STORY_PROMPTS.slice(0, nPrompts);
    const prompts = texts.map((t) => model.tokenize(t).slice(-400));
    await model.dispose();
    const promptsFile = path.join(root, 'bench', 'tmp', `spec-prompts-${suite}.json`);
    writeFileSync(promptsFile, JSON.stringify(prompts));
    const engines = ENGINES.filter((e) => !e.draft || draft);
    for (const threads of threadList) {
      const runs = new Map();
      for (let r = 0; r < reps; r++) {
        const order = r % 2 === 0 ? engines : [...engines].reverse();
        for (const e of order) {
          for (const temp of e.temps) {
            const key = `${e.name}|${temp}`;
            const args = [fileURLToPath(import.meta.url), '--worker', suite, e.engine, e.method, String(e.draft), String(temp), String(threads), promptsFile, String(n)];
            const p = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
            if (p.status !== 0) throw new Error(`${suite} ${key} failed:\n${p.stderr}`);
            const o = JSON.parse(p.stdout.trim().split('\n').pop());
            if (!runs.has(key)) runs.set(key, []);
            runs.get(key).push({ decode: median(o.decode), tau: median(o.tau), perPrompt: o.decode });
            process.stderr.write(`${suite} ${threads}t rep ${r + 1}/${reps} ${key}: ${median(o.decode).toFixed(0)} tok/s\n`);
          }
        }
      }
      const rows = [];
      for (const [key, rs] of runs) {
        const [name, temp] = key.split('|');
        rows.push({ method: name, temperature: Number(temp), decodeTokensPerSecond: median(rs.map((x) => x.decode)), tau: median(rs.map((x) => x.tau)), runs: rs.map((x) => Math.round(x.decode)),
          perPrompt: rs[0].perPrompt.map((_, i) => median(rs.map((x) => x.perPrompt[i]))) });
      }
      results.push({ suite, threads, date: new Date().toISOString().slice(0, 10), prompts: prompts.map((p) => p.length), rows });
    }
  }
  const machine = { cpu: cpus()[0]?.model, cpus: availableParallelism(), node: process.version, date: new Date().toISOString() };
  // keep the results of the suites not run this time
  const resultsFile = path.join(root, 'bench', 'results', 'spec.json');
  const previous = existsSync(resultsFile) ? JSON.parse(readFileSync(resultsFile, 'utf8')) : undefined;
  const kept = (previous?.results ?? []).filter((r) => !suites.includes(r.suite) && SUITES[r.suite])
    .map((r) => ({ ...r, date: r.date ?? previous.machine?.date?.slice(0, 10) }));
  const order = Object.keys(SUITES);
  const all = [...kept, ...results].sort((a, b) => order.indexOf(a.suite) - order.indexOf(b.suite) || a.threads - b.threads);
  writeFileSync(resultsFile, JSON.stringify({ machine, tokens: n, reps, nPrompts, results: all }, null, 2) + '\n');
  render({ machine, tokens: n, reps, results: all, nPrompts });
}

/** Writes spec.md, spec.svg and the README table from the results (BENCH_RENDER_ONLY=1: from spec.json). */
function render({ machine, tokens: n, reps, results: all, nPrompts }) {
  // Ratios: against our autoregressive decoding at the same thread count and temperature (per prompt, then
  // min / median / max), and against node-llama-cpp's autoregressive decoding at ITS best thread count and
  // the same temperature (at 2 threads on 2 cores its decode collapses: a ratio to that says nothing).
  const nlcBest = (suite, t) => Math.max(0, ...all.filter((r) => r.suite === suite).flatMap((r) => r.rows)
    .filter((x) => x.method === 'node-llama-cpp autoregressive' && x.temperature === t).map((x) => x.decodeTokensPerSecond)) || null;
  let md = '';
  for (const res of all) {
    const ar = (t) => res.rows.find((x) => x.method === 'specdec autoregressive' && x.temperature === t);
    md += `\n**${SUITES[res.suite].label}, ${res.threads} thread${res.threads > 1 ? 's' : ''}** (${res.date}${res.prompts ? `, ${res.prompts.length} prompts` : ''})\n\n`;
    md += '| method | T | τ | decode tok/s | vs our autoregressive: median (min – max over prompts) | vs node-llama-cpp autoregressive at its best thread count, same T |\n|---|---|---|---|---|---|\n';
    for (const r of res.rows) {
      const base = ar(r.temperature);
      let ours = '–';
      if (r.method.startsWith('specdec') && base) {
        const med = r.decodeTokensPerSecond / base.decodeTokensPerSecond;
        const per = r.perPrompt && base.perPrompt ? r.perPrompt.map((v, i) => v / base.perPrompt[i]) : null;
        ours = `${med.toFixed(2)}×${per ? ` (${Math.min(...per).toFixed(2)} – ${Math.max(...per).toFixed(2)})` : ''}`;
      }
      const nb = nlcBest(res.suite, r.temperature);
      md += `| ${r.method} | ${r.temperature} | ${r.tau ? r.tau.toFixed(2) : '–'} | ${r.decodeTokensPerSecond.toFixed(0)} | ${ours} | ${nb ? (r.decodeTokensPerSecond / nb).toFixed(2) + '×' : '–'} |\n`;
    }
  }
  md += `\n${n} tokens per prompt, ${reps} interleaved runs, medians; code prompts: the first ${nPrompts ?? all.find((r) => r.suite.startsWith('code'))?.prompts?.length} of \`eval/code-prompts.json\` (last 400 tokens); ${machine.cpus} CPUs (${machine.cpu}), ${machine.date.slice(0, 10)}. Chart: [bench/results/spec.svg](bench/results/spec.svg).\n`;
  writeFileSync(path.join(root, 'bench', 'results', 'spec.md'), md);
  // chart: speedup over our autoregressive, code pair, greedy, each thread count
  const bars = [];
  for (const res of all.filter((r) => r.suite === 'code')) {
    for (const r of res.rows.filter((x) => x.temperature === 0 && x.method !== 'specdec autoregressive')) {
      bars.push({ label: `${r.method.replace('specdec ', '').replace('node-llama-cpp ', 'nlc ')} (${res.threads}t)`, value: r.decodeTokensPerSecond / res.rows.find((x) => x.method === 'specdec autoregressive' && x.temperature === 0).decodeTokensPerSecond, group: `${res.threads}` });
    }
  }
  if (bars.length) writeFileSync(path.join(root, 'bench', 'results', 'spec.svg'), barChart({ title: 'Code pair, greedy: decode speed relative to specdec autoregressive (same threads)', yLabel: 'speedup', bars, width: Math.max(760, bars.length * 34 + 80) }));
  const readme = path.join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const i = text.indexOf('<!-- bench:spec -->');
  const j = text.indexOf('<!-- /bench:spec -->');
  if (i >= 0 && j > i) writeFileSync(readme, text.slice(0, i + '<!-- bench:spec -->'.length) + '\n' + md + text.slice(j));
  process.stdout.write(md);
}

if (process.argv[2] === '--worker') worker(process.argv.slice(3)).catch((e) => { console.error(e); process.exit(1); });
else if (process.env.BENCH_MODE === 'oneshot') import('./spec-oneshot.mjs').then((m) => m.main()).catch((e) => { console.error(e); process.exit(1); });
else if (process.env.BENCH_RENDER_ONLY) render(JSON.parse(readFileSync(path.join(root, 'bench', 'results', 'spec.json'), 'utf8')));
else main().catch((e) => { console.error(e); process.exit(1); });
