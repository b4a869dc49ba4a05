/**
 * Errors the server answers with, shaped as OpenAI's: `{"error": {"message", "type", "param", "code"}}`.
 * User input is never a 500: the library's typed errors that a request can cause map to 400.
 */
import {
  BusyError, ContextOverflowError, DisposedError, HeadsMismatchError, InvalidOptionError, SpecdecError, TokenOutOfRangeError,
  VocabularyMismatchError,
} from '../errors';

export type HttpErrorType =
  | 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'unavailable_error' | 'server_error';

const TYPE_OF_STATUS: Record<number, HttpErrorType> = {
  400: 'invalid_request_error', 401: 'authentication_error', 404: 'not_found_error', 405: 'invalid_request_error',
  413: 'invalid_request_error', 415: 'invalid_request_error', 429: 'rate_limit_error', 500: 'server_error', 503: 'unavailable_error',
};

export class HttpError extends Error {
  readonly type: HttpErrorType;
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'HttpError';
    this.type = TYPE_OF_STATUS[status] ?? 'server_error';
  }

  toJSON(): { error: { message: string; type: HttpErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

// The generate() options a request sets, as the request spells them: messages from the library name
// its options (`option 'topK' ...`); the client wrote `top_k`
const API_TO_FIELD: Array<[string, string]> = [
  ['maxTokens', 'max_tokens'], ['topK', 'top_k'], ['topP', 'top_p'], ['minP', 'min_p'], ['repeatPenalty', 'repeat_penalty'],
  ['frequencyPenalty', 'frequency_penalty'], ['presencePenalty', 'presence_penalty'], ['penaltyLastN', 'repeat_last_n'],
  ['draftMax', 'draft_max'], ['ignoreEos', 'ignore_eos'],
];

export function fieldNames(message: string): string {
  let m = message;
  for (const [api, field] of API_TO_FIELD) m = m.replace(new RegExp(`\\b${api}\\b`, 'g'), field);
  return m;
}

/** The HTTP answer for an error thrown while serving a request. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (
    err instanceof InvalidOptionError || err instanceof ContextOverflowError || err instanceof TokenOutOfRangeError ||
    err instanceof VocabularyMismatchError || err instanceof HeadsMismatchError
  ) {
    return new HttpError(400, fieldNames(err.message), null, err.code);
  }
  // the server is shutting down under the request, or a slot was busy (a server bug, but not a crash)
  if (err instanceof DisposedError || err instanceof BusyError) return new HttpError(503, err.message, null, err.code);
  // a generation aborted by the server itself (dispose() while it ran)
  if (err instanceof SpecdecError && err.code === 'ERR_ABORTED') return new HttpError(503, err.message, null, err.code);
  if (err instanceof SpecdecError) return new HttpError(500, err.message, null, err.code);
  return new HttpError(500, 'internal error', null, 'ERR_INTERNAL');
}
