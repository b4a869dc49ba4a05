#!/usr/bin/env node
// npm run bench:verify — the verify-cost curve: time of one forward pass over n tokens (a chain
// after a 64-token context), relative to one token, for n = 1, 2, 4, ..., 64, on the code target at
// 1 and 2 threads, in its Q8_0 file and re-quantized to the other weight types specdec's kernels
// run (Q4_K_M, Q4_0, F16, BF16: test/utils/requantize.ts, files in bench/tmp/models; the same
// network, so the curves compare the kernels). Engines, each in its own process, runs
// interleaved, medians:
//   specdec with its CPU kernels (the default), specdec with ggml's kernels (cpuKernels: 'ggml'),
//   and llama.cpp through node-llama-cpp 3.21.1 (evaluateWithoutGeneratingNewTokens).
// specdec computes logits for all n tokens (what verification needs); llama.cpp only for the last
// (as llama-bench does), which flatters its curve slightly.
// Env: BENCH_REPS (default 3), BENCH_ITERS (9 timings per n and run), BENCH_TYPES (default
// q8_0,q4_k_m,q4_0,f16,bf16), SPECDEC_SHARED.
// Writes bench/results/verify.json, verify.svg and the table between <!-- bench:verify --> markers in the README.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lineChart } from './chart.mjs';
import { TYPE_LABEL, codeTarget, codeTargetQ8 } from './models.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const target = codeTargetQ8;
const TYPES = (process.env.BENCH_TYPES ?? 'q8_0,q4_k_m,q4_0,f16,bf16').split(',');
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const SIZES = [1, 2, 4, 8, 16, 32, 64];
const CONTEXT = 64;
const ENGINES = [
  { name: 'specdec (specdec kernels)', engine: 'specdec', kernels: 'specdec' },
  { name: 'specdec (ggml kernels)', engine: 'specdec', kernels: 'ggml' },
  { name: 'llama.cpp (node-llama-cpp)', engine: 'nlc' },
];

async function worker([engine, kernels, threadsArg, tokensFile, itersArg, file]) {
  const threads = Number(threadsArg);
  const iters = Number(itersArg);
  const tokens = JSON.parse(readFileSync(tokensFile, 'utf8'));
  const now = () => performance.now();
  let evalN;
  let cleanup;
  if (engine === 'specdec') {
    const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
    const model = await loadModel(file, { backend: 'cpu', cpuKernels: kernels });
    const s = await model.createSession({ threads, contextSize: 1024 });
    await s.evaluate(tokens.slice(0, CONTEXT));
    evalN = async (n) => {
      s.truncate(CONTEXT);
      const t0 = now();
      await s.evaluate(tokens.slice(CONTEXT, CONTEXT + n), { allLogits: true });
      return now() - t0;
    };
    cleanup = () => model.dispose();
  } else {
    const { getLlama } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
    const model = await llama.loadModel({ modelPath: file });
    const ctx = await model.createContext({ contextSize: 1024, threads, batchSize: 512 });
    const seq = ctx.getSequence();
    await seq.evaluateWithoutGeneratingNewTokens(tokens.slice(0, CONTEXT));
    evalN = async (n) => {
      await seq.eraseContextTokenRanges([{ start: CONTEXT, end: seq.nextTokenIndex }]);
      const t0 = now();
      await seq.evaluateWithoutGeneratingNewTokens(tokens.slice(CONTEXT, CONTEXT + n));
      return now() - t0;
    };
    cleanup = async () => { await ctx.dispose(); await model.dispose(); };
  }
  for (const n of SIZES) await evalN(n);  // warm-up
  const ms = {};
  for (const n of SIZES) {
    const t = [];
    for (let i = 0; i < iters; i++) t.push(await evalN(n));
    ms[n] = median(t);
  }
  await cleanup();
  process.stdout.write(JSON.stringify(ms));
}

