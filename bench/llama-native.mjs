// Native llama.cpp as a benchmark peer: the programs scripts/build-llama-native.sh builds from the pinned
// submodule into build-llama/bin (llama-bench, llama-speculative-simple, llama-lookup). Each helper runs
// one process and returns what llama.cpp itself reports; null when the program was not built.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { root } from './models.mjs';

/** The path of a built llama.cpp program, or null. */
export function nativeBin(name) {
  const p = path.join(root, 'build-llama', 'bin', name);
  return existsSync(p) ? p : null;
}

/** Whether the native peer was built (scripts/build-llama-native.sh). */
export const nativeBuilt = () => ['llama-bench', 'llama-speculative-simple', 'llama-lookup'].every((n) => nativeBin(n));

/**
 * llama-bench's autoregressive decode (tg: `n` tokens after an empty prompt, after its own warm-up run),
 * `reps` repetitions: { decodeTokensPerSecond (its mean), runs }. Warm, as llama-bench measures.
 */
export function llamaBenchDecode(model, threads, n, reps) {
  const bin = nativeBin('llama-bench');
  if (!bin) return null;
  const p = spawnSync(bin, ['-m', model, '-p', '0', '-n', String(n), '-t', String(threads), '-r', String(reps), '-o', 'json'], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (p.status !== 0) throw new Error(`llama-bench failed:\n${p.stderr.slice(-2000)}`);
  const rows = JSON.parse(p.stdout);
  const tg = rows.find((r) => r.n_gen === n && r.n_prompt === 0) ?? rows[0];
  return { decodeTokensPerSecond: tg.avg_ts, runs: tg.samples_ts ?? [] };
}

// "decoded  128 tokens in    0.215 seconds, speed:  595.348 t/s" and the n_drafted / n_accept lines that
// llama-speculative-simple and llama-lookup print on stderr
function parseSpeculative(text) {
  const m = /decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t\/s/.exec(text);
  if (!m) return null;
  const drafted = /n_drafted\s*=\s*(\d+)/.exec(text);
  const accepted = /n_accept\s*=\s*(\d+)/.exec(text);
  return {
    decoded: Number(m[1]), seconds: Number(m[2]), decodeTokensPerSecond: Number(m[3]),
    drafted: drafted ? Number(drafted[1]) : null, accepted: accepted ? Number(accepted[1]) : null,
  };
}

function promptFile(text) {
  const dir = mkdtempSync(path.join(tmpdir(), 'specdec-llama-'));
  const f = path.join(dir, 'prompt.txt');
  writeFileSync(f, text);
  return f;
}

function samplingArgs(temperature, seed) {
  return temperature > 0
    ? ['--temp', String(temperature), '--top-k', '40', '--top-p', '0.95', '--min-p', '0.05', '--seed', String(seed)]
    : ['--temp', '0', '--top-k', '1', '--seed', String(seed)];
}

/**
 * One run of a llama.cpp speculative program on `promptText`: 'speculative-simple' (draft model `draft`,
 * up to `draftMax` tokens a step) or 'lookup' (prompt lookup). Its own decode speed (prompt processing
 * excluded) and acceptance: { decodeTokensPerSecond, drafted, accepted, wallMs }. One process per run:
 * a one-shot measurement by nature.
 */
export function llamaSpeculative(kind, { target, draft, promptText, n, threads, temperature = 0, seed = 1, draftMax = 8, ctx = 1024 }) {
  const bin = nativeBin(kind === 'lookup' ? 'llama-lookup' : 'llama-speculative-simple');
  if (!bin) return null;
  // -nr: no extra weight buffers. On this machine (AMX) the pinned llama.cpp's AMX buffers crash both programs
  // in the target's warm-up (SIGSEGV in ggml_backend_amx_mul_mat); for Q8_0 on x86 they are the only extra
  // buffer type, so the target runs on ggml's plain CPU kernels, as in node-llama-cpp's portable build.
  const args = ['-m', target, '-f', promptFile(promptText), '-n', String(n), '-t', String(threads), '-c', String(ctx), '--ignore-eos', '-nr',
    '--spec-draft-n-max', String(draftMax), ...samplingArgs(temperature, seed)];
  // its draft-model speculation must be named (no --spec-type: no speculator, an init error)
  if (kind !== 'lookup') args.push('-md', draft, '--spec-type', 'draft-simple', '--spec-draft-threads', String(threads));
  // now and then a run exits 0 before its log thread wrote the summary: run it again (up to 3 times)
  for (let attempt = 1; ; attempt++) {
    const t0 = performance.now();
    const p = spawnSync(bin, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
    const wallMs = performance.now() - t0;
    const r = parseSpeculative(`${p.stdout}\n${p.stderr}`);
    if (p.status === 0 && r) return { ...r, wallMs };
    if (p.status !== 0 || attempt === 3) throw new Error(`${path.basename(bin)} failed (${p.status}):\n${p.stderr.slice(-2000)}`);
  }
}
