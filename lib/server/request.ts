/**
 * Request bodies of /v1/completions and /v1/chat/completions: checked field by field (a wrong type is
 * a 400 naming the field) and turned into generate() options. Ranges are the library's (generate()
 * checks them; its messages come back with the request's field names). `null` means "not given".
 * Fields of the OpenAI API that specdec does not implement are refused when they ask for something
 * (n > 1, logprobs, echo, suffix, tools), not silently ignored; unknown fields are ignored.
 */
import { METHODS, type GenerateOptions, type Method } from '../session';
import type { ChatMessage } from './chat-template';
import { HttpError } from './http-error';

/** What a request asks for, before a slot and a session are involved. */
export interface ParsedRequest {
  /** Completions: the prompt text or token ids. */
  prompt?: string | number[];
  /** Chat: the messages. */
  messages?: ChatMessage[];
  stream: boolean;
  includeUsage: boolean;
  /** Decoding method, when the request names one. */
  method?: Method;
  /** generate() options from the sampling fields (only those given). */
  options: GenerateOptions;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

function given(body: Record<string, unknown>, key: string): unknown {
  const v = body[key];
  return v === null ? undefined : v;
}

function num(body: Record<string, unknown>, key: string, integer = false): number | undefined {
  const v = given(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new HttpError(400, `'${key}' must be a number, got ${typeName(v)}`, key);
  if (integer && !Number.isInteger(v)) throw new HttpError(400, `'${key}' must be an integer, got ${v}`, key);
  return v;
}

function bool(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = given(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new HttpError(400, `'${key}' must be a boolean, got ${typeName(v)}`, key);
  return v;
}

function refuse(body: Record<string, unknown>, key: string, asks: (v: unknown) => boolean, what: string): void {
  const v = given(body, key);
  if (v !== undefined && asks(v)) throw new HttpError(400, `'${key}': ${what} is not supported by this server`, key);
}

/** The text of a message's content: a string, or an array of text parts. */
function contentText(content: unknown, i: number): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part, j) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (p === null || typeof p !== 'object' || p.type !== 'text' || typeof p.text !== 'string') {
        throw new HttpError(400, `'messages[${i}].content[${j}]' must be a text part {"type": "text", "text": "..."} (only text is supported)`, 'messages');
      }
      return p.text;
    }).join('');
  }
  throw new HttpError(400, `'messages[${i}].content' must be a string or an array of text parts, got ${typeName(content)}`, 'messages');
}

function messages(body: Record<string, unknown>): ChatMessage[] {
  const v = given(body, 'messages');
  if (!Array.isArray(v) || v.length === 0) throw new HttpError(400, `'messages' must be a non-empty array, got ${typeName(v)}`, 'messages');
  return v.map((m, i) => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new HttpError(400, `'messages[${i}]' must be an object, got ${typeName(m)}`, 'messages');
    const r = m as Record<string, unknown>;
    if (typeof r.role !== 'string' || r.role.length === 0) throw new HttpError(400, `'messages[${i}].role' must be a non-empty string`, 'messages');
    if (r.tool_calls !== undefined && r.tool_calls !== null) throw new HttpError(400, `'messages[${i}].tool_calls': tools are not supported by this server`, 'messages');
    const out: ChatMessage = { role: r.role, content: contentText(r.content, i) };
    if (typeof r.name === 'string') out.name = r.name;
    return out;
  });
}

function prompt(body: Record<string, unknown>): string | number[] {
  const v = given(body, 'prompt');
  const isTokens = (a: unknown): a is number[] => Array.isArray(a) && a.length > 0 && a.every((t) => typeof t === 'number');
  if (typeof v === 'string') return v;
  if (isTokens(v)) return v;
  // a batch of one prompt, as the OpenAI API allows: ["text"] or [[ids]]
  if (Array.isArray(v) && v.length === 1 && (typeof v[0] === 'string' || isTokens(v[0]))) return v[0] as string | number[];
  if (Array.isArray(v) && v.length > 1 && v.every((p) => typeof p === 'string' || isTokens(p))) {
    throw new HttpError(400, `'prompt': a batch of ${v.length} prompts is not supported; send one prompt per request`, 'prompt');
  }
  throw new HttpError(400, `'prompt' must be a string or an array of token ids, got ${typeName(v)}`, 'prompt');
}

