#!/usr/bin/env node
/**
 * The specdec command line.
 *
 *   specdec generate [--model PATH] (--prompt TEXT | --prompt-file F) [--max-tokens N] [--ignore-eos] [--no-auto-cache] [--temperature T]
 *                    [--seed S] [--threads N] [--method M] [--draft-model PATH] [--draft-max N]
 *                    [--corpus-file F]... [--rsd-tree T] [--verify V] [--cpu-kernels K]
 *                    [--ead-threshold X] [--ead-window N] [--ead-min-dwell N]
 *                    [--context-size N] [--backend B] [--rpc HOST:PORT]... [--tensor-split A,B,..] [--stop S]... [--json]
 *                    (no --model: the embedded assets/stories260K.gguf, said on stderr)
 *   specdec info PATH [--json]
 *   specdec rpc-server [--host 127.0.0.1] [--port 50052] [--threads N]   (ggml's RPC server; blocks)
 *   specdec serve --model PATH [--draft-model PATH] [--method M] [--host H] [--port P] [--parallel N] [--api-key K] ...
 *   specdec train-drafter --model PATH --kind K --corpus PATH --out F.gguf ...
 *   specdec --version | --help        (and `generate --help`, `info -h`)
 *
 * With --json, generate prints exactly one JSON object on stdout:
 *   {"promptTokens":[...],"tokens":[...],"text":"...","stats":{...}}
 *
 * Exit codes: 0 done (also when the reader of stdout left early), 1 a file or model error (one line),
 * 2 a usage error (found before any model loads), 130 interrupted by Ctrl-C (the partial output and
 * stats are printed).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { cpus, homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { loadModel, readGguf, SpecdecError, METHODS, VERIFY_MODES } from '../index';
import type { GenerateOptions, Session } from '../session';
import { ArgsError, COMMANDS, parseCommand, type Flags } from './args';
import { infoSummary, infoSummaryText } from './info';
import { SERVE_USAGE, serveCommand } from './serve';
import { TRAIN_USAGE, trainDrafterCommand } from './train';
import { COPROCESSOR_USAGE, perplexityCommand, trainCoprocessorCommand } from './coprocessor';
import { rpcServerCommand } from './rpc-server';

const USAGE = `usage:
  specdec generate [--model PATH] (--prompt TEXT | --prompt-file FILE) [options]
      --model PATH        the GGUF model (default: the embedded stories260K, a 260K-parameter toy)
      --max-tokens N      tokens to generate (default 256)
      --ignore-eos        do not stop at the end-of-generation token (benchmarks: exactly --max-tokens tokens)
      --no-auto-cache     --method auto: start from its priors, not from what earlier runs learnt (cache: $SPECDEC_CACHE_DIR or ~/.cache/specdec)
      --temperature T     0 = greedy (default), > 0 samples
      --top-k K --top-p P --min-p P --repeat-penalty R
      --seed S            sampling seed
      --stop S            stop string (repeatable)
      --threads N         compute threads (default: chosen per model and machine)
      --context-size N    KV cache size in tokens
      --backend B         auto | cpu | cuda | metal
      --rpc HOST:PORT     place the model's layers on this ggml RPC server (repeatable; see rpc-server)
      --tensor-split A,B  the share of the layers for each --rpc server (default: by their free memory)
      --method M          ${METHODS.join(' | ')}
      --draft-model PATH  the draft model for --method draft | rsd | ead (required), rasd | auto (optional)
      --draft-max N       most drafted tokens (tree nodes) verified per forward pass (default: per method)
      --corpus-file F     --method rasd: a text file to retrieve drafts from (repeatable)
      --heads F           --method medusa | eagle | chimera | hidden-transfer (required), auto (optional): a head file (train-drafter's, or EAGLE-3)
      --rsd-tree T        --method rsd: gumbel-top-k (default) | beam-search
      --verify V          speculative sampling: match (default; seed-exact, the autoregressive sample) | rejection
      --online            --method draft: Online Speculative Decoding (the draft model learns while it drafts)
      --lud F             --method lud (required): a LUD model of --model (train-drafter --kind lud); LOSSY unless --lud-verify
      --lud-alpha A       --method lud: confidence from which placeholder predictions are used (default: the file's)
      --lud-k K           --method lud: placeholders appended (default: the file's)
      --lud-verify        --method lud: the target verifies the predictions (lossless)
      --coprocessor F     augment the KV cache at the prompt's end with this coprocessor (train-coprocessor's)
      --latents N         --coprocessor: latents (default: the file's)
      --online-state F    --online, starting from the state in F when it exists and saving it there afterwards
      --ead-threshold X   --method ead (lossy): entropy threshold in nats (default 0.5)
      --ead-window N      --method ead: steps in the rolling entropy mean (default 5)
      --ead-min-dwell N   --method ead: tokens between two switches (default 1)
      --cpu-kernels K     specdec (default) | ggml (llama.cpp's bits on the CPU)
      --json              print one JSON object {promptTokens, tokens, text, stats} and nothing else
      --progress          show the loading progress bar (default: files over 64 MB on a terminal)
  specdec info PATH [--json]
  specdec rpc-server [--host H] [--port P] [--threads N]
                          ggml's RPC server (default 127.0.0.1:50052), for other machines' --rpc; runs until stopped.
                          No authentication and no encryption: never bind it to an untrusted network.
${TRAIN_USAGE}${COPROCESSOR_USAGE}${SERVE_USAGE}  specdec --version | --help

Ctrl-C stops the generation at the next step and prints what was generated (exit code 130).
`;

/** A wrong command line: the message, then the usage; exit code 2. */
class UsageError extends Error {}
/** A file the flags name that cannot be read: one line; exit code 1. */
class CliError extends Error {}

