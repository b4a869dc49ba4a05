#!/usr/bin/env node
// npm run bench:coprocessor — the KV-cache coprocessor on the code target, on one machine:
//   1. trains a coprocessor per N_L in BENCH_LATENTS (default 16,4,64) on ../shared/corpus/python-packages.jsonl,
//      each in a child process with its own budget (BENCH_TRAIN_MINUTES, default 12,5,5, in the same order):
//      ahead tokens trained on, steps, time, held-out ahead-token loss before / after / unaugmented / control;
//   2. held-out perplexity of the --ahead tokens after augmentation points (Session.perplexity, as
//      `specdec perplexity` computes it) on files made from ../shared/eval/code-prompts.json (never trained
//      on; the prompts joined by blank lines), without a coprocessor and with each one, the same tokens;
//      the coprocessor's cost per augmentation in ms;
//   3. the effect on speculative acceptance: greedy 'draft' decoding (the code draft model) of held-out
//      prompts with and without `coprocessor` at the prompt's end: τ (mean tokens per verification).
// Env: BENCH_LATENTS, BENCH_TRAIN_MINUTES, BENCH_REUSE=1 (reuse bench/tmp/coproc-L<N>.gguf and its report),
// BENCH_TRAIN_ONLY=1, BENCH_EVAL_ONLY=1, BENCH_TRAIN_OPTIONS (JSON merged into trainCoprocessor's options),
// BENCH_EVERY (64), BENCH_AHEAD (16), BENCH_THREADS (2), BENCH_TAU_PROMPTS (8), SPECDEC_SHARED.
// Writes bench/results/coprocessor.json, coprocessor.md and coprocessor.svg (perplexity against N_L), and the README
// table between <!-- bench:coprocessor --> markers.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeDraft, codeTargetQ8 } from './models.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const corpus = path.join(shared, 'corpus', 'python-packages.jsonl');
const tmp = path.join(root, 'bench', 'tmp');
const threads = Number(process.env.BENCH_THREADS ?? 2);
const every = Number(process.env.BENCH_EVERY ?? 64);
const ahead = Number(process.env.BENCH_AHEAD ?? 16);
const fileOf = (nl) => path.join(tmp, `coproc-L${nl}.gguf`);

async function trainWorker([nl, minutes]) {
  const { loadModel, trainCoprocessor } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
  const extra = JSON.parse(process.env.BENCH_TRAIN_OPTIONS ?? '{}');
  const opts = {
    corpus, out: fileOf(nl), minutes: Number(minutes), latents: Number(nl), ahead, threads, points: 4, sequenceLength: 128,
    learningRate: 3e-3, validationPositions: 256, seed: 1, ...extra,
  };
  let last = 0;
  let phase = '';
  const r = await trainCoprocessor(model, {
    ...opts,
    onProgress: (p) => {
      if (Date.now() - last < 20_000 && p.phase === phase) return;
      last = Date.now();
      phase = p.phase;
      process.stderr.write(`  L${nl} ${p.phase} ${p.tokens} ahead tokens, ${p.elapsedSeconds.toFixed(0)} s, train loss ${p.trainLoss.toFixed(3)}, val loss ${p.validationLoss.toFixed(3)}\n`);
    },
  });
  await model.dispose();
  const report = { ...r, options: { ...opts, corpus: path.relative(root, corpus), out: path.relative(root, opts.out) }, loadAverage: loadavg()[0] };
  writeFileSync(fileOf(nl).replace(/\.gguf$/, '.json'), JSON.stringify(report, null, 2));
  process.stdout.write(JSON.stringify(report));
}

function heldOutText() {
  const p = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts;
  return { text: p.map((x) => x.prompt).join('\n\n'), prompts: p.map((x) => x.prompt) };
}

async function evalWorker([latentsArg]) {
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
  const session = await model.createSession({ threads, contextSize: 1024 });
  const { text } = heldOutText();
  const out = { every, ahead, context: 960 };
  const t0 = Date.now();
  out.base = await session.perplexity(text, { augmentEvery: every, ahead, context: 960 });
  out.base.seconds = (Date.now() - t0) / 1000;
  out.plain = await session.perplexity(text, { context: 960 });
  out.with = {};
  for (const nl of latentsArg.split(',').map(Number)) {
    if (!existsSync(fileOf(nl))) continue;
    const t1 = Date.now();
    const r = await session.perplexity(text, { augmentEvery: every, ahead, context: 960, coprocessor: { file: fileOf(nl), latents: nl } });
    out.with[nl] = { ...r, seconds: (Date.now() - t1) / 1000 };
    process.stderr.write(`  L${nl}: ppl ${r.ppl.toFixed(4)} (base ${out.base.ppl.toFixed(4)}), ${r.msPerAugmentation.toFixed(1)} ms per augmentation\n`);
  }
  await session.dispose();
  await model.dispose();
  process.stdout.write(JSON.stringify(out));
}

