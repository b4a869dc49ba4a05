#!/usr/bin/env node
// npm run bench:ead — Entropy Adaptive Decoding's divergence report: speed against our autoregressive
// decoding of the target, and fidelity to the target, as a curve over the entropy threshold.
// Code pair (42 M Q8_0 target, 5 M F16 small model), greedy, prompts from eval/code-prompts.json (the
// CPython standard library, which neither model was trained on): the last 400 tokens of each.
// Defaults are chosen on the tuning prompts (BENCH_SET=tune: prompts 0-9); the README table is from the
// held-out ones (BENCH_SET=heldout, default: prompts 10-39).
// For each prompt and configuration:
//   - decode tok/s (stats: the small model's reading of the prompt is prompt processing, left out as
//     the target's is), and its ratio to our autoregressive decoding of the target, per repetition over
//     all prompts; medians over BENCH_REPS interleaved repetitions (the order reversed every other one);
//   - the target's mean per-token negative log-likelihood of the produced tokens (nats), and its rise
//     against the NLL of the target's own greedy output;
//   - the share of outputs identical to the target's greedy output, the share of tokens up to the first
//     difference, the share of tokens the target produced, the switches and the FLOP-equivalent
//     decoding compute saved (stats.ead).
// BENCH_TEMPERATURE > 0 (e.g. 0.8) samples instead (one seed per prompt; the NLL rise is then against the
// target's own samples), and writes its own README table (<!-- bench:ead-sampling --> markers).
// Env: BENCH_REPS (3), BENCH_TOKENS (128), BENCH_SET, BENCH_THREADS (1), BENCH_THRESHOLDS
// ("0.3,0.5,0.75,1,1.5,2"), BENCH_WINDOW ("5"), BENCH_DWELL ("1") (lists: every combination), SPECDEC_SHARED.
// Writes bench/results/ead-<set>.json and, for the held-out set, the table between <!-- bench:ead -->
// markers in the README.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeDraft, codeTargetQ8, root, shared } from './models.mjs';

const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
const REPS = Number(process.env.BENCH_REPS ?? 3);
const N = Number(process.env.BENCH_TOKENS ?? 128);
const SET = process.env.BENCH_SET ?? 'heldout';
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const TEMP = Number(process.env.BENCH_TEMPERATURE ?? 0);
const THRESHOLDS = (process.env.BENCH_THRESHOLDS ?? '0.3,0.5,0.75,1,1.5,2').split(',').map(Number);
const WINDOWS = (process.env.BENCH_WINDOW ?? '5').split(',').map(Number);
const DWELLS = (process.env.BENCH_DWELL ?? '1').split(',').map(Number);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

const all = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts;
const picked = SET === 'tune' ? all.slice(0, 10) : all.slice(10, 40);
const target = await loadModel(codeTargetQ8);
const small = await loadModel(codeDraft);
const session = await target.createSession({ contextSize: 1024, threads: THREADS });
const scorer = await target.createSession({ contextSize: 1024, threads: THREADS });
const prompts = picked.map((p) => target.tokenize(p.prompt).slice(-400));

// configurations: the target alone, the small model alone (EAD never switching), EAD per threshold and dwell
const configs = [
  { name: 'target (autoregressive)', method: 'autoregressive' },
  { name: 'small model alone (ead, threshold 1000)', method: 'ead', ead: { threshold: 1000, window: 1, minDwell: 1 } },
  { name: 'draft (lossless, for comparison)', method: 'draft' },
];
for (const window of WINDOWS) {
  for (const minDwell of DWELLS) {
    for (const threshold of THRESHOLDS) {
      configs.push({ name: `ead threshold ${threshold}, window ${window}, dwell ${minDwell}`, method: 'ead', ead: { threshold, window, minDwell } });
    }
  }
}

async function run(c, prompt, p) {
  session.truncate(0);
  // sampling: one seed per prompt, so that every repetition gives the same output
  const opts = { maxTokens: N, ignoreEos: true, temperature: TEMP, seed: 1000 + p };
  if (c.method === 'ead') Object.assign(opts, { method: 'ead', draft: { model: small }, ead: c.ead });
  if (c.method === 'draft') Object.assign(opts, { method: 'draft', draft: { model: small } });
  return session.generate(prompt, opts).result();
}

// the target's NLL of `tokens` after `prompt` (rows as one-token decoding gives them)
async function nll(prompt, tokens) {
  scorer.truncate(0);
  await scorer.evaluate(prompt.slice(0, -1));
  const V = target.info.vocabSize;
  const rows = await scorer.evaluate([prompt[prompt.length - 1], ...tokens.slice(0, -1)], { allLogits: true });
  let s = 0;
  for (let i = 0; i < tokens.length; i++) {
    const row = rows.subarray(i * V, (i + 1) * V);
    let m = -Infinity;
    for (let j = 0; j < V; j++) if (row[j] > m) m = row[j];
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(row[j] - m);
    s += Math.log(z) + m - row[tokens[i]];
  }
  return s / tokens.length;
}

