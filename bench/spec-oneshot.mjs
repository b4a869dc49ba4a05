// bench:spec, one-shot mode (BENCH_MODE=oneshot npm run bench:spec): every method as users and scripts
// call it, one fresh `specdec generate --json` process per prompt (model loading, session creation and
// the first generation's warm-up all inside), on the code pair, greedy and T = 0.8. Beside it, in the
// same run: our warm autoregressive decoding (one process, one session, after a warm-up) and, when
// scripts/build-llama-native.sh has built them, native llama.cpp: llama-bench's autoregressive decode
// (warm, its own measure), and llama-speculative-simple (the same draft model) and llama-lookup, one
// process per prompt like ours, greedy and sampled.
//
// Decode speed is each program's own report of its decode phase (prompt processing excluded):
// specdec's stats.decodeTokensPerSecond, llama.cpp's "decoded N tokens ... speed". Ratios are taken per
// prompt and repetition against our one-shot autoregressive run of the same prompt, then summarized as
// min / median / max over prompts (median over repetitions first). τ beside each.
// 'auto' runs twice: with the CLI's cache of what it learnt (a fresh cache per bench run, so it warms up
// over the run as a user's does) and with --no-auto-cache (every run from the priors).
// Env: BENCH_PROMPTS (20), BENCH_TOKENS (128), BENCH_REPS (2), BENCH_THREADS (unset: the CLI's default
// thread choice, as users run it), BENCH_NATIVE_THREADS (1: llama.cpp's fastest decode on this machine; see
// bench:ar), SPECDEC_SHARED. Writes bench/results/spec-oneshot.json and .md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { llamaBenchDecode, llamaSpeculative, nativeBuilt } from './llama-native.mjs';
import { codeDraft, codeTargetQ8, root, shared } from './models.mjs';

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const cli = path.join(root, 'dist', 'cli', 'index.js');
// 'auto' keeps what it learns in a cache file (lib/cli/index.ts): a fresh one per bench run, so the first
// runs start from the priors and the later ones from what the earlier ones measured, as for a user
const cacheDir = path.join(root, 'bench', 'tmp', 'oneshot-auto-cache');

// label, method, with the draft model, temperatures
const METHODS = [
  ['autoregressive', 'autoregressive', false, [0, 0.8]],
  ['lookup', 'lookup', false, [0, 0.8]],
  ['rasd (retrieval)', 'rasd', false, [0]],
  ['draft', 'draft', true, [0, 0.8]],
  ['rsd', 'rsd', true, [0.8]],
  ['auto + draft', 'auto', true, [0, 0.8]],
  ['auto + draft, no cache', 'auto', true, [0], ['--no-auto-cache']],
];

function specdecRun(method, useDraft, temperature, seed, promptFile, n, threads, extra = []) {
  const args = [cli, 'generate', '--model', codeTargetQ8, '--prompt-file', promptFile, '--max-tokens', String(n), '--ignore-eos', '--json',
    '--method', method, '--temperature', String(temperature), '--seed', String(seed), '--context-size', '1024'];
  if (useDraft) args.push('--draft-model', codeDraft);
  if (threads) args.push('--threads', String(threads));
  args.push(...extra);
  const t0 = performance.now();
  const p = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, SPECDEC_CACHE_DIR: cacheDir } });
  const wallMs = performance.now() - t0;
  if (p.status !== 0) throw new Error(`specdec generate --method ${method} failed (${p.status}):\n${p.stderr.slice(-2000)}`);
  const o = JSON.parse(p.stdout);
  if (o.tokens.length !== n) throw new Error(`specdec stopped after ${o.tokens.length} tokens (${o.stats.stopReason})`);
  return { decodeTokensPerSecond: o.stats.decodeTokensPerSecond, tau: o.stats.meanAcceptedLength, threads: o.stats.threads, wallMs, auto: o.stats.auto };
}

/** Our warm autoregressive decode: one process, one session, a warm-up generation, then each prompt. */
async function warmAutoregressive(prompts, n, threads) {
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const model = await loadModel(codeTargetQ8);
  const session = await model.createSession({ contextSize: 1024, ...(threads ? { threads } : {}) });
  await session.generate(prompts[0], { maxTokens: 16, ignoreEos: true }).result();
  const out = [];
  for (const p of prompts) {
    session.truncate(0);
    const r = await session.generate(p, { maxTokens: n, ignoreEos: true }).result();
    out.push(r.stats.decodeTokensPerSecond);
  }
  const usedThreads = session.info.threads;
  await model.dispose();
  return { perPrompt: out, threads: usedThreads };
}

