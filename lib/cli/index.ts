#!/usr/bin/env node
/**
 * The specdec command line.
 *
 *   specdec generate --model PATH (--prompt TEXT | --prompt-file F) [--max-tokens N] [--temperature T]
 *                    [--seed S] [--threads N] [--method M] [--draft-model PATH] [--draft-max N]
 *                    [--corpus-file F]... [--rsd-tree T] [--cpu-kernels K]
 *                    [--context-size N] [--backend B] [--stop S]... [--json]
 *   specdec info PATH [--json]
 *
 * With --json, generate prints exactly one JSON object on stdout:
 *   {"promptTokens":[...],"tokens":[...],"text":"...","stats":{...}}
 */
import { readFileSync } from 'node:fs';
import { loadModel, readGguf, SpecdecError, METHODS } from '../index';
import type { GenerateOptions } from '../session';
import { TRAIN_USAGE, trainDrafterCommand } from './train';

type Flags = Map<string, string[]>;

const USAGE = `usage:
  specdec generate --model PATH (--prompt TEXT | --prompt-file FILE) [options]
      --max-tokens N      tokens to generate (default 256)
      --temperature T     0 = greedy (default), > 0 samples
      --top-k K --top-p P --min-p P --repeat-penalty R
      --seed S            sampling seed
      --stop S            stop string (repeatable)
      --threads N         compute threads (default: chosen per model and machine)
      --context-size N    KV cache size in tokens
      --backend B         auto | cpu | cuda | metal
      --method M          ${METHODS.join(' | ')}
      --draft-model PATH  the draft model for --method draft | rsd (required), rasd | auto (optional)
      --draft-max N       most drafted tokens (tree nodes) verified per forward pass (default: per method)
      --corpus-file F     --method rasd: a text file to retrieve drafts from (repeatable)
      --heads F           --method medusa (required), auto (optional): a head file from train-drafter
      --rsd-tree T        --method rsd: gumbel-top-k (default) | beam-search
      --cpu-kernels K     specdec (default) | ggml (llama.cpp's bits on the CPU)
      --json              print one JSON object {promptTokens, tokens, text, stats} and nothing else
  specdec info PATH [--json]
${TRAIN_USAGE}`;

class UsageError extends Error {}

function parse(argv: string[]): { cmd: string; positional: string[]; flags: Flags } {
  const [cmd = '', ...rest] = argv;
  const flags: Flags = new Map();
  const positional: string[] = [];
  const booleans = new Set(['json', 'help', 'progress']);
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      let value: string;
      if (eq > 0) value = a.slice(eq + 1);
      else if (booleans.has(name)) value = 'true';
      else {
        if (i + 1 >= rest.length) throw new UsageError(`--${name} needs a value`);
        value = rest[++i];
      }
      flags.set(name, [...(flags.get(name) ?? []), value]);
    } else {
      positional.push(a);
    }
  }
  return { cmd, positional, flags };
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

const KNOWN_GENERATE = new Set([
  'model', 'prompt', 'prompt-file', 'max-tokens', 'temperature', 'top-k', 'top-p', 'min-p', 'repeat-penalty', 'seed',
  'stop', 'threads', 'context-size', 'backend', 'method', 'json', 'progress', 'help', 'draft-model', 'draft-max',
  'corpus-file', 'rsd-tree', 'cpu-kernels', 'heads',
]);

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

