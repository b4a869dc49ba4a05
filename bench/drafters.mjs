#!/usr/bin/env node
// npm run bench:drafters — learned drafters on the code target, in one run on one machine:
//   1. trains an EAGLE-3 head and Medusa heads for the code target on
//      ../shared/corpus/python-packages.jsonl (BENCH_TRAIN_MINUTES each, default 15), each in a child
//      process: training time, positions, held-out loss / per-head top-1 / τ estimate, peak RSS;
//   2. decodes the code prompts (../shared/eval/code-prompts.json, held out from the corpus) with
//      autoregressive decoding, eagle, medusa, auto + each head, the draft model, lookup and rasd, at
//      T = 0 and T = 0.8, each run in its own process, runs interleaved, medians: decode tok/s, τ,
//      acceptance.
// Env: BENCH_TRAIN_MINUTES (15), BENCH_REUSE=1 (reuse bench/tmp/code-{eagle3,medusa,chimera}.gguf and
// their training reports from an earlier run instead of training), BENCH_REPS (3), BENCH_TOKENS (128),
// BENCH_PROMPTS (8), BENCH_THREADS (1), BENCH_ARMS (a comma-separated subset of the arms' names, default
// all; the drafters they need are trained), BENCH_OUT (results file base name, default 'drafters'),
// SPECDEC_SHARED.
// Writes bench/results/<BENCH_OUT>.json, .md, .svg and, for the default name, the README table between
// <!-- bench:drafters --> markers.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { barChart } from './chart.mjs';
import { codeDraft, codeTargetQ8 } from './models.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const corpus = path.join(shared, 'corpus', 'python-packages.jsonl');
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

// name, method, uses the draft model, the heads it uses ('eagle3', 'medusa', 'chimera' or none)
const ALL_ARMS = [
  ['autoregressive', 'autoregressive', false, ''],
  ['eagle (EAGLE-3)', 'eagle', false, 'eagle3'],
  ['auto + EAGLE-3', 'auto', false, 'eagle3'],
  ['medusa', 'medusa', false, 'medusa'],
  ['auto + Medusa', 'auto', false, 'medusa'],
  ['chimera', 'chimera', false, 'chimera'],
  ['auto + Chimera', 'auto', false, 'chimera'],
  ['hidden-transfer', 'hidden-transfer', false, 'hidden-transfer'],
  ['draft model', 'draft', true, ''],
  ['lookup', 'lookup', false, ''],
  ['rasd (retrieval)', 'rasd', false, ''],
].map(([name, method, draft, heads]) => ({ name, method, draft, heads }));
const ARMS = process.env.BENCH_ARMS
  ? ALL_ARMS.filter((a) => a.name === 'autoregressive' || process.env.BENCH_ARMS.split(',').map((x) => x.trim()).includes(a.name))
  : ALL_ARMS;
const OUT = process.env.BENCH_OUT ?? 'drafters';
const KIND_NAMES = { eagle3: 'EAGLE-3 (1 layer, 3 TTT steps)', chimera: 'Chimera (trigram + 1 layer, residual head)' };
// Hidden Transfer's transfer layer and pseudo rows (bench/results/hidden-transfer-sweep.json chose them)
const HT = { layer: Number(process.env.BENCH_HT_LAYER ?? 6), k: Number(process.env.BENCH_HT_K ?? 3) };

async function trainWorker([kind, out, minutes, threads]) {
  const { loadModel, trainDrafter } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
  let last = 0;
  const r = await trainDrafter(model, {
    kind, corpus, out, minutes: Number(minutes), threads: Number(threads),
    ...(kind === 'hidden-transfer' ? { hiddenTransfer: HT } : {}),
    onProgress: (p) => {
      if (Date.now() - last < 30_000 && p.phase === 'train') return;
      last = Date.now();
      process.stderr.write(`  ${p.phase} ${p.tokens} positions, ${p.tokensPerSecond.toFixed(0)} pos/s, val loss ${p.validationLoss.toFixed(3)}\n`);
    },
  });
  await model.dispose();
  const report = { ...r, maxRssMiB: process.resourceUsage().maxRSS / 1024, threads: Number(threads) };
  writeFileSync(out.replace(/\.gguf$/, '.json'), JSON.stringify(report, null, 2));
  process.stdout.write(JSON.stringify(report));
}

