#!/usr/bin/env node
// Hidden Transfer's tree budget on the code target: every verified row carries k pseudo rows, so the
// pass grows with the tree; this measures decode speed and τ at draftMax 1, 2, 4, 8 side by side with
// autoregressive decoding (one session, 1 thread, the first 4 code prompts' last 400 tokens, 128 tokens,
// greedy, 2 interleaved rounds, means). The file: bench/tmp/code-hidden-transfer.gguf (bench:drafters
// trains it), or BENCH_HT_FILE. Writes bench/results/hidden-transfer-budget.json.
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeTargetQ8 } from './models.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const file = process.env.BENCH_HT_FILE ?? path.join(root, 'bench', 'tmp', 'code-hidden-transfer.gguf');
const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
const texts = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts.slice(0, 4).map((p) => p.prompt);
const prompts = texts.map((t) => model.tokenize(t).slice(-400));
const s = await model.createSession({ threads: 1, contextSize: 1024 });
const run = async (o) => {
  let ms = 0, n = 0;
  const tau = [];
  for (const p of prompts) {
    s.truncate(0);
    const t0 = performance.now();
    const r = await s.generate(p, { maxTokens: 128, ignoreEos: true, ...o }).result();
    ms += performance.now() - t0 - r.stats.prefillMs;
    n += r.tokens.length;
    tau.push(r.stats.meanAcceptedLength);
  }
  return { tokensPerSecond: (n * 1000) / ms, tau: tau.reduce((a, b) => a + b) / tau.length };
};
const rounds = [];
for (let rep = 0; rep < 2; rep++) {
  const ar = await run({});
  const rows = [];
  for (const draftMax of [1, 2, 4, 8]) {
    const r = await run({ method: 'hidden-transfer', heads: { file }, draftMax });
    rows.push({ draftMax, ...r, speedup: r.tokensPerSecond / ar.tokensPerSecond });
  }
  rounds.push({ autoregressiveTokensPerSecond: ar.tokensPerSecond, rows });
}
await s.dispose();
await model.dispose();
const summary = [1, 2, 4, 8].map((draftMax, i) => ({
  draftMax,
  tau: rounds.reduce((a, r) => a + r.rows[i].tau, 0) / rounds.length,
  speedup: rounds.reduce((a, r) => a + r.rows[i].speedup, 0) / rounds.length,
}));
const machine = { cpu: cpus()[0]?.model, cpus: availableParallelism(), node: process.version, date: new Date().toISOString() };
writeFileSync(path.join(root, 'bench', 'results', 'hidden-transfer-budget.json'), JSON.stringify({ machine, file: path.basename(file), rounds, summary }, null, 2) + '\n');
process.stdout.write(JSON.stringify(summary) + '\n');
