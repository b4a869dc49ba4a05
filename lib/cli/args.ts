/**
 * Command-line parsing for every subcommand, on node:util's parseArgs: each command declares its
 * options (type, repeatable, short alias) in one table, parseArgs splits the arguments into tokens, and
 * the checks below turn what it accepts too loosely into usage errors that speak the flags:
 * an unknown option (`-n 10`: "options are spelled --name"), a value-taking flag followed by another
 * flag instead of its value, a boolean flag given a value. A value may start with one dash
 * (`--temperature -1` reaches the range check, which says why it is wrong).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean; short?: string };
export type CommandSpec = Record<string, OptionSpec>;

/** Flags by name, each with every value given (the last one wins for single-valued flags). */
export type Flags = Map<string, string[]>;

const s: OptionSpec = { type: 'string' };
const many: OptionSpec = { type: 'string', multiple: true };
const b: OptionSpec = { type: 'boolean' };
const help: OptionSpec = { type: 'boolean', short: 'h' };

export const COMMANDS: Record<string, CommandSpec> = {
  generate: {
    model: s, prompt: s, 'prompt-file': s, 'max-tokens': s, temperature: s, 'top-k': s, 'top-p': s, 'min-p': s, 'repeat-penalty': s, seed: s,
    stop: many, threads: s, 'context-size': s, backend: s, method: s, json: b, progress: b, help, 'draft-model': s, 'draft-max': s,
    'corpus-file': many, 'rsd-tree': s, 'cpu-kernels': s, heads: s, verify: s, online: b, 'online-state': s, 'ead-threshold': s, 'ead-window': s, 'ead-min-dwell': s, version: b, rpc: many, 'tensor-split': s,
    lud: s, 'lud-alpha': s, 'lud-k': s, 'lud-verify': b, 'ignore-eos': b, 'no-auto-cache': b, coprocessor: s, latents: s,
  },
  'train-coprocessor': {
    model: s, corpus: many, out: s, minutes: s, tokens: s, latents: s, ahead: s, rank: s, 'learning-rate': s, seed: s, threads: s, json: b,
    help, version: b,
  },
  perplexity: {
    model: s, file: s, context: s, 'augment-every': s, ahead: s, coprocessor: s, latents: s, threads: s, 'context-size': s, json: b, help, version: b,
  },
  'rpc-server': { host: s, port: s, threads: s, help, version: b },
  info: { json: b, help, version: b },
  'train-drafter': {
    model: s, kind: s, corpus: many, out: s, minutes: s, tokens: s, heads: s, 'ttt-steps': s, 'transfer-layer': s, 'pseudo-rows': s, 'lud-k': s, 'lud-alpha': s, 'learning-rate': s, seed: s, threads: s, json: b,
    help, version: b,
  },
  serve: {
    model: s, 'draft-model': s, heads: s, method: s, host: s, port: s, parallel: s, 'api-key': s, 'max-queue': s, 'body-limit': s,
    'context-size': s, 'batch-size': s, threads: s, backend: s, 'cpu-kernels': s, 'chat-template-file': s, 'no-chat-template-fallback': b,
    alias: s, 'max-tokens': s, temperature: s, 'top-k': s, 'top-p': s, 'min-p': s, 'repeat-penalty': s, 'draft-max': s, help, version: b,
    rpc: many, 'tensor-split': s,
  },
};

export class ArgsError extends Error {}

/** The command's flags and positional arguments; throws ArgsError with a message that names the flag. */
export function parseCommand(cmd: string, args: string[]): { positional: string[]; flags: Flags } {
  const spec = COMMANDS[cmd];
  if (!spec) throw new ArgsError(`unknown command '${cmd}'`);
  const config: ParseArgsConfig = { args, options: spec, strict: false, allowPositionals: true, tokens: true };
  const { tokens } = parseArgs(config);
  const flags: Flags = new Map();
  const positional: string[] = [];
  for (const t of tokens ?? []) {
    if (t.kind === 'positional') {
      positional.push(t.value);
      continue;
    }
    if (t.kind === 'option-terminator') continue;
    const o = spec[t.name];
    if (!o || (t.rawName.startsWith('--') === false && o.short === undefined)) {
      if (!t.rawName.startsWith('--')) throw new ArgsError(`unknown option ${t.rawName} (options are spelled --name)`);
      throw new ArgsError(`unknown option ${t.rawName}${cmd !== 'generate' ? ` for ${cmd}` : ''}`);
    }
    let value: string;
    if (o.type === 'boolean') {
      if (t.inlineValue) throw new ArgsError(`--${t.name} takes no value`);
      value = 'true';
    } else {
      // `--prompt --json`: parseArgs (not strict) would take the next flag as the value
      if (t.value === undefined || (!t.inlineValue && t.value.startsWith('--') && t.value.length > 2)) throw new ArgsError(`--${t.name} needs a value`);
      value = t.value;
    }
    flags.set(t.name, [...(flags.get(t.name) ?? []), value]);
  }
  return { positional, flags };
}
