/**
 * Finds and loads the native addon. Order: SPECDEC_BINDING (explicit path), the local
 * build (build/Release), then prebuilds/<platform>-<arch>/ (the portable binary an installed
 * package carries). Every failure is reported with what to do about it.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NativeBindingError } from './errors';

/** The shape of the native module (native/addon). Internal. */
export interface NativeModelInfo {
  architecture: string; parameterCount: number; sizeBytes: number; weightType: string;
  contextLength: number; vocabSize: number; embeddingLength: number; layerCount: number;
  headCount: number; headCountKv: number; feedForwardLength: number; ropeFreqBase: number;
  ropeScaling: string; tiedEmbeddings: boolean; backend: 'cpu' | 'cuda' | 'metal' | 'rpc'; device: string; cpuKernels: string;
}
export interface NativeModel { info(): NativeModelInfo; dispose(): void }
/** What 'auto' learnt in a session (Session.saveAutoMemory; lib/session.ts checks it on load). */
export interface AutoMemory {
  version: 2;
  /** The thread count its verify costs were measured at. */
  threads: number;
  /** Verify cost (ms) of a pass over n tokens at index n (1 .. 256; index 0 unused), and how often each was measured (0: not). */
  verifyMs: number[];
  verifySeen: number[];
  steps: number;
  /**
   * Per drafter ('draft', 'medusa', 'eagle', 'chimera', 'rasd', 'aded'), and per retrieval drafter and class of
   * the depth it proposed ('rasd@0' .. 'rasd@4', 'aded@0' .. 'aded@4': depth 1, 2-3, 4-7, 8-15, 16+): at each
   * depth k, decayed counts of drafts whose k-th token was checked (`tried[k]`) and accepted (`accepted[k]`);
   * draft ms per token, a draft model's catching up with the sequence (ms per token when a few, one at a time;
   * ms per catch-up when more, in a batch), fill (nodes / budget),
   * depth (tree depth / nodes), observations; on a drafter's own entry, the calibration: what its chosen steps
   * were expected to give and gave (decayed sums of tokens and ms).
   */
  drafters: Record<string, {
    tried: number[]; accepted: number[]; msPerToken: number; catchUpMsPerToken: number; catchUpBatchMs: number; fill: number; depth: number; n: number;
    predictedTokens: number; realizedTokens: number; predictedMs: number; realizedMs: number;
  }>;
}

