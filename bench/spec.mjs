#!/usr/bin/env node
// npm run bench:spec — speculative decoding, Spec-Bench style, on the code pair in ../shared/models:
// specdec's methods (autoregressive, lookup, draft) against node-llama-cpp 3.21.1's autoregressive
// decoding and its InputLookupTokenPredictor / DraftSequenceTokenPredictor, same threads, each run
// in its own process, runs interleaved, medians. Greedy for every engine; T = 0.8 for specdec's
// methods too. Decode speed is wall clock: (N - 1) / (time of an N-token run - time of a 1-token run).
// Env: BENCH_REPS (default 3), BENCH_TOKENS (128), BENCH_PROMPTS (4), BENCH_THREADS (1), SPECDEC_SHARED.
// Writes bench/results/spec.json and the table between <!-- bench:spec --> markers in the README.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const target = path.join(shared, 'models', 'code', 'code-target-q8_0.gguf');
const draft = path.join(shared, 'models', 'code', 'code-draft-f16.gguf');
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

const ENGINES = [
  { name: 'specdec autoregressive', engine: 'specdec', method: 'autoregressive', temps: [0, 0.8] },
  { name: 'specdec lookup', engine: 'specdec', method: 'lookup', temps: [0, 0.8] },
  { name: 'specdec draft', engine: 'specdec', method: 'draft', temps: [0, 0.8] },
  { name: 'node-llama-cpp autoregressive', engine: 'nlc', method: 'autoregressive', temps: [0] },
  { name: 'node-llama-cpp InputLookupTokenPredictor', engine: 'nlc', method: 'lookup', temps: [0] },
  { name: 'node-llama-cpp DraftSequenceTokenPredictor', engine: 'nlc', method: 'draft', temps: [0] },
];

async function worker([engine, method, temp, threadsArg, promptsFile, nArg]) {
  const threads = Number(threadsArg);
  const n = Number(nArg);
  const temperature = Number(temp);
  const prompts = JSON.parse(readFileSync(promptsFile, 'utf8'));
  const out = { decode: [], tau: [] };
  const now = () => performance.now();
  let gen;
  let cleanup;
  if (engine === 'specdec') {
    const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
    const model = await loadModel(target, { backend: 'cpu' });
    const draftModel = method === 'draft' ? await loadModel(draft, { backend: 'cpu' }) : undefined;
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
  if (!existsSync(target) || !existsSync(draft)) throw new Error(`the code pair is missing in ${shared}/models/code`);
  const reps = Number(process.env.BENCH_REPS ?? 3);
  const n = Number(process.env.BENCH_TOKENS ?? 128);
  const threads = Number(process.env.BENCH_THREADS ?? 1);
  const nPrompts = Number(process.env.BENCH_PROMPTS ?? 4);
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(target);
  const prompts = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts.slice(0, nPrompts).map((p) => model.tokenize(p.prompt).slice(-400));
  await model.dispose();
  mkdirSync(path.join(root, 'bench', 'tmp'), { recursive: true });
  const promptsFile = path.join(root, 'bench', 'tmp', 'spec-prompts.json');
  writeFileSync(promptsFile, JSON.stringify(prompts));
  const runs = new Map();
  for (let r = 0; r < reps; r++) {
    const order = r % 2 === 0 ? ENGINES : [...ENGINES].reverse();
    for (const e of order) {
      for (const temp of e.temps) {
        const key = `${e.name}|${temp}`;
        const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--worker', e.engine, e.method, String(temp), String(threads), promptsFile, String(n)], { encoding: 'utf8', maxBuffer: 1 << 24 });
        if (p.status !== 0) throw new Error(`${key} failed:\n${p.stderr}`);
        const o = JSON.parse(p.stdout.trim().split('\n').pop());
        if (!runs.has(key)) runs.set(key, []);
        runs.get(key).push({ decode: median(o.decode), tau: median(o.tau) });
        process.stderr.write(`rep ${r + 1}/${reps} ${key}: ${median(o.decode).toFixed(0)} tok/s\n`);
      }
    }
  }
  const rows = [];
  for (const [key, rs] of runs) {
    const [name, temp] = key.split('|');
    rows.push({ method: name, temperature: Number(temp), decodeTokensPerSecond: median(rs.map((x) => x.decode)), tau: median(rs.map((x) => x.tau)), runs: rs.map((x) => Math.round(x.decode)) });
  }
  const base = (name, t) => rows.find((r) => r.method === name && r.temperature === t)?.decodeTokensPerSecond;
  const nlcAr = base('node-llama-cpp autoregressive', 0);
  const nlcBest = Math.max(...rows.filter((r) => r.method.startsWith('node-llama-cpp')).map((r) => r.decodeTokensPerSecond));
  for (const r of rows) {
    r.speedupOverOurAutoregressive = r.decodeTokensPerSecond / base('specdec autoregressive', r.temperature);
    r.speedupOverNodeLlamaCppAutoregressive = r.decodeTokensPerSecond / nlcAr;
    r.speedupOverNodeLlamaCppBest = r.decodeTokensPerSecond / nlcBest;
  }
  const machine = { cpu: cpus()[0]?.model, cpus: availableParallelism(), node: process.version, date: new Date().toISOString() };
  writeFileSync(path.join(root, 'bench', 'results', 'spec.json'), JSON.stringify({ machine, threads, tokens: n, prompts: prompts.map((p) => p.length), reps, rows }, null, 2) + '\n');
  let md = '| method | T | τ | decode tok/s | vs our autoregressive | vs node-llama-cpp autoregressive | vs node-llama-cpp best |\n|---|---|---|---|---|---|---|\n';
  for (const r of rows) {
    md += `| ${r.method} | ${r.temperature} | ${r.tau ? r.tau.toFixed(2) : '–'} | ${r.decodeTokensPerSecond.toFixed(0)} | ${r.speedupOverOurAutoregressive ? r.speedupOverOurAutoregressive.toFixed(2) + '×' : '–'} | ${r.speedupOverNodeLlamaCppAutoregressive.toFixed(2)}× | ${r.speedupOverNodeLlamaCppBest.toFixed(2)}× |\n`;
  }
  md += `\nCode pair (42 M Q8_0 target, 5 M F16 draft), ${prompts.length} prompts of \`eval/code-prompts.json\` (last 400 tokens), ${n} tokens, ${threads} thread(s), ${reps} interleaved runs, medians; ${machine.cpus} CPUs (${machine.cpu}), ${machine.date.slice(0, 10)}.\n`;
  writeFileSync(path.join(root, 'bench', 'results', 'spec.md'), md);
  const readme = path.join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const i = text.indexOf('<!-- bench:spec -->');
  const j = text.indexOf('<!-- /bench:spec -->');
  if (i >= 0 && j > i) writeFileSync(readme, text.slice(0, i + '<!-- bench:spec -->'.length) + '\n' + md + text.slice(j));
  process.stdout.write(md);
}

if (process.argv[2] === '--worker') worker(process.argv.slice(3)).catch((e) => { console.error(e); process.exit(1); });
else main().catch((e) => { console.error(e); process.exit(1); });
