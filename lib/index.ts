/**
 * specdec: GGUF language models on ggml from Node.js, token-exact with llama.cpp.
 *
 *   const model = await loadModel(path);
 *   const session = await model.createSession();
 *   for await (const chunk of session.generate('def fib(n):', { maxTokens: 64 })) process.stdout.write(chunk.text);
 */
export { loadModel, Model } from './model';
export type { Backend, LoadModelOptions, ModelInfo, TokenizeOptions } from './model';
export { Session, Generation, METHODS, LOSSY_METHODS, EAD_DEFAULTS, VERIFY_MODES } from './session';
export type { SessionOptions, GenerateOptions, GenerationChunk, GenerationStats, EadStats, AutoStats, AutoMemory, Method, StopReason, OnlineStats, VerifyMode } from './session';
export { trainDrafter, trainCoprocessor, DRAFTER_KINDS } from './train';
export type { TrainDrafterOptions, TrainProgress, TrainReport, DrafterKind, TrainCoprocessorOptions, CoprocessorTrainReport } from './train';
export {
  SpecdecError, ModelFileError, UnsupportedArchitectureError, InvalidOptionError, TokenOutOfRangeError,
  ContextOverflowError, BackendUnavailableError, DisposedError, BusyError, NativeBindingError, VocabularyMismatchError,
  HeadsMismatchError, CoprocessorMismatchError, RpcError,
} from './errors';
export type { SpecdecErrorCode } from './errors';
export { readGguf } from './gguf/reader';
export type { GgufFile, GgufValue, GgufTensorInfo } from './gguf/reader';
export { Tokenizer } from './tokenizer';
import { binding } from './binding';

/** Backends compiled into this build and the devices they see. */
export function backends(): { cuda: boolean; metal: boolean; devices: { name: string; description: string; type: string }[] } {
  const b = binding();
  const info = b.buildInfo();
  return { cuda: info.cuda, metal: info.metal, devices: b.devices() };
}
export { createServer, SpecdecServer, HttpError } from './server';
export type { ServerOptions, ServerDefaults, ChatMessage } from './server';
