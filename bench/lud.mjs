#!/usr/bin/env node
// npm run bench:lud — Lexical Unit Decoding on the code target, in one run on one machine:
//   1. fine-tunes a LUD model of the code target on ../shared/corpus/python-packages.jsonl
//      (BENCH_TRAIN_MINUTES, default 12) in a child process: positions, steps, held-out loss of the
//      parallel (placeholder) positions before/after, their top-1 agreement with the target per depth;
//   2. decodes held-out code prompts (../shared/eval/code-prompts.json, never trained on), greedy, with
//      our autoregressive decoding of the target, LUD verify mode (lossless: the parallel predictions
//      are a draft the target verifies) and LUD lossy mode at several alpha; each run in its own
//      process, runs interleaved, medians of decode tok/s;
//   3. fidelity of lossy mode: tokens identical to the target's greedy output (share of prompts fully
//      identical, mean common prefix), the mean per-token negative log-likelihood of the produced text
//      under the target (against the target's own greedy text), and how many outputs of each parse as
//      Python (python3's ast, when python3 is there).
// Env: BENCH_TRAIN_MINUTES (12), BENCH_TRAIN_OPTIONS (JSON merged into trainDrafter's options), BENCH_REUSE=1 (reuse bench/tmp/code-lud.gguf and its training report),
// BENCH_REPS (3), BENCH_TOKENS (96), BENCH_PROMPTS (12), BENCH_THREADS (1), BENCH_ALPHAS (0.5,0.7,0.9),
// SPECDEC_SHARED. Writes bench/results/lud.json and lud.md and the README table between
// <!-- bench:lud --> markers.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeTargetQ8 } from './models.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const corpus = path.join(shared, 'corpus', 'python-packages.jsonl');
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

async function trainWorker([out, minutes, threads]) {
  const { loadModel, trainDrafter } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
  let last = 0;
  const extra = JSON.parse(process.env.BENCH_TRAIN_OPTIONS ?? '{}');  // e.g. {"learningRate":5e-4,"sequenceLength":64,"lud":{"groups":32}}
  const r = await trainDrafter(model, {
    kind: 'lud', corpus, out, minutes: Number(minutes), threads: Number(threads), ...extra,
    onProgress: (p) => {
      if (Date.now() - last < 30_000 && p.phase === 'train') return;
      last = Date.now();
      process.stderr.write(`  ${p.phase} ${p.tokens} positions, ${p.tokensPerSecond.toFixed(0)} pos/s, train loss ${p.trainLoss.toFixed(3)}, val loss ${p.validationLoss.toFixed(3)}\n`);
    },
  });
  await model.dispose();
  const report = { ...r, options: extra, maxRssMiB: process.resourceUsage().maxRSS / 1024, threads: Number(threads) };
  writeFileSync(out.replace(/\.gguf$/, '.json'), JSON.stringify(report, null, 2));
  process.stdout.write(JSON.stringify(report));
}

async function decodeWorker([arm, ludFile, threads, promptsFile, nArg]) {
  const n = Number(nArg);
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
  const session = await model.createSession({ threads: Number(threads), contextSize: 1024 });
  const a = JSON.parse(arm);
  const opts = { maxTokens: n, temperature: 0, ignoreEos: true };
  if (a.method === 'lud') Object.assign(opts, { method: 'lud', lud: { file: ludFile, alpha: a.alpha, verify: a.verify, ...(a.k ? { k: a.k } : {}) } });
  const prompts = JSON.parse(readFileSync(promptsFile, 'utf8'));
  // warm-up (first-use costs: the LUD model's load and its session)
  await session.generate(prompts[0], { ...opts, maxTokens: 8 }).result();
  const outs = [];
  for (const p of prompts) {
    session.truncate(0);
    const r = await session.generate(p, opts).result();
    outs.push({ tokens: r.tokens, tps: r.stats.decodeTokensPerSecond, decodeMs: r.stats.decodeMs, lossless: r.stats.lossless,
      forward: r.stats.forwardPasses, drafted: r.stats.draftedTokens, accepted: r.stats.acceptedTokens });
  }
  await session.dispose();
  await model.dispose();
  process.stdout.write(JSON.stringify(outs));
}

