#!/usr/bin/env node
// Hidden Transfer on the code target: a small sweep of the transfer layer l and the pseudo rows k.
// Each configuration trains for BENCH_TRAIN_MINUTES (default 2.5) with 2 threads (skipped when
// bench/tmp/ht-l<L>-k<K>.gguf and its .json report exist and BENCH_REUSE=1), then decodes the first
// BENCH_PROMPTS (4) code prompts (last 400 tokens), BENCH_TOKENS (128) tokens each at T = 0, side by side
// with autoregressive decoding (1 thread, each run in its own process, BENCH_REPS (2) interleaved runs).
// Writes bench/results/hidden-transfer-sweep.json and .md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeTargetQ8 } from './models.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const corpus = path.join(shared, 'corpus', 'python-packages.jsonl');
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const CONFIGS = (process.env.BENCH_CONFIGS ?? '6:3,3:3,9:3,6:2').split(',').map((c) => c.split(':').map(Number));

function run(args) {
  const p = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] });
  if (p.status !== 0) throw new Error(`${args.join(' ')} failed`);
  return JSON.parse(p.stdout.trim().split('\n').pop());
}

const minutes = Number(process.env.BENCH_TRAIN_MINUTES ?? 2.5);
const n = Number(process.env.BENCH_TOKENS ?? 128);
const reps = Number(process.env.BENCH_REPS ?? 2);
const nPrompts = Number(process.env.BENCH_PROMPTS ?? 4);
mkdirSync(path.join(root, 'bench', 'tmp'), { recursive: true });
const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
const model = await loadModel(codeTargetQ8);
const texts = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts.slice(0, nPrompts).map((p) => p.prompt);
const promptsFile = path.join(root, 'bench', 'tmp', 'ht-sweep-prompts.json');
writeFileSync(promptsFile, JSON.stringify(texts.map((t) => model.tokenize(t).slice(-400))));
await model.dispose();

const cli = path.join(root, 'dist', 'cli', 'index.js');
const drafters = path.join(root, 'bench', 'drafters.mjs');
const rows = [];
for (const [layer, k] of CONFIGS) {
  const file = path.join(root, 'bench', 'tmp', `ht-l${layer}-k${k}.gguf`);
  const reportFile = file.replace(/\.gguf$/, '.json');
  let training;
  if (process.env.BENCH_REUSE === '1' && existsSync(file) && existsSync(reportFile)) {
    training = JSON.parse(readFileSync(reportFile, 'utf8'));
  } else {
    process.stderr.write(`training l=${layer} k=${k} for ${minutes} min\n`);
    training = run([cli, 'train-drafter', '--model', codeTargetQ8, '--kind', 'hidden-transfer', '--corpus', corpus, '--out', file,
      '--minutes', String(minutes), '--threads', '2', '--transfer-layer', String(layer), '--pseudo-rows', String(k), '--json']);
    writeFileSync(reportFile, JSON.stringify(training, null, 2));
  }
  const ar = [], ht = [];
  for (let r = 0; r < reps; r++) {
    const pair = r % 2 === 0 ? ['ar', 'ht'] : ['ht', 'ar'];
    for (const which of pair) {
      const o = run([drafters, '--decode', which === 'ar' ? 'autoregressive' : 'hidden-transfer', 'false', which === 'ar' ? '-' : file, '0', '1', promptsFile, String(n)]);
      (which === 'ar' ? ar : ht).push(o);
    }
  }
  const arTps = median(ar.map((o) => median(o.decode))), htTps = median(ht.map((o) => median(o.decode)));
  const row = {
    layer, k, trainingSeconds: training.seconds, positions: training.tokens, steps: training.steps,
    validationLossBefore: training.validationLossBefore, validationLossAfter: training.validationLossAfter,
    top1PerPosition: training.headAccuracyAfter, tauEstimate: training.tauAfter,
    tau: median(ht.map((o) => median(o.tau))), acceptance: median(ht.map((o) => median(o.acceptance))),
    tokensPerSecond: htTps, autoregressiveTokensPerSecond: arTps, speedup: htTps / arTps,
  };
  rows.push(row);
  process.stderr.write(`l=${layer} k=${k}: ${JSON.stringify(row)}\n`);
}
const machine = { cpu: cpus()[0]?.model, cpus: availableParallelism(), node: process.version, date: new Date().toISOString() };
writeFileSync(path.join(root, 'bench', 'results', 'hidden-transfer-sweep.json'), JSON.stringify({ machine, minutes, tokens: n, reps, prompts: nPrompts, rows }, null, 2) + '\n');
let md = '\n| l | k | training | positions (steps) | held-out loss before → after | top-1 per pseudo position | τ estimate (greedy chain) | τ measured | acceptance | tok/s | vs autoregressive (same run) |\n|---|---|---|---|---|---|---|---|---|---|---|\n';
for (const r of rows) {
  md += `| ${r.layer} | ${r.k} | ${(r.trainingSeconds / 60).toFixed(1)} min | ${r.positions} (${r.steps}) | ${r.validationLossBefore.toFixed(2)} → ${r.validationLossAfter.toFixed(2)} | ` +
    `${r.top1PerPosition.map((x) => (x * 100).toFixed(1) + ' %').join(' / ')} | ${r.tauEstimate.toFixed(2)} | ${r.tau.toFixed(2)} | ${(r.acceptance * 100).toFixed(0)} % | ` +
    `${r.tokensPerSecond.toFixed(0)} | ${r.speedup.toFixed(2)}× (${r.autoregressiveTokensPerSecond.toFixed(0)} tok/s) |\n`;
}
md += `\nCode target (Q8_0), training ${minutes} min with 2 threads per configuration, decoding 1 thread, the first ${nPrompts} prompts of \`eval/code-prompts.json\` (last 400 tokens), ${n} tokens at T = 0, ${reps} interleaved runs each, medians; ${machine.cpus} CPUs (${machine.cpu}), shared with other work, ${machine.date.slice(0, 10)}.\n`;
writeFileSync(path.join(root, 'bench', 'results', 'hidden-transfer-sweep.md'), md);
process.stdout.write(md);
