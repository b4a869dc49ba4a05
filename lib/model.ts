/** The immutable model: weights on a backend, the tokenizer, and the sessions made from it. */
import { binding, type NativeModel } from './binding';
import { DisposedError, InvalidOptionError, fromNative } from './errors';
import { readGguf, ggufString, type GgufFile } from './gguf/reader';
import { checkObject, optBoolean, optEnum, optFunction, optNumber, optSignal, rejectUnknown } from './options';
import { Session, type SessionOptions } from './session';
import { Tokenizer, type DetokenizeOptions } from './tokenizer';

export type Backend = 'auto' | 'cpu' | 'cuda' | 'metal';

export interface LoadModelOptions {
  /** Compute backend. 'auto' (default) takes a compiled-in GPU backend with a device, else the CPU. */
  backend?: Backend;
  /**
   * CPU matrix kernels for Q8_0, Q4_0, Q4_K, Q6_K, F16 and BF16 weights. 'specdec' (default):
   * specdec's batch-invariant kernels (AVX-512 VNNI / AVX-VNNI / AVX2 / NEON dotprod, chosen at run
   * time) for decoding, verification and prompt prefill, which make verifying a batch of draft
   * tokens cost little more than one token; one-token logits then differ from llama.cpp's in the
   * last bits (greedy output identical except at near-ties). 'ggml': ggml's kernels, bit-identical
   * to llama.cpp. Other weight types (F32, Q5_K, ...) and GPU backends always use ggml's kernels.
   */
  cpuKernels?: 'specdec' | 'ggml';
  /**
   * This model will be a draft model (`draft: { model }`): make the Q8_0 copies of its matrices that
   * drafting runs on now, inside loading (its progress and abort), rather than in the first generation
   * that drafts with it, whose time to first token they would lengthen (default false; CPU only).
   */
  draft?: boolean;
  /** Default compute threads for sessions of this model (default: see README, "Threads"). */
  threads?: number;
  /** Cancels the load: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called with the fraction of the weights loaded, 0..1. */
  onProgress?: (fraction: number) => void;
  /**
   * ggml RPC servers ('host:port', `specdec rpc-server` or llama.cpp's rpc-server) that hold the
   * model's layers, split across their devices in order (see README, "Multi-host"); the token
   * embeddings stay on this machine's CPU. Each server is checked first: RpcError with code
   * ERR_RPC_UNREACHABLE or ERR_RPC_PROTOCOL. Goes with backend 'auto' or 'cpu'.
   */
  rpc?: string[];
  /** With `rpc`: each device's share of the layers (default: by the devices' free memory). */
  tensorSplit?: number[];
}

export interface ModelInfo {
  path: string;
  name?: string;
  architecture: string;
  parameterCount: number;
  sizeBytes: number;
  weightType: string;
  contextLength: number;
  vocabSize: number;
  embeddingLength: number;
  layerCount: number;
  headCount: number;
  headCountKv: number;
  feedForwardLength: number;
  ropeFreqBase: number;
  ropeScaling: string;
  tiedEmbeddings: boolean;
  tokenizer: { type: 'spm' | 'bpe'; model: string; preTokenizer: string; bos: number; eos: number; addBos: boolean; eogTokens: number[] };
  backend: 'cpu' | 'cuda' | 'metal' | 'rpc';
  /** The device's name; with `rpc`, each server's device and its layer count. */
  device: string;
  /** Kernels of the Q8_0 matrix products: 'ggml', or 'specdec-<instruction set>' (e.g. 'specdec-avx512-vnni'). */
  cpuKernels: string;
}

export interface TokenizeOptions {
  /** Parse special/control tokens written in the text. Default false. */
  special?: boolean;
  /** Prepend BOS. Default: the model's metadata (add_bos_token). */
  addBos?: boolean;
}

const LOAD_OPTIONS = ['backend', 'cpuKernels', 'draft', 'threads', 'signal', 'onProgress', 'rpc', 'tensorSplit'] as const;

function rpcOptions(o: Record<string, unknown>): { rpc?: string[]; tensorSplit?: number[] } {
  const { rpc, tensorSplit } = o;
  if (rpc !== undefined && (!Array.isArray(rpc) || rpc.length === 0 || rpc.some((e) => typeof e !== 'string' || !/^[^:\s[\]]+:\d{1,5}$/.test(e)))) {
    throw new InvalidOptionError(`option 'rpc' must be a non-empty array of 'host:port' strings, got ${JSON.stringify(rpc)}`);
  }
  if (tensorSplit !== undefined) {
    if (rpc === undefined) throw new InvalidOptionError("option 'tensorSplit' goes with option 'rpc'");
    if (!Array.isArray(tensorSplit) || tensorSplit.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x < 0) || !tensorSplit.some((x) => x > 0)) {
      throw new InvalidOptionError(`option 'tensorSplit' must be an array of finite numbers >= 0, not all 0, got ${JSON.stringify(tensorSplit)}`);
    }
  }
  return { rpc: rpc as string[] | undefined, tensorSplit: tensorSplit as number[] | undefined };
}

