#!/usr/bin/env node
// npm run bench:ar — autoregressive prefill and decode speed, specdec vs node-llama-cpp 3.21.1,
// on the same GGUF files and thread counts. Each measurement runs in its own child process
// (the two engines carry different ggml builds), runs are interleaved (engine order alternates
// per repetition), and the medians over repetitions are reported with their ratio.
//
// Method (the same wall-clock measure for both engines): for each prompt, time a run that
// generates 1 token (prefill + one sample: P) and a run that generates N tokens (F);
// prefill tok/s = prompt tokens / P, decode tok/s = (N - 1) / (F - P). Greedy, the KV cache
// cleared between runs. Env: BENCH_REPS (default 5), BENCH_TOKENS (128), SPECDEC_SHARED.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { llamaBenchDecode } from './llama-native.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---------------------------------------------------------------- worker
async function worker([engine, modelPath, threadsArg, promptsFile, nArg]) {
  const threads = Number(threadsArg);
  const n = Number(nArg);
  const prompts = JSON.parse(readFileSync(promptsFile, 'utf8'));
  const ctxSize = Number(process.env.BENCH_CTX ?? 1024);
  const out = { prefill: [], decode: [] };
  const now = () => performance.now();
  // gen(prompt, k) runs one greedy generation of k tokens from a cleared cache and returns its ms
  const measure = async (gen) => {
    await gen(prompts[0], 8); // warm-up
    for (const p of prompts) {
      const P = await gen(p, 1);
      const F = await gen(p, n);
      out.prefill.push((p.length * 1000) / P);
      out.decode.push(((n - 1) * 1000) / (F - P));
    }
  };
  if (engine === 'specdec') {
    const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
    const model = await loadModel(modelPath, { backend: 'cpu' });
    const session = await model.createSession({ threads, contextSize: ctxSize });
    const gen = async (p, k) => {
      session.truncate(0);
      const t0 = now();
      const r = await session.generate(p, { maxTokens: k, temperature: 0, ignoreEos: true }).result();
      if (r.tokens.length !== k) throw new Error(`specdec stopped after ${r.tokens.length} tokens (${r.stats.stopReason})`);
      return now() - t0;
    };
    await measure(gen);
    await model.dispose();
  } else {
    const { getLlama } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
    const model = await llama.loadModel({ modelPath });
    const ctx = await model.createContext({ contextSize: ctxSize, threads, batchSize: 512 });
    const seq = ctx.getSequence();
    const gen = async (p, k) => {
      await seq.clearHistory();
      const t0 = now();
      let got = 0;
      for await (const _t of seq.evaluate(p, { temperature: 0, yieldEogToken: true })) {
        if (++got >= k) break;
      }
      const dt = now() - t0;
      if (got !== k) throw new Error(`node-llama-cpp stopped after ${got} tokens`);
      return dt;
    };
    await measure(gen);
    await ctx.dispose();
    await model.dispose();
  }
  process.stdout.write(JSON.stringify(out));
}

// ---------------------------------------------------------------- orchestrator
async function main() {
  const reps = Number(process.env.BENCH_REPS ?? 5);
  const n = Number(process.env.BENCH_TOKENS ?? 128);
  const threadCounts = [...new Set([1, Math.min(2, availableParallelism())])];
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const codePrompts = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts;
  const models = [
    { name: 'stories260K', file: path.join(shared, 'models', 'stories260K.gguf'), texts: ['Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a big'], maxPrompt: 64 },
    { name: 'code-target-q8_0', file: path.join(shared, 'models', 'code', 'code-target-q8_0.gguf'), texts: codePrompts.slice(0, 4).map((p) => p.prompt), maxPrompt: 256 },
  ].filter((m) => existsSync(m.file));
  mkdirSync(path.join(root, 'bench', 'tmp'), { recursive: true });

  const results = [];
  for (const m of models) {
    const model = await loadModel(m.file);
    const prompts = m.texts.map((t) => model.tokenize(t).slice(-m.maxPrompt));
    await model.dispose();
    const promptsFile = path.join(root, 'bench', 'tmp', `${m.name}-prompts.json`);
    writeFileSync(promptsFile, JSON.stringify(prompts));
    for (const threads of threadCounts) {
      const runs = { specdec: [], 'node-llama-cpp': [] };
      for (let r = 0; r < reps; r++) {
        const order = r % 2 === 0 ? ['specdec', 'node-llama-cpp'] : ['node-llama-cpp', 'specdec'];
        for (const engine of order) {
          const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--worker', engine, m.file, String(threads), promptsFile, String(n)], {
            encoding: 'utf8', env: { ...process.env, BENCH_CTX: String(m.name === 'stories260K' ? 2048 : 1024) }, maxBuffer: 1 << 24,
          });
          if (p.status !== 0) throw new Error(`${engine} worker failed:\n${p.stderr}`);
          const o = JSON.parse(p.stdout.trim().split('\n').pop());
          // one number per run: the median over prompts
          runs[engine].push({ prefill: median(o.prefill), decode: median(o.decode) });
        }
        process.stderr.write(`${m.name} t=${threads} rep ${r + 1}/${reps}\r`);
      }
      const row = { model: m.name, threads, promptTokens: prompts.map((p) => p.length), generated: n, reps };
      for (const engine of Object.keys(runs)) {
        row[engine] = {
          prefillTokensPerSecond: median(runs[engine].map((x) => x.prefill)),
          decodeTokensPerSecond: median(runs[engine].map((x) => x.decode)),
          decodeRuns: runs[engine].map((x) => Math.round(x.decode)),
        };
      }
      // native llama.cpp (scripts/build-llama-native.sh), when built: llama-bench's own decode measure
      const native = llamaBenchDecode(m.file, threads, n, reps);
      if (native) row.llamaCppNative = { decodeTokensPerSecond: native.decodeTokensPerSecond, decodeRuns: native.runs.map(Math.round) };
      row.decodeRatio = row.specdec.decodeTokensPerSecond / row['node-llama-cpp'].decodeTokensPerSecond;
      row.prefillRatio = row.specdec.prefillTokensPerSecond / row['node-llama-cpp'].prefillTokensPerSecond;
      results.push(row);
      process.stderr.write('\n');
    }
  }
  // each engine at its best thread count
  const best = [];
  for (const m of models) {
    const rows = results.filter((r) => r.model === m.name);
    const pick = (engine) => rows.reduce((a, b) => (b[engine].decodeTokensPerSecond > a[engine].decodeTokensPerSecond ? b : a));
    const s = pick('specdec');
    const l = pick('node-llama-cpp');
    const nat = rows.filter((r) => r.llamaCppNative).reduce((a, b) => (!a || b.llamaCppNative.decodeTokensPerSecond > a.llamaCppNative.decodeTokensPerSecond ? b : a), null);
    best.push({ model: m.name, specdecThreads: s.threads, specdecDecode: s.specdec.decodeTokensPerSecond, nlcThreads: l.threads,
      nlcDecode: l['node-llama-cpp'].decodeTokensPerSecond, decodeRatio: s.specdec.decodeTokensPerSecond / l['node-llama-cpp'].decodeTokensPerSecond,
      ...(nat ? { llamaCppThreads: nat.threads, llamaCppDecode: nat.llamaCppNative.decodeTokensPerSecond, decodeRatioOverLlamaCpp: s.specdec.decodeTokensPerSecond / nat.llamaCppNative.decodeTokensPerSecond } : {}) });
  }
  const machine = { cpu: cpus()[0]?.model, cpus: availableParallelism(), node: process.version, date: new Date().toISOString() };
  const json = { machine, method: 'wall clock per prompt: P = 1-token run, F = N-token run; prefill = prompt/P, decode = (N-1)/(F-P); median over prompts per run, median over interleaved runs', results, best };
  writeFileSync(path.join(root, 'bench', 'results', 'ar.json'), JSON.stringify(json, null, 2) + '\n');
  render(json);
}

