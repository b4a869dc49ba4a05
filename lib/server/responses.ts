/** The shapes of the server's answers: OpenAI's usage and finish reasons, llama-server's timings, JSON replies. */
import type * as http from 'node:http';
import type { GenerationStats } from '../session';
import type { HttpError } from './http-error';

export function finishReason(s: GenerationStats): 'stop' | 'length' {
  return s.stopReason === 'maxTokens' || s.stopReason === 'contextFull' ? 'length' : 'stop';
}

/** llama-server's `timings`, with the speculative counters (`draft_n`, `draft_n_accepted`). */
export function timings(s: GenerationStats): Record<string, number | string> {
  const promptN = s.promptTokens - s.promptTokensReused;
  return {
    cache_n: s.promptTokensReused,
    prompt_n: promptN,
    prompt_ms: s.prefillMs,
    prompt_per_token_ms: promptN > 0 ? s.prefillMs / promptN : 0,
    prompt_per_second: s.prefillTokensPerSecond,
    predicted_n: s.generatedTokens,
    predicted_ms: s.decodeMs,
    predicted_per_token_ms: s.generatedTokens > 0 ? s.decodeMs / s.generatedTokens : 0,
    predicted_per_second: s.decodeTokensPerSecond,
    draft_n: s.draftedTokens,
    draft_n_accepted: s.acceptedTokens,
    verify_passes: s.verifyPasses,
    method: s.method,
  };
}

export function usage(s: GenerationStats): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: s.promptTokens, completion_tokens: s.generatedTokens, total_tokens: s.promptTokens + s.generatedTokens };
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: http.ServerResponse, err: HttpError): void {
  sendJson(res, err.status, err.toJSON(), err.status === 413 ? { Connection: 'close' } : {});
}
