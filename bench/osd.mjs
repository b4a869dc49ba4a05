#!/usr/bin/env node
// npm run bench:osd — Online Speculative Decoding on the code pair: does the draft model's
// acceptance rise while it serves a stream of prompts from a domain it was not trained on?
//
// The stream: BENCH_PROMPTS (200) prompts of 256 tokens, cut from the middle of C header files
// under /usr/include (the code pair was trained on Python only; C is a domain the draft has not
// seen, and /usr/include holds nothing of the evaluation prompts' sources). Each prompt is decoded
// with `draft` for BENCH_TOKENS (64) greedy tokens, once without online learning and once with
// `online: true` (defaults), each arm in its own process, in the same order. Reported: acceptance
// (accepted / drafted) per quarter of the stream, τ, decode tokens/s, the learner's counters, and
// that every output equals the arm without learning (greedy: lossless).
// Env: BENCH_PROMPTS (200), BENCH_TOKENS (64), BENCH_THREADS (1), BENCH_INCLUDE (/usr/include),
// BENCH_ONLINE (JSON options for `online`, default {}), SPECDEC_SHARED.
// Writes bench/results/osd.json, osd.md and the README table between <!-- bench:osd --> markers.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codeDraft, codeTargetQ8 } from './models.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

function headerFiles(dir) {
  const out = [];
  (function walk(d) {
    let entries;
    try { entries = readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.h') && statSync(p).size > 6000) out.push(p);
    }
  })(dir);
  return out;
}

async function worker([online, promptsFile, nTokens, threads]) {
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const t = await loadModel(codeTargetQ8, { backend: 'cpu' });
  const d = await loadModel(codeDraft, { backend: 'cpu' });
  const prompts = JSON.parse(readFileSync(promptsFile, 'utf8'));
  const s = await t.createSession({ contextSize: 1024, threads: Number(threads) });
  const on = online === 'off' ? undefined : JSON.parse(online);
  const rows = [];
  for (const p of prompts) {
    s.truncate(0);
    const r = await s.generate(p, { maxTokens: Number(nTokens), method: 'draft', draft: { model: d }, ...(on ? { online: on } : {}) }).result();
    rows.push({ tokens: r.tokens, accepted: r.stats.acceptedTokens, drafted: r.stats.draftedTokens, passes: r.stats.verifyPasses, decodeMs: r.stats.decodeMs, n: r.stats.generatedTokens });
  }
  process.stdout.write(JSON.stringify({ rows, online: s.onlineStats, rssMiB: process.memoryUsage().rss / 1048576 }));
  await s.dispose();
  await d.dispose();
  await t.dispose();
}

function summarize(rows) {
  const q = Math.floor(rows.length / 4);
  const part = (rs) => {
    const a = rs.reduce((x, r) => x + r.accepted, 0), dr = rs.reduce((x, r) => x + r.drafted, 0);
    const ps = rs.reduce((x, r) => x + r.passes, 0), n = rs.reduce((x, r) => x + r.n, 0), ms = rs.reduce((x, r) => x + r.decodeMs, 0);
    return { acceptance: a / dr, tau: (a + ps) / ps, tokPerS: (1000 * n) / ms };
  };
  return { all: part(rows), quarters: [0, 1, 2, 3].map((k) => part(rows.slice(k * q, (k + 1) * q))) };
}

