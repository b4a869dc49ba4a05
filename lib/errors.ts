/**
 * Typed errors. Every error specdec throws is a SpecdecError with a stable `code`.
 * Native code throws plain errors whose message starts with "[CODE] "; `fromNative`
 * turns them into the matching class.
 */
export type SpecdecErrorCode =
  | 'ERR_FILE_NOT_FOUND'
  | 'ERR_NOT_GGUF'
  | 'ERR_TRUNCATED_FILE'
  | 'ERR_UNSUPPORTED_ARCHITECTURE'
  | 'ERR_MISSING_TENSOR'
  | 'ERR_TENSOR_SHAPE'
  | 'ERR_TENSOR_TYPE'
  | 'ERR_BAD_METADATA'
  | 'ERR_INVALID_OPTION'
  | 'ERR_VOCAB_MISMATCH'
  | 'ERR_HEADS_MISMATCH'
  | 'ERR_COPROCESSOR_MISMATCH'
  | 'ERR_TRAINING_DIVERGED'
  | 'ERR_TOKEN_OUT_OF_RANGE'
  | 'ERR_CONTEXT_OVERFLOW'
  | 'ERR_BACKEND_UNAVAILABLE'
  | 'ERR_DISPOSED'
  | 'ERR_BUSY'
  | 'ERR_ABORTED'
  | 'ERR_NATIVE_BINDING'
  | 'ERR_RPC_UNREACHABLE'
  | 'ERR_RPC_PROTOCOL'
  | 'ERR_RPC_SERVER'
  | 'ERR_INTERNAL';

export class SpecdecError extends Error {
  readonly code: SpecdecErrorCode;
  constructor(code: SpecdecErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The model file is not a valid GGUF model specdec can run (missing, not GGUF, truncated, bad metadata, tensors). */
export class ModelFileError extends SpecdecError {}
/** The architecture in the file is not one specdec implements. */
export class UnsupportedArchitectureError extends ModelFileError {}
/** An option passed by the caller is invalid (wrong type, out of range, unknown value). */
export class InvalidOptionError extends SpecdecError {
  constructor(message: string) {
    super('ERR_INVALID_OPTION', message);
  }
}
/** A draft model's vocabulary differs from the target model's. */
export class VocabularyMismatchError extends SpecdecError {
  constructor(message: string) {
    super('ERR_VOCAB_MISMATCH', message);
  }
}
/** A draft-head file was trained for another target model (hidden size, layer count or vocabulary differ). */
export class HeadsMismatchError extends SpecdecError {
  constructor(message: string) {
    super('ERR_HEADS_MISMATCH', message);
  }
}
/** A coprocessor file was trained for another model (architecture, shape or weights differ). */
export class CoprocessorMismatchError extends SpecdecError {
  constructor(message: string) {
    super('ERR_COPROCESSOR_MISMATCH', message);
  }
}
/** A token id is outside the vocabulary. */
export class TokenOutOfRangeError extends SpecdecError {
  constructor(message: string) {
    super('ERR_TOKEN_OUT_OF_RANGE', message);
  }
}
/** The prompt (plus generation) does not fit the session's context. */
export class ContextOverflowError extends SpecdecError {
  constructor(message: string) {
    super('ERR_CONTEXT_OVERFLOW', message);
  }
}
/** The requested compute backend is not compiled in or has no device. */
export class BackendUnavailableError extends SpecdecError {
  constructor(message: string) {
    super('ERR_BACKEND_UNAVAILABLE', message);
  }
}
/** The object was disposed. */
export class DisposedError extends SpecdecError {
  constructor(what: string) {
    super('ERR_DISPOSED', `${what} has been disposed`);
  }
}
/** The session is already generating. */
export class BusyError extends SpecdecError {
  constructor(message: string) {
    super('ERR_BUSY', message);
  }
}
/** The native addon could not be found or loaded. */
/**
 * A ggml RPC server (loadModel's `rpc`) that cannot be used: ERR_RPC_UNREACHABLE (no connection, or
 * no answer to the handshake), ERR_RPC_PROTOCOL (not a ggml RPC server of a compatible protocol
 * version), ERR_RPC_SERVER (`specdec rpc-server` could not listen).
 */
export class RpcError extends SpecdecError {}

export class NativeBindingError extends SpecdecError {
  constructor(message: string, cause?: unknown) {
    super('ERR_NATIVE_BINDING', message, { cause });
  }
}

const MODEL_FILE_CODES = new Set<SpecdecErrorCode>([
  'ERR_FILE_NOT_FOUND', 'ERR_NOT_GGUF', 'ERR_TRUNCATED_FILE', 'ERR_MISSING_TENSOR',
  'ERR_TENSOR_SHAPE', 'ERR_TENSOR_TYPE', 'ERR_BAD_METADATA',
]);

/** Converts an error thrown by the native addon ("[CODE] message") into a typed error. */
export function fromNative(err: unknown): Error {
  if (err instanceof SpecdecError) return err;
  // errors from the addon may come from another realm (jest, vm contexts): read the message duck-typed
  const m0 = (err as { message?: unknown } | null)?.message;
  const message = typeof m0 === 'string' ? m0 : String(err);
  const m = /^\[(ERR_[A-Z_]+)\] ([\s\S]*)$/.exec(message);
  if (!m) return new SpecdecError('ERR_INTERNAL', message, { cause: err });
  const code = m[1] as SpecdecErrorCode;
  const text = m[2];
  if (code === 'ERR_UNSUPPORTED_ARCHITECTURE') return new UnsupportedArchitectureError(code, text);
  if (MODEL_FILE_CODES.has(code)) return new ModelFileError(code, text);
  switch (code) {
    case 'ERR_INVALID_OPTION': return new InvalidOptionError(text);
    case 'ERR_HEADS_MISMATCH': return new HeadsMismatchError(text);
    case 'ERR_COPROCESSOR_MISMATCH': return new CoprocessorMismatchError(text);
    case 'ERR_VOCAB_MISMATCH': return new VocabularyMismatchError(text);
    case 'ERR_TOKEN_OUT_OF_RANGE': return new TokenOutOfRangeError(text);
    case 'ERR_CONTEXT_OVERFLOW': return new ContextOverflowError(text);
    case 'ERR_BACKEND_UNAVAILABLE': return new BackendUnavailableError(text);
    case 'ERR_BUSY': return new BusyError(text);
    case 'ERR_RPC_UNREACHABLE': case 'ERR_RPC_PROTOCOL': case 'ERR_RPC_SERVER': return new RpcError(code, text, { cause: err });
    default: return new SpecdecError(code, text, { cause: err });
  }
}
