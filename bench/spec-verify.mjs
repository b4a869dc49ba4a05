#!/usr/bin/env node
// npm run bench:spec-verify — the two verifiers of speculative sampling side by side: 'match'
// (seed-exact: the autoregressive sample for the seed) and 'rejection' (recursive rejection
// sampling), for every method on the code pair at T = 0.8 (top-k 40, top-p 0.95, min-p 0.05, the
// defaults). A reduced bench:spec: same prompts (the first BENCH_PROMPTS of eval/code-prompts.json,
// last 400 tokens), same speed measure ((N - 1) / (time of an N-token run - time of a 1-token run)),
// one process per run, runs interleaved (order reversed every other repetition), medians.
// Env: BENCH_REPS (3), BENCH_TOKENS (128), BENCH_PROMPTS (4), BENCH_THREADS ("1"), SPECDEC_SHARED.
// Writes bench/results/spec-verify.json and spec-verify.md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeDraft, codeTargetQ8 } from './models.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const T = 0.8;

// name, method, needs the draft model
const METHODS = [
  ['lookup', 'lookup', false], ['token-recycling', 'token-recycling', false], ['aded', 'aded', false],
  ['rasd (retrieval only)', 'rasd', false], ['auto', 'auto', false], ['draft', 'draft', true], ['rsd', 'rsd', true],
  ['rasd + draft', 'rasd', true], ['auto + draft', 'auto', true],
].map(([name, method, draft]) => ({ name, method, draft }));

async function worker([method, useDraft, verify, threadsArg, promptsFile, nArg]) {
  const threads = Number(threadsArg);
  const n = Number(nArg);
  const prompts = JSON.parse(readFileSync(promptsFile, 'utf8'));
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
  const draftModel = useDraft === 'true' ? await loadModel(codeDraft, { backend: 'cpu' }) : undefined;
  const session = await model.createSession({ threads, contextSize: 1024 });
  const gen = async (p, k, seed) => {
    session.truncate(0);
    const t0 = performance.now();
    const r = await session.generate(p, { maxTokens: k, temperature: T, seed, ignoreEos: true, method, verify, draft: draftModel ? { model: draftModel } : undefined }).result();
    return { ms: performance.now() - t0, tau: r.stats.meanAcceptedLength, accepted: r.stats.acceptedTokens, drafted: r.stats.draftedTokens };
  };
  const out = { decode: [], tau: [], accepted: 0, drafted: 0 };
  await gen(prompts[0], 8, 1);
  for (let i = 0; i < prompts.length; i++) {
    const P = await gen(prompts[i], 1, i + 1);
    const F = await gen(prompts[i], n, i + 1);
    out.decode.push(((n - 1) * 1000) / (F.ms - P.ms));
    out.tau.push(F.tau);
    out.accepted += F.accepted;
    out.drafted += F.drafted;
  }
  await model.dispose();
  await draftModel?.dispose();
  process.stdout.write(JSON.stringify(out));
}

async function main() {
  const reps = Number(process.env.BENCH_REPS ?? 3);
  const n = Number(process.env.BENCH_TOKENS ?? 128);
  const nPrompts = Number(process.env.BENCH_PROMPTS ?? 4);
  const threadList = (process.env.BENCH_THREADS ?? '1').split(',').map(Number);
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8);
  const texts = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts.slice(0, nPrompts).map((p) => p.prompt);
  const prompts = texts.map((t) => model.tokenize(t).slice(-400));
  await model.dispose();
  mkdirSync(path.join(root, 'bench', 'tmp'), { recursive: true });
  const promptsFile = path.join(root, 'bench', 'tmp', 'spec-verify-prompts.json');
  writeFileSync(promptsFile, JSON.stringify(prompts));
  const results = [];
  for (const threads of threadList) {
    const runs = new Map();
    const jobs = [{ name: 'autoregressive', method: 'autoregressive', draft: false, verify: 'match' }];
    for (const m of METHODS) for (const verify of ['match', 'rejection']) jobs.push({ ...m, verify });
    for (let r = 0; r < reps; r++) {
      for (const j of r % 2 === 0 ? jobs : [...jobs].reverse()) {
        const key = `${j.name}|${j.verify}`;
        const args = [fileURLToPath(import.meta.url), '--worker', j.method, String(j.draft), j.verify, String(threads), promptsFile, String(n)];
        const p = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
        if (p.status !== 0) throw new Error(`${key} failed:\n${p.stderr}`);
        const o = JSON.parse(p.stdout.trim().split('\n').pop());
        if (!runs.has(key)) runs.set(key, []);
        runs.get(key).push({ decode: median(o.decode), tau: median(o.tau), acceptance: o.drafted > 0 ? o.accepted / o.drafted : 0 });
        process.stderr.write(`${threads}t rep ${r + 1}/${reps} ${key}: ${median(o.decode).toFixed(0)} tok/s, tau ${median(o.tau).toFixed(2)}\n`);
      }
    }
    const ar = median(runs.get('autoregressive|match').map((x) => x.decode));
    const rows = [];
    for (const [key, rs] of runs) {
      const [name, verify] = key.split('|');
      const decode = median(rs.map((x) => x.decode));
      rows.push({ method: name, verify: name === 'autoregressive' ? null : verify, decodeTokensPerSecond: decode, tau: median(rs.map((x) => x.tau)),
        acceptance: median(rs.map((x) => x.acceptance)), speedupOverAutoregressive: decode / ar, runs: rs.map((x) => Math.round(x.decode)) });
    }
    results.push({ threads, rows });
  }
  const machine = { cpu: cpus()[0]?.model, cpus: availableParallelism(), node: process.version, date: new Date().toISOString() };
  writeFileSync(path.join(root, 'bench', 'results', 'spec-verify.json'), JSON.stringify({ machine, tokens: n, reps, prompts: prompts.map((p) => p.length), temperature: T, results }, null, 2) + '\n');
  let md = '';
  for (const res of results) {
    md += `\n**Code pair, T = ${T}, ${res.threads} thread${res.threads > 1 ? 's' : ''}** (${machine.date.slice(0, 10)})\n\n`;
    md += '| method | τ match | τ rejection | acceptance match | acceptance rejection | tok/s match | tok/s rejection | match / rejection |\n|---|---|---|---|---|---|---|---|\n';
    const arRow = res.rows.find((r) => r.method === 'autoregressive');
    md += `| autoregressive | – | – | – | – | ${arRow.decodeTokensPerSecond.toFixed(0)} | – | – |\n`;
    for (const m of METHODS) {
      const a = res.rows.find((r) => r.method === m.name && r.verify === 'match');
      const b = res.rows.find((r) => r.method === m.name && r.verify === 'rejection');
      md += `| ${m.name} | ${a.tau.toFixed(2)} | ${b.tau.toFixed(2)} | ${(100 * a.acceptance).toFixed(0)} % | ${(100 * b.acceptance).toFixed(0)} % | ${a.decodeTokensPerSecond.toFixed(0)} | ${b.decodeTokensPerSecond.toFixed(0)} | ${(a.decodeTokensPerSecond / b.decodeTokensPerSecond).toFixed(2)}× |\n`;
    }
  }
  md += `\n${n} tokens per prompt, ${prompts.length} prompts, ${reps} interleaved runs, medians (τ: median over prompts; acceptance: accepted / drafted over all prompts); ${machine.cpus} CPUs (${machine.cpu}).\n`;
  writeFileSync(path.join(root, 'bench', 'results', 'spec-verify.md'), md);
  process.stdout.write(md);
}

if (process.argv[2] === '--worker') await worker(process.argv.slice(3));
else await main();