// stdout may be a pipe whose reader leaves early (`specdec generate ... | head -c 20`): the write then
// fails with EPIPE, emitted as an 'error' event that would otherwise crash with a stack trace. From
// then on nothing more is written, a running generation is aborted, and the process exits quietly.
let stdoutClosed = false;
let onStdoutClosed: (() => void) | undefined;
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  stdoutClosed = true;
  onStdoutClosed?.();
});
function out(text: string): void {
  if (!stdoutClosed) process.stdout.write(text);
}

function version(): string {
  // dist/cli/index.js -> package.json
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function one(flags: Flags, name: string): string | undefined {
  const v = flags.get(name);
  return v ? v[v.length - 1] : undefined;
}

function num(flags: Flags, name: string): number | undefined {
  const v = one(flags, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || v.trim() === '') throw new UsageError(`--${name} must be a number, got '${v}'`);
  return n;
}

// The numeric flags and the ranges the API takes (lib/session.ts, lib/model.ts), checked before a model
// loads so that a wrong flag costs no loading time: [min, max, integer, above min strictly]
const NUMERIC: Record<string, [number, number, boolean, boolean?]> = {
  'max-tokens': [0, 1 << 30, true], 'temperature': [0, 100, false], 'top-k': [0, 1 << 30, true], 'top-p': [0, 1, false],
  'min-p': [0, 1, false], 'repeat-penalty': [0, 100, false, true], 'seed': [0, Number.MAX_SAFE_INTEGER, true],
  'threads': [1, 512, true], 'context-size': [1, 1 << 20, true], 'draft-max': [1, 255, true],
  'lud-alpha': [0, 100, false, true], 'lud-k': [1, 16, true],
  'ead-threshold': [-1000, 1000, false], 'ead-window': [1, 1024, true], 'ead-min-dwell': [1, 1 << 20, true],
};
const CHOICES: Record<string, readonly string[]> = {
  'method': METHODS, 'backend': ['auto', 'cpu', 'cuda', 'metal'], 'cpu-kernels': ['specdec', 'ggml'], 'rsd-tree': ['gumbel-top-k', 'beam-search'],
  'verify': VERIFY_MODES,
};

function checkFlags(flags: Flags): void {
  for (const [name, [min, max, integer, strict]] of Object.entries(NUMERIC)) {
    const n = num(flags, name);
    if (n === undefined) continue;
    if (integer && !Number.isInteger(n)) throw new UsageError(`--${name} must be an integer, got ${n}`);
    if (n < min || n > max || (strict && n === min)) {
      throw new UsageError(`--${name} must be ${strict ? `greater than ${min}` : `at least ${min}`} and at most ${max}, got ${n}`);
    }
  }
  for (const [name, choices] of Object.entries(CHOICES)) {
    const v = one(flags, name);
    if (v !== undefined && !choices.includes(v)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got '${v}'`);
  }
  for (const s of flags.get('stop') ?? []) if (s === '') throw new UsageError('--stop must not be empty');
  const method = one(flags, 'method') ?? 'autoregressive';
  if (flags.has('draft-model') && !['draft', 'rsd', 'rasd', 'auto', 'ead'].includes(method)) throw new UsageError('--draft-model goes with --method draft, rsd, rasd, auto or ead');
  for (const f of ['ead-threshold', 'ead-window', 'ead-min-dwell']) if (flags.has(f) && method !== 'ead') throw new UsageError(`--${f} goes with --method ead`);
  if (!flags.has('draft-model') && ['draft', 'rsd', 'ead'].includes(method)) throw new UsageError(`--method ${method} needs --draft-model PATH`);
  if (flags.has('corpus-file') && method !== 'rasd') throw new UsageError('--corpus-file goes with --method rasd');
  if (flags.has('rsd-tree') && method !== 'rsd') throw new UsageError('--rsd-tree goes with --method rsd');
  if (flags.has('heads') && !['medusa', 'eagle', 'chimera', 'hidden-transfer', 'auto'].includes(method)) throw new UsageError('--heads goes with --method medusa, eagle, chimera, hidden-transfer or auto');
  if ((flags.has('online') || flags.has('online-state')) && method !== 'draft') throw new UsageError('--online and --online-state go with --method draft');
  if (!flags.has('heads') && ['medusa', 'eagle', 'chimera', 'hidden-transfer'].includes(method)) throw new UsageError(`--method ${method} needs --heads FILE`);
  if (['lud', 'lud-alpha', 'lud-k', 'lud-verify'].some((f) => flags.has(f)) && method !== 'lud') throw new UsageError('--lud, --lud-alpha, --lud-k and --lud-verify go with --method lud');
  if (!flags.has('lud') && method === 'lud') throw new UsageError('--method lud needs --lud FILE');
}

/** A model file a flag names: it must exist and be a file (loadModel's own errors are for its contents). */
function checkFile(flag: string, path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new CliError(`${flag} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (st.isDirectory()) throw new CliError(`${flag} ${path}: is a directory, not a file`);
}

/** The text of a file a flag names, or one clear line saying why not. */
function readText(flag: string, path: string): string {
  checkFile(flag, path);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`${flag} ${path}: ${(err as Error).message}`);
  }
}

// API names in error messages, as the command line spells them
const API_TO_FLAG: Array<[RegExp, string]> = [
  [/`draft: \{ model \}`|'draft: \{ model \}'|draft: \{ model \}/g, '--draft-model'],
  [/retrieval\.corpus/g, '--corpus-file'],
  ...(Object.entries({
    maxTokens: 'max-tokens', temperature: 'temperature', topK: 'top-k', topP: 'top-p', minP: 'min-p', repeatPenalty: 'repeat-penalty',
    seed: 'seed', stop: 'stop', draftMax: 'draft-max', contextSize: 'context-size', threads: 'threads', backend: 'backend',
    cpuKernels: 'cpu-kernels', rsd: 'rsd-tree', retrieval: 'corpus-file', verify: 'verify',
    'ead.threshold': 'ead-threshold', 'ead.window': 'ead-window', 'ead.minDwell': 'ead-min-dwell',
  }).map(([api, flag]): [RegExp, string] =>
    // camelCase names are API identifiers wherever they appear; plain words only as `option 'x'`
    [new RegExp(/[A-Z]/.test(api) ? `option '${api}'|\\b${api}\\b` : `option '${api}'`, 'g'), `--${flag}`])),
  [/\bmethod '([a-z-]+)'/g, '--method $1'],
  [/\bmethod must\b/g, '--method must'],
];

function flagNames(message: string): string {
  let m = message;
  for (const [re, flag] of API_TO_FLAG) m = m.replace(re, flag);
  return m;
}


function progressBar(enabled: boolean): ((f: number) => void) | undefined {
  if (!enabled) return undefined;
  let lastPct = -1;
  return (f: number) => {
    const pct = Math.floor(f * 100);
    if (pct === lastPct) return;
    lastPct = pct;
    const width = 30;
    const filled = Math.round((pct / 100) * width);
    process.stderr.write(`\rloading [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(pct).padStart(3)}%`);
    if (pct >= 100) process.stderr.write('\n');
  };
}

async function generate(positional: string[], flags: Flags): Promise<number> {
  if (positional.length > 0) throw new UsageError(`unexpected argument '${positional[0]}' (the prompt goes in --prompt TEXT)`);
  const promptText = one(flags, 'prompt');
  const promptFile = one(flags, 'prompt-file');
  if ((promptText === undefined) === (promptFile === undefined)) throw new UsageError('give exactly one of --prompt and --prompt-file');
  checkFlags(flags);
  // every file before any model loads
  const modelPath = one(flags, 'model') ?? embeddedModel();
  checkFile('--model', modelPath);
  const draftPath = one(flags, 'draft-model');
  if (draftPath) checkFile('--draft-model', draftPath);
  const headsPath = one(flags, 'heads');
  if (headsPath) checkFile('--heads', headsPath);
  const ludPath = one(flags, 'lud');
  if (ludPath) checkFile('--lud', ludPath);
  const coprocPath = one(flags, 'coprocessor');
  if (coprocPath) checkFile('--coprocessor', coprocPath);
  if (!coprocPath && one(flags, 'latents') !== undefined) throw new UsageError('--latents goes with --coprocessor');
  const onlineState = one(flags, 'online-state');
  if (onlineState !== undefined && existsSync(onlineState)) checkFile('--online-state', onlineState);
  const prompt = promptText ?? readText('--prompt-file', promptFile!);
  const corpus = flags.get('corpus-file')?.map((f) => readText('--corpus-file', f));
  const json = one(flags, 'json') === 'true';
  const threads = num(flags, 'threads');
  const backend = one(flags, 'backend') as 'auto' | 'cpu' | 'cuda' | 'metal' | undefined;
  const rpc = flags.get('rpc');
  const tensorSplit = tensorSplitFlag(flags, rpc);

  const showProgress = one(flags, 'progress') === 'true' || (process.stderr.isTTY === true && statSync(modelPath).size > 64 * 1024 * 1024);
  const cpuKernels = one(flags, 'cpu-kernels') as 'specdec' | 'ggml' | undefined;
  // Ctrl-C aborts through the signal that loading and the generation take: loading stops, or the
  // generation stops at its next step and the partial output is reported (exit code 130); a second
  // Ctrl-C (the handler is gone by then) kills the process
  const ac = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    ac.abort(new SpecdecError('ERR_ABORTED', 'interrupted'));
  };
  process.once('SIGINT', onSigint);
  let model;
  let draftModel;
  try {
    model = await loadModel(modelPath, {
      backend, threads, signal: ac.signal, onProgress: progressBar(showProgress), ...(cpuKernels ? { cpuKernels } : {}),
      ...(rpc ? { rpc } : {}), ...(tensorSplit ? { tensorSplit } : {}),
    });
    // its Q8_0 draft copies at load, not in the generation's time to first token ('ead' runs it as a model of its own)
    draftModel = draftPath ? await loadModel(draftPath, { backend, threads, signal: ac.signal, draft: one(flags, 'method') !== 'ead' }) : undefined;
    const contextSize = num(flags, 'context-size');
    const session = await model.createSession(contextSize !== undefined ? { contextSize } : {});
    const opts: GenerateOptions = {
      maxTokens: num(flags, 'max-tokens'),
      ignoreEos: one(flags, 'ignore-eos') === 'true' ? true : undefined,
      temperature: num(flags, 'temperature'),
      topK: num(flags, 'top-k'),
      topP: num(flags, 'top-p'),
      minP: num(flags, 'min-p'),
      repeatPenalty: num(flags, 'repeat-penalty'),
      seed: num(flags, 'seed'),
      stop: flags.get('stop'),
      method: one(flags, 'method') as GenerateOptions['method'],
      draftMax: num(flags, 'draft-max'),
      verify: one(flags, 'verify') as GenerateOptions['verify'],
      draft: draftModel ? { model: draftModel } : undefined,
      retrieval: corpus ? { corpus } : undefined,
      rsd: one(flags, 'rsd-tree') ? { tree: one(flags, 'rsd-tree') as 'gumbel-top-k' | 'beam-search' } : undefined,
      heads: headsPath ? { file: headsPath } : undefined,
      lud: ludPath ? {
        file: ludPath, verify: one(flags, 'lud-verify') === 'true',
        ...(num(flags, 'lud-alpha') !== undefined ? { alpha: num(flags, 'lud-alpha') } : {}),
        ...(num(flags, 'lud-k') !== undefined ? { k: num(flags, 'lud-k') } : {}),
      } : undefined,
      online: onlineState !== undefined || one(flags, 'online') === 'true' ? true : undefined,
      coprocessor: coprocPath ? { file: coprocPath, ...(num(flags, 'latents') !== undefined ? { latents: num(flags, 'latents') } : {}) } : undefined,
      ead: one(flags, 'method') === 'ead'
        ? { threshold: num(flags, 'ead-threshold'), window: num(flags, 'ead-window'), minDwell: num(flags, 'ead-min-dwell') }
        : undefined,
      signal: ac.signal,
    };
    if (onlineState !== undefined && existsSync(onlineState)) session.loadOnline(new Uint8Array(readFileSync(onlineState)), draftModel!);
    for (const k of Object.keys(opts) as (keyof GenerateOptions)[]) if (opts[k] === undefined) delete opts[k];
    // 'auto' starts from what earlier runs on this model pair and machine learnt (verify costs, acceptance)
    const autoCache = opts.method === 'auto' && one(flags, 'no-auto-cache') !== 'true'
      ? autoCacheFile(modelPath, draftPath, headsPath, session.info.threads) : undefined;
    if (autoCache) loadAutoCache(session, autoCache);
    const run = session.generate(prompt, opts);
    onStdoutClosed = () => ac.abort(new SpecdecError('ERR_ABORTED', 'stdout closed'));
    if (stdoutClosed) onStdoutClosed();
    try {
      for await (const chunk of run) {
        if (!json) out(chunk.text);
      }
    } catch (err) {
      if (!ac.signal.aborted) throw err;
    } finally {
      process.off('SIGINT', onSigint);
      onStdoutClosed = undefined;
    }
    if (interrupted && !run.stats) return 130;  // before the first step: nothing generated
    if (autoCache && run.stats) saveAutoCache(session, autoCache);
    if (onlineState !== undefined) {
      // through a temporary file: an interrupted write leaves the previous state
      const tmp = `${onlineState}.tmp-${process.pid}`;
      writeFileSync(tmp, session.saveOnline());
      renameSync(tmp, onlineState);
    }
    await session.dispose();
    if (stdoutClosed) return 0;  // the reader left: nothing more to say
    const stats = run.stats!;
    if (json) {
      out(JSON.stringify({ promptTokens: run.promptTokens, tokens: run.tokens, text: run.text, stats }) + '\n');
    } else {
      out('\n');
      process.stderr.write(
        `[${stats.generatedTokens} tokens, ${stats.decodeTokensPerSecond.toFixed(1)} tok/s decode, ` +
          `${stats.prefillTokensPerSecond.toFixed(1)} tok/s prefill, ${stats.threads} threads, stop: ${stats.stopReason}` +
          `${stats.lossless ? '' : ', LOSSY: not the target model\'s own output'}]\n`,
      );
      if (stats.ead) {
        // a lossy method says so on every run
        process.stderr.write(
          `[lossy (ead): ${(100 * stats.ead.largeShare).toFixed(0)}% of tokens from the target, ${stats.ead.switches} switches, ` +
            `${(100 * stats.ead.computeSaved).toFixed(0)}% decoding compute saved; the output is not the target's own]\n`,
        );
      }
    }
    return interrupted ? 130 : 0;
  } catch (err) {
    if (interrupted) {
      process.stderr.write('specdec: interrupted\n');
      return 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    await model?.dispose();
    await draftModel?.dispose();
  }
}

/**
 * The cache file of what 'auto' learnt for this model, draft model or heads, thread count, CPU and
 * specdec version: $SPECDEC_CACHE_DIR, else $XDG_CACHE_HOME/specdec, else ~/.cache/specdec.
 */
function autoCacheFile(modelPath: string, draftPath: string | undefined, headsPath: string | undefined, threads: number): string {
  const id = (p: string | undefined) => {
    if (!p) return null;
    const st = statSync(p);
    return { path: resolve(p), size: st.size, mtimeMs: st.mtimeMs };
  };
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  const key = JSON.stringify({ v: pkg.version, model: id(modelPath), draft: id(draftPath), heads: id(headsPath), threads, cpu: cpus()[0]?.model ?? '' });
  const dir = process.env.SPECDEC_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'specdec');
  return join(dir, `auto-${createHash('sha256').update(key).digest('hex').slice(0, 16)}.json`);
}

