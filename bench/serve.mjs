#!/usr/bin/env node
// npm run bench:serve — load test of `specdec serve`: the code pair (../shared/models/code) served with
// --parallel 2 (one compute thread per slot) in its own process; N concurrent clients each send M
// streaming /v1/completions requests (greedy, code prompts from ../shared/eval/code-prompts.json) one
// after the other, first with method autoregressive, then with a speculative method. Per run:
// throughput (generated tokens / wall time), request latency and time to first token (p50, p99), and
// the server's RSS after the run (from /proc); every method twice, so that the second round shows whether RSS stays flat. Checks: every request answered with 200, every response
// id distinct, and every response's text equal to the others for the same prompt, in both runs (greedy
// output does not depend on the slot, the neighbours or the method): nothing lost, duplicated or mixed up.
// Env: BENCH_CLIENTS (4), BENCH_REQUESTS (6), BENCH_TOKENS (64), BENCH_PARALLEL (2), BENCH_METHODS
// ("autoregressive,draft,auto"), SPECDEC_SHARED. Writes bench/results/serve.json, prints a Markdown table and puts it
// in the README between the <!-- bench:serve --> markers.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const shared = path.resolve(process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared'));
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 6);
const TOKENS = Number(process.env.BENCH_TOKENS ?? 64);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 2);
const METHODS = (process.env.BENCH_METHODS ?? 'autoregressive,draft,auto').split(',');
const target = path.join(shared, 'models', 'code', 'code-target-q8_0.gguf');
const draft = path.join(shared, 'models', 'code', 'code-draft-f16.gguf');
const prompts = JSON.parse(readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')).prompts.map((p) => p.prompt);

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

async function startServer() {
  const child = spawn(process.execPath, [
    path.join(root, 'dist', 'cli', 'index.js'), 'serve', '--model', target, '--draft-model', draft, '--port', '0',
    '--parallel', String(PARALLEL), '--threads', '1', '--max-queue', String(CLIENTS * 2),
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /listening on (http:\/\/[^ ]+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
  });
  return { child, url };
}

/** One streaming completion: its id, text, tokens, latency and time to first token. */
async function request(url, prompt, method) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true }, method }),
  });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  let ttft;
  let text = '';
  let id;
  let usage;
  let timings;
  let buf = '';
  let done = false;
  const dec = new TextDecoder();
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ')) continue;
      if (ev === 'data: [DONE]') {
        done = true;
        continue;
      }
      const j = JSON.parse(ev.slice(6));
      if (j.error) throw new Error(JSON.stringify(j.error));
      id = j.id;
      if (j.usage) usage = j.usage;
      if (j.timings) timings = j.timings;
      const t = j.choices[0]?.text ?? '';
      if (t.length > 0 && ttft === undefined) ttft = performance.now() - t0;
      text += t;
    }
  }
  if (!done) throw new Error('the stream ended without [DONE]');
  return { id, text, tokens: usage.completion_tokens, latency: performance.now() - t0, ttft: ttft ?? performance.now() - t0, timings };
}