async function main() {
  if (!existsSync(target)) throw new Error(`the code target is missing in ${shared}/models/code`);
  const reps = Number(process.env.BENCH_REPS ?? 3);
  const iters = Number(process.env.BENCH_ITERS ?? 9);
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(target);
  const prompts = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts;
  const tokens = model.tokenize(prompts.map((p) => p.prompt).join('\n')).slice(0, CONTEXT + 64);
  await model.dispose();
  mkdirSync(path.join(root, 'bench', 'tmp'), { recursive: true });
  const tokensFile = path.join(root, 'bench', 'tmp', 'verify-tokens.json');
  writeFileSync(tokensFile, JSON.stringify(tokens));
  const files = Object.fromEntries(TYPES.map((t) => [t, codeTarget(t)]));
  const runs = new Map();
  for (let r = 0; r < reps; r++) {
    for (const type of TYPES) {
      for (const threads of [1, 2]) {
        const order = r % 2 === 0 ? ENGINES : [...ENGINES].reverse();
        for (const e of order) {
          const key = `${type}|${e.name}|${threads}`;
          const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--worker', e.engine, e.kernels ?? '', String(threads), tokensFile, String(iters), files[type]], { encoding: 'utf8', maxBuffer: 1 << 24 });
          if (p.status !== 0) throw new Error(`${key} failed:\n${p.stderr}`);
          const ms = JSON.parse(p.stdout.trim().split('\n').pop());
          if (!runs.has(key)) runs.set(key, []);
          runs.get(key).push(ms);
          process.stderr.write(`rep ${r + 1}/${reps} ${key}: ${SIZES.map((n) => `${n}:${ms[n].toFixed(2)}`).join(' ')} ms\n`);
        }
      }
    }
  }
  const rows = [];
  for (const [key, rs] of runs) {
    const [type, engine, threads] = key.split('|');
    const ms = Object.fromEntries(SIZES.map((n) => [n, median(rs.map((x) => x[n]))]));
    // the ratio per run, then the median (ratios are steadier than times on a noisy machine)
    const ratio = Object.fromEntries(SIZES.map((n) => [n, median(rs.map((x) => x[n] / x[1]))]));
    // time against llama.cpp's for the same type, threads and n (per run, then the median)
    const nlc = runs.get(`${type}|${ENGINES[2].name}|${threads}`);
    const vsLlama = Object.fromEntries(SIZES.map((n) => [n, median(rs.map((x, i) => nlc[i][n] / x[n]))]));
    rows.push({ weights: TYPE_LABEL[type], engine, threads: Number(threads), ms, ratio, vsLlama });
  }
  const machine = { cpu: cpus()[0]?.model, cpus: availableParallelism(), node: process.version, date: new Date().toISOString() };
  writeFileSync(path.join(root, 'bench', 'results', 'verify.json'), JSON.stringify({ machine, context: CONTEXT, sizes: SIZES, reps, iters, rows }, null, 2) + '\n');
  const main = rows.filter((r) => r.weights === rows[0].weights);
  const svg = lineChart({
    title: `Cost of one forward pass over n tokens, relative to one token (code target, ${rows[0].weights})`,
    xLabel: 'tokens in the pass (n)', yLabel: 't(n) / t(1)',
    series: main.map((r) => ({ name: `${r.engine}, ${r.threads}t`, dashed: r.threads === 2, points: SIZES.map((n) => [n, r.ratio[n]]) })),
  });
  writeFileSync(path.join(root, 'bench', 'results', 'verify.svg'), svg);
  let md = `| weights | engine | threads | t(1) ms | ${SIZES.slice(1).map((n) => `t(${n})/t(1)`).join(' | ')} | llama.cpp's time / this, n = 1 · 8 · 16 |\n|---|---|---|---|${SIZES.slice(1).map(() => '---').join('|')}|---|\n`;
  for (const r of rows) {
    const vs = r.engine === ENGINES[2].name ? '–' : [1, 8, 16].map((n) => `${r.vsLlama[n].toFixed(2)}×`).join(' · ');
    md += `| ${r.weights} | ${r.engine} | ${r.threads} | ${r.ms[1].toFixed(2)} | ${SIZES.slice(1).map((n) => r.ratio[n].toFixed(2)).join(' | ')} | ${vs} |\n`;
  }
  md += `\nCode target (42 M; Q8_0 as shared, the other types re-quantized from it), n tokens after a ${CONTEXT}-token context, ${reps} interleaved runs × ${iters} timings, medians; ${machine.cpus} CPUs (${machine.cpu}), ${machine.date.slice(0, 10)}. Chart (${rows[0].weights}): [bench/results/verify.svg](bench/results/verify.svg).\n`;
  writeFileSync(path.join(root, 'bench', 'results', 'verify.md'), md);
  const readme = path.join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const i = text.indexOf('<!-- bench:verify -->');
  const j = text.indexOf('<!-- /bench:verify -->');
  if (i >= 0 && j > i) writeFileSync(readme, text.slice(0, i + '<!-- bench:verify -->'.length) + '\n' + md + text.slice(j));
  process.stdout.write(md);
}

if (process.argv[2] === '--worker') worker(process.argv.slice(3)).catch((e) => { console.error(e); process.exit(1); });
else main().catch((e) => { console.error(e); process.exit(1); });