const speed = configs.map(() => []);    // per repetition: tokens / decode seconds over all prompts
const outputs = configs.map(() => []);  // per prompt: the first repetition's result (greedy: every repetition's is the same)
for (let rep = 0; rep < REPS; rep++) {
  const order = rep % 2 ? [...configs.keys()].reverse() : [...configs.keys()];
  const toks = configs.map(() => 0), ms = configs.map(() => 0);
  for (let p = 0; p < prompts.length; p++) {
    for (const ci of order) {
      const r = await run(configs[ci], prompts[p], p);
      toks[ci] += r.stats.generatedTokens;
      ms[ci] += r.stats.decodeMs;
      if (rep === 0) outputs[ci][p] = r;
      else if (r.tokens.join() !== outputs[ci][p].tokens.join()) throw new Error(`${configs[ci].name}: output changed between repetitions on prompt ${p}`);
    }
  }
  configs.forEach((_, ci) => speed[ci].push((toks[ci] * 1000) / ms[ci]));
  process.stderr.write(`rep ${rep + 1}/${REPS}: ${configs.map((c, ci) => `${c.name} ${speed[ci][rep].toFixed(0)}`).join(', ')}\n`);
}

const ref = outputs[0];
const refNll = [];
for (let p = 0; p < prompts.length; p++) refNll.push(await nll(prompts[p], ref[p].tokens));
const meanRefNll = refNll.reduce((a, b) => a + b, 0) / refNll.length;
const rows = [];
for (let ci = 0; ci < configs.length; ci++) {
  const c = configs[ci];
  let nllSum = 0, same = 0, prefix = 0, large = 0, switches = 0, saved = 0, gen = 0;
  for (let p = 0; p < prompts.length; p++) {
    const r = outputs[ci][p];
    nllSum += ci === 0 ? refNll[p] : await nll(prompts[p], r.tokens);
    const a = r.tokens, b = ref[p].tokens;
    let k = 0;
    while (k < a.length && k < b.length && a[k] === b[k]) k++;
    prefix += k / b.length;
    same += a.length === b.length && k === a.length ? 1 : 0;
    gen += r.stats.generatedTokens;
    if (r.stats.ead) {
      large += r.stats.ead.largeTokens;
      switches += r.stats.ead.switches;
      saved += r.stats.ead.computeSaved;
    } else {
      large += r.stats.generatedTokens;
    }
  }
  const meanNll = nllSum / prompts.length;
  const ratios = speed[ci].map((v, rep) => v / speed[0][rep]);
  rows.push({
    name: c.name, method: c.method, ead: c.ead,
    decodeTokensPerSecond: median(speed[ci]), speedup: median(ratios),
    nll: meanNll, nllRise: meanNll / meanRefNll - 1,
    identical: same / prompts.length, commonPrefix: prefix / prompts.length,
    largeShare: large / gen, switchesPerPrompt: switches / prompts.length,
    computeSaved: c.method === 'ead' ? saved / prompts.length : 0,
  });
}

const pct = (x) => `${(100 * x).toFixed(1)} %`;
const md = [
  '| configuration | decode tok/s | vs our autoregressive | target NLL (nats/token) | NLL rise | identical outputs | common prefix | tokens from the target | switches / prompt | compute saved |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.name} | ${r.decodeTokensPerSecond.toFixed(0)} | ${r.speedup.toFixed(2)}× | ${r.nll.toFixed(3)} | ${r === rows[0] ? '–' : `${r.nllRise >= 0 ? '+' : ''}${(100 * r.nllRise).toFixed(1)} %`} | ${pct(r.identical)} | ${pct(r.commonPrefix)} | ${pct(r.largeShare)} | ${r.switchesPerPrompt.toFixed(1)} | ${r.method === 'ead' ? pct(r.computeSaved) : '–'} |`),
  '',
  `${N} tokens per prompt (${TEMP > 0 ? `T = ${TEMP}, top-k 40, top-p 0.95, min-p 0.05, one seed per prompt; "identical" and "common prefix" against the target's own sample with that seed` : 'greedy'}, EOS ignored), ${prompts.length} ${SET === 'tune' ? 'tuning' : 'held-out'} prompts of eval/code-prompts.json (${SET === 'tune' ? '0-9' : '10-39'}; last 400 tokens), ` +
    `${THREADS} thread${THREADS > 1 ? 's' : ''}, ${REPS} interleaved runs, medians; ${cpus()[0]?.model ?? 'CPU'}, ${new Date().toISOString().slice(0, 10)}.`,
].join('\n');
process.stdout.write(md + '\n');
mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
const tag = `${SET}${TEMP > 0 ? `-t${TEMP}` : ''}`;
writeFileSync(path.join(root, 'bench', 'results', `ead-${tag}.json`), JSON.stringify({ date: new Date().toISOString(), set: SET, tokens: N, reps: REPS, threads: THREADS, temperature: TEMP, rows }, null, 1) + '\n');
if (SET === 'heldout') {
  const readme = path.join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const open = `<!-- bench:ead${TEMP > 0 ? '-sampling' : ''} -->`, close = `<!-- /bench:ead${TEMP > 0 ? '-sampling' : ''} -->`;
  const i = text.indexOf(open);
  const j = text.indexOf(close);
  if (i >= 0 && j > i) writeFileSync(readme, text.slice(0, i + open.length) + '\n' + md + '\n' + text.slice(j));
}
await scorer.dispose();
await session.dispose();
await small.dispose();
await target.dispose();