// Per-token NLL of each output under the target (teacher forcing: prompt + output, all logits).
async function nllWorker([promptsFile, outputsFile]) {
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
  const session = await model.createSession({ contextSize: 1024 });
  const prompts = JSON.parse(readFileSync(promptsFile, 'utf8'));
  const outputs = JSON.parse(readFileSync(outputsFile, 'utf8'));  // { arm: [tokens per prompt] }
  const V = model.info.vocabSize;
  const res = {};
  for (const [arm, list] of Object.entries(outputs)) {
    const per = [];
    for (let i = 0; i < list.length; i++) {
      session.truncate(0);
      const seq = prompts[i].concat(list[i]);
      const logits = await session.evaluate(seq, { allLogits: true });
      let nll = 0;
      for (let j = prompts[i].length; j < seq.length; j++) {
        const row = logits.subarray((j - 1) * V, j * V);
        let mx = -Infinity;
        for (let v = 0; v < V; v++) mx = Math.max(mx, row[v]);
        let s = 0;
        for (let v = 0; v < V; v++) s += Math.exp(row[v] - mx);
        nll += -(row[seq[j]] - mx - Math.log(s));
      }
      per.push(nll / Math.max(1, list[i].length));
    }
    res[arm] = per;
  }
  await session.dispose();
  await model.dispose();
  process.stdout.write(JSON.stringify(res));
}

function child(args) {
  const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...args], { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'inherit'] });
  if (p.status !== 0) throw new Error(`${args.slice(0, 2).join(' ')} failed`);
  return JSON.parse(p.stdout.trim().split('\n').pop());
}

function parses(text) {
  const p = spawnSync('python3', ['-c', 'import ast,sys\ntry:\n ast.parse(sys.stdin.read())\nexcept SyntaxError:\n sys.exit(1)'], { input: text, encoding: 'utf8' });
  if (p.error) return undefined;
  return p.status === 0;
}