async function tauWorker([latentsArg, nPrompts]) {
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8, { backend: 'cpu' });
  const draft = await loadModel(codeDraft, { backend: 'cpu' });
  const session = await model.createSession({ threads, contextSize: 1024 });
  const { prompts } = heldOutText();
  const arms = [0, ...latentsArg.split(',').map(Number).filter((nl) => existsSync(fileOf(nl)))];
  const out = {};
  for (const nl of arms) {
    let acc = 0, ver = 0, same = 0, ms = 0;
    const base = [];
    for (const p of prompts.slice(0, Number(nPrompts))) {
      const prompt = p.slice(-1500);
      session.truncate(0);
      const o = { maxTokens: 64, temperature: 0, ignoreEos: true, method: 'draft', draft: { model: draft } };
      if (nl > 0) o.coprocessor = { file: fileOf(nl), latents: nl };
      const r = await session.generate(prompt, o).result();
      session.truncate(0);
      const ar = await session.generate(prompt, { maxTokens: 64, temperature: 0, ignoreEos: true, ...(nl > 0 ? { coprocessor: o.coprocessor } : {}) }).result();
      same += ar.text === r.text ? 1 : 0;  // lossless on the augmented cache
      acc += r.stats.acceptedTokens;
      ver += r.stats.verifyPasses;
      ms += r.stats.augmentMs;
      base.push(r.text);
    }
    out[nl] = { tau: ver > 0 ? (acc + ver) / ver : 0, identicalToAutoregressive: same, prompts: Number(nPrompts), augmentMsMean: ms / Number(nPrompts) };
    process.stderr.write(`  tau L${nl}: ${out[nl].tau.toFixed(3)} (${same}/${nPrompts} identical to autoregressive)\n`);
  }
  await session.dispose();
  await draft.dispose();
  await model.dispose();
  process.stdout.write(JSON.stringify(out));
}

function child(kind, args) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), `--${kind}`, ...args.map(String)], {
    stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26, env: process.env,
  });
  if (r.status !== 0) throw new Error(`${kind} worker failed (${r.status})`);
  return JSON.parse(r.stdout.toString());
}

function svg(points, base) {
  // perplexity against N_L, with the unaugmented level as a line
  const W = 480, H = 300, L = 60, B = 40, T = 30, R = 20;
  const xs = points.map((p) => Math.log2(p.latents));
  const ys = [...points.map((p) => p.ppl), base];
  const x0 = Math.min(...xs) - 0.5, x1 = Math.max(...xs) + 0.5;
  const y0 = Math.min(...ys) * 0.995, y1 = Math.max(...ys) * 1.005;
  const X = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => H - B - ((v - y0) / (y1 - y0)) * (H - B - T);
  let s = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`;
  s += `<text x="${W / 2}" y="18" text-anchor="middle">held-out ahead-token perplexity vs N_L (code target)</text>`;
  s += `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`;
  s += `<line x1="${L}" y1="${Y(base)}" x2="${W - R}" y2="${Y(base)}" stroke="gray" stroke-dasharray="4 3"/>`;
  s += `<text x="${W - R}" y="${Y(base) - 4}" text-anchor="end" fill="gray">no coprocessor ${base.toFixed(3)}</text>`;
  const pts = points.map((p) => `${X(Math.log2(p.latents))},${Y(p.ppl)}`).join(' ');
  s += `<polyline points="${pts}" fill="none" stroke="steelblue" stroke-width="2"/>`;
  for (const p of points) {
    s += `<circle cx="${X(Math.log2(p.latents))}" cy="${Y(p.ppl)}" r="4" fill="steelblue"/>`;
    s += `<text x="${X(Math.log2(p.latents))}" y="${H - B + 16}" text-anchor="middle">${p.latents}</text>`;
    s += `<text x="${X(Math.log2(p.latents)) + 6}" y="${Y(p.ppl) - 6}">${p.ppl.toFixed(3)}</text>`;
  }
  s += `<text x="${W / 2}" y="${H - 6}" text-anchor="middle">N_L (latents, log scale)</text>`;
  s += `<text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">perplexity</text></svg>\n`;
  return s;
}