export interface NativeStepResult {
  tokens: Int32Array;
  done: boolean;
  stats: {
    promptTokens: number; promptTokensReused: number; generatedTokens: number;
    prefillMs: number; decodeMs: number; forwardPasses: number;
    draftedTokens: number; acceptedTokens: number; verifyPasses: number; treeCompactions: number; draftMs: number; verifyMs: number;
    stopReason: 'none' | 'eos' | 'maxTokens' | 'contextFull' | 'abort';
    augmentMs: number; latentCells: number;
    ead?: {
      switches: number; largeEvaluated: number; smallEvaluated: number; smallPromptTokens: number;
      largeMs: number; smallMs: number; computeSaved: number;
    };
    auto?: { plainSteps: number; steps: Record<string, number> };
  };
  /** 'ead': one letter per token of this step ('L' the target produced it, 'S' the small model). */
  eadSources?: string;
}
export interface NativeBeginParams {
  prompt: Int32Array; maxTokens: number; eog: Int32Array; temperature: number; topK: number; topP: number;
  minP: number; repeatPenalty: number; frequencyPenalty: number; presencePenalty: number; penaltyLastN: number; seed: number;
  method: string; draftMax: number; lookupMaxNgram: number; draftModel?: unknown; corpus?: Int32Array[]; rsdBeam?: boolean;
  headsFile?: string; eadThreshold?: number; eadWindow?: number; eadMinDwell?: number;
  /** method 'lud': the LUD model, k (0: the file's), alpha (< 0: the file's), verify. */
  ludModel?: NativeModel; ludK?: number; ludAlpha?: number; ludVerify?: boolean;
  /** the KV-cache coprocessor at the prompt's end: its file and latents */
  coprocessorFile?: string; coprocessorLatents?: number;
}
export interface NativeTrainReport {
  out: string; tokens: number; featureTokens: number; steps: number; seconds: number; validationPositions: number;
  validationLossBefore: number; validationLossAfter: number; validationAccuracyBefore: number; validationAccuracyAfter: number;
  headAccuracyBefore: number[]; headAccuracyAfter: number[]; tauBefore: number; tauAfter: number;
  validationLossBase: number; validationLossControl: number;
}
export interface NativeSession {
  begin(params: NativeBeginParams): void;
  step(budgetMs: number, maxNew: number): Promise<NativeStepResult>;
  evaluate(tokens: Int32Array, allLogits: boolean): Promise<Float32Array>;
  evaluateHidden(tokens: Int32Array, layers: Int32Array): Promise<{ logits: Float32Array; hidden: Float32Array }>;
  tokens(): Int32Array;
  truncate(n: number): void;
  abort(): void;
  /** The generation is over: frees it (its drafter and draft sessions) now. */
  end(): void;
  setThreads(n: number): void;
  calibrateThreads(candidates: Int32Array): Promise<{ threads: number; msPerToken: number[] }>;
  info(): { contextSize: number; batchSize: number; threads: number; usedTokens: number; latentCells: number };
  dispose(): void;
  augment(file: string, latents?: number): Promise<{ latents: number; ms: number; latentCells: number }>;
  perplexity(tokens: Int32Array, options: { context?: number; every?: number; ahead?: number; file?: string; latents?: number }):
    Promise<{ tokens: number; nll: number; ppl: number; augmentations: number; msPerAugmentation: number }>;
  saveTokenRecycling(): Uint8Array;
  autoMemory(): AutoMemory;
  dropDraftSession(): void;
  setAutoMemory(m: AutoMemory): void;
  loadTokenRecycling(data: Uint8Array): void;
  saveOnline(): Uint8Array;
  loadOnline(data: Uint8Array, draftModel: unknown): void;
  /** Test hook: the online learner's trainable forward pass. */
  _onlineForward(tokens: Int32Array): Float32Array;
  onlineInfo(): { mistakes: number; updates: number; steps: number; lastLoss: number; trainMs: number; windows: number } | null;
  /** Test hook: the entries of the session's ADED table. */
  _adedSize(maxTrigrams?: number): { trigrams: number; bigrams: number; maxTrigrams: number };
  /** Test hook: what the session holds, in bytes. */
  _memory(): { kvBytes: number; computeBytes: number; graphBytes: number };
  /** Test hook: the logits of every row of a verification pass of a tree (nothing committed). */
  _evalTree(tokens: Int32Array, parents: Int32Array): Float32Array;
  _evalTree(tokens: Int32Array, parents: Int32Array, transferFile: string): { logits: Float32Array; pseudo: Float32Array };
}
export interface NativeBinding {
  LoadTask: new (path: string, backend: string, cpuKernels: string, options?: { rpc?: string[]; tensorSplit?: number[]; draft?: boolean }) => { start(onProgress?: (f: number) => void): Promise<NativeModel>; cancel(): void };
  createSession(model: NativeModel, options: { contextSize: number; batchSize: number; threads: number }): Promise<NativeSession>;
  trainDrafter(model: NativeModel, options: Record<string, unknown>, onProgress?: (p: Record<string, unknown>) => void):
    { promise: Promise<NativeTrainReport>; abort(): void };
  devices(): { name: string; description: string; type: string }[];
  buildInfo(): { cuda: boolean; metal: boolean; hardwareConcurrency: number };
  /** ggml's RPC server on `host:port`; blocks the calling thread while it serves (run it in its own process). */
  rpcServe(endpoint: string, threads: number): void;
  /** Test hook: native models alive (not yet freed by their last owner). */
  _liveModels(): number;
  /** Test hook: ggml's own decoding of n values of a ggml type (test/gguf-writer.test.ts). */
  _ggmlDequantize(type: number, bytes: Uint8Array, n: number): Float32Array;
  /** Test hooks of the CPU kernels (test/kernels.test.ts). */
  _kernelIsas(): string[];
  _kernelCheck(isa: string, rows: number, k: number, n: number, seed: number, parts: number, type?: string): {
    mismatches: number; invariantMismatches: number; maxRelDiffDequant: number;
  };
  /** Test hook of the sampler chain (test/sampler-chain.test.ts, bench/sampler.mjs). */
  _samplerDistribution(logits: Float32Array, options: Record<string, number>, history: Int32Array, reps?: number): {
    ids: Int32Array; p: Float32Array; nsPerCall: number; drawn: number;
  };
}

function packageRoot(): string {
  // lib/ (ts-jest) and dist/ (compiled) both sit directly under the package root
  return resolve(__dirname, '..');
}

let cached: NativeBinding | undefined;

export function binding(): NativeBinding {
  if (cached) return cached;
  const root = packageRoot();
  const candidates: string[] = [];
  if (process.env.SPECDEC_BINDING) candidates.push(resolve(process.env.SPECDEC_BINDING));
  candidates.push(join(root, 'build', 'Release', 'specdec.node'));
  const prebuildDir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  // prebuildify --napi names it after the package (specdec.node); older prebuildify and node-gyp-build
  // spell it node.napi.node; any other .node file there comes after these
  candidates.push(join(prebuildDir, 'specdec.node'), join(prebuildDir, 'node.napi.node'));
  if (existsSync(prebuildDir)) {
    for (const f of readdirSync(prebuildDir).sort()) {
      if (f.endsWith('.node') && !candidates.includes(join(prebuildDir, f))) candidates.push(join(prebuildDir, f));
    }
  }
  const failures: string[] = [];
  for (const file of candidates) {
    if (!existsSync(file)) {
      failures.push(`${file}: not found`);
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      cached = require(file) as NativeBinding;
      return cached;
    } catch (err) {
      failures.push(`${file}: ${(err as Error).message}`);
    }
  }
  throw new NativeBindingError(
    `cannot load the specdec native addon. Tried:\n  ${failures.join('\n  ')}\n` +
      'Build it with `npm run build` (needs cmake and a C++17 compiler), or set SPECDEC_BINDING to a specdec.node file.',
  );
}