async function main() {
  const minutes = Number(process.env.BENCH_TRAIN_MINUTES ?? 12);
  const reps = Number(process.env.BENCH_REPS ?? 3);
  const n = Number(process.env.BENCH_TOKENS ?? 96);
  const nPrompts = Number(process.env.BENCH_PROMPTS ?? 12);
  const threads = Number(process.env.BENCH_THREADS ?? 1);
  const alphas = (process.env.BENCH_ALPHAS ?? '0.5,0.7,0.9').split(',').map(Number);
  for (const f of [codeTargetQ8, corpus]) if (!existsSync(f)) throw new Error(`missing ${f}`);
  mkdirSync(path.join(root, 'bench', 'tmp'), { recursive: true });
  const ludFile = path.join(root, 'bench', 'tmp', 'code-lud.gguf');
  const reportFile = ludFile.replace(/\.gguf$/, '.json');
  let training;
  if (process.env.BENCH_REUSE === '1' && existsSync(ludFile) && existsSync(reportFile)) {
    training = { ...JSON.parse(readFileSync(reportFile, 'utf8')), reused: true };
  } else {
    process.stderr.write(`training lud for ${minutes} min (${availableParallelism()} threads)\n`);
    training = child(['--train', ludFile, String(minutes), String(availableParallelism())]);
  }

  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8);
  const all = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts;
  const texts = all.slice(0, nPrompts).map((p) => p.prompt);
  const prompts = texts.map((t) => model.tokenize(t).slice(-400));
  const promptsFile = path.join(root, 'bench', 'tmp', 'lud-prompts.json');
  writeFileSync(promptsFile, JSON.stringify(prompts));

  const arms = [
    { name: 'autoregressive', method: 'autoregressive' },
    { name: 'lud verify (lossless)', method: 'lud', verify: true, alpha: alphas[0] },
    ...alphas.map((alpha) => ({ name: `lud lossy α=${alpha}`, method: 'lud', verify: false, alpha })),
    { name: `lud lossy α=${alphas[0]} k=2`, method: 'lud', verify: false, alpha: alphas[0], k: 2 },
  ];
  const runs = new Map();
  for (let r = 0; r < reps; r++) {
    for (const a of arms) {
      process.stderr.write(`rep ${r + 1}/${reps}: ${a.name}\n`);
      const outs = child(['--decode', JSON.stringify(a), ludFile, String(threads), promptsFile, String(n)]);
      if (!runs.has(a.name)) runs.set(a.name, []);
      runs.get(a.name).push(outs);
    }
  }
  const ref = runs.get('autoregressive')[0].map((o) => o.tokens);
  const outputsFile = path.join(root, 'bench', 'tmp', 'lud-outputs.json');
  writeFileSync(outputsFile, JSON.stringify(Object.fromEntries(arms.map((a) => [a.name, runs.get(a.name)[0].map((o) => o.tokens)]))));
  const nll = child(['--nll', promptsFile, outputsFile]);
  const arTps = median(runs.get('autoregressive').map((rs) => median(rs.map((o) => o.tps))));
  const rows = arms.map((a) => {
    const rs = runs.get(a.name);
    const tps = median(rs.map((x) => median(x.map((o) => o.tps))));
    const out = rs[0];
    const prefix = out.map((o, i) => { let k = 0; while (k < o.tokens.length && k < ref[i].length && o.tokens[k] === ref[i][k]) k++; return k; });
    const agree = out.map((o, i) => o.tokens.filter((t, k) => t === ref[i][k]).length / Math.max(1, ref[i].length));
    const parsed = out.map((o, i) => parses(texts[i] + model.detokenize(o.tokens)));
    const deterministic = rs.every((x) => x.every((o, i) => o.tokens.join() === out[i].tokens.join()));
    return {
      name: a.name, method: a.method, verify: a.verify ?? null, alpha: a.alpha ?? null,
      lossless: out[0].lossless,
      decodeTokensPerSecond: tps, speedup: tps / arTps,
      tokensPerForward: mean(out.map((o) => o.tokens.length / Math.max(1, o.forward))),
      identicalOutputs: out.filter((o, i) => o.tokens.join() === ref[i].join()).length / out.length,
      meanCommonPrefix: mean(prefix),
      positionAgreement: mean(agree),
      nllPerToken: mean(nll[a.name]),
      parses: parsed.some((p) => p === undefined) ? null : parsed.filter(Boolean).length / parsed.length,
      deterministicAcrossReps: deterministic,
    };
  });
  await model.dispose();
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', loadavg: loadavg(), date: new Date().toISOString() };
  const result = { machine, threads, reps, tokens: n, prompts: nPrompts, training, rows };
  writeFileSync(path.join(root, 'bench', 'results', 'lud.json'), JSON.stringify(result, null, 2) + '\n');
  const f2 = (x) => (x === null ? '—' : x.toFixed(2));
  const pct = (x) => (x === null ? '—' : `${(x * 100).toFixed(0)} %`);
  let md = '| method | lossless | decode tok/s | speedup | tokens / forward | outputs = target greedy | common prefix | position agreement | target NLL / token | parses |\n';
  md += '|---|---|---|---|---|---|---|---|---|---|\n';
  for (const r of rows) {
    md += `| ${r.name} | ${r.lossless ? 'yes' : 'no'} | ${r.decodeTokensPerSecond.toFixed(1)} | ${f2(r.speedup)}× | ${f2(r.tokensPerForward)} | ${pct(r.identicalOutputs)} | ` +
      `${r.meanCommonPrefix.toFixed(1)} | ${pct(r.positionAgreement)} | ${r.nllPerToken.toFixed(3)} | ${pct(r.parses)} |\n`;
  }
  const t = training;
  md += `\nTraining: ${t.seconds.toFixed(0)} s, ${t.steps} AdamW steps, ${t.tokens} positions; held-out loss of the placeholder positions ` +
    `${t.validationLossBefore.toFixed(3)} → ${t.validationLossAfter.toFixed(3)}, top-1 agreement with the target per depth ` +
    `${t.headAccuracyBefore.map((x) => (x * 100).toFixed(0)).join('/')} % → ${t.headAccuracyAfter.map((x) => (x * 100).toFixed(0)).join('/')} %.\n` +
    `${nPrompts} held-out prompts, ${n} greedy tokens each, ${reps} interleaved runs, each arm in its own process, medians; ` +
    `${threads} thread(s); ${machine.cpus} CPUs (${machine.cpu}), load average ${machine.loadavg.map((x) => x.toFixed(1)).join(' ')}, ${machine.date.slice(0, 10)}.\n`;
  writeFileSync(path.join(root, 'bench', 'results', 'lud.md'), md);
  const readme = path.join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const begin = '<!-- bench:lud -->', end = '<!-- /bench:lud -->';
  if (text.includes(begin) && text.includes(end)) {
    writeFileSync(readme, text.slice(0, text.indexOf(begin) + begin.length) + '\n' + md + text.slice(text.indexOf(end)));
  }
  process.stdout.write(md);
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === '--train') await trainWorker(rest);
else if (mode === '--decode') await decodeWorker(rest);
else if (mode === '--nll') await nllWorker(rest);
else await main();