async function generate(flags: Flags): Promise<void> {
  for (const k of flags.keys()) if (!KNOWN_GENERATE.has(k)) throw new UsageError(`unknown option --${k}`);
  const modelPath = one(flags, 'model');
  if (!modelPath) throw new UsageError('--model PATH is required');
  const promptText = one(flags, 'prompt');
  const promptFile = one(flags, 'prompt-file');
  if ((promptText === undefined) === (promptFile === undefined)) throw new UsageError('give exactly one of --prompt and --prompt-file');
  const prompt = promptText ?? readFileSync(promptFile!, 'utf8');
  const json = one(flags, 'json') === 'true';
  const threads = num(flags, 'threads');
  const backend = one(flags, 'backend') as 'auto' | 'cpu' | 'cuda' | 'metal' | undefined;

  const { size } = await import('node:fs').then((fs) => fs.statSync(modelPath));
  const showProgress = one(flags, 'progress') === 'true' || (process.stderr.isTTY === true && size > 64 * 1024 * 1024);
  const cpuKernels = one(flags, 'cpu-kernels') as 'specdec' | 'ggml' | undefined;
  const model = await loadModel(modelPath, { backend, threads, onProgress: progressBar(showProgress), ...(cpuKernels ? { cpuKernels } : {}) });
  const draftPath = one(flags, 'draft-model');
  if (draftPath && !['draft', 'rsd', 'rasd', 'auto'].includes(one(flags, 'method') ?? '')) throw new UsageError('--draft-model goes with --method draft, rsd, rasd or auto');
  const draftModel = draftPath ? await loadModel(draftPath, { backend, threads }) : undefined;
  try {
    const contextSize = num(flags, 'context-size');
    const session = await model.createSession(contextSize !== undefined ? { contextSize } : {});
    const opts: GenerateOptions = {
      maxTokens: num(flags, 'max-tokens'),
      temperature: num(flags, 'temperature'),
      topK: num(flags, 'top-k'),
      topP: num(flags, 'top-p'),
      minP: num(flags, 'min-p'),
      repeatPenalty: num(flags, 'repeat-penalty'),
      seed: num(flags, 'seed'),
      stop: flags.get('stop'),
      method: one(flags, 'method') as GenerateOptions['method'],
      draftMax: num(flags, 'draft-max'),
      draft: draftModel ? { model: draftModel } : undefined,
      retrieval: flags.has('corpus-file') ? { corpus: flags.get('corpus-file')!.map((f) => readFileSync(f, 'utf8')) } : undefined,
      rsd: one(flags, 'rsd-tree') ? { tree: one(flags, 'rsd-tree') as 'gumbel-top-k' | 'beam-search' } : undefined,
      heads: one(flags, 'heads') ? { file: one(flags, 'heads')! } : undefined,
    };
    for (const k of Object.keys(opts) as (keyof GenerateOptions)[]) if (opts[k] === undefined) delete opts[k];
    const run = session.generate(prompt, opts);
    const ac = new AbortController();
    const onSigint = () => ac.abort(new SpecdecError('ERR_ABORTED', 'interrupted'));
    process.once('SIGINT', onSigint);
    try {
      for await (const chunk of run) {
        if (!json) process.stdout.write(chunk.text);
      }
    } finally {
      process.off('SIGINT', onSigint);
    }
    const stats = run.stats!;
    if (json) {
      process.stdout.write(JSON.stringify({ promptTokens: run.promptTokens, tokens: run.tokens, text: run.text, stats }) + '\n');
    } else {
      process.stdout.write('\n');
      process.stderr.write(
        `[${stats.generatedTokens} tokens, ${stats.decodeTokensPerSecond.toFixed(1)} tok/s decode, ` +
          `${stats.prefillTokensPerSecond.toFixed(1)} tok/s prefill, ${stats.threads} threads, stop: ${stats.stopReason}]\n`,
      );
    }
    await session.dispose();
  } finally {
    await model.dispose();
    await draftModel?.dispose();
  }
}

async function info(positional: string[], flags: Flags): Promise<void> {
  const path = positional[0];
  if (!path) throw new UsageError('specdec info PATH');
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
  const types: Record<number, number> = {};
  for (const t of file.tensors) types[t.type] = (types[t.type] ?? 0) + 1;
  const out = { path, version: file.version, fileSize: file.fileSize, tensorCount: file.tensors.length, tensorTypes: types, metadata: meta };
  if (one(flags, 'json') === 'true') {
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  process.stdout.write(`${path}\n  GGUF v${file.version}, ${file.fileSize} bytes, ${file.tensors.length} tensors\n`);
  for (const [k, v] of Object.entries(meta)) process.stdout.write(`  ${k} = ${JSON.stringify(v)}\n`);
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv);
    if (parsed.cmd === 'generate') await generate(parsed.flags);
    else if (parsed.cmd === 'info') await info(parsed.positional, parsed.flags);
    else if (parsed.cmd === 'train-drafter') await trainDrafterCommand(parsed.flags, (m) => new UsageError(m));
    else if (parsed.cmd === '' || parsed.cmd === '--help' || parsed.cmd === 'help') {
      process.stdout.write(USAGE);
      return parsed.cmd === '' ? 1 : 0;
    } else throw new UsageError(`unknown command '${parsed.cmd}'`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`specdec: ${err.message}\n${USAGE}`);
      return 2;
    }
    if (err instanceof SpecdecError) {
      process.stderr.write(`specdec: ${err.code}: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`specdec: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
