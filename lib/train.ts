/**
 * Training drafters against a frozen target (native/train): the corpus is read and tokenized
 * here (off the hot path, yielding to the event loop between files), the training itself runs
 * on a native worker thread on ggml-opt.
 */
import { lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { binding, type NativeTrainReport } from './binding';
import { InvalidOptionError, fromNative } from './errors';
import type { Model } from './model';
import { checkObject, describe, optEnum, optFunction, optNumber, optSignal, rejectUnknown } from './options';
import { availableCpus, defaultThreads } from './threads';

/** Drafter kinds that can be trained. */
export const DRAFTER_KINDS = ['medusa', 'eagle3', 'chimera', 'hidden-transfer', 'lud'] as const;
export type DrafterKind = (typeof DRAFTER_KINDS)[number];

export interface TrainDrafterOptions {
  /**
   * 'medusa': K heads over the target's last hidden state; 'eagle3': an EAGLE-3 head (one draft layer
   * over the target's hidden states of three layers, llama.cpp's eagle3 layout), trained with the
   * training-time test (README, "Draft heads"); 'chimera': a Chimera drafter (a trigram encoder and one
   * full-context layer over the target's hidden states, residual decoding heads; specdec's own
   * `specdec-chimera` layout), trained on distillation plus the regression of the next hidden state
   * (README, "Chimera"); 'hidden-transfer': Hidden Transfer maps (k linear maps at a middle layer whose
   * pseudo rows the target's own passes carry; specdec's `specdec-hidden-transfer` layout), trained with
   * the target frozen on the KL to its distributions at those positions, backpropagated through its upper
   * layers (README, "Hidden Transfer"); 'lud': a Lexical Unit Decoding model, a full fine-tune
   * of the model that predicts k + 1 tokens in one pass from k placeholders appended to the context
   * (README, "Lexical Unit Decoding"): `out` is then a whole model file for method 'lud'.
   */
  kind: DrafterKind;
  /** Text files, directories of them (recursively), or JSONL files with a `text` field per line. */
  corpus: string | string[];
  /** The head file to write (GGUF; written to a temporary file, then renamed). */
  out: string;
  /** Time budget in minutes (at least one of minutes and tokens). */
  minutes?: number;
  /** Token budget: corpus positions trained on. */
  tokens?: number;
  /** 'medusa': number of heads (default 4). */
  heads?: number;
  /** 'eagle3': steps of the training-time test, the draft depths trained (default 3). */
  tttSteps?: number;
  /**
   * 'hidden-transfer': the transfer layer (1 .. layerCount - 1, default layerCount / 2) and the pseudo rows
   * k (positions drafted per pass, 1..8, default 3).
   */
  hiddenTransfer?: { layer?: number; k?: number };
  /**
   * 'lud': placeholders appended (k, 1..16, default 4), the confidence that marks a lexical unit
   * (alpha, (0, 1], default 0.8), and placeholder groups per training window (default 24).
   */
  lud?: { k?: number; alpha?: number; groups?: number };
  /** Tokens per window the target reads (default: medusa 256, eagle3 and chimera 65, hidden-transfer 32, lud 96; at most the model's context). */
  sequenceLength?: number;
  /** Per optimizer step: positions (medusa, default 32) or windows (eagle3 and chimera, default 4). */
  batchSize?: number;
  /** AdamW learning rate (default 1e-3; lud, a fine-tune of the whole model: 2e-4; hidden-transfer, few but costly steps: 3e-3; decaying linearly to 10 % over the budget). */
  learningRate?: number;
  /** Share of the corpus's documents held out for validation (default 0.05). */
  validationFraction?: number;
  /** Validation positions (default 1024; windows of at most 128 tokens from many held-out documents). */
  validationPositions?: number;
  /** Seed of the document order, the validation split and the training windows drawn (default 42). */
  seed?: number;
  /** Compute threads (default as for sessions). */
  threads?: number;
  /** Called with the progress, at least every few seconds. */
  onProgress?: (p: TrainProgress) => void;
  /** Aborts: the promise rejects with the signal's reason, and no file is written. */
  signal?: AbortSignal;
}

export interface TrainProgress {
  phase: 'tokenize' | 'features' | 'train' | 'validate' | 'write';
  /** Corpus positions trained on so far. */
  tokens: number;
  tokensBudget: number;
  elapsedSeconds: number;
  budgetSeconds: number;
  tokensPerSecond: number;
  /** Mean soft cross-entropy to the target over the last batches (-1: none yet). */
  trainLoss: number;
  /** The last validation (-1: none yet). */
  validationLoss: number;
  /** Top-1 agreement of the heads with the target on the validation split. */
  validationAccuracy: number;
  /** Estimated seconds left (from the budget and the speed so far). */
  etaSeconds: number;
}

export interface TrainReport {
  kind: DrafterKind;
  out: string;
  /** Corpus positions trained on, optimizer steps, tokens the target evaluated. */
  tokens: number;
  steps: number;
  featureTokens: number;
  seconds: number;
  corpusDocuments: number;
  validationDocuments: number;
  validationPositions: number;
  /** Soft cross-entropy to the target on the validation split, before and after. */
  validationLossBefore: number;
  validationLossAfter: number;
  validationAccuracyBefore: number;
  validationAccuracyAfter: number;
  /**
   * Per head (medusa), per draft depth (eagle3), per pseudo position (hidden-transfer), or (chimera) the
   * first draft step's top-1 agreement and the second's where the first was right: agreement with the
   * target's own choice.
   */
  headAccuracyBefore: number[];
  headAccuracyAfter: number[];
  /** Expected tokens per verification of a greedy chain drafted by the heads (held out; chimera: a chain two deep). */
  tauBefore: number;
  tauAfter: number;
}

const TRAIN_OPTIONS = [
  'kind', 'corpus', 'out', 'minutes', 'tokens', 'heads', 'tttSteps', 'hiddenTransfer', 'lud', 'sequenceLength', 'batchSize', 'learningRate',
  'validationFraction', 'validationPositions', 'seed', 'threads', 'onProgress', 'signal',
] as const;

/** A document of the corpus: where it came from and its text. */
interface Doc {
  name: string;
  text: string;
}

function looksBinary(buf: Buffer): boolean {
  const n = Math.min(buf.length, 8192);
  for (let i = 0; i < n; i++) if (buf[i] === 0) return true;
  return false;
}

/** Reads the corpus: files, directories (recursively, sorted), JSONL with `text` per line. */
export function readCorpus(paths: string[]): Doc[] {
  const docs: Doc[] = [];
  let binaries = 0;
  const visit = (p: string, depth: number): void => {
    let st;
    try {
      st = statSync(p);
    } catch {
      throw new InvalidOptionError(`corpus path not found: ${p}`);
    }
    if (st.isDirectory()) {
      if (depth > 32) return;
      for (const e of readdirSync(p).sort()) {
        if (e.startsWith('.')) continue;
        const child = join(p, e);
        if (lstatSync(child).isSymbolicLink()) continue;
        visit(child, depth + 1);
      }
      return;
    }
    if (!st.isFile()) return;
    const buf = readFileSync(p);
    if (looksBinary(buf)) {
      binaries++;
      return;
    }
    const text = buf.toString('utf8');
    if (p.endsWith('.jsonl')) {
      const lines = text.split('\n');
      lines.forEach((line, i) => {
        if (line.trim() === '') return;
        let v: unknown;
        try {
          v = JSON.parse(line);
        } catch {
          throw new InvalidOptionError(`corpus ${p}, line ${i + 1}: not JSON (a .jsonl corpus has one JSON object with a "text" field per line)`);
        }
        const t = v && typeof v === 'object' ? (v as { text?: unknown }).text : undefined;
        if (typeof t !== 'string') throw new InvalidOptionError(`corpus ${p}, line ${i + 1}: no string field "text"`);
        if (t.length > 0) docs.push({ name: `${p}:${i + 1}`, text: t });
      });
    } else if (text.length > 0) {
      docs.push({ name: p, text });
    }
  };
  for (const p of paths) visit(resolve(p), 0);
  if (docs.length === 0) {
    throw new InvalidOptionError(binaries > 0
      ? `the corpus holds no text: ${binaries} binary file(s) skipped`
      : 'the corpus is empty: give text files, directories of them, or JSONL with a "text" field');
  }
  return docs;
}

/** A deterministic permutation (mulberry32). */
function shuffled<T>(xs: T[], seed: number): T[] {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = xs.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

/**
 * Trains a drafter for `model` on a corpus and writes it to `out` (README, "Draft heads").
 * Labels are the model's own distributions (distillation); a validation split is held out.
 */
export async function trainDrafter(model: Model, options: TrainDrafterOptions): Promise<TrainReport> {
  model.nativeModel();  // a disposed model fails here, before the corpus is read
  const o = checkObject(options, 'trainDrafter options');
  rejectUnknown(o, TRAIN_OPTIONS, 'trainDrafter');
  const kind = optEnum(o, 'kind', DRAFTER_KINDS, 'medusa');
  if (o.kind === undefined) throw new InvalidOptionError(`option 'kind' is required (${DRAFTER_KINDS.map((k) => `'${k}'`).join(', ')})`);
  const minutes = o.minutes === undefined ? 0 : optNumber(o, 'minutes', 0, 0, 60 * 24 * 30);
  const tokens = o.tokens === undefined ? 0 : optNumber(o, 'tokens', 0, 1, 1e12, true);
  const eagle = kind === 'eagle3';
  const windowed = eagle || kind === 'chimera';  // datapoints are windows (batchSize counts windows)
  if (o.heads !== undefined && windowed) throw new InvalidOptionError("option 'heads' is for kind 'medusa'");
  if (o.tttSteps !== undefined && !eagle) throw new InvalidOptionError("option 'tttSteps' is for kind 'eagle3'");
  const lud = kind === 'lud';
  if (o.heads !== undefined && lud) throw new InvalidOptionError("option 'heads' is for kind 'medusa'");
  if (o.lud !== undefined && !lud) throw new InvalidOptionError("option 'lud' is for kind 'lud'");
  if (o.batchSize !== undefined && lud) throw new InvalidOptionError("option 'batchSize' is not for kind 'lud' (one window per step)");
  const ht = kind === 'hidden-transfer';
  if (o.heads !== undefined && ht) throw new InvalidOptionError("option 'heads' is for kind 'medusa'");
  if (o.batchSize !== undefined && ht) throw new InvalidOptionError("option 'batchSize' is not for kind 'hidden-transfer' (one window per step)");
  if (o.hiddenTransfer !== undefined && !ht) throw new InvalidOptionError("option 'hiddenTransfer' is for kind 'hidden-transfer'");
  const htOpts = checkObject(o.hiddenTransfer, 'hiddenTransfer options');
  rejectUnknown(htOpts, ['layer', 'k'], 'hiddenTransfer');
  const transferLayer = optNumber(htOpts, 'layer', Math.floor(model.info.layerCount / 2), 1, Math.max(1, model.info.layerCount - 1), true);
  const pseudoRows = optNumber(htOpts, 'k', 3, 1, 8, true);
  const ludOpts = checkObject(o.lud, 'lud options');
  rejectUnknown(ludOpts, ['k', 'alpha', 'groups'], 'lud');
  const ludK = optNumber(ludOpts, 'k', 4, 1, 16, true);
  const ludAlpha = optNumber(ludOpts, 'alpha', 0.8, 1e-6, 1);
  const ludGroups = optNumber(ludOpts, 'groups', 24, 1, 64, true);
  const heads = optNumber(o, 'heads', 4, 1, 16, true);
  const tttSteps = optNumber(o, 'tttSteps', 3, 1, 8, true);
  const maxSeq = lud ? model.info.contextLength - ludK - 1 : model.info.contextLength;
  const seqLen = optNumber(o, 'sequenceLength', Math.min(windowed ? 65 : ht ? 32 : lud ? 96 : 256, maxSeq), 16, maxSeq, true);
  if (seqLen < (eagle ? tttSteps + 5 : lud ? 16 : windowed ? 9 : ht ? pseudoRows + 8 : heads + 8)) throw new InvalidOptionError(`option 'sequenceLength' (${seqLen}) is too short`);
  const batchSize = optNumber(o, 'batchSize', windowed ? 4 : lud || ht ? 1 : 32, 1, 4096, true);
  const learningRate = optNumber(o, 'learningRate', lud ? 2e-4 : ht ? 3e-3 : 1e-3, 1e-7, 1);
  const valPositions = optNumber(o, 'validationPositions', 1024, windowed ? batchSize * (seqLen - 1) : batchSize, 1 << 20, true);
  const r = await runTraining(model, o, valPositions, {
    kind, heads, tttSteps, transferLayer, pseudoRows, ludK, ludAlpha, ludGroups, sequenceLength: seqLen, batchSize, chunk: Math.max(batchSize, 1024), learningRate,
  });
  return {
    kind,
    ...r.common,
    headAccuracyBefore: r.native.headAccuracyBefore,
    headAccuracyAfter: r.native.headAccuracyAfter,
    tauBefore: r.native.tauBefore,
    tauAfter: r.native.tauAfter,
  };
}

/** What every training returns besides its kind's own numbers. */
interface CommonReport {
  out: string; tokens: number; steps: number; featureTokens: number; seconds: number;
  corpusDocuments: number; validationDocuments: number; validationPositions: number;
  validationLossBefore: number; validationLossAfter: number; validationAccuracyBefore: number; validationAccuracyAfter: number;
}

/**
 * What trainings share: the corpus, output, budget, validation split, threads, progress and abort
 * options (already checked for unknown keys by the caller), the tokenized corpus, the native job.
 */
async function runTraining(model: Model, o: Record<string, unknown>, valPositions: number, kindOptions: Record<string, unknown>):
    Promise<{ common: CommonReport; native: NativeTrainReport }> {
  const native = model.nativeModel();
  const corpusOpt = o.corpus;
  const paths = typeof corpusOpt === 'string' ? [corpusOpt] : Array.isArray(corpusOpt) ? corpusOpt : undefined;
  if (!paths || paths.length === 0 || paths.some((p) => typeof p !== 'string' || p.length === 0)) {
    throw new InvalidOptionError(`option 'corpus' must be a path or a non-empty array of paths, got ${describe(corpusOpt)}`);
  }
  if (typeof o.out !== 'string' || o.out.length === 0) throw new InvalidOptionError(`option 'out' must be a file path, got ${describe(o.out)}`);
  const out = resolve(o.out);
  let outStat;
  try {
    outStat = statSync(out);
  } catch {
    outStat = undefined;
  }
  if (outStat?.isDirectory()) throw new InvalidOptionError(`option 'out' is a directory (${out}); give a file name`);
  try {
    if (!statSync(dirname(out)).isDirectory()) throw new Error();
  } catch {
    throw new InvalidOptionError(`option 'out': the folder ${dirname(out)} does not exist`);
  }
  const minutes = o.minutes === undefined ? 0 : optNumber(o, 'minutes', 0, 0, 60 * 24 * 30);
  const tokens = o.tokens === undefined ? 0 : optNumber(o, 'tokens', 0, 1, 1e12, true);
  if (minutes <= 0 && tokens <= 0) throw new InvalidOptionError("training needs a budget: option 'minutes' or 'tokens'");
  const valFraction = optNumber(o, 'validationFraction', 0.05, 0.001, 0.5);
  const seed = optNumber(o, 'seed', 42, 0, 2 ** 32 - 1, true);
  const threads = Math.min(optNumber(o, 'threads', model.threads ?? defaultThreads(), 1, 512, true), availableCpus());
  const onProgress = optFunction<(p: TrainProgress) => void>(o, 'onProgress');
  const signal = optSignal(o);
  signal?.throwIfAborted();

  const t0 = Date.now();
  const emit = (p: Omit<TrainProgress, 'etaSeconds'>) => {
    if (!onProgress) return;
    let eta = -1;
    if (p.phase === 'train' || p.phase === 'validate') {
      const byTime = p.budgetSeconds > 0 ? Math.max(0, p.budgetSeconds - p.elapsedSeconds) : Infinity;
      const byTokens = p.tokensBudget > 0 && p.tokensPerSecond > 0 ? Math.max(0, (p.tokensBudget - p.tokens) / p.tokensPerSecond) : Infinity;
      eta = Math.min(byTime, byTokens);
      if (!Number.isFinite(eta)) eta = -1;
    }
    try {
      onProgress({ ...p, etaSeconds: eta });
    } catch {
      // a failing progress callback must not end the training
    }
  };

  // the corpus: documents in a seeded order, a share held out, tokenized as far as the budget needs
  const docs = shuffled(readCorpus(paths), seed);
  let nVal = Math.max(1, Math.round(docs.length * valFraction));
  let valDocs = docs.slice(0, nVal);
  let trainDocs = docs.slice(nVal);
  if (trainDocs.length === 0) {
    // one document: its first 90 % trains, the rest validates
    const text = docs[0].text;
    const cut = Math.floor(text.length * 0.9);
    trainDocs = [{ name: docs[0].name, text: text.slice(0, cut) }];
    valDocs = [{ name: `${docs[0].name} (held out)`, text: text.slice(cut) }];
    nVal = 1;
  }
  // tokens needed: the token budget, or what the time budget can use (a generous estimate), plus
  // the validation positions; the corpus is reused in epochs when it is shorter
  const wantTrain = tokens > 0 ? tokens * 1.1 + 4096 : minutes * 60 * 4000 + 4096;
  const wantVal = valPositions * 2 + 1024;
  const tokenize = async (list: Doc[], want: number): Promise<Int32Array[]> => {
    const outDocs: Int32Array[] = [];
    let n = 0;
    let last = Date.now();
    for (const d of list) {
      if (n >= want) break;
      signal?.throwIfAborted();
      const ids = model.tokenizer.tokenize(d.text, { special: false, addEos: false });
      outDocs.push(Int32Array.from(ids));
      n += ids.length;
      if (Date.now() - last > 20) {
        emit({ phase: 'tokenize', tokens: 0, tokensBudget: tokens, elapsedSeconds: (Date.now() - t0) / 1000, budgetSeconds: minutes * 60,
          tokensPerSecond: 0, trainLoss: -1, validationLoss: -1, validationAccuracy: -1 });
        await yieldToLoop();
        last = Date.now();
      }
    }
    return outDocs;
  };
  const valTok = await tokenize(valDocs, wantVal);
  const trainTok = await tokenize(trainDocs, wantTrain);
  signal?.throwIfAborted();

  const job = binding().trainDrafter(native, {
    ...kindOptions, out, validationPositions: valPositions, seconds: minutes * 60, tokens, threads, seed, train: trainTok, validation: valTok,
  }, (p) => emit(p as Omit<TrainProgress, 'etaSeconds'>));
  const onAbort = () => job.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const untrack = model.trackJob({ abort: job.abort, done: job.promise });
  try {
    const r = await job.promise;
    return {
      common: {
        out: r.out,
        tokens: r.tokens,
        steps: r.steps,
        featureTokens: r.featureTokens,
        seconds: r.seconds,
        corpusDocuments: trainDocs.length,
        validationDocuments: nVal,
        validationPositions: r.validationPositions,
        validationLossBefore: r.validationLossBefore,
        validationLossAfter: r.validationLossAfter,
        validationAccuracyBefore: r.validationAccuracyBefore,
        validationAccuracyAfter: r.validationAccuracyAfter,
      },
      native: r,
    };
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw fromNative(err);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    untrack();
  }
}

export interface TrainCoprocessorOptions {
  /** Text files, directories of them (recursively), or JSONL files with a `text` field per line. */
  corpus: string | string[];
  /** The coprocessor file to write (GGUF, architecture 'specdec-coprocessor'; a temporary file, then renamed). */
  out: string;
  /** Time budget in minutes (at least one of minutes and tokens). */
  minutes?: number;
  /** Token budget: ahead tokens trained on. */
  tokens?: number;
  /** N_L, the latent embeddings per augmentation (default 16, 1..256). */
  latents?: number;
  /** N_A, the tokens after each augmentation point whose loss trains it (default 16, 1..256). */
  ahead?: number;
  /** Rank of the adapters on each layer's matrices (default 8, 1..256). */
  rank?: number;
  /** Augmentation points per training window, trained in one pass (default 8, 1..64). */
  points?: number;
  /** Tokens per training window (default 256; at most the model's context less the latents). */
  sequenceLength?: number;
  /** AdamW learning rate (default 1e-3, decaying linearly to 10 % over the budget). */
  learningRate?: number;
  /** Share of the corpus's documents held out for validation (default 0.05). */
  validationFraction?: number;
  /** Held-out ahead tokens (default 1024: windows of `points` × `ahead` of them). */
  validationPositions?: number;
  seed?: number;
  threads?: number;
  onProgress?: (p: TrainProgress) => void;
  signal?: AbortSignal;
}

export interface CoprocessorTrainReport extends CommonReport {
  /** The held-out ahead tokens' mean cross-entropy: validationLossBefore / After with the coprocessor (before: as initialised). */
  latents: number;
  /** The same tokens without augmentation (the frozen model alone). */
  validationLossBase: number;
  /** The negative control: the latents in the cache but hidden from the ahead tokens (differs from the base only by the positions the latents take). */
  validationLossControl: number;
}

const COPROC_OPTIONS = [
  'corpus', 'out', 'minutes', 'tokens', 'latents', 'ahead', 'rank', 'points', 'sequenceLength', 'learningRate',
  'validationFraction', 'validationPositions', 'seed', 'threads', 'onProgress', 'signal',
] as const;

/**
 * Trains a KV-cache coprocessor for `model` (README, "KV-cache coprocessor"): low-rank adapters on
 * the model's layers and N_L soft tokens, trained with the frozen model's language-model loss on the
 * `ahead` tokens after augmentation points. Writes `out` for generate's `coprocessor`, Session.augment()
 * and Session.perplexity().
 */
export async function trainCoprocessor(model: Model, options: TrainCoprocessorOptions): Promise<CoprocessorTrainReport> {
  model.nativeModel();
  const o = checkObject(options, 'trainCoprocessor options');
  rejectUnknown(o, COPROC_OPTIONS, 'trainCoprocessor');
  const latents = optNumber(o, 'latents', 16, 1, 256, true);
  const ahead = optNumber(o, 'ahead', 16, 1, 256, true);
  const rank = optNumber(o, 'rank', 8, 1, 256, true);
  const points = optNumber(o, 'points', 8, 1, 64, true);
  const maxSeq = model.info.contextLength - latents;
  if (maxSeq < ahead + 5) throw new InvalidOptionError(`the model's context (${model.info.contextLength}) is too short for ${latents} latents and ${ahead} ahead tokens`);
  const seqLen = optNumber(o, 'sequenceLength', Math.min(256, maxSeq), ahead + 5, maxSeq, true);
  const learningRate = optNumber(o, 'learningRate', 1e-3, 1e-7, 1);
  const valPositions = optNumber(o, 'validationPositions', 1024, points * ahead, 1 << 20, true);
  const r = await runTraining(model, o, valPositions, {
    kind: 'coprocessor', latents, ahead, rank, points, sequenceLength: seqLen, learningRate,
  });
  return {
    ...r.common,
    latents,
    validationLossBase: r.native.validationLossBase,
    validationLossControl: r.native.validationLossControl,
  };
}