async function decodeWorker([method, useDraft, headsFile, temp, threads, promptsFile, nArg]) {
  const n = Number(nArg);
  const temperature = Number(temp);
  const prompts = JSON.parse(readFileSync(promptsFile, 'utf8'));
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
  const draftModel = useDraft === 'true' ? await loadModel(codeDraft, { backend: 'cpu' }) : undefined;
  const session = await model.createSession({ threads: Number(threads), contextSize: 1024 });
  const gen = async (p, k, seed) => {
    session.truncate(0);
    const t0 = performance.now();
    const r = await session.generate(p, {
      maxTokens: k, temperature, seed, ignoreEos: true, method,
      ...(draftModel ? { draft: { model: draftModel } } : {}), ...(headsFile !== '-' ? { heads: { file: headsFile } } : {}),
    }).result();
    return { ms: performance.now() - t0, tau: r.stats.meanAcceptedLength, acc: r.stats.acceptanceRate };
  };
  await gen(prompts[0], 8, 1);
  const out = { decode: [], tau: [], acceptance: [] };
  for (let i = 0; i < prompts.length; i++) {
    const P = await gen(prompts[i], 1, i + 1);
    const F = await gen(prompts[i], n, i + 1);
    out.decode.push(((n - 1) * 1000) / (F.ms - P.ms));
    out.tau.push(F.tau);
    out.acceptance.push(F.acc);
  }
  await session.dispose();
  await model.dispose();
  await draftModel?.dispose();
  process.stdout.write(JSON.stringify(out));
}

function child(args) {
  const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...args], { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] });
  if (p.status !== 0) throw new Error(`${args.join(' ')} failed`);
  return JSON.parse(p.stdout.trim().split('\n').pop());
}

