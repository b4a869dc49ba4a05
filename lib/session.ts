/** A session: mutable state (KV cache, compute threads) over a model, and generation. */
import { binding, type AutoMemory, type NativeSession, type NativeStepResult } from './binding';
export type { AutoMemory } from './binding';
import {
  BusyError, ContextOverflowError, DisposedError, InvalidOptionError, TokenOutOfRangeError, VocabularyMismatchError, fromNative,
} from './errors';
import { loadModel, type Model } from './model';
import { statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { checkObject, describe, optBoolean, optEnum, optNumber, optSignal, rejectUnknown } from './options';
import { availableCpus, defaultThreads, threadCandidates } from './threads';
import { Utf8StreamDecoder } from './tokenizer';

export interface SessionOptions {
  /** KV cache size in tokens (default: the model's training context, at most 4096). */
  contextSize?: number;
  /** Prompt tokens evaluated per forward pass during prefill (default 512). */
  batchSize?: number;
  /**
   * Compute threads (default: the model's `threads`, else one per available CPU minus one for the
   * event loop, 1 to 8), at most the available CPUs (a larger count is lowered to it; `info.threads`
   * says what is used). 'auto' times 1, 2, 4, ... threads at creation and takes the fastest.
   */
  threads?: number | 'auto';
  /**
   * The KV-cache coprocessor for every generate() on this session that does not give its own
   * (GenerateOptions.coprocessor; `coprocessor: null` there turns it off for one generation).
   */
  coprocessor?: { file: string; latents?: number; at?: 'prompt-end' };
}

/**
 * Decoding methods (README, "Methods"). Every speculative method verifies its draft tree in one
 * forward pass and is lossless: greedy output equals autoregressive output token for token, and
 * sampling follows the same distribution.
 * - 'autoregressive': one token per forward pass.
 * - 'lookup': prompt lookup, drafts copied from earlier n-gram matches in the prompt and output.
 * - 'draft': a smaller model with the same vocabulary (`draft: { model }`) drafts a chain, with
 *   branches where it is unsure (greedy).
 * - 'rsd': Recursive Speculative Decoding: the draft model's tree, each node's children sampled
 *   without replacement (Gumbel-top-k), verified by recursive rejection sampling (`draft: { model }`).
 * - 'token-recycling': a tree filled from the session's adjacency matrix of the target's recent
 *   candidate tokens (Session.saveTokenRecycling / loadTokenRecycling keep it).
 * - 'aded': a tree from a tri-gram table of the target's outputs, learnt online (kept by the session).
 * - 'rasd': a retrieval tree from the context and `retrieval: { corpus }`, pruned by and fused with
 *   the draft model's tree when `draft: { model }` is given.
 * - 'medusa': Medusa heads trained for this model (`heads: { file }`, from trainDrafter()) draft a
 *   tree from the target's own last hidden state, taken from the verification pass itself.
 * - 'eagle': an EAGLE-3 head in llama.cpp's `eagle3` GGUF layout (`heads: { file }`) drafts a dynamic
 *   tree (EAGLE-2) from the target's hidden states of three layers, tapped from its own passes.
 * - 'chimera': a Chimera drafter trained for this model (`heads: { file }`, from trainDrafter kind
 *   'chimera'): a trigram encoder and one full-context layer over the target's hidden states (tapped
 *   from its own passes) with residual decoding heads draft a dynamic tree.
 * - 'hidden-transfer': Hidden Transfer maps trained for this model (`heads: { file }`, from trainDrafter
 *   kind 'hidden-transfer'): at a middle layer, linear maps of a row's hidden state become pseudo rows
 *   of the next positions inside the target's own verification pass, decoded by its output head: the
 *   next draft comes out of the pass that verifies the last one (no drafter pass, no second model).
 * - 'auto': picks the drafter (retrieval from the context, aded, the draft model and the heads
 *   when given) and the tree size with the best measured tokens per second each step, or plain
 *   decoding when speculation loses.
 *
 * Lossy methods (`stats.lossless` false) give up fidelity to the target for speed:
 * - 'ead': Entropy Adaptive Decoding: the small model (`draft: { model }`) writes while the rolling
 *   mean entropy of the next-token distribution stays below `ead.threshold`, the target takes over
 *   above it. The output is not the target's; `stats.ead` says how much of it the target wrote.
 * - 'lud': Lexical Unit Decoding with a LUD model of this model (`lud: { file }`, from trainDrafter
 *   kind 'lud'): k placeholders appended to the context give the next k + 1 tokens in one pass; the
 *   next token and the confident run after it are emitted unverified (lossy, the default). With
 *   `lud: { verify: true }` they are a draft the target verifies instead, and 'lud' is lossless.
 */
export const METHODS = ['autoregressive', 'lookup', 'draft', 'rsd', 'token-recycling', 'aded', 'rasd', 'medusa', 'eagle', 'chimera', 'hidden-transfer', 'auto', 'ead', 'lud'] as const;
/**
 * Methods whose output is not the target's own (greedy) or distribution (sampling): 'ead', and 'lud'
 * unless `lud.verify` (stats.lossless says it for each run).
 */
export const LOSSY_METHODS: readonly string[] = ['ead', 'lud'];
/** Methods that need `draft: { model }` ('rasd' and 'auto' use one when given). */
const NEEDS_DRAFT_MODEL: readonly string[] = ['draft', 'rsd', 'ead'];
const USES_DRAFT_MODEL: readonly string[] = ['draft', 'rsd', 'rasd', 'auto', 'ead'];
/** EAD defaults (README, "Entropy Adaptive Decoding"): chosen by bench/ead.mjs on the code pair. */
export const EAD_DEFAULTS = { threshold: 0.5, window: 5, minDwell: 1 } as const;
/** Methods that use `heads: { file }` ('medusa', 'eagle' and 'chimera' need it, 'auto' uses it when given). */
const USES_HEADS: readonly string[] = ['medusa', 'eagle', 'chimera', 'hidden-transfer', 'auto'];
const NEEDS_HEADS: Readonly<Record<string, string>> = {
  medusa: 'a Medusa head file from trainDrafter()',
  eagle: "an EAGLE-3 head file (llama.cpp's eagle3 layout)",
  chimera: "a Chimera file from trainDrafter() kind 'chimera'",
  'hidden-transfer': "a Hidden Transfer file from trainDrafter() kind 'hidden-transfer'",
};

/** repeatPenalty divides positive logits: 0 would make them infinite and the probabilities NaN. */
function positivePenalty(v: number): number {
  if (!(v > 0)) throw new InvalidOptionError(`option 'repeatPenalty' must be greater than 0 (1 = off), got ${v}`);
  return v;
}
export type Method = (typeof METHODS)[number];
/** How speculative sampling accepts drafts (GenerateOptions.verify). */
export const VERIFY_MODES = ['match', 'rejection'] as const;
export type VerifyMode = (typeof VERIFY_MODES)[number];

export interface GenerateOptions {
  /** Most tokens to generate (default 256). */
  maxTokens?: number;
  /** 0 (default) is greedy decoding; > 0 samples. */
  temperature?: number;
  /** Keep the k most likely tokens (default 40; 0 = off). */
  topK?: number;
  /** Nucleus sampling (default 0.95; 1 = off). */
  topP?: number;
  /** Drop tokens below minP × the top probability (default 0.05; 0 = off). */
  minP?: number;
  /** Repetition penalty over the last penaltyLastN tokens, > 0 (default 1 = off). */
  repeatPenalty?: number;
  /** Subtracted per occurrence (default 0). */
  frequencyPenalty?: number;
  /** Subtracted once if present (default 0). */
  presencePenalty?: number;
  /** How many recent tokens the penalties look at (default 64; -1 = all). */
  penaltyLastN?: number;
  /** RNG seed: the same seed gives the same output (default: random, reported in stats). */
  seed?: number;
  /** Stop when the text contains one of these (the stop string is not included). */
  stop?: string | string[];
  /** Stops at the next step; the iteration rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Decoding method (default 'autoregressive'). */
  method?: Method;
  /** Speculative methods: most draft tokens (tree nodes) verified per forward pass (default 8). */
  draftMax?: number;
  /**
   * Speculative methods, when sampling: how drafts are accepted. 'match' (default): seed-exact, the
   * target draws its own token at each position from a random stream keyed by (seed, position) and
   * the draft nodes equal to its draws are accepted, so the output is exactly the autoregressive
   * sample for the seed whatever the method. 'rejection': recursive rejection sampling, which
   * follows the same distribution (but not the same sample). Greedy decoding is the same either way.
   */
  verify?: 'match' | 'rejection';
  /** Prompt lookup: longest n-gram matched (default 4). */
  lookup?: { maxNgram?: number };
  /** 'draft', 'rsd', 'ead' (required), 'rasd', 'auto' (optional): the draft model (same vocabulary as this session's model). */
  draft?: { model: Model };
  /**
   * 'ead': `threshold` in nats on the rolling mean of the active model's next-token entropy (the
   * target takes over above it, the small model below; default 0.5; -1000 to 1000: a negative one
   * always takes the target, a large one never), `window` steps in that mean (default 5, 1 to 1024),
   * `minDwell` tokens produced between two switches (default 1, at least 1). Defaults: README, "Lossy methods".
   */
  ead?: { threshold?: number; window?: number; minDwell?: number };
  /**
   * 'rsd': how the draft tree is sampled without replacement: 'gumbel-top-k' (default; 2, 2, then 1
   * children per node) or 'beam-search' (Stochastic Beam Search, width 3, 6 levels). Greedy decoding
   * takes the draft's top candidates either way.
   */
  rsd?: { tree?: 'gumbel-top-k' | 'beam-search' };
  /**
   * 'medusa', 'eagle', 'chimera' (required), 'auto' (optional): a head file for this model: Medusa heads
   * or a Chimera drafter from trainDrafter() / `specdec train-drafter`, or an EAGLE-3 head in llama.cpp's
   * `eagle3` layout.
   */
  heads?: { file: string };
  /**
   * 'draft': Online Speculative Decoding. The draft model keeps learning from the target while it
   * drafts: the positions where it was wrong are kept with the target's distribution there, and
   * small distillation steps update the session's own F32 copy of the draft model (the Model object
   * is never written). Lossless: the output is the same as without it. `true` takes the defaults:
   * lr 1e-4 (AdamW), an update every 16 wrong positions, 1 step per update, windows of 128 tokens,
   * a buffer of 64 windows. The learnt state lives in the session across generations (for the same
   * draft model) and can be kept with saveOnline() / loadOnline().
   */
  online?: boolean | { lr?: number; every?: number; steps?: number; window?: number; buffer?: number };
  /**
   * 'lud' (required): Lexical Unit Decoding. `file`: a LUD model of this model (trainDrafter kind
   * 'lud'); `k`: placeholders appended (default: the file's, at most 16); `alpha`: a placeholder's
   * prediction is used while its probability is at least alpha (default: the file's; > 1 uses none);
   * `verify`: the target verifies the predictions (lossless) instead of emitting them unverified
   * (lossy, the default). Lossy mode decodes with the LUD model alone, on its own session: this
   * session's cache is not extended (session.tokens is then a prefix of prompt + output).
   */
  lud?: { file: string; k?: number; alpha?: number; verify?: boolean };
  /** 'rasd': documents (text, or token ids) to retrieve drafts from, besides the context itself. */
  retrieval?: { corpus?: string | (string | ArrayLike<number>)[] };
  /**
   * The KV-cache coprocessor (README, "KV-cache coprocessor"): a file from trainCoprocessor() for this
   * model. `at: 'prompt-end'` (the only point): once the prompt is in the cache, `latents` latent
   * cells (default: the file's, 1 to the file's) go before its last token, which is evaluated again
   * after them; decoding goes on from there. Every method works on the augmented cache, and the
   * speculative ones stay lossless with respect to autoregressive decoding on that same cache.
   * Latent cells are not tokens (not in `tokens`, text or token counts; stats.latentCells says how many).
   */
  coprocessor?: { file: string; latents?: number; at?: 'prompt-end' } | null;
  /** Keep generating past end-of-generation tokens (as llama.cpp's --ignore-eos; default false). */
  ignoreEos?: boolean;
  /** Parse special tokens written in a text prompt (default false). */
  special?: boolean;
  /** Prepend BOS to a text prompt (default: the model's metadata). */
  addBos?: boolean;
}

export type StopReason = 'eos' | 'maxTokens' | 'stop' | 'contextFull' | 'abort';

/** What Entropy Adaptive Decoding did ('ead' only). */
export interface EadStats {
  /** Tokens produced by the large model (the target), and their share of the generated tokens. */
  largeTokens: number;
  largeShare: number;
  /** Hand-overs between the models, both ways. */
  switches: number;
  /** Tokens each model evaluated while decoding (its own and, on taking over, the other's since it last ran). */
  largeEvaluated: number;
  smallEvaluated: number;
  /** Prompt tokens the small model evaluated (prompt processing; the target reads the prompt too). */
  smallPromptTokens: number;
  /** Time each model computed (prompt processing included for the small one). */
  largeMs: number;
  smallMs: number;
  /**
   * Decoding compute saved against the target alone, in FLOP-equivalents (a forward pass costs ~2 P
   * FLOPs per token for P parameters): 1 - (P_target × largeEvaluated + P_small × smallEvaluated) /
   * (P_target × (generatedTokens - 1)), the target alone evaluating all tokens but the last (the first
   * follows the prompt). Prompt processing is left out on both sides.
   */
  computeSaved: number;
  /** One letter per generated token: 'L' the large model produced it, 'S' the small one. */
  sources: string;
}

export interface GenerationStats {
  method: Method;
  /**
   * True when the output is exactly the target's (greedy) or follows its distribution (sampling):
   * every method but the lossy ones ('ead', and 'lud' without `lud.verify`). Lossy 'lud':
   * forwardPasses are the LUD model's passes, draftedTokens the placeholder predictions made and
   * acceptedTokens those emitted unverified.
   */
  lossless: boolean;
  promptTokens: number;
  /** Prompt tokens found in the KV cache from the previous generation and not evaluated again. */
  promptTokensReused: number;
  generatedTokens: number;
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  /** Target-model forward passes. */
  forwardPasses: number;
  /** Speculative methods: tokens proposed, tokens accepted, verification passes. */
  draftedTokens: number;
  acceptedTokens: number;
  verifyPasses: number;
  /** Tree drafts: verifications whose accepted path was not the first branch, moved into place in the KV cache. */
  treeCompactions: number;
  /** acceptedTokens / draftedTokens (0 without drafts). */
  acceptanceRate: number;
  /** Mean tokens produced per verification pass, τ = (accepted + verifyPasses) / verifyPasses. */
  meanAcceptedLength: number;
  draftMs: number;
  verifyMs: number;
  threads: number;
  seed: number;
  /** How drafts were accepted when sampling (GenerateOptions.verify). */
  verify: VerifyMode;
  stopReason: StopReason;
  /** `coprocessor`: the augmentation's time (within prefillMs) and the latent cells it added (0 without). */
  augmentMs: number;
  latentCells: number;
  /** 'ead' only. */
  ead?: EadStats;
  /** 'auto' only: its decisions. */
  auto?: AutoStats;
}

/**
 * GenerationStats.auto: what 'auto' decided, step by step. Each speculative step drafts with one
 * drafter, or with none (plain decoding: the step verifies only the token it already has).
 */
export interface AutoStats {
  /** Steps that drafted nothing: speculation was not expected to pay. */
  plainSteps: number;
  /** Steps per drafter, by name ('rasd', 'aded', 'draft', 'medusa', 'eagle', 'chimera'), those offered included with 0. */
  steps: Record<string, number>;
}

/** Session.onlineStats: Online Speculative Decoding's counters. */
export interface OnlineStats {
  /** Positions where the draft was wrong (each kept with the target's distribution). */
  mistakes: number;
  /** Updates made (each `steps` optimizer steps). */
  updates: number;
  steps: number;
  /** Training loss of the last step (soft cross-entropy, nats; -1 before the first). */
  lastLoss: number;
  /** Time spent training, ms (inside the generations' draft time). */
  trainMs: number;
  /** Windows in the buffer. */
  windows: number;
}

export interface GenerationChunk {
  /** New text: complete UTF-8 characters only. */
  text: string;
  /** Token ids generated in this chunk. */
  tokens: number[];
}

const GENERATE_OPTIONS = [
  'maxTokens', 'temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'frequencyPenalty', 'presencePenalty',
  'penaltyLastN', 'seed', 'stop', 'signal', 'method', 'special', 'addBos', 'ignoreEos', 'draftMax', 'verify', 'lookup', 'draft', 'retrieval', 'rsd', 'heads', 'online', 'ead', 'coprocessor',
  'lud',
] as const;

/**
 * @internal Test hook, not part of the API (the package exports only its index, which does not
 * export this): an option keyed by this symbol makes the verifier wrong on purpose (it accepts every
 * draft token), the negative control of the distribution tests.
 */
export const TEST_BIASED_VERIFIER: unique symbol = Symbol('specdec.testBiasedVerifier');

// A step holds a libuv worker for at most about this long; the first is short so the first tokens stream out fast.
const FIRST_STEP_BUDGET_MS = 8;
const STEP_BUDGET_MS = 25;

export class Session {
  readonly model: Model;
  private native: NativeSession | undefined;
  private active: Generation | undefined;
  private inflight: Promise<unknown> | undefined;
  private disposing: Promise<void> | undefined;
  private readonly disposeListeners: (() => void)[] = [];
  // draft models this session drafted with (its native side keeps their session), and how to stop hearing of their disposal
  private readonly draftUsers = new Map<Model, () => void>();
  // method 'lud': the LUD model last loaded, by path, size and modification time
  private lud: { key: string; model: Promise<Model> } | undefined;

  /** @internal */
  static async create(model: Model, options: SessionOptions): Promise<Session> {
    const o = checkObject(options, 'createSession options');
    rejectUnknown(o, ['contextSize', 'batchSize', 'threads', 'coprocessor'], 'createSession');
    if (o.coprocessor !== undefined) {
      const co = checkObject(o.coprocessor, 'coprocessor options');
      rejectUnknown(co, ['file', 'latents', 'at'], 'coprocessor');
      if (typeof co.file !== 'string' || co.file.length === 0) throw new InvalidOptionError(`coprocessor.file must be a path, got ${describe(co.file)}`);
      optEnum(co, 'at', ['prompt-end'] as const, 'prompt-end');
      if (co.latents !== undefined) optNumber({ 'coprocessor.latents': co.latents }, 'coprocessor.latents', 16, 1, 256, true);
    }
    const maxCtx = model.info.contextLength;
    const contextSize = optNumber(o, 'contextSize', Math.min(maxCtx, 4096), 1, 1 << 20, true);
    if (contextSize > maxCtx) {
      throw new InvalidOptionError(`contextSize ${contextSize} is larger than the model's training context ${maxCtx}`);
    }
    const batchSize = optNumber(o, 'batchSize', 512, 1, 8192, true);
    let candidates: number[];
    if (o.threads === 'auto') candidates = threadCandidates();
    // never more compute threads than CPUs: ggml's spinning barriers collapse when oversubscribed
    else if (o.threads !== undefined) candidates = [Math.min(optNumber(o, 'threads', 1, 1, 512, true), availableCpus())];
    else candidates = [Math.min(model.threads ?? defaultThreads(), availableCpus())];
    let native: NativeSession;
    try {
      native = await binding().createSession(model.nativeModel(), {
        contextSize, batchSize: Math.min(batchSize, contextSize), threads: candidates[candidates.length - 1],
      });
      if (candidates.length > 1) await native.calibrateThreads(Int32Array.from(candidates));
    } catch (err) {
      throw fromNative(err);
    }
    const session = new Session(model, native);
    if (o.coprocessor !== undefined) session.coprocessor = { ...(o.coprocessor as { file: string; latents?: number }) };
    return session;
  }

  /** createSession's `coprocessor`: the default of generate()'s. */
  private coprocessor: { file: string; latents?: number } | undefined;

  private constructor(model: Model, native: NativeSession) {
    this.model = model;
    this.native = native;
  }

  /** @internal The LUD model in `file` (method 'lud'), loaded on first use with this model's backend and kernels. */
  async ludModel(file: string): Promise<Model> {
    const path = resolvePath(file);
    let key = path;
    try {
      const st = statSync(path);
      key += `|${st.size}|${st.mtimeMs}`;
    } catch {
      // loadModel reports the missing file (FileNotFoundError)
    }
    if (this.lud?.key !== key) {
      const old = this.lud;
      this.lud = undefined;
      if (old) await (await old.model.catch(() => undefined))?.dispose();
      const info = this.model.info;
      // a model split over RPC servers: its LUD model runs on the local CPU
      const model = loadModel(path, { backend: info.backend === 'rpc' ? 'cpu' : info.backend, cpuKernels: info.cpuKernels === 'ggml' ? 'ggml' : 'specdec' });
      this.lud = { key, model };
      model.catch(() => {
        if (this.lud?.model === model) this.lud = undefined;
      });
    }
    return this.lud!.model;
  }

  /** @internal */
  onDispose(fn: () => void): void {
    this.disposeListeners.push(fn);
  }

  get disposed(): boolean {
    return this.native === undefined || this.disposing !== undefined;
  }

  /** @internal */
  nativeSession(): NativeSession {
    if (!this.native || this.disposing) throw new DisposedError('the session');
    return this.native;
  }

  /**
   * Context size, batch size, threads and how many tokens the KV cache holds. Safe to read at any
   * time: while native work is in flight (a generation's step, evaluate()) it reports the state as it
   * was when that work started.
   */
  get info(): { contextSize: number; batchSize: number; threads: number; usedTokens: number; latentCells: number } {
    return this.nativeSession().info();
  }

  /**
   * The token ids whose K/V the cache holds. Safe to read at any time: while native work is in flight
   * it is the sequence as it was when that work started (never a list a worker is changing).
   */
  get tokens(): number[] {
    return Array.from(this.nativeSession().tokens());
  }

  /**
   * Starts a generation. Nothing runs until it is iterated (`for await`) or `result()` is called.
   * The prompt's longest prefix already in the KV cache is reused.
   */
  generate(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Generation {
    this.nativeSession();
    const o = checkObject(options, 'generate options');
    rejectUnknown(o, GENERATE_OPTIONS, 'generate');
    const method = o.method === undefined ? 'autoregressive' : o.method;
    if (!METHODS.includes(method as Method)) {
      throw new InvalidOptionError(`method must be one of ${METHODS.map((m) => `'${m}'`).join(', ')}, got ${describe(method)}`);
    }
    const special = optBoolean(o, 'special', false);
    const addBos = o.addBos === undefined ? undefined : optBoolean(o, 'addBos', true);
    const promptTokens = this.promptTokens(prompt, special, addBos);
    const contextSize = this.info.contextSize;
    if (promptTokens.length > contextSize) {
      throw new ContextOverflowError(`the prompt has ${promptTokens.length} tokens, more than the context size ${contextSize}`);
    }
    let stop: string[] = [];
    if (o.stop !== undefined) {
      stop = typeof o.stop === 'string' ? [o.stop] : Array.isArray(o.stop) ? (o.stop as unknown[]).map((s) => s as string) : [];
      if ((typeof o.stop !== 'string' && !Array.isArray(o.stop)) || stop.some((s) => typeof s !== 'string' || s.length === 0)) {
        throw new InvalidOptionError(`option 'stop' must be a non-empty string or an array of them, got ${describe(o.stop)}`);
      }
    }
    const seed = o.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : optNumber(o, 'seed', 0, 0, Number.MAX_SAFE_INTEGER, true);
    const params = {
      maxTokens: optNumber(o, 'maxTokens', 256, 0, 1 << 30, true),
      temperature: optNumber(o, 'temperature', 0, 0, 100),
      topK: optNumber(o, 'topK', 40, 0, 1 << 30, true),
      topP: optNumber(o, 'topP', 0.95, 0, 1),
      minP: optNumber(o, 'minP', 0.05, 0, 1),
      repeatPenalty: positivePenalty(optNumber(o, 'repeatPenalty', 1, 0, 100)),
      frequencyPenalty: optNumber(o, 'frequencyPenalty', 0, -100, 100),
      presencePenalty: optNumber(o, 'presencePenalty', 0, -100, 100),
      penaltyLastN: optNumber(o, 'penaltyLastN', 64, -1, 1 << 30, true),
      seed,
    };
    const ignoreEos = optBoolean(o, 'ignoreEos', false);
    const lookup = checkObject(o.lookup, 'lookup options');
    rejectUnknown(lookup, ['maxNgram'], 'lookup');
    const draftOpts = checkObject(o.draft, 'draft options');
    rejectUnknown(draftOpts, ['model'], 'draft');
    let draftModel: unknown;
    if (draftOpts.model !== undefined && !USES_DRAFT_MODEL.includes(method as string)) {
      throw new InvalidOptionError(`method '${method as string}' does not use a draft model; 'draft: { model }' is for ${USES_DRAFT_MODEL.map((m) => `'${m}'`).join(', ')}`);
    }
    if (NEEDS_DRAFT_MODEL.includes(method as string) || draftOpts.model !== undefined) {
      const dm = draftOpts.model as Model | undefined;
      if (!dm || typeof dm !== 'object' || typeof (dm as Model).nativeModel !== 'function') {
        throw new InvalidOptionError(`method '${method as string}' needs \`draft: { model }\`, a model from loadModel()`);
      }
      if (!dm.tokenizer.sameVocabulary(this.model.tokenizer)) {
        throw new VocabularyMismatchError(
          `the draft model ${dm.info.path} (${dm.info.vocabSize} tokens) does not share the vocabulary of ${this.model.info.path} (${this.model.info.vocabSize} tokens)`,
        );
      }
      draftModel = dm.nativeModel();
      // the native session keeps the draft model's session across generations: let go of it when the
      // draft model is disposed, so that disposing it frees it (README, "draft session")
      if (!this.draftUsers.has(dm)) {
        this.draftUsers.set(dm, dm.addDraftUser(() => {
          this.native?.dropDraftSession();
          this.draftUsers.delete(dm);
        }));
      }
    }
    const headsOpts = checkObject(o.heads, 'heads options');
    rejectUnknown(headsOpts, ['file'], 'heads');
    if (o.heads !== undefined && !USES_HEADS.includes(method as string)) {
      throw new InvalidOptionError(`method '${method as string}' does not use heads; 'heads: { file }' is for ${USES_HEADS.map((m) => `'${m}'`).join(', ')}`);
    }
    if (NEEDS_HEADS[method as string] !== undefined && o.heads === undefined) {
      throw new InvalidOptionError(`method '${method as string}' needs \`heads: { file }\`, ${NEEDS_HEADS[method as string]}`);
    }
    if (o.heads !== undefined && (typeof headsOpts.file !== 'string' || headsOpts.file.length === 0)) {
      throw new InvalidOptionError(`heads.file must be a path, got ${describe(headsOpts.file)}`);
    }
    const headsFile = o.heads !== undefined ? (headsOpts.file as string) : undefined;
    let online: { lr: number; every: number; steps: number; window: number; buffer: number } | undefined;
    if (o.online !== undefined && o.online !== false) {
      if (method !== 'draft') throw new InvalidOptionError(`option 'online' is for method 'draft', not '${method as string}'`);
      const on = o.online === true ? {} : checkObject(o.online, 'online options');
      rejectUnknown(on, ['lr', 'every', 'steps', 'window', 'buffer'], 'online');
      const lr = optNumber(on, 'lr', 1e-4, 0, 1);
      if (!(lr > 0)) throw new InvalidOptionError(`online.lr must be > 0, got ${describe(on.lr)}`);
      online = {
        lr,
        every: optNumber(on, 'every', 16, 1, 1 << 20, true),
        steps: optNumber(on, 'steps', 1, 1, 1000, true),
        window: optNumber(on, 'window', 128, 8, 4096, true),
        buffer: optNumber(on, 'buffer', 64, 1, 1 << 16, true),
      };
    }
    const rsdOpts = checkObject(o.rsd, 'rsd options');
    rejectUnknown(rsdOpts, ['tree'], 'rsd');
    if (o.rsd !== undefined && method !== 'rsd') throw new InvalidOptionError("option 'rsd' is for method 'rsd'");
    const rsdTree = optEnum(rsdOpts, 'tree', ['gumbel-top-k', 'beam-search'] as const, 'gumbel-top-k');
    const retrieval = checkObject(o.retrieval, 'retrieval options');
    rejectUnknown(retrieval, ['corpus'], 'retrieval');
    if (o.retrieval !== undefined && method !== 'rasd') throw new InvalidOptionError("option 'retrieval' is for method 'rasd'");
    let corpus: Int32Array[] | undefined;
    if (retrieval.corpus !== undefined) {
      const docs = typeof retrieval.corpus === 'string' ? [retrieval.corpus] : retrieval.corpus;
      if (!Array.isArray(docs)) throw new InvalidOptionError(`retrieval.corpus must be a string or an array of strings / token arrays, got ${describe(retrieval.corpus)}`);
      corpus = docs.map((d, i) => {
        if (typeof d === 'string') return Int32Array.from(this.model.tokenize(d, { addBos: false }));
        if (d && typeof (d as ArrayLike<number>).length === 'number') {
          const t = Int32Array.from(d as ArrayLike<number>);
          const bad = t.findIndex((x, j) => x !== (d as ArrayLike<number>)[j] || x < 0 || x >= this.model.info.vocabSize);
          if (bad >= 0) throw new TokenOutOfRangeError(`retrieval.corpus[${i}][${bad}] is not a token id in [0, ${this.model.info.vocabSize})`);
          return t;
        }
        throw new InvalidOptionError(`retrieval.corpus[${i}] must be a string or an array of token ids, got ${describe(d)}`);
      });
    }
    const eadOpts = checkObject(o.ead, 'ead options');
    rejectUnknown(eadOpts, ['threshold', 'window', 'minDwell'], 'ead');
    if (o.ead !== undefined && method !== 'ead') throw new InvalidOptionError("option 'ead' is for method 'ead'");
    const ead = {
      eadThreshold: optNumber({ 'ead.threshold': eadOpts.threshold }, 'ead.threshold', EAD_DEFAULTS.threshold, -1000, 1000),
      eadWindow: optNumber({ 'ead.window': eadOpts.window }, 'ead.window', EAD_DEFAULTS.window, 1, 1024, true),
      eadMinDwell: optNumber({ 'ead.minDwell': eadOpts.minDwell }, 'ead.minDwell', EAD_DEFAULTS.minDwell, 1, 1 << 20, true),
    };
    const ludOpts = checkObject(o.lud, 'lud options');
    rejectUnknown(ludOpts, ['file', 'k', 'alpha', 'verify'], 'lud');
    if (o.lud !== undefined && method !== 'lud') throw new InvalidOptionError("option 'lud' is for method 'lud'");
    if (method === 'lud' && (typeof ludOpts.file !== 'string' || ludOpts.file.length === 0)) {
      throw new InvalidOptionError(`method 'lud' needs \`lud: { file }\`, a LUD model from trainDrafter(model, { kind: 'lud' }); got ${describe(ludOpts.file)}`);
    }
    const ludAlpha = ludOpts.alpha === undefined ? -1 : optNumber(ludOpts, 'alpha', 0.8, 0, 100);
    if (ludOpts.alpha !== undefined && !(ludAlpha > 0)) throw new InvalidOptionError(`lud.alpha must be > 0, got ${describe(ludOpts.alpha)}`);
    const ludK = optNumber(ludOpts, 'k', 0, 1, 16, true);
    const ludVerify = optBoolean(ludOpts, 'verify', false);
    // this generation's coprocessor: its own option, else the session's (null: none)
    const coOpt = o.coprocessor === undefined ? this.coprocessor : o.coprocessor === null ? undefined : o.coprocessor;
    const coOpts = checkObject(coOpt, 'coprocessor options');
    rejectUnknown(coOpts, ['file', 'latents', 'at'], 'coprocessor');
    if (coOpt !== undefined && (typeof coOpts.file !== 'string' || coOpts.file.length === 0)) {
      throw new InvalidOptionError(`coprocessor.file must be a path, got ${describe(coOpts.file)}`);
    }
    optEnum(coOpts, 'at', ['prompt-end'] as const, 'prompt-end');
    if (coOpt !== undefined && method === 'lud' && !ludVerify) {
      throw new InvalidOptionError("a coprocessor augments this session's cache; lossy 'lud' decodes on the LUD model's own session (use lud: { verify: true })");
    }
    const coprocessorLatents = coOpts.latents === undefined ? undefined : optNumber({ 'coprocessor.latents': coOpts.latents }, 'coprocessor.latents', 16, 1, 256, true);
    const spec = {
      ...ead,
      coprocessorFile: coOpt !== undefined ? resolvePath(coOpts.file as string) : undefined,
      coprocessorLatents,
      method: method as string,
      ludFile: method === 'lud' ? (ludOpts.file as string) : undefined,
      ludK,
      ludAlpha,
      ludVerify,
      draftModel,
      corpus,
      rsdBeam: rsdTree === 'beam-search',
      headsFile,
      online,
      draftMax: o.draftMax === undefined ? 0 : optNumber(o, 'draftMax', 8, 1, 255, true),
      verify: optEnum(o, 'verify', VERIFY_MODES, 'match'),
      lookupMaxNgram: optNumber(lookup, 'maxNgram', 4, 1, 64, true),
      // test only: the negative control of the distribution test (a wrong verifier)
      _testBiasedVerifier: (o as Record<PropertyKey, unknown>)[TEST_BIASED_VERIFIER] === true,
    };
    return new Generation(this, promptTokens, { ...params, ...spec }, stop, optSignal(o), method as Method, ignoreEos);
  }

  private promptTokens(prompt: string | ArrayLike<number>, special: boolean, addBos: boolean | undefined): number[] {
    if (typeof prompt === 'string') {
      const toks = this.model.tokenizer.tokenize(prompt, { special, addBos, addEos: false });
      if (toks.length === 0) throw new InvalidOptionError('the prompt is empty: it tokenizes to no tokens');
      return toks;
    }
    if (prompt === null || typeof prompt !== 'object' || typeof (prompt as ArrayLike<number>).length !== 'number') {
      throw new InvalidOptionError(`the prompt must be a string or an array of token ids, got ${describe(prompt)}`);
    }
    const n = this.model.info.vocabSize;
    const toks = Array.from(prompt as ArrayLike<number>);
    if (toks.length === 0) throw new InvalidOptionError('the prompt is empty: give at least one token');
    toks.forEach((t, i) => {
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= n) {
        throw new TokenOutOfRangeError(`prompt token ${i} (${describe(t)}) is not a token id in [0, ${n})`);
      }
    });
    return toks;
  }

  /**
   * Appends tokens to the sequence and returns logits: of the last token, or of every
   * token ([n][vocab] row-major) with `allLogits`. Every row equals what one-token decoding
   * of that token gives, bit for bit.
   */
  async evaluate(tokens: ArrayLike<number>, options: { allLogits?: boolean } = {}): Promise<Float32Array> {
    const native = this.nativeSession();
    const toks = this.promptTokens(tokens, false, undefined);
    return this.runNative(() => native.evaluate(Int32Array.from(toks), options.allLogits === true));
  }

  /**
   * Appends tokens like evaluate() and returns, besides the logits of every token ([n][vocab]),
   * the hidden states of the chosen layers: `hidden` is [n][layers.length][embeddingLength],
   * where layer l < layerCount is the input of layer l (the residual stream) and l = layerCount
   * the last layer's output before the output norm. Asking for hidden states changes no bit of
   * the logits.
   */
  async evaluateHidden(tokens: ArrayLike<number>, options: { layers: number[] }): Promise<{ logits: Float32Array; hidden: Float32Array }> {
    const native = this.nativeSession();
    const o = checkObject(options, 'evaluateHidden options');
    rejectUnknown(o, ['layers'], 'evaluateHidden');
    const nLayer = this.model.info.layerCount;
    const layers = o.layers;
    if (!Array.isArray(layers) || layers.length === 0 || layers.some((l) => !Number.isInteger(l) || l < 0 || l > nLayer)) {
      throw new InvalidOptionError(`option 'layers' must be a non-empty array of layer indices in [0, ${nLayer}], got ${describe(layers)}`);
    }
    const toks = this.promptTokens(tokens, false, undefined);
    return this.runNative(() => native.evaluateHidden(Int32Array.from(toks), Int32Array.from(layers as number[])));
  }

  /** One native evaluation: the session is busy meanwhile, dispose() waits for it, errors are typed. */
  private async runNative<T>(start: () => Promise<T>): Promise<T> {
    this.claim();
    try {
      return await this.track(start());
    } catch (err) {
      throw fromNative(err);
    } finally {
      this.active = undefined;
    }
  }

  /**
   * Augments the KV cache with the coprocessor in `file` (trainCoprocessor() for this model): the
   * coprocessor reads the cache before the last token, its `latents` latent embeddings (default: the
   * file's; 1 to the file's) are evaluated by the model into latent cells there, and the last token is
   * evaluated again after them. The next generate() whose prompt goes on from the session's tokens
   * keeps them (another prompt drops them, as truncate() below them does). Latent cells are not
   * tokens: `tokens` does not show them, `info.latentCells` counts them. Resolves with the time taken.
   */
  async augment(options: { file: string; latents?: number }): Promise<{ latents: number; ms: number; latentCells: number }> {
    const native = this.nativeSession();
    const o = checkObject(options, 'augment options');
    rejectUnknown(o, ['file', 'latents'], 'augment');
    if (typeof o.file !== 'string' || o.file.length === 0) throw new InvalidOptionError(`augment: file must be a path, got ${describe(o.file)}`);
    const latents = o.latents === undefined ? undefined : optNumber(o, 'latents', 16, 1, 256, true);
    if (this.tokens.length === 0) throw new InvalidOptionError('augment() needs at least one token in the session (evaluate or generate first)');
    return this.runNative(() => native.augment(resolvePath(o.file as string), latents));
  }

  /**
   * Perplexity of `tokens` (text or token ids) under this session's model: chunks of `context` tokens
   * (default: the session's context) each from an empty cache. Plain: every prediction in a chunk is
   * scored. With `augmentEvery`: only the `ahead` tokens (default 16) after each point every
   * `augmentEvery` tokens are; with `coprocessor` the cache is augmented at each point first (its
   * latents after the point's prefix), without one the same tokens are scored plainly, so the two
   * compare. The session's cache is cleared.
   */
  async perplexity(tokens: string | ArrayLike<number>, options: {
    context?: number; augmentEvery?: number; ahead?: number; coprocessor?: { file: string; latents?: number };
  } = {}): Promise<{ tokens: number; nll: number; ppl: number; augmentations: number; msPerAugmentation: number }> {
    const native = this.nativeSession();
    const o = checkObject(options, 'perplexity options');
    rejectUnknown(o, ['context', 'augmentEvery', 'ahead', 'coprocessor'], 'perplexity');
    const toks = typeof tokens === 'string' ? this.model.tokenize(tokens) : this.promptTokens(tokens, false, undefined);
    const co = checkObject(o.coprocessor, 'coprocessor options');
    rejectUnknown(co, ['file', 'latents'], 'coprocessor');
    if (o.coprocessor !== undefined && (typeof co.file !== 'string' || co.file.length === 0)) {
      throw new InvalidOptionError(`coprocessor.file must be a path, got ${describe(co.file)}`);
    }
    const every = optNumber(o, 'augmentEvery', o.coprocessor !== undefined ? 64 : 0, 0, 1 << 20, true);
    if (o.coprocessor !== undefined && every === 0) throw new InvalidOptionError('a coprocessor needs augmentEvery >= 1');
    const params: { context?: number; every?: number; ahead?: number; file?: string; latents?: number } = {
      context: optNumber(o, 'context', 0, 0, 1 << 20, true),
      every,
      ahead: optNumber(o, 'ahead', 16, 1, 8192, true),
    };
    if (o.coprocessor !== undefined) {
      params.file = resolvePath(co.file as string);
      if (co.latents !== undefined) params.latents = optNumber({ 'coprocessor.latents': co.latents }, 'coprocessor.latents', 16, 1, 256, true);
    }
    return this.runNative(() => native.perplexity(Int32Array.from(toks), params));
  }

  /** Drops the cached tokens at and after position n (0 clears the session), with the latent cells after token n - 1. */
  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0) throw new InvalidOptionError(`truncate(n): n must be a non-negative integer, got ${describe(n)}`);
    if (this.active) throw new BusyError('the session is generating');
    this.nativeSession().truncate(n);
  }

  /**
   * What 'auto' has learnt in this session (the verify cost per tree size at its thread count, each
   * drafter's acceptance histogram, draft cost and fill), as plain JSON-able data. Load it into a later
   * session of the same model (and draft model or heads) with loadAutoMemory() so that 'auto' starts from
   * it instead of its priors: the CLI keeps one per model pair and machine in a cache file this way.
   */
  saveAutoMemory(): AutoMemory {
    if (this.active || this.inflight) throw new BusyError('the session is generating');
    try {
      return this.nativeSession().autoMemory();
    } catch (err) {
      throw fromNative(err);
    }
  }

  /** Replaces what 'auto' has learnt in this session with saveAutoMemory()'s data (checked: InvalidOptionError). */
  loadAutoMemory(data: AutoMemory): void {
    checkAutoMemory(data);
    if (this.active || this.inflight) throw new BusyError('the session is generating');
    try {
      this.nativeSession().setAutoMemory(data);
    } catch (err) {
      throw fromNative(err);
    }
  }

  /**
   * The session's Token Recycling matrix (the top candidates the target last predicted after each
   * token, n_vocab × 8 int32 plus a 16-byte header), to be loaded later into a session of a model
   * with the same vocabulary.
   */
  saveTokenRecycling(): Uint8Array {
    if (this.active || this.inflight) throw new BusyError('the session is generating');
    return new Uint8Array(this.nativeSession().saveTokenRecycling());
  }

  /** Replaces the session's Token Recycling matrix with one from saveTokenRecycling(). */
  loadTokenRecycling(data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) throw new InvalidOptionError(`loadTokenRecycling(data): data must be a Uint8Array, got ${describe(data)}`);
    if (this.active || this.inflight) throw new BusyError('the session is generating');
    try {
      this.nativeSession().loadTokenRecycling(data);
    } catch (err) {
      throw fromNative(err);
    }
  }

  /**
   * Online Speculative Decoding's learnt state (`online` on method 'draft'): the session's copy of
   * the draft model's weights, F32 after a header naming the model's shape (about 4 bytes per
   * parameter). Load it into a session with loadOnline() to go on from there.
   */
  saveOnline(): Uint8Array {
    if (this.active || this.inflight) throw new BusyError('the session is generating');
    try {
      return new Uint8Array(this.nativeSession().saveOnline());
    } catch (err) {
      throw fromNative(err);
    }
  }

  /** Takes a state from saveOnline() for this draft model: its next `online` generations draft and learn from it. */
  loadOnline(data: Uint8Array, draftModel: Model): void {
    if (!(data instanceof Uint8Array)) throw new InvalidOptionError(`loadOnline(data, draftModel): data must be a Uint8Array, got ${describe(data)}`);
    if (!draftModel || typeof draftModel !== 'object' || typeof (draftModel as Model).nativeModel !== 'function') {
      throw new InvalidOptionError('loadOnline(data, draftModel): draftModel must be a model from loadModel()');
    }
    if (this.active || this.inflight) throw new BusyError('the session is generating');
    try {
      this.nativeSession().loadOnline(data, draftModel.nativeModel());
    } catch (err) {
      throw fromNative(err);
    }
  }

  /** What online learning has done in this session so far (null before any `online` generation or loadOnline()). */
  get onlineStats(): OnlineStats | null {
    if (this.disposed) return null;
    return this.nativeSession().onlineInfo() as OnlineStats | null;
  }

  /** @internal marks the session busy (one generation or evaluation at a time) */
  claim(gen?: Generation): void {
    if (this.active || this.inflight) throw new BusyError('the session is already generating; wait for it or abort it');
    this.active = gen ?? (true as unknown as Generation);
  }

  /** @internal */
  release(gen: Generation): void {
    if (this.active === gen) this.active = undefined;
  }

  /** @internal keeps the in-flight native promise so that dispose() can wait for it */
  async track<T>(p: Promise<T>): Promise<T> {
    this.inflight = p;
    try {
      return await p;
    } finally {
      this.inflight = undefined;
    }
  }

  /** Stops any generation, waits for in-flight native work, frees the KV cache and threads. */
  dispose(): Promise<void> {
    if (!this.native) return Promise.resolve();
    if (this.disposing) return this.disposing;
    const native = this.native;
    native.abort();
    this.disposing = (async () => {
      while (this.inflight) {
        await this.inflight.catch(() => undefined);
      }
      native.dispose();
      this.native = undefined;
      for (const unregister of this.draftUsers.values()) unregister();
      this.draftUsers.clear();
      const lud = this.lud;
      this.lud = undefined;
      if (lud) await (await lud.model.catch(() => undefined))?.dispose();
      for (const fn of this.disposeListeners) fn();
    })();
    return this.disposing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

interface SamplingParams {
  maxTokens: number; temperature: number; topK: number; topP: number; minP: number; repeatPenalty: number;
  frequencyPenalty: number; presencePenalty: number; penaltyLastN: number; seed: number;
  method: string; draftMax: number; verify: VerifyMode; lookupMaxNgram: number; _testBiasedVerifier: boolean; draftModel: unknown; corpus: Int32Array[] | undefined; rsdBeam: boolean;
  headsFile: string | undefined;
  ludFile: string | undefined; ludK: number; ludAlpha: number; ludVerify: boolean;
  coprocessorFile: string | undefined; coprocessorLatents: number | undefined;
  online: { lr: number; every: number; steps: number; window: number; buffer: number } | undefined;
  eadThreshold: number; eadWindow: number; eadMinDwell: number;
}

/** One generate() call: an async iterable of chunks; `stats` is set when it ends. */
export class Generation implements AsyncIterable<GenerationChunk> {
  /** The prompt as token ids. */
  readonly promptTokens: number[];
  /** All text generated so far (stop strings excluded). */
  text = '';
  /** All token ids generated so far. */
  readonly tokens: number[] = [];
  /** Set when the generation has ended (also after an abort or an error). */
  stats: GenerationStats | undefined;

  private started = false;
  /** 'ead': which model produced each token the native loop returned ('L' / 'S'). */
  private eadSources = '';

  /** @internal */
  constructor(
    private readonly session: Session,
    promptTokens: number[],
    private readonly params: SamplingParams,
    private readonly stop: string[],
    private readonly signal: AbortSignal | undefined,
    private readonly method: Method,
    private readonly ignoreEos: boolean,
  ) {
    this.promptTokens = promptTokens;
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerationChunk> {
    if (this.started) throw new InvalidOptionError('a generation can be iterated only once');
    this.started = true;
    return this.run();
  }

  /** Runs the generation to its end and returns the text, tokens and stats. */
  async result(): Promise<{ text: string; tokens: number[]; stats: GenerationStats }> {
    for await (const _ of this) {
      // consume
    }
    return { text: this.text, tokens: this.tokens, stats: this.stats! };
  }

  private async *run(): AsyncGenerator<GenerationChunk> {
    const session = this.session;
    const native = session.nativeSession();
    if (this.signal?.aborted) {
      // nothing ran, but an ended generation has its stats (stopReason 'abort', no tokens)
      this.finish(undefined, 'abort');
      throw this.signal.reason;
    }
    session.claim(this);
    const tokenizer = session.model.tokenizer;
    const decoder = new Utf8StreamDecoder();
    const maxStop = this.stop.reduce((m, s) => Math.max(m, s.length), 0);
    let sent = 0; // characters of this.text already yielded
    let all = ''; // text including held-back characters
    let stopped = false;
    let last: NativeStepResult['stats'] | undefined;
    const onAbort = () => native.abort();
    this.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // a LUD model is loaded (once per file, kept by the session) before the native generation starts
      const ludModel = this.params.ludFile !== undefined ? (await session.ludModel(this.params.ludFile)).nativeModel() : undefined;
      if (this.signal?.aborted) throw this.signal.reason;
      try {
        native.begin({
          prompt: Int32Array.from(this.promptTokens),
          eog: Int32Array.from(this.ignoreEos ? [] : tokenizer.eogTokens),
          ...this.params,
          ludModel,
        });
      } catch (err) {
        throw fromNative(err);  // method set-up: a head file's errors, a vocabulary mismatch, ...
      }
      let budget = FIRST_STEP_BUDGET_MS;
      for (;;) {
        if (session.disposed) throw new DisposedError('the session');
        let r: NativeStepResult;
        try {
          r = await session.track(native.step(budget, 1 << 30));
        } catch (err) {
          if (this.signal?.aborted) throw this.signal.reason;
          throw fromNative(err);
        }
        budget = STEP_BUDGET_MS;
        last = r.stats;
        if (r.eadSources) this.eadSources += r.eadSources;
        const yieldedTokens = this.tokens.length;
        const yieldedText = this.text;
        const chunkTokens: number[] = [];
        for (const t of r.tokens) {
          chunkTokens.push(t);
          this.tokens.push(t);
          all += decoder.push(tokenizer.tokenToBytes(t));
          if (maxStop > 0) {
            const from = Math.max(0, all.length - maxStop - 8);
            let at = -1;
            for (const s of this.stop) {
              const i = all.indexOf(s, Math.max(0, from - s.length));
              if (i >= 0 && (at < 0 || i < at)) at = i;
            }
            if (at >= 0) {
              all = all.slice(0, at);
              stopped = true;
              break;
            }
          }
        }
        if (r.done || stopped) all += stopped ? '' : decoder.flush();
        // hold back a tail that could still become a stop string
        let keep = 0;
        if (!stopped && !r.done && maxStop > 0) {
          for (let k = Math.min(maxStop - 1, all.length); k > 0; k--) {
            const tail = all.slice(all.length - k);
            if (this.stop.some((s) => s.startsWith(tail))) {
              keep = k;
              break;
            }
          }
        }
        const upto = all.length - keep;
        const text = all.slice(sent, upto);
        sent = upto;
        this.text = all.slice(0, sent);
        if (this.signal?.aborted) {
          // this step's chunk is not yielded, so it is not part of the output either: run.tokens and
          // run.text stay what the yielded chunks carried (the cache is cut to match in `finally`)
          this.tokens.length = yieldedTokens;
          this.text = yieldedText;
          this.finish(last, 'abort');
          throw this.signal.reason;
        }
        if (text.length > 0 || chunkTokens.length > 0) yield { text, tokens: chunkTokens };
        if (stopped || r.done) {
          this.text = all;
          this.finish(last, stopped ? 'stop' : (last.stopReason as StopReason));
          return;
        }
      }
    } finally {
      this.signal?.removeEventListener('abort', onAbort);
      // the native generation (its drafter, a draft model's session) is freed now, not at the next generate()
      if (!session.disposed) native.end();
      if (!this.stats) this.finish(last, 'abort');
      try {
        if (!session.disposed) await this.syncCache(native);
      } finally {
        session.release(this);
      }
    }
  }

  /**
   * Makes the session's sequence exactly the prompt plus the returned tokens, whatever stopped the
   * generation: the native loop runs ahead of what is returned (a step's tokens after a stop string,
   * accepted drafts not yet emitted when maxTokens or an abort ends it) and does not evaluate the last
   * token it emits (maxTokens, contextFull). Extra cells are dropped; a missing last token is evaluated
   * (one forward pass), except when the context has no cell left for it (contextFull). A generation
   * that ended inside prompt processing (an abort, maxTokens 0) leaves the prefix it evaluated: the
   * next generate() evaluates the rest, and an abort stays quick.
   */
  private async syncCache(native: NativeSession): Promise<void> {
    const want = this.promptTokens.concat(this.tokens);
    const held = native.tokens();
    let common = 0;
    while (common < held.length && common < want.length && held[common] === want[common]) common++;
    if (common < held.length) native.truncate(common);
    const missing = want.length - common;
    if (missing === 1 && this.tokens.length > 0 && want.length <= native.info().contextSize) {
      try {
        await this.session.track(native.evaluate(Int32Array.from(want.slice(common)), false));
      } catch {
        // an evaluation that fails here (the session disposed under it) leaves a shorter cache: still a
        // prefix of the sequence, and the next generate() evaluates the rest
        if (!this.session.disposed) native.truncate(common);
      }
    }
  }

  private finish(s: NativeStepResult['stats'] | undefined, reason: StopReason): void {
    const promptTokens = this.promptTokens.length;
    const reused = s?.promptTokensReused ?? 0;
    const prefillMs = s?.prefillMs ?? 0;
    const decodeMs = s?.decodeMs ?? 0;
    const generated = this.tokens.length;
    const ead = s?.ead;
    this.stats = {
      method: this.method,
      lossless: !LOSSY_METHODS.includes(this.method) || (this.method === 'lud' && this.params.ludVerify),
      promptTokens,
      promptTokensReused: reused,
      generatedTokens: generated,
      prefillMs,
      decodeMs,
      prefillTokensPerSecond: prefillMs > 0 ? ((promptTokens - reused) * 1000) / prefillMs : 0,
      decodeTokensPerSecond: decodeMs > 0 ? ((s?.generatedTokens ?? generated) * 1000) / decodeMs : 0,
      forwardPasses: s?.forwardPasses ?? 0,
      draftedTokens: s?.draftedTokens ?? 0,
      acceptedTokens: s?.acceptedTokens ?? 0,
      verifyPasses: s?.verifyPasses ?? 0,
      treeCompactions: s?.treeCompactions ?? 0,
      acceptanceRate: s && s.draftedTokens > 0 ? s.acceptedTokens / s.draftedTokens : 0,
      meanAcceptedLength: s && s.verifyPasses > 0 ? (s.acceptedTokens + s.verifyPasses) / s.verifyPasses : 0,
      draftMs: s?.draftMs ?? 0,
      verifyMs: s?.verifyMs ?? 0,
      threads: this.session.disposed ? 0 : this.session.info.threads,
      seed: this.params.seed,
      verify: this.params.verify,
      stopReason: reason,
      augmentMs: s?.augmentMs ?? 0,
      latentCells: s?.latentCells ?? 0,
    };
    if (s?.auto) this.stats.auto = { plainSteps: s.auto.plainSteps, steps: { ...s.auto.steps } };
    if (this.method === 'ead') {
      // per returned token: the native loop may have run ahead of a stop string or an abort
      const sources = this.eadSources.slice(0, generated);
      const largeTokens = sources.split('').filter((c) => c === 'L').length;
      this.stats.ead = {
        largeTokens,
        largeShare: generated > 0 ? largeTokens / generated : 0,
        switches: ead?.switches ?? 0,
        largeEvaluated: ead?.largeEvaluated ?? 0,
        smallEvaluated: ead?.smallEvaluated ?? 0,
        smallPromptTokens: ead?.smallPromptTokens ?? 0,
        largeMs: ead?.largeMs ?? 0,
        smallMs: ead?.smallMs ?? 0,
        computeSaved: ead?.computeSaved ?? 0,
        sources,
      };
    }
  }
}

const AUTO_MODEL_DRAFTERS = ['draft', 'medusa', 'eagle', 'chimera'];
const AUTO_RETRIEVAL_DRAFTERS = ['rasd', 'aded'];
const AUTO_DRAFTER_NAME = new RegExp(`^(?:${AUTO_MODEL_DRAFTERS.join('|')}|(?:${AUTO_RETRIEVAL_DRAFTERS.join('|')})(?:@[0-4])?)$`);

/** Checks saveAutoMemory()'s data before it reaches native code (InvalidOptionError naming what is wrong). */
function checkAutoMemory(m: unknown): asserts m is AutoMemory {
  const bad = (what: string) => { throw new InvalidOptionError(`loadAutoMemory(data): ${what}`); };
  const num = (v: unknown, what: string, max = 1e12) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) bad(`${what} must be a finite number in [0, ${max}], got ${describe(v)}`);
  };
  const numbers = (v: unknown, what: string) => {
    if (!Array.isArray(v) || v.length > 257) bad(`${what} must be an array of at most 257 numbers`);
    (v as unknown[]).forEach((x, i) => num(x, `${what}[${i}]`));
    return v as number[];
  };
  if (typeof m !== 'object' || m === null) return bad(`data must be an object from saveAutoMemory(), got ${describe(m)}`);
  const o = m as Record<string, unknown>;
  if (o.version !== 2) bad(`unsupported version ${describe(o.version)} (expected 2: saved by this version of specdec)`);
  num(o.threads, 'threads', 4096);
  num(o.steps, 'steps', Number.MAX_SAFE_INTEGER);
  const ms = numbers(o.verifyMs, 'verifyMs');
  if (numbers(o.verifySeen, 'verifySeen').length !== ms.length) bad('verifyMs and verifySeen must have the same length');
  if (typeof o.drafters !== 'object' || o.drafters === null || Array.isArray(o.drafters)) bad('drafters must be an object');
  for (const [name, d] of Object.entries(o.drafters as Record<string, unknown>)) {
    if (!AUTO_DRAFTER_NAME.test(name)) {
      bad(`unknown drafter '${name}' (known: ${[...AUTO_MODEL_DRAFTERS, ...AUTO_RETRIEVAL_DRAFTERS].join(', ')}, and ${AUTO_RETRIEVAL_DRAFTERS.map((r) => `${r}@0 .. ${r}@4`).join(', ')})`);
    }
    if (typeof d !== 'object' || d === null) bad(`drafters.${name} must be an object`);
    const x = d as Record<string, unknown>;
    const tried = numbers(x.tried, `drafters.${name}.tried`);
    const accepted = numbers(x.accepted, `drafters.${name}.accepted`);
    if (accepted.length !== tried.length) bad(`drafters.${name}.accepted and .tried must have the same length`);
    accepted.forEach((a, k) => { if (a > tried[k] * (1 + 1e-9)) bad(`drafters.${name}.accepted[${k}] must not exceed tried[${k}]`); });
    num(x.msPerToken, `drafters.${name}.msPerToken`, 1e6);
    num(x.catchUpMsPerToken, `drafters.${name}.catchUpMsPerToken`, 1e6);
    num(x.catchUpBatchMs, `drafters.${name}.catchUpBatchMs`, 1e6);
    num(x.fill, `drafters.${name}.fill`, 1);
    num(x.depth, `drafters.${name}.depth`, 1);
    for (const k of ['predictedTokens', 'realizedTokens', 'predictedMs', 'realizedMs']) num(x[k], `drafters.${name}.${k}`);
    num(x.n, `drafters.${name}.n`);
  }
}