async function main() {
  const latents = (process.env.BENCH_LATENTS ?? '16,4,64').split(',').map(Number);
  const minutes = (process.env.BENCH_TRAIN_MINUTES ?? '12,5,5').split(',').map(Number);
  mkdirSync(tmp, { recursive: true });
  const training = {};
  if (process.env.BENCH_EVAL_ONLY !== '1') {
    latents.forEach((nl, i) => {
      if (process.env.BENCH_REUSE === '1' && existsSync(fileOf(nl)) && existsSync(fileOf(nl).replace(/\.gguf$/, '.json'))) return;
      process.stderr.write(`training N_L = ${nl} for ${minutes[i] ?? minutes[0]} min\n`);
      child('train', [nl, minutes[i] ?? minutes[0]]);
    });
  }
  for (const nl of latents) {
    const f = fileOf(nl).replace(/\.gguf$/, '.json');
    if (existsSync(f)) training[nl] = JSON.parse(readFileSync(f, 'utf8'));
  }
  if (process.env.BENCH_TRAIN_ONLY === '1') return;
  process.stderr.write('perplexity on held-out files\n');
  const ev = child('eval', [latents.join(',')]);
  process.stderr.write('tau with the draft model\n');
  const tau = child('tau', [latents.join(','), process.env.BENCH_TAU_PROMPTS ?? 8]);
  const rows = latents.filter((nl) => ev.with[nl]).map((nl) => ({
    latents: nl,
    ppl: ev.with[nl].ppl,
    pplBase: ev.base.ppl,
    change: ev.with[nl].ppl / ev.base.ppl - 1,
    msPerAugmentation: ev.with[nl].msPerAugmentation,
    trainMinutes: training[nl] ? training[nl].seconds / 60 : null,
    trainAheadTokens: training[nl]?.tokens ?? null,
    steps: training[nl]?.steps ?? null,
    valLossBase: training[nl]?.validationLossBase ?? null,
    valLossControl: training[nl]?.validationLossControl ?? null,
    valLossBefore: training[nl]?.validationLossBefore ?? null,
    valLossAfter: training[nl]?.validationLossAfter ?? null,
    tau: tau[nl]?.tau ?? null,
  }));
  const result = {
    date: new Date().toISOString(), cpu: cpus()[0]?.model, threads, loadAverage: loadavg(),
    model: path.relative(root, codeTargetQ8), heldOut: 'eval/code-prompts.json (40 prompts joined by blank lines)',
    every, ahead, context: ev.context, scoredTokens: ev.base.tokens, plainPerplexity: ev.plain.ppl,
    base: ev.base, rows, tau, training,
  };
  mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(path.join(root, 'bench', 'results', 'coprocessor.json'), JSON.stringify(result, null, 2) + '\n');
  let md = `| N_L | training | ahead tokens trained | held-out ppl (no coprocessor ${ev.base.ppl.toFixed(3)}) | change | ms / augmentation | τ draft (none ${tau[0]?.tau.toFixed(3) ?? '-'}) |\n|---|---|---|---|---|---|---|\n`;
  for (const r of rows) {
    md += `| ${r.latents} | ${r.trainMinutes?.toFixed(1) ?? '-'} min, ${r.steps ?? '-'} steps | ${r.trainAheadTokens ?? '-'} | ${r.ppl.toFixed(3)} | ${(r.change * 100).toFixed(2)} % | ${r.msPerAugmentation.toFixed(1)} | ${r.tau?.toFixed(3) ?? '-'} |\n`;
  }
  const t16 = training[latents[0]];
  md += `\nHeld-out text: the 40 prompts of eval/code-prompts.json joined by blank lines (${ev.base.tokens} ahead tokens scored after ${Math.round(ev.base.tokens / ahead)} points, chunks of ${ev.context} tokens; plain perplexity of every token ${ev.plain.ppl.toFixed(3)}). ` +
    `Training: the code corpus, ${t16 ? `${t16.options.points} points per window of ${t16.options.sequenceLength} tokens, rank ${t16.options.rank ?? 8}, learning rate ${t16.options.learningRate}` : ''}; ` +
    `held-out ahead-token loss before → after (without augmentation, control): ` +
    latents.filter((nl) => training[nl]).map((nl) => `N_L ${nl}: ${training[nl].validationLossBefore.toFixed(3)} → ${training[nl].validationLossAfter.toFixed(3)} (${training[nl].validationLossBase.toFixed(3)}, ${training[nl].validationLossControl.toFixed(3)})`).join('; ') + '.\n' +
    `τ: greedy 'draft' decoding with the code draft model, ${tau[0]?.prompts ?? 0} held-out prompts, 64 tokens; outputs identical to autoregressive decoding on the same cache: ` +
    Object.entries(tau).map(([nl, t]) => `${nl === '0' ? 'none' : `N_L ${nl}`} ${t.identicalToAutoregressive}/${t.prompts}`).join(', ') + '.\n' +
    `${threads} thread(s); ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}, ${new Date().toISOString().slice(0, 10)}.\n`;
  writeFileSync(path.join(root, 'bench', 'results', 'coprocessor.md'), md);
  const readme = path.join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const re = /<!-- bench:coprocessor -->[\s\S]*?<!-- \/bench:coprocessor -->/;
  if (re.test(text)) writeFileSync(readme, text.replace(re, `<!-- bench:coprocessor -->\n${md}<!-- /bench:coprocessor -->`));
  if (rows.length > 0) writeFileSync(path.join(root, 'bench', 'results', 'coprocessor.svg'), svg(rows, ev.base.ppl));
  process.stdout.write(md);
}

const [, , mode, ...rest] = process.argv;
if (mode === '--train') await trainWorker(rest);
else if (mode === '--eval') await evalWorker(rest);
else if (mode === '--tau') await tauWorker(rest);
else await main();