/** Loads the cache into the session; a missing, unreadable or invalid file is ignored (it gets rewritten). */
function loadAutoCache(session: Session, file: string): void {
  try {
    if (existsSync(file)) session.loadAutoMemory(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    // a stale or corrupt cache only costs the priors
  }
}

/** Writes the session's auto memory through a temporary file (an interrupted write leaves the previous one). */
function saveAutoCache(session: Session, file: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(session.saveAutoMemory()));
    renameSync(tmp, file);
  } catch {
    // a read-only home: 'auto' starts from its priors next time
  }
}

/** The model that ships in the package (assets/), used when generate gets no --model; said on stderr. */
function embeddedModel(): string {
  // dist/cli/index.js (or lib/cli/index.ts) -> assets/stories260K.gguf
  const file = join(__dirname, '..', '..', 'assets', 'stories260K.gguf');
  process.stderr.write(`specdec: no --model given: using the embedded model ${file} (stories260K, a 260K-parameter TinyStories toy, MIT)\n`);
  return file;
}

/** --tensor-split 3,1: one non-negative share per RPC device (a CPU rpc-server offers one). */
function tensorSplitFlag(flags: Flags, rpc: string[] | undefined): number[] | undefined {
  const v = one(flags, 'tensor-split');
  if (v === undefined) return undefined;
  if (!rpc) throw new UsageError('--tensor-split goes with --rpc');
  const parts = v.split(',').map((x) => Number(x));
  if (parts.some((x, i) => !Number.isFinite(x) || x < 0 || v.split(',')[i].trim() === '') || !parts.some((x) => x > 0)) {
    throw new UsageError(`--tensor-split must be non-negative numbers separated by commas, not all 0, got '${v}'`);
  }
  return parts;
}