export async function main() {
  const nPrompts = Number(process.env.BENCH_PROMPTS ?? 20);
  const n = Number(process.env.BENCH_TOKENS ?? 128);
  const reps = Number(process.env.BENCH_REPS ?? 2);
  const threads = process.env.BENCH_THREADS ? Number(process.env.BENCH_THREADS) : undefined;
  const nativeThreads = Number(process.env.BENCH_NATIVE_THREADS ?? 1);
  const native = nativeBuilt();
  const texts = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts.slice(0, nPrompts).map((p) => p.prompt.slice(-1200));
  rmSync(cacheDir, { recursive: true, force: true });
  const tmp = path.join(root, 'bench', 'tmp', 'oneshot');
  mkdirSync(tmp, { recursive: true });
  const files = texts.map((t, i) => { const f = path.join(tmp, `prompt-${i}.txt`); writeFileSync(f, t); return f; });

  // per temperature, per engine label: [prompt][rep] -> { tps, tau }
  const runs = new Map();
  const put = (t, label, i, x) => {
    const k = `${t}|${label}`;
    if (!runs.has(k)) runs.set(k, texts.map(() => []));
    runs.get(k)[i].push(x);
  };
  let specdecThreads = threads;
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < texts.length; i++) {
      for (const t of [0, 0.8]) {
        const engines = [];
        for (const [label, method, useDraft, temps, extra] of METHODS) if (temps.includes(t)) engines.push(['specdec ' + label, () => specdecRun(method, useDraft, t, i + 1, files[i], n, threads, extra)]);
        if (native) {
          engines.push(['llama.cpp speculative-simple (draft)', () => llamaSpeculative('speculative', { target: codeTargetQ8, draft: codeDraft, promptText: texts[i], n, threads: nativeThreads, temperature: t, seed: i + 1 })]);
          engines.push(['llama.cpp lookup', () => llamaSpeculative('lookup', { target: codeTargetQ8, promptText: texts[i], n, threads: nativeThreads, temperature: t, seed: i + 1 })]);
        }
        const order = (r + i) % 2 === 0 ? engines : [...engines].reverse();
        for (const [label, run] of order) {
          const x = run();
          if (x.threads) specdecThreads = x.threads;
          const tau = x.tau ?? null;
          put(t, label, i, { tps: x.decodeTokensPerSecond, tau, acc: x.drafted ? x.accepted / x.drafted : null, wallMs: x.wallMs, auto: x.auto });
        }
        process.stderr.write(`rep ${r + 1}/${reps} prompt ${i + 1}/${texts.length} T=${t}\r`);
      }
    }
  }
  process.stderr.write('\n');
  const warm = await warmAutoregressive(texts, n, threads);
  const llamaAr = native ? llamaBenchDecode(codeTargetQ8, nativeThreads, n, 5) : null;

  const tables = [];
  for (const t of [0, 0.8]) {
    const ar = runs.get(`${t}|specdec autoregressive`).map((xs) => median(xs.map((x) => x.tps)));
    const rows = [];
    for (const [k, perPrompt] of runs) {
      const [tt, label] = k.split('|');
      if (Number(tt) !== t) continue;
      const tps = perPrompt.map((xs) => median(xs.map((x) => x.tps)));
      const ratios = tps.map((v, i) => v / ar[i]);
      const taus = perPrompt.map((xs) => xs[0].tau).filter((v) => v !== null && v !== undefined && v > 0);
      const accs = perPrompt.map((xs) => xs[0].acc).filter((v) => v !== null && v !== undefined);
      const autoSteps = perPrompt.flat().map((x) => x.auto).filter(Boolean);
      rows.push({
        engine: label,
        decodeTokensPerSecond: median(tps),
        overOurOneShotAutoregressive: { min: Math.min(...ratios), median: median(ratios), max: Math.max(...ratios) },
        overLlamaCppAutoregressive: llamaAr ? median(tps) / llamaAr.decodeTokensPerSecond : null,
        tau: taus.length ? median(taus) : null,
        llamaAcceptance: accs.length ? median(accs) : null,
        wallMs: median(perPrompt.map((xs) => median(xs.map((x) => x.wallMs)))),
        autoPlainShare: autoSteps.length ? median(autoSteps.map((a) => a.plainSteps / Math.max(1, a.plainSteps + Object.values(a.steps).reduce((x, y) => x + y, 0)))) : null,
      });
    }
    tables.push({ temperature: t, rows });
  }
  const warmMedian = median(warm.perPrompt);
  const oneShotAr = median(runs.get('0|specdec autoregressive').map((xs) => median(xs.map((x) => x.tps))));
  const machine = { cpu: cpus()[0]?.model, cpus: availableParallelism(), node: process.version, date: new Date().toISOString() };
  const json = {
    machine, tokens: n, reps, prompts: texts.length, specdecThreads: specdecThreads ?? 'default', nativeThreads: native ? nativeThreads : null,
    warmAutoregressive: { decodeTokensPerSecond: warmMedian, threads: warm.threads },
    oneShotOverWarmAutoregressive: oneShotAr / warmMedian,
    llamaCppAutoregressive: llamaAr,
    tables,
  };
  mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(path.join(root, 'bench', 'results', 'spec-oneshot.json'), JSON.stringify(json, null, 2) + '\n');
  const f2 = (x) => (x === null || x === undefined ? '–' : x.toFixed(2));
  let md = `# bench:spec, one-shot mode\n\nEach row: one fresh \`specdec generate --json\` process per prompt (or one llama.cpp process), code pair, ${texts.length} held-out prompts of \`eval/code-prompts.json\` (last 1,200 characters), ${n} tokens (EOS ignored), ${reps} interleaved repetitions; specdec threads: ${json.specdecThreads}, llama.cpp threads: ${native ? nativeThreads : '–'}. Decode speed: each program's own report of its decode phase. Ratios per prompt against our one-shot autoregressive run of that prompt: min / median / max over prompts.\n\n`;
  md += `- Our autoregressive decode, one-shot over warm (same prompts, one process after a warm-up): **${f2(json.oneShotOverWarmAutoregressive)}×** (${warmMedian.toFixed(0)} tok/s warm).\n`;
  md += llamaAr ? `- llama.cpp's autoregressive decode (llama-bench, warm, ${nativeThreads} thread${nativeThreads > 1 ? 's' : ''}): ${llamaAr.decodeTokensPerSecond.toFixed(0)} tok/s; our one-shot autoregressive over it: ${f2(oneShotAr / llamaAr.decodeTokensPerSecond)}×.\n` : '- Native llama.cpp: not built (scripts/build-llama-native.sh).\n';
  for (const tb of tables) {
    md += `\n**T = ${tb.temperature}**\n\n| engine | τ (llama.cpp: acceptance) | decode tok/s | over our one-shot autoregressive (min / median / max) | over llama.cpp autoregressive | process wall ms | auto: plain steps |\n|---|---|---|---|---|---|---|\n`;
    for (const r of tb.rows) {
      md += `| ${r.engine} | ${r.tau ? r.tau.toFixed(2) : r.llamaAcceptance !== null ? (100 * r.llamaAcceptance).toFixed(0) + ' %' : '–'} | ${r.decodeTokensPerSecond.toFixed(0)} | ${f2(r.overOurOneShotAutoregressive.min)} / **${f2(r.overOurOneShotAutoregressive.median)}×** / ${f2(r.overOurOneShotAutoregressive.max)} | ${r.overLlamaCppAutoregressive ? f2(r.overLlamaCppAutoregressive) + '×' : '–'} | ${r.wallMs.toFixed(0)} | ${r.autoPlainShare !== null ? (100 * r.autoPlainShare).toFixed(0) + ' %' : '–'} |\n`;
    }
  }
  md += `\n${machine.cpus} CPUs (${machine.cpu}), Node ${machine.node}, ${machine.date.slice(0, 10)}.\n`;
  writeFileSync(path.join(root, 'bench', 'results', 'spec-oneshot.md'), md);
  const readme = path.join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const [start, end] = ['<!-- bench:spec-oneshot -->', '<!-- /bench:spec-oneshot -->'];
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) writeFileSync(readme, text.slice(0, i + start.length) + '\n' + md.replace(/^# .*\n\n/, '') + text.slice(j));
  process.stdout.write(md);
}