async function main() {
  const N = Number(process.env.BENCH_PROMPTS ?? 200), nTok = Number(process.env.BENCH_TOKENS ?? 64), threads = Number(process.env.BENCH_THREADS ?? 1);
  const include = process.env.BENCH_INCLUDE ?? '/usr/include';
  const onlineOpts = process.env.BENCH_ONLINE ?? '{}';
  const { loadModel } = await import(path.join(root, 'dist', 'index.mjs'));
  const t = await loadModel(codeTargetQ8, { backend: 'cpu' });
  const prompts = [];
  for (const f of headerFiles(include)) {
    const toks = t.tokenize(readFileSync(f, 'latin1'));
    if (toks.length < 1024) continue;
    const mid = toks.length >> 1;
    prompts.push(toks.slice(mid - 256, mid));
    if (prompts.length >= N) break;
  }
  await t.dispose();
  if (prompts.length < N) throw new Error(`only ${prompts.length} header files of >= 1024 tokens under ${include}; set BENCH_PROMPTS lower`);
  mkdirSync(path.join(here, 'tmp'), { recursive: true });
  const promptsFile = path.join(here, 'tmp', 'osd-prompts.json');
  writeFileSync(promptsFile, JSON.stringify(prompts));
  const arms = {};
  for (const [name, online] of [['off', 'off'], ['online', onlineOpts]]) {
    process.stderr.write(`[osd] ${name}: ${N} prompts x ${nTok} tokens\n`);
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--worker', online, promptsFile, String(nTok), String(threads)], { encoding: 'utf8', maxBuffer: 1 << 28 });
    if (r.status !== 0) throw new Error(`worker ${name} failed: ${r.stderr}`);
    arms[name] = JSON.parse(r.stdout);
  }
  const same = arms.off.rows.every((r, i) => r.tokens.join() === arms.online.rows[i].tokens.join());
  const off = summarize(arms.off.rows), on = summarize(arms.online.rows);
  const result = {
    date: new Date().toISOString(), cpu: cpus()[0]?.model, threads, prompts: N, tokens: nTok, online: JSON.parse(onlineOpts),
    identical: same, off, on, learner: arms.online.online, rssMiB: { off: arms.off.rssMiB, online: arms.online.rssMiB },
  };
  writeFileSync(path.join(here, 'results', 'osd.json'), JSON.stringify(result, null, 2));
  const f = (x) => x.toFixed(3);
  const md = [
    '| prompts of the stream | acceptance, draft | acceptance, draft + online | τ, draft | τ, draft + online | decode tok/s, draft | decode tok/s, draft + online |',
    '|---|---|---|---|---|---|---|',
    ...[0, 1, 2, 3].map((k) => `| ${k * (N / 4) + 1}–${(k + 1) * (N / 4)} | ${f(off.quarters[k].acceptance)} | ${f(on.quarters[k].acceptance)} | ${off.quarters[k].tau.toFixed(2)} | ${on.quarters[k].tau.toFixed(2)} | ${off.quarters[k].tokPerS.toFixed(0)} | ${on.quarters[k].tokPerS.toFixed(0)} |`),
    `| all | ${f(off.all.acceptance)} | ${f(on.all.acceptance)} | ${off.all.tau.toFixed(2)} | ${on.all.tau.toFixed(2)} | ${off.all.tokPerS.toFixed(0)} | ${on.all.tokPerS.toFixed(0)} |`,
    '',
    `Code pair, greedy, ${N} prompts of 256 tokens from C headers (${include}), ${nTok} tokens each, ${threads} thread(s), one process per arm; ` +
      `online: ${onlineOpts === '{}' ? 'defaults' : onlineOpts}; outputs identical to the arm without learning: ${same ? 'yes' : 'NO'}; ` +
      `learner: ${arms.online.online.updates} updates, ${arms.online.online.steps} steps, ${(arms.online.online.trainMs / 1000).toFixed(1)} s training, ` +
      `${arms.online.online.mistakes} wrong positions; RSS ${arms.off.rssMiB.toFixed(0)} / ${arms.online.rssMiB.toFixed(0)} MiB; ${cpus().length} CPUs (${cpus()[0]?.model}), ${result.date.slice(0, 10)}.`,
  ].join('\n');
  writeFileSync(path.join(here, 'results', 'osd.md'), md + '\n');
  const readme = path.join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const a = text.indexOf('<!-- bench:osd -->'), b = text.indexOf('<!-- /bench:osd -->');
  if (a >= 0 && b > a) writeFileSync(readme, text.slice(0, a) + '<!-- bench:osd -->\n' + md + '\n' + text.slice(b));
  process.stdout.write(md + '\n');
  if (!same) process.exitCode = 1;
}

if (process.argv[2] === '--worker') worker(process.argv.slice(3)).catch((e) => { console.error(e); process.exit(1); });
else main().catch((e) => { console.error(e); process.exit(1); });
