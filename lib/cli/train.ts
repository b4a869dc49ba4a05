/**
 * `specdec train-drafter`: trains draft heads, a Chimera drafter (or a LUD model) for a model on a corpus (lib/train.ts), with a
 * progress bar on stderr (tokens/s, ETA, losses) and Ctrl-C to abort (nothing is written).
 *
 *   specdec train-drafter --model T.gguf --kind medusa --corpus PATH --out F.gguf [--minutes N] [--tokens N]
 *                         [--heads K] [--threads N] [--learning-rate X] [--seed S] [--json]
 */
import { loadModel, type Model } from '../index';
import { DRAFTER_KINDS, trainDrafter, type DrafterKind, type TrainProgress } from '../train';

export const TRAIN_USAGE = `  specdec train-drafter --model PATH --kind ${DRAFTER_KINDS.join('|')} --corpus PATH --out FILE [options]
      --corpus PATH       text file, directory of them, or JSONL with a "text" field (repeatable)
      --out FILE          the head file to write (GGUF)
      --minutes N         time budget (at least one of --minutes and --tokens)
      --tokens N          token budget (corpus positions trained on)
      --heads K           medusa: number of heads (default 4)
      --ttt-steps J       eagle3: steps of the training-time test (default 3)
      --transfer-layer L  hidden-transfer: the transfer layer (default: half the layers)
      --pseudo-rows K     hidden-transfer: pseudo rows, positions drafted per pass (default 3)
      --lud-k K           lud: placeholders appended, tokens predicted in parallel beyond the first (default 4)
      --lud-alpha A       lud: confidence that marks a lexical unit (default 0.8)
      --learning-rate X   AdamW learning rate
      --seed S            document order and validation split
      --threads N         compute threads
      --json              print the report as one JSON object on stdout
`;

function fmtTime(s: number): string {
  if (!(s >= 0) || !Number.isFinite(s)) return '--:--';
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
}

/** A one-line progress bar for training on stderr. */
export function trainProgressLine(p: TrainProgress): string {
  const frac = p.budgetSeconds > 0 || p.tokensBudget > 0
    ? Math.min(1, Math.max(p.budgetSeconds > 0 ? p.elapsedSeconds / p.budgetSeconds : 0, p.tokensBudget > 0 ? p.tokens / p.tokensBudget : 0))
    : 0;
  const width = 24;
  const filled = Math.round(frac * width);
  const loss = p.trainLoss >= 0 ? ` loss ${p.trainLoss.toFixed(3)}` : '';
  const val = p.validationLoss >= 0 ? ` val ${p.validationLoss.toFixed(3)} (top-1 ${(p.validationAccuracy * 100).toFixed(1)} %)` : '';
  return `${p.phase.padEnd(8)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}% ` +
    `${p.tokens} tok ${p.tokensPerSecond.toFixed(0)} tok/s ETA ${fmtTime(p.etaSeconds)}${loss}${val}`;
}

/** The last value of a flag, and a flag's number (a usage error when it is not one). */
export function flagReaders(flags: Map<string, string[]>, usageError: (msg: string) => Error): {
  one: (n: string) => string | undefined; num: (n: string) => number | undefined;
} {
  const one = (n: string) => flags.get(n)?.at(-1);
  const num = (n: string) => {
    const v = one(n);
    if (v === undefined) return undefined;
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x)) throw usageError(`--${n} must be a number, got '${v}'`);
    return x;
  };
  return { one, num };
}

/** What every training command needs: --model, --corpus, --out and a budget (usage errors when missing). */
export function trainingFlags(flags: Map<string, string[]>, usageError: (msg: string) => Error) {
  const { one, num } = flagReaders(flags, usageError);
  const modelPath = one('model');
  if (!modelPath) throw usageError('--model PATH is required');
  const corpus = flags.get('corpus');
  if (!corpus || corpus.length === 0) throw usageError('--corpus PATH is required');
  const out = one('out');
  if (!out) throw usageError('--out FILE is required');
  const minutes = num('minutes');
  const tokens = num('tokens');
  if (minutes === undefined && tokens === undefined) throw usageError('give a budget: --minutes N and/or --tokens N');
  return { one, num, modelPath, corpus, out, minutes, tokens, json: one('json') === 'true' };
}

/**
 * Runs a training for the CLI: progress on stderr (a live line on a terminal, a line every 5 s in a log),
 * Ctrl-C aborts it (nothing written), then the report as JSON on stdout (`json`) or `summary` on stderr; the
 * model is disposed at the end. Returns the exit code (0, or 130 after Ctrl-C).
 */
