#!/usr/bin/env node
// npm run bench:memory — what a model and a session hold, for the README's Memory and Numerics sections:
// RSS after loading the code target (Q8_0 on specdec's and on ggml's kernels, Q4_K_M on both), and what a
// session of it holds at its default context (session.memory: KV cache, compute buffers, graph metadata)
// with the RSS it adds at creation and after generating. Each measurement in a fresh process (RSS from
// /proc/self/statm, file-backed pages included). Writes bench/results/memory.json and .md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeTarget, root } from './models.mjs';

const rss = () => Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096;
const MiB = (n) => n / 2 ** 20;

async function worker([file, cpuKernels]) {
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const base = rss();
  const m = await loadModel(file, { cpuKernels });
  const loaded = rss();
  const s = await m.createSession({ threads: 1 });
  const created = rss();
  const mem = s.nativeSession()._memory();
  await s.generate('def fib(n):\n    if n < 2:\n        return n\n', { maxTokens: 48 }).result();
  await s.generate('def fib(n):\n    if n < 2:\n        return n\n', { maxTokens: 48, method: 'lookup' }).result();
  const used = rss();
  process.stdout.write(JSON.stringify({
    rssAfterLoadMiB: MiB(loaded), rssLoadMiB: MiB(loaded - base), sessionRssAtCreationMiB: MiB(created - loaded), sessionRssAfterGeneratingMiB: MiB(used - loaded),
    kvMiB: MiB(mem.kvBytes), computeMiB: MiB(mem.computeBytes), graphMiB: MiB(mem.graphBytes), contextSize: s.info.contextSize, batchSize: s.info.batchSize,
  }));
  await m.dispose();
}

function main() {
  const rows = [];
  for (const type of ['q8_0', 'q4_k_m']) {
    for (const kernels of ['specdec', 'ggml']) {
      const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--worker', codeTarget(type), kernels], { encoding: 'utf8' });
      if (p.status !== 0) throw new Error(`worker ${type} ${kernels} failed:\n${p.stderr}`);
      rows.push({ type, kernels, ...JSON.parse(p.stdout) });
    }
  }
  const machine = { cpu: cpus()[0]?.model, cpus: cpus().length, node: process.version, date: new Date().toISOString() };
  mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(path.join(root, 'bench', 'results', 'memory.json'), JSON.stringify({ machine, rows }, null, 2) + '\n');
  const f = (x) => x.toFixed(1);
  let md = '| code target | kernels | RSS after load (MiB) | session: KV + compute + graph (MiB) | session RSS at creation / after generating (MiB) |\n|---|---|---|---|---|\n';
  for (const r of rows) md += `| ${r.type.toUpperCase()} | ${r.kernels} | ${f(r.rssAfterLoadMiB)} | ${f(r.kvMiB)} + ${f(r.computeMiB)} + ${f(r.graphMiB)} = ${f(r.kvMiB + r.computeMiB + r.graphMiB)} | +${f(r.sessionRssAtCreationMiB)} / +${f(r.sessionRssAfterGeneratingMiB)} |\n`;
  md += `\nSession at the default context (${rows[0].contextSize} tokens, batch ${rows[0].batchSize}), 1 thread; RSS from /proc/self/statm in a fresh process per row (Node's own ~40-50 MiB included in "after load"); ${machine.cpu}, ${machine.date.slice(0, 10)}.\n`;
  writeFileSync(path.join(root, 'bench', 'results', 'memory.md'), md);
  process.stdout.write(md);
}

if (process.argv[2] === '--worker') worker(process.argv.slice(3)).catch((e) => { console.error(e); process.exit(1); });
else main();