async function main() {
  const minutes = Number(process.env.BENCH_TRAIN_MINUTES ?? 15);
  const reps = Number(process.env.BENCH_REPS ?? 3);
  const n = Number(process.env.BENCH_TOKENS ?? 128);
  const nPrompts = Number(process.env.BENCH_PROMPTS ?? 8);
  const threads = Number(process.env.BENCH_THREADS ?? 1);
  for (const f of [codeTargetQ8, codeDraft, corpus]) if (!existsSync(f)) throw new Error(`missing ${f}`);
  mkdirSync(path.join(root, 'bench', 'tmp'), { recursive: true });
  const heads = {};
  const training = {};
  for (const kind of ['eagle3', 'medusa', 'chimera', 'hidden-transfer'].filter((k) => ARMS.some((a) => a.heads === k))) {
    heads[kind] = path.join(root, 'bench', 'tmp', `code-${kind}.gguf`);
    const reportFile = heads[kind].replace(/\.gguf$/, '.json');
    if (process.env.BENCH_REUSE === '1' && existsSync(heads[kind]) && existsSync(reportFile)) {
      training[kind] = { ...JSON.parse(readFileSync(reportFile, 'utf8')), reused: true };
      continue;
    }
    process.stderr.write(`training ${kind} for ${minutes} min (${availableParallelism()} threads)\n`);
    training[kind] = child(['--train', kind, heads[kind], String(minutes), String(availableParallelism())]);
  }
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8);
  const texts = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts.slice(0, nPrompts).map((p) => p.prompt);
  const prompts = texts.map((t) => model.tokenize(t).slice(-400));
  await model.dispose();
  const promptsFile = path.join(root, 'bench', 'tmp', 'drafters-prompts.json');
  writeFileSync(promptsFile, JSON.stringify(prompts));
  const runs = new Map();
  for (let r = 0; r < reps; r++) {
    const order = r % 2 === 0 ? ARMS : [...ARMS].reverse();
    for (const a of order) {
      for (const temp of [0, 0.8]) {
        const key = `${a.name}|${temp}`;
        const o = child(['--decode', a.method, String(a.draft), a.heads ? heads[a.heads] : '-', String(temp), String(threads), promptsFile, String(n)]);
        if (!runs.has(key)) runs.set(key, []);
        runs.get(key).push({ decode: median(o.decode), tau: median(o.tau), acceptance: median(o.acceptance) });
        process.stderr.write(`rep ${r + 1}/${reps} ${key}: ${median(o.decode).toFixed(0)} tok/s, tau ${median(o.tau).toFixed(2)}\n`);
      }
    }
  }
  const rows = [];
  for (const [key, rs] of runs) {
    const [name, temp] = key.split('|');
    const decode = rs.map((x) => x.decode);
    rows.push({ method: name, temperature: Number(temp), decodeTokensPerSecond: median(decode), min: Math.min(...decode), max: Math.max(...decode),
      tau: median(rs.map((x) => x.tau)), acceptance: median(rs.map((x) => x.acceptance)) });
  }
  for (const r of rows) r.speedupOverOurAutoregressive = r.decodeTokensPerSecond / rows.find((x) => x.method === 'autoregressive' && x.temperature === r.temperature).decodeTokensPerSecond;
  const machine = { cpu: cpus()[0]?.model, cpus: availableParallelism(), node: process.version, date: new Date().toISOString() };
  const result = { machine, tokens: n, reps, prompts: nPrompts, threads, training, rows };
  writeFileSync(path.join(root, 'bench', 'results', `${OUT}.json`), JSON.stringify(result, null, 2) + '\n');
  let md = '\n| training | time | threads | positions (AdamW steps) | peak RSS | held-out loss before → after | held-out top-1 per head / depth | τ estimate |\n|---|---|---|---|---|---|---|---|\n';
  for (const [kind, t] of Object.entries(training)) {
    const label = KIND_NAMES[kind] ?? (kind === 'hidden-transfer' ? `Hidden Transfer (layer ${HT.layer}, k ${t.headAccuracyAfter.length})` : `Medusa (${t.headAccuracyAfter.length} heads)`);
    md += `| ${label} | ${(t.seconds / 60).toFixed(1)} min | ${t.threads ?? '–'} | ` +
      `${t.tokens} (${t.steps}) | ${t.maxRssMiB != null ? `${t.maxRssMiB.toFixed(0)} MiB` : '–'} | ${t.validationLossBefore.toFixed(2)} → ${t.validationLossAfter.toFixed(2)} | ` +
      `${t.headAccuracyAfter.map((x) => (x * 100).toFixed(1) + ' %').join(' / ')} | ${t.tauBefore.toFixed(2)} → ${t.tauAfter.toFixed(2)} |\n`;
  }
  md += `\n| method | T | τ | acceptance | decode tok/s (min–max) | vs our autoregressive |\n|---|---|---|---|---|---|\n`;
  for (const r of rows) {
    md += `| ${r.method} | ${r.temperature} | ${r.method === 'autoregressive' ? '–' : r.tau.toFixed(2)} | ${r.method === 'autoregressive' ? '–' : (r.acceptance * 100).toFixed(0) + ' %'} | ` +
      `${r.decodeTokensPerSecond.toFixed(0)} (${r.min.toFixed(0)}–${r.max.toFixed(0)}) | ${r.speedupOverOurAutoregressive.toFixed(2)}× |\n`;
  }
  md += `\nCode target (Q8_0), ${threads} thread${threads > 1 ? 's' : ''}, the first ${nPrompts} prompts of \`eval/code-prompts.json\` (last 400 tokens), ${n} tokens each; ` +
    `${reps} interleaved runs, each method in its own process, medians; ${machine.cpus} CPUs (${machine.cpu}), ${machine.date.slice(0, 10)}. Chart: [bench/results/${OUT}.svg](bench/results/${OUT}.svg).\n`;
  writeFileSync(path.join(root, 'bench', 'results', `${OUT}.md`), md);
  const bars = rows.filter((r) => r.method !== 'autoregressive').map((r) => ({ label: `${r.method} T=${r.temperature}`, value: r.speedupOverOurAutoregressive, group: String(r.temperature) }));
  writeFileSync(path.join(root, 'bench', 'results', `${OUT}.svg`), barChart({ title: 'Code target: decode speed relative to our autoregressive decoding', yLabel: 'speedup', bars, width: Math.max(760, bars.length * 40 + 80) }));
  const readme = path.join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const i = text.indexOf('<!-- bench:drafters -->');
  const j = text.indexOf('<!-- /bench:drafters -->');
  if (OUT === 'drafters' && i >= 0 && j > i) writeFileSync(readme, text.slice(0, i + '<!-- bench:drafters -->'.length) + '\n' + md + text.slice(j));
  process.stdout.write(md);
}

const [, , mode, ...rest] = process.argv;
const run = mode === '--train' ? trainWorker(rest) : mode === '--decode' ? decodeWorker(rest) : main();
run.catch((e) => { console.error(e); process.exit(1); });