/** Writes bench/results/ar.md and the README table from the results object (BENCH_RENDER_ONLY=1: from ar.json). */
function render(json) {
  const { machine, results, best } = json;
  const reps = results[0]?.reps;
  const n = results[0]?.generated;
  const f = (x) => x.toFixed(0);
  // No ratios per thread count: node-llama-cpp attaches no ggml thread pool, so at 2 threads on 2 cores its
  // decode collapses and a ratio to it says nothing; the ratios are in the best-thread-count table below.
  let md = `| model | threads | specdec decode tok/s | node-llama-cpp decode tok/s | specdec prefill tok/s | node-llama-cpp prefill tok/s |\n|---|---|---|---|---|---|\n`;
  for (const r of results) {
    md += `| ${r.model} | ${r.threads} | ${f(r.specdec.decodeTokensPerSecond)} | ${f(r['node-llama-cpp'].decodeTokensPerSecond)} | ${f(r.specdec.prefillTokensPerSecond)} | ${f(r['node-llama-cpp'].prefillTokensPerSecond)} |\n`;
  }
  if (results.some((r) => r.llamaCppNative)) {
    md += `\nNative llama.cpp (llama-bench from the pinned submodule, scripts/build-llama-native.sh), decode tok/s:\n\n| model | threads | llama.cpp | specdec over it |\n|---|---|---|---|\n`;
    for (const r of results.filter((x) => x.llamaCppNative)) md += `| ${r.model} | ${r.threads} | ${f(r.llamaCppNative.decodeTokensPerSecond)} | ${(r.specdec.decodeTokensPerSecond / r.llamaCppNative.decodeTokensPerSecond).toFixed(2)}× |\n`;
  }
  md += `\nEach engine at its best thread count (decode):\n\n| model | specdec | node-llama-cpp | ratio | native llama.cpp | ratio |\n|---|---|---|---|---|---|\n`;
  for (const b of best) md += `| ${b.model} | ${f(b.specdecDecode)} tok/s (${b.specdecThreads} t) | ${f(b.nlcDecode)} tok/s (${b.nlcThreads} t) | ${b.decodeRatio.toFixed(2)}× | ${b.llamaCppDecode ? `${f(b.llamaCppDecode)} tok/s (${b.llamaCppThreads} t)` : '–'} | ${b.decodeRatioOverLlamaCpp ? b.decodeRatioOverLlamaCpp.toFixed(2) + '×' : '–'} |\n`;
  md += `\n${machine.cpus} CPUs (${machine.cpu}), Node ${machine.node}, ${machine.date.slice(0, 10)}; ${reps} interleaved runs, medians; ${n} generated tokens per prompt.\n`;
  writeFileSync(path.join(root, 'bench', 'results', 'ar.md'), md);
  const readme = path.join(root, 'README.md');
  if (existsSync(readme)) {
    const text = readFileSync(readme, 'utf8');
    const start = '<!-- bench:ar -->';
    const end = '<!-- /bench:ar -->';
    const i = text.indexOf(start);
    const j = text.indexOf(end);
    if (i >= 0 && j > i) writeFileSync(readme, text.slice(0, i + start.length) + '\n' + md + text.slice(j));
  }
  process.stdout.write(md);
}

if (process.argv[2] === '--worker') worker(process.argv.slice(3)).catch((e) => { console.error(e); process.exit(1); });
else if (process.env.BENCH_RENDER_ONLY) render(JSON.parse(readFileSync(path.join(root, 'bench', 'results', 'ar.json'), 'utf8')));
else main().catch((e) => { console.error(e); process.exit(1); });