async function info(positional: string[], flags: Flags): Promise<number> {
  const path = positional[0];
  if (!path) throw new UsageError('specdec info PATH');
  if (positional.length > 1) throw new UsageError(`unexpected argument '${positional[1]}'`);
  const file = await readGguf(path);
  const meta: Record<string, unknown> = {};
  for (const [k, v] of file.metadata) {
    if (Array.isArray(v) || ArrayBuffer.isView(v)) {
      const arr = v as ArrayLike<unknown>;
      meta[k] = arr.length > 8 ? `[${arr.length} items]` : Array.from(arr);
    } else {
      meta[k] = typeof v === 'bigint' ? v.toString() : v;
    }
  }
  const summary = infoSummary(file);
  const tensorTypes: Record<string, number> = {};
  for (const w of summary.weightTypes) tensorTypes[w.type] = w.tensors;
  if (one(flags, 'json') === 'true') {
    out(JSON.stringify({ path, version: file.version, fileSize: file.fileSize, tensorCount: file.tensors.length, summary, tensorTypes, metadata: meta }) + '\n');
    return 0;
  }
  out(infoSummaryText(path, file, summary));
  out('metadata:\n');
  for (const [k, v] of Object.entries(meta)) out(`  ${k} = ${JSON.stringify(v)}\n`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  try {
    if (argv[0] === '--version') {
      out(`${version()}\n`);
      return 0;
    }
    if (argv.length === 0 || ['--help', '-h', 'help'].includes(argv[0])) {
      out(USAGE);
      return argv.length === 0 ? 1 : 0;
    }
    const [cmd, ...rest] = argv;
    if (!(cmd in COMMANDS)) throw new UsageError(`unknown command '${cmd}'`);
    let parsed;
    try {
      parsed = { cmd, ...parseCommand(cmd, rest) };
    } catch (err) {
      if (err instanceof ArgsError) throw new UsageError(err.message);
      throw err;
    }
    if (parsed.flags.has('help')) {
      out(USAGE);
      return 0;
    }
    if (parsed.flags.has('version')) throw new UsageError('--version goes alone: specdec --version');
    if (parsed.cmd === 'train-drafter') {
      if (parsed.positional.length > 0) throw new UsageError(`unexpected argument '${parsed.positional[0]}'`);
      return await trainDrafterCommand(parsed.flags, (m) => new UsageError(m), (flag, path) => checkFile(flag, path));
    }
    if (parsed.cmd === 'train-coprocessor') {
      if (parsed.positional.length > 0) throw new UsageError(`unexpected argument '${parsed.positional[0]}'`);
      return await trainCoprocessorCommand(parsed.flags, (m) => new UsageError(m), (flag, path) => checkFile(flag, path));
    }
    if (parsed.cmd === 'perplexity') {
      if (parsed.positional.length > 0) throw new UsageError(`unexpected argument '${parsed.positional[0]}'`);
      return await perplexityCommand(parsed.flags, (m) => new UsageError(m), (flag, path) => checkFile(flag, path), out);
    }
    if (parsed.cmd === 'rpc-server') {
      if (parsed.positional.length > 0) throw new UsageError(`unexpected argument '${parsed.positional[0]}'`);
      return await rpcServerCommand(parsed.flags, (m) => new UsageError(m));
    }
    if (parsed.cmd === 'serve') {
      if (parsed.positional.length > 0) throw new UsageError(`unexpected argument '${parsed.positional[0]}'`);
      return await serveCommand(parsed.flags, (m) => new UsageError(m), (flag, path) => checkFile(flag, path), (flag, path) => readText(flag, path));
    }
    return parsed.cmd === 'generate' ? await generate(parsed.positional, parsed.flags) : await info(parsed.positional, parsed.flags);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`specdec: ${err.message}\n${USAGE}`);
      return 2;
    }
    if (err instanceof CliError) {
      process.stderr.write(`specdec: ${err.message}\n`);
      return 1;
    }
    if (err instanceof SpecdecError) {
      process.stderr.write(`specdec: ${err.code}: ${flagNames(err.message)}\n`);
      return 1;
    }
    process.stderr.write(`specdec: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