async function run(url, method) {
  const results = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    for (let k = 0; k < REQUESTS; k++) {
      // each prompt is sent by several clients: their answers must agree
      const p = (c + k) % Math.min(prompts.length, CLIENTS);
      results.push({ prompt: p, ...(await request(url, prompts[p], method)) });
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const tokens = results.reduce((a, r) => a + r.tokens, 0);
  return {
    method, requests: results.length, wall, tokens, throughput: tokens / wall,
    latencyP50: pct(results.map((r) => r.latency), 50), latencyP99: pct(results.map((r) => r.latency), 99),
    ttftP50: pct(results.map((r) => r.ttft), 50), ttftP99: pct(results.map((r) => r.ttft), 99),
    prefillP50: pct(results.map((r) => r.timings.prompt_ms), 50), loadavg: loadavg()[0],
    drafted: results.reduce((a, r) => a + r.timings.draft_n, 0), accepted: results.reduce((a, r) => a + r.timings.draft_n_accepted, 0),
    results,
  };
}

const { child, url } = await startServer();
const out = { date: new Date().toISOString(), cpus: cpus().length, cpu: cpus()[0]?.model, clients: CLIENTS, requestsPerClient: REQUESTS, maxTokens: TOKENS, parallel: PARALLEL, runs: [] };
let failed = false;
try {
  await request(url, prompts[0], 'autoregressive');  // warm-up
  out.rssAfterWarmupMiB = rssMiB(child.pid);
  const texts = new Map();
  // two rounds of every method: RSS after the second must stay where the first left it
  for (const round of [1, 2]) {
    for (const method of METHODS) {
      const r = await run(url, method);
      r.round = round;
      r.rssAfterMiB = rssMiB(child.pid);
      const ids = new Set(r.results.map((x) => x.id));
      r.allAnswered = r.results.length === CLIENTS * REQUESTS;
      r.distinctIds = ids.size === r.results.length;
      r.consistent = r.results.every((x) => {
        if (!texts.has(x.prompt)) texts.set(x.prompt, x.text);
        return texts.get(x.prompt) === x.text;
      });
      if (!r.allAnswered || !r.distinctIds || !r.consistent) failed = true;
      delete r.results;
      out.runs.push(r);
      console.error(`round ${round} ${method}: ${r.throughput.toFixed(1)} tok/s, latency p50 ${r.latencyP50.toFixed(0)} ms p99 ${r.latencyP99.toFixed(0)} ms, TTFT p50 ${r.ttftP50.toFixed(0)} ms p99 ${r.ttftP99.toFixed(0)} ms, RSS ${r.rssAfterMiB.toFixed(1)} MiB`);
    }
  }
  const m = await (await fetch(`${url}/metrics`)).text();
  out.metrics = Object.fromEntries(m.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
} finally {
  child.kill('SIGTERM');
}
mkdirSync(path.join(here, 'results'), { recursive: true });
writeFileSync(path.join(here, 'results', 'serve.json'), JSON.stringify(out, null, 1) + '\n');
const rows = out.runs.map((r) =>
  `| ${r.round} | ${r.method} | ${r.requests} | ${r.throughput.toFixed(1)} | ${r.latencyP50.toFixed(0)} / ${r.latencyP99.toFixed(0)} | ${r.ttftP50.toFixed(0)} / ${r.ttftP99.toFixed(0)} | ${r.prefillP50.toFixed(0)} | ` +
  `${r.drafted > 0 ? `${r.accepted} / ${r.drafted}` : '-'} | ${r.rssAfterMiB.toFixed(1)} | ${r.allAnswered && r.distinctIds && r.consistent ? 'yes' : 'NO'} |`);
const table = [
  `${CLIENTS} clients × ${REQUESTS} requests, ${TOKENS} tokens each (greedy, streamed), --parallel ${PARALLEL} (1 thread per slot), ${out.cpus} CPUs (${out.cpu})`,
  '',
  '| round | method | requests | tokens/s | latency p50 / p99 (ms) | TTFT p50 / p99 (ms) | prefill p50 (ms) | accepted / drafted | RSS after (MiB) | all answered, once, same text |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows,
  '',
  `RSS after a warm-up request: ${out.rssAfterWarmupMiB?.toFixed(1)} MiB. TTFT includes the wait for a slot (${CLIENTS} clients, ${PARALLEL} slots) and the prompt's prefill (its own column). ` +
    `Load average (1 min) during the runs: ${out.runs.map((r) => r.loadavg.toFixed(1)).join(', ')} on ${out.cpus} CPUs.`,
].join('\n');
console.log(table);
const readmePath = path.join(root, 'README.md');
const readme = readFileSync(readmePath, 'utf8');
const marked = /<!-- bench:serve -->\n[\s\S]*?<!-- \/bench:serve -->/;
if (!failed && marked.test(readme)) writeFileSync(readmePath, readme.replace(marked, `<!-- bench:serve -->\n${table}\n<!-- /bench:serve -->`));
if (failed) {
  console.error('FAILED: a request was lost, duplicated or answered differently');
  process.exitCode = 1;
}