export async function runTraining<R>(
  model: Model, json: boolean,
  train: (signal: AbortSignal, onProgress: (p: TrainProgress) => void) => Promise<R>, summary: (report: R) => string,
): Promise<number> {
  const ac = new AbortController();
  const interrupted = new Error('interrupted');
  const onSigint = () => ac.abort(interrupted);
  process.once('SIGINT', onSigint);
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  try {
    const report = await train(ac.signal, (p) => {
      const now = Date.now();
      if (!tty && now - lastLine < 5000 && (p.phase === 'train' || p.phase === 'tokenize')) return;
      lastLine = now;
      process.stderr.write(tty ? `\r${trainProgressLine(p)}\x1b[K` : `${trainProgressLine(p)}\n`);
    });
    if (tty) process.stderr.write('\n');
    if (json) process.stdout.write(JSON.stringify(report) + '\n');
    else process.stderr.write(summary(report) + '\n');
    return 0;
  } catch (err) {
    if (err === interrupted) {
      process.stderr.write(`${tty ? '\n' : ''}specdec: training interrupted; nothing written\n`);
      return 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    await model.dispose();
  }
}

/** Runs the command; returns the exit code (0, or 130 after Ctrl-C: nothing written). */
export async function trainDrafterCommand(
  flags: Map<string, string[]>, usageError: (msg: string) => Error, checkFile: (flag: string, path: string) => void,
): Promise<number> {
  const { one, num, modelPath, corpus, out, minutes, tokens, json } = trainingFlags(flags, usageError);
  const kind = one('kind');
  if (!kind || !(DRAFTER_KINDS as readonly string[]).includes(kind)) throw usageError(`--kind must be one of ${DRAFTER_KINDS.join(', ')}`);
  for (const n of ['heads', 'ttt-steps', 'transfer-layer', 'pseudo-rows', 'lud-k', 'lud-alpha', 'learning-rate', 'seed', 'threads']) num(n);
  if ((num('lud-k') !== undefined || num('lud-alpha') !== undefined) && kind !== 'lud') throw usageError('--lud-k and --lud-alpha are for --kind lud');
  if ((num('transfer-layer') !== undefined || num('pseudo-rows') !== undefined) && kind !== 'hidden-transfer') {
    throw usageError('--transfer-layer and --pseudo-rows are for --kind hidden-transfer');
  }
  checkFile('--model', modelPath);
  const model = await loadModel(modelPath);
  return runTraining(model, json, (signal, onProgress) => trainDrafter(model, {
    kind: kind as DrafterKind, corpus, out, signal, onProgress,
    ...(minutes !== undefined ? { minutes } : {}), ...(tokens !== undefined ? { tokens } : {}),
    ...(num('heads') !== undefined ? { heads: num('heads') } : {}),
    ...(num('ttt-steps') !== undefined ? { tttSteps: num('ttt-steps') } : {}),
    ...(kind === 'hidden-transfer' && (num('transfer-layer') !== undefined || num('pseudo-rows') !== undefined)
      ? { hiddenTransfer: { ...(num('transfer-layer') !== undefined ? { layer: num('transfer-layer') } : {}), ...(num('pseudo-rows') !== undefined ? { k: num('pseudo-rows') } : {}) } }
      : {}),
    ...(kind === 'lud' && (num('lud-k') !== undefined || num('lud-alpha') !== undefined)
      ? { lud: { ...(num('lud-k') !== undefined ? { k: num('lud-k') } : {}), ...(num('lud-alpha') !== undefined ? { alpha: num('lud-alpha') } : {}) } }
      : {}),
    ...(num('learning-rate') !== undefined ? { learningRate: num('learning-rate') } : {}),
    ...(num('seed') !== undefined ? { seed: num('seed') } : {}),
    ...(num('threads') !== undefined ? { threads: num('threads') } : {}),
  }), (report) => (
    `wrote ${report.out}: ${report.tokens} positions in ${report.seconds.toFixed(0)} s; held-out loss ${report.validationLossBefore.toFixed(3)} -> ` +
      `${report.validationLossAfter.toFixed(3)}, head top-1 ${report.headAccuracyAfter.map((a) => (a * 100).toFixed(1) + ' %').join(' / ')}, ` +
      `greedy chain tau ${report.tauBefore.toFixed(2)} -> ${report.tauAfter.toFixed(2)}`
  ));
}