export function parseRequest(body: unknown, kind: 'completion' | 'chat'): ParsedRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, `the body must be a JSON object, got ${typeName(body)}`);
  const b = body as Record<string, unknown>;
  if (given(b, 'model') !== undefined && typeof b.model !== 'string') throw new HttpError(400, `'model' must be a string`, 'model');
  const n = num(b, 'n', true);
  if (n !== undefined && n !== 1) throw new HttpError(400, `'n': only one choice per request is supported, got ${n}`, 'n');
  refuse(b, 'logprobs', (v) => v !== false && v !== 0, 'logprobs');
  refuse(b, 'top_logprobs', (v) => v !== 0, 'top_logprobs');
  refuse(b, 'echo', (v) => v !== false, 'echo');
  refuse(b, 'suffix', (v) => v !== '', 'suffix');
  refuse(b, 'best_of', (v) => v !== 1, 'best_of');
  refuse(b, 'tools', (v) => !Array.isArray(v) || v.length > 0, 'tools');
  refuse(b, 'functions', (v) => !Array.isArray(v) || v.length > 0, 'functions');
  refuse(b, 'response_format', (v) => (v as { type?: unknown })?.type !== 'text', 'a response_format other than text');

  const streamOptions = given(b, 'stream_options');
  if (streamOptions !== undefined && (typeof streamOptions !== 'object' || Array.isArray(streamOptions))) {
    throw new HttpError(400, `'stream_options' must be an object, got ${typeName(streamOptions)}`, 'stream_options');
  }
  const includeUsage = streamOptions ? bool(streamOptions as Record<string, unknown>, 'include_usage') : undefined;

  const method = given(b, 'method');
  if (method !== undefined && (typeof method !== 'string' || !METHODS.includes(method as Method))) {
    throw new HttpError(400, `'method' must be one of ${METHODS.join(', ')}, got ${typeof method === 'string' ? JSON.stringify(method) : typeName(method)}`, 'method');
  }
  const stop = given(b, 'stop');
  if (stop !== undefined && typeof stop !== 'string' && !(Array.isArray(stop) && stop.every((s) => typeof s === 'string'))) {
    throw new HttpError(400, `'stop' must be a string or an array of strings, got ${typeName(stop)}`, 'stop');
  }
  const maxTokens = kind === 'chat' ? num(b, 'max_completion_tokens', true) ?? num(b, 'max_tokens', true) : num(b, 'max_tokens', true);
  const options: GenerateOptions = {
    maxTokens,
    temperature: num(b, 'temperature'),
    topP: num(b, 'top_p'),
    topK: num(b, 'top_k', true),
    minP: num(b, 'min_p'),
    seed: num(b, 'seed', true),
    // an empty stop list is "no stop strings"; empty strings are refused by generate()
    stop: Array.isArray(stop) && stop.length === 0 ? undefined : (stop as string | string[] | undefined),
    presencePenalty: num(b, 'presence_penalty'),
    frequencyPenalty: num(b, 'frequency_penalty'),
    repeatPenalty: num(b, 'repeat_penalty'),
    penaltyLastN: num(b, 'repeat_last_n', true),
    ignoreEos: bool(b, 'ignore_eos'),
    draftMax: num(b, 'draft_max', true),
  };
  for (const k of Object.keys(options) as (keyof GenerateOptions)[]) if (options[k] === undefined) delete options[k];
  return {
    ...(kind === 'chat' ? { messages: messages(b) } : { prompt: prompt(b) }),
    stream: bool(b, 'stream') ?? false,
    includeUsage: includeUsage ?? false,
    method: method as Method | undefined,
    options,
  };
}