export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<Model> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new InvalidOptionError(`loadModel(path): path must be a non-empty string, got ${typeof path}`);
  }
  const o = checkObject(options, 'loadModel options');
  rejectUnknown(o, LOAD_OPTIONS, 'loadModel');
  const backend = optEnum<Backend>(o, 'backend', ['auto', 'cpu', 'cuda', 'metal'], 'auto');
  const cpuKernels = optEnum<'specdec' | 'ggml'>(o, 'cpuKernels', ['specdec', 'ggml'], 'specdec');
  const threads = o.threads === undefined ? undefined : optNumber(o, 'threads', 1, 1, 512, true);
  const signal = optSignal(o);
  const onProgress = optFunction<(f: number) => void>(o, 'onProgress');
  const rpc = rpcOptions(o);
  if (rpc.rpc && backend !== 'auto' && backend !== 'cpu') throw new InvalidOptionError(`option 'rpc' goes with backend 'auto' or 'cpu', got '${backend}'`);
  signal?.throwIfAborted();

  // The header first, in TypeScript: typed errors for bad files, and the tokenizer.
  const file = await readGguf(path);
  signal?.throwIfAborted();
  const tokenizer = Tokenizer.fromGguf(file);

  const draft = optBoolean(o, 'draft', false);
  const task = new (binding().LoadTask)(path, backend, cpuKernels, { ...rpc, draft });
  const onAbort = () => task.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  let native: NativeModel;
  try {
    native = await task.start(onProgress ? (f) => onProgress(f) : undefined);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw fromNative(err);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (signal?.aborted) {
    native.dispose();
    throw signal.reason;
  }
  return new Model(path, file, native, tokenizer, threads);
}

export class Model {
  /** What the model is. */
  readonly info: ModelInfo;
  /** The tokenizer (identical to llama.cpp's for this file). */
  readonly tokenizer: Tokenizer;
  /** Default thread count for sessions, when given at load. */
  readonly threads: number | undefined;

  private native: NativeModel | undefined;
  private readonly sessions = new Set<Session>();
  private readonly jobs = new Set<{ abort(): void; done: Promise<unknown> }>();
  private readonly draftUsers = new Set<() => void>();

  /** @internal */
  constructor(path: string, file: GgufFile, native: NativeModel, tokenizer: Tokenizer, threads: number | undefined) {
    this.native = native;
    this.tokenizer = tokenizer;
    this.threads = threads;
    const n = native.info();
    this.info = {
      path,
      name: ggufString(file, 'general.name'),
      architecture: n.architecture,
      parameterCount: n.parameterCount,
      sizeBytes: n.sizeBytes,
      weightType: n.weightType,
      contextLength: n.contextLength,
      vocabSize: n.vocabSize,
      embeddingLength: n.embeddingLength,
      layerCount: n.layerCount,
      headCount: n.headCount,
      headCountKv: n.headCountKv,
      feedForwardLength: n.feedForwardLength,
      ropeFreqBase: n.ropeFreqBase,
      ropeScaling: n.ropeScaling,
      tiedEmbeddings: n.tiedEmbeddings,
      tokenizer: {
        type: tokenizer.type,
        model: tokenizer.model,
        preTokenizer: tokenizer.preTokenizer,
        bos: tokenizer.bos,
        eos: tokenizer.eos,
        addBos: tokenizer.addBos,
        eogTokens: [...tokenizer.eogTokens].sort((a, b) => a - b),
      },
      backend: n.backend,
      device: n.device,
      cpuKernels: n.cpuKernels,
    };
    if (tokenizer.nVocab !== n.vocabSize) {
      throw new InvalidOptionError(`the tokenizer has ${tokenizer.nVocab} tokens but the model ${n.vocabSize}`);
    }
  }

  get disposed(): boolean {
    return this.native === undefined;
  }

  /** @internal */
  nativeModel(): NativeModel {
    if (!this.native) throw new DisposedError('the model');
    return this.native;
  }

  /** Text to token ids, exactly as llama.cpp tokenizes it. */
  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    this.nativeModel();
    const o = checkObject(options, 'tokenize options');
    rejectUnknown(o, ['special', 'addBos'], 'tokenize');
    return this.tokenizer.tokenize(text, { special: o.special === true, addBos: o.addBos as boolean | undefined, addEos: false });
  }

  /** Token ids to text, exactly as llama.cpp detokenizes them. */
  detokenize(tokens: ArrayLike<number>, options: DetokenizeOptions = {}): string {
    this.nativeModel();
    return this.tokenizer.detokenize(tokens, options);
  }

  /** Creates a session (KV cache, compute threads) over this model. */
  async createSession(options: SessionOptions = {}): Promise<Session> {
    const session = await Session.create(this, options);
    this.sessions.add(session);
    session.onDispose(() => this.sessions.delete(session));
    return session;
  }

  /** @internal long native work on this model (training): aborted and awaited by dispose(); returns the untrack function */
  trackJob(job: { abort(): void; done: Promise<unknown> }): () => void {
    this.jobs.add(job);
    return () => this.jobs.delete(job);
  }

  /**
   * @internal a session that drafts with this model and keeps its draft session: `drop` is called when
   * this model is disposed (the session lets go of it). Returns the unregister function.
   */
  addDraftUser(drop: () => void): () => void {
    this.draftUsers.add(drop);
    return () => this.draftUsers.delete(drop);
  }

  /** Disposes every session of the model (waiting for their in-flight work) and aborts its training jobs, then the weights. */
  async dispose(): Promise<void> {
    if (!this.native) return;
    // sessions of other models that kept a draft session of this one let go of it
    for (const drop of [...this.draftUsers]) drop();
    this.draftUsers.clear();
    for (const j of this.jobs) j.abort();
    await Promise.all([...this.jobs].map((j) => j.done.catch(() => undefined)));
    await Promise.all([...this.sessions].map((s) => s.dispose()));
    this.native.dispose();
    this.native = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}
