/**
 * An OpenAI-compatible HTTP server over one model, shaped as llama-server's:
 *
 *   GET  /health                200 {"status":"ok"} when ready, 503 while loading (or when loading failed)
 *   GET  /metrics               Prometheus text: token counters, drafted/accepted tokens, slots
 *   GET  /v1/models             the model
 *   POST /v1/completions        text completion, streaming (server-sent events) or not
 *   POST /v1/chat/completions   chat, through the model's chat template; streaming or not
 *
 * `parallel` slots (sessions) serve requests at once; more wait in a bounded queue, then 429. A client
 * that disconnects aborts its generation at the next step and frees its slot. Errors are OpenAI's JSON
 * error objects; input is never answered with a 500.
 *
 *   const server = createServer({ model: 'model.gguf', parallel: 2 });
 *   server.listen(8080, '127.0.0.1');
 *   await server.ready;                 // rejects when the model cannot be loaded
 *   ...
 *   await server.dispose();             // closes, aborts generations, frees sessions and the models it loaded
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import { basename } from 'node:path';
import { InvalidOptionError, SpecdecError } from '../errors';
import { readGguf, ggufString } from '../gguf/reader';
import { loadModel, Model, type Backend } from '../model';
import { METHODS, type GenerateOptions, type Generation, type Method, type Session } from '../session';
import { CHATML_TEMPLATE, ChatTemplate, tokenizeChatPrompt, type ChatTemplateSource } from './chat-template';
import { HttpError, toHttpError } from './http-error';
import { Metrics } from './metrics';
import { finishReason, sendError, sendJson, timings, usage } from './responses';
import { parseRequest, type ParsedRequest } from './request';
import { Slot, SlotPool } from './slots';
import { defaultThreads } from '../threads';

export { HttpError } from './http-error';
export { ChatTemplate, CHATML_TEMPLATE, tokenizeChatPrompt } from './chat-template';
export type { ChatMessage, ChatTemplateSource } from './chat-template';

/** Sampling defaults of the server, for fields a request leaves out. */
export type ServerDefaults = Pick<
  GenerateOptions,
  'maxTokens' | 'temperature' | 'topK' | 'topP' | 'minP' | 'repeatPenalty' | 'frequencyPenalty' | 'presencePenalty' | 'penaltyLastN' | 'draftMax'
>;

export interface ServerOptions {
  /** The target model: a GGUF path (loaded by the server, freed by dispose()) or a loaded Model (left to the caller). */
  model: string | Model;
  /** A draft model with the same vocabulary, for the methods that use one ('draft', 'rsd', 'rasd', 'auto'). */
  draftModel?: string | Model;
  /** A head file for 'medusa', 'eagle' and 'chimera' (and 'auto'). */
  heads?: string;
  /** The method of requests that name none (default 'auto' with a draft model or heads, else 'autoregressive'). */
  method?: Method;
  /** Slots: requests served at once, one session each (default 1). */
  parallel?: number;
  /** Requests that may wait for a slot (default 16); more are answered 429. */
  maxQueue?: number;
  /** Requests must carry `Authorization: Bearer <apiKey>` (all endpoints but /health). */
  apiKey?: string;
  /** Largest request body in bytes (default 1 MiB); larger ones are answered 413. */
  bodyLimit?: number;
  /** Per slot: KV cache size in tokens (default: the model's, at most 4096). */
  contextSize?: number;
  /** Per slot: prompt tokens per forward pass (default 512). */
  batchSize?: number;
  /** Per slot: compute threads (default: the model's `threads`, else the library's default divided among the slots, at least 1). */
  threads?: number;
  /** Loading a model from a path. */
  backend?: Backend;
  cpuKernels?: 'specdec' | 'ggml';
  /** Loading the target model from a path: its layers on these ggml RPC servers (loadModel's `rpc`, `tensorSplit`). */
  rpc?: string[];
  tensorSplit?: number[];
  /**
   * The chat template (Jinja text), instead of the model's `tokenizer.chat_template`. Without either,
   * ChatML is used (as llama-server does); `false` refuses chat requests (400) for a model without one.
   */
  chatTemplate?: string | false;
  /** The model id /v1/models reports (default: the file name). */
  modelAlias?: string;
  /** Sampling defaults for fields a request leaves out (else the library's: greedy, 256 tokens, ...). */
  defaults?: ServerDefaults;
}

const DEFAULT_BODY_LIMIT = 1 << 20;
const LOOPBACK = '127.0.0.1';
const DEFAULT_MAX_QUEUE = 16;
const SERVER_OPTIONS = [
  'model', 'draftModel', 'heads', 'method', 'parallel', 'maxQueue', 'apiKey', 'bodyLimit', 'contextSize', 'batchSize', 'threads',
  'backend', 'cpuKernels', 'rpc', 'tensorSplit', 'chatTemplate', 'modelAlias', 'defaults',
];
const DRAFT_METHODS: readonly string[] = ['draft', 'rsd', 'rasd', 'auto'];
const HEAD_METHODS: readonly string[] = ['medusa', 'eagle', 'chimera', 'hidden-transfer', 'auto'];

interface Ready {
  model: Model;
  draftModel: Model | undefined;
  pool: SlotPool;
  template: ChatTemplate | undefined;
  templateError: string | undefined;
  created: number;
}

/** The client went away: the reason a request's generation is aborted with. */
class ClientGone extends Error {}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class SpecdecServer extends http.Server {
  /** Resolves when the model is loaded and the slots are made; rejects with the loading error. */
  readonly ready: Promise<void>;
  private state: Ready | undefined;
  private loadError: Error | undefined;
  private readonly opts: ServerOptions;
  private readonly keyDigest: Buffer | undefined;
  private readonly bodyLimit: number;
  private readonly maxQueue: number;
  private readonly parallel: number;
  private readonly metrics = new Metrics();
  private readonly loadAbort = new AbortController();
  private readonly active = new Set<AbortController>();
  private readonly handlers = new Set<Promise<void>>();
  private disposing: Promise<void> | undefined;

  /** @internal use createServer() */
  constructor(options: ServerOptions) {
    super();
    if (options === null || typeof options !== 'object') throw new InvalidOptionError('createServer(options): options must be an object');
    for (const k of Object.keys(options)) {
      if ((options as unknown as Record<string, unknown>)[k] !== undefined && !SERVER_OPTIONS.includes(k)) {
        throw new InvalidOptionError(`unknown createServer option '${k}' (known: ${SERVER_OPTIONS.join(', ')})`);
      }
    }
    const intIn = (name: keyof ServerOptions, def: number, min: number, max: number): number => {
      const v = options[name];
      if (v === undefined) return def;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
        throw new InvalidOptionError(`option '${name}' must be an integer between ${min} and ${max}, got ${String(v)}`);
      }
      return v;
    };
    this.parallel = intIn('parallel', 1, 1, 256);
    this.maxQueue = intIn('maxQueue', DEFAULT_MAX_QUEUE, 0, 1 << 20);
    this.bodyLimit = intIn('bodyLimit', DEFAULT_BODY_LIMIT, 1, 1 << 30);
    if (typeof options.model !== 'string' && !(options.model instanceof Model)) {
      throw new InvalidOptionError(`option 'model' must be a GGUF path or a Model from loadModel()`);
    }
    if (options.draftModel !== undefined && typeof options.draftModel !== 'string' && !(options.draftModel instanceof Model)) {
      throw new InvalidOptionError(`option 'draftModel' must be a GGUF path or a Model from loadModel()`);
    }
    if (options.method !== undefined && !METHODS.includes(options.method)) {
      throw new InvalidOptionError(`option 'method' must be one of ${METHODS.join(', ')}, got ${String(options.method)}`);
    }
    if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey.length === 0)) {
      throw new InvalidOptionError(`option 'apiKey' must be a non-empty string`);
    }
    if (options.chatTemplate !== undefined && options.chatTemplate !== false && typeof options.chatTemplate !== 'string') {
      throw new InvalidOptionError(`option 'chatTemplate' must be a template string or false`);
    }
    this.opts = options;
    this.keyDigest = options.apiKey !== undefined ? digest(options.apiKey) : undefined;
    this.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const p = this.handle(req, res).catch((err) => {
        // nothing a request does may crash the process: answer what can still be answered
        if (!res.headersSent) sendError(res, toHttpError(err));
        else res.destroy();
      });
      this.handlers.add(p);
      void p.finally(() => this.handlers.delete(p));
    });
    this.on('close', () => void this.dispose());
    this.ready = this.load();
    this.ready.catch((err: Error) => {
      this.loadError = err;
    });
  }

  /**
   * As http.Server's listen(), but a port without a host binds to 127.0.0.1 (Node's default would be
   * every interface): a server reachable from other machines is asked for by naming the host.
   */
  override listen(...args: unknown[]): this {
    const a = [...args];
    const isPort = (v: unknown) => typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v));
    if (a.length === 0 || typeof a[0] === 'function') a.unshift(0, LOOPBACK);
    else if (isPort(a[0]) && typeof a[1] !== 'string') a.splice(1, 0, LOOPBACK);
    else if (a[0] !== null && typeof a[0] === 'object') {
      const o = a[0] as Record<string, unknown>;
      if (o.path === undefined && o.fd === undefined && o.handle === undefined && o._handle === undefined && o.host === undefined) a[0] = { ...o, host: LOOPBACK };
    }
    return (super.listen as (...x: unknown[]) => this)(...a);
  }

  /** Stops listening, refuses queued requests, aborts running generations, frees the slots and the models the server loaded. */
  dispose(): Promise<void> {
    if (this.disposing) return this.disposing;
    this.disposing = (async () => {
      this.loadAbort.abort(new SpecdecError('ERR_ABORTED', 'the server was disposed'));
      if (this.listening) this.close();
      this.state?.pool.close();
      for (const ac of this.active) ac.abort(new SpecdecError('ERR_ABORTED', 'the server was disposed'));
      await this.ready.catch(() => undefined);
      while (this.handlers.size > 0) await Promise.all([...this.handlers]);
      this.closeAllConnections();
      const s = this.state;
      if (s) {
        await Promise.all(s.pool.slots.map((slot) => slot.session.dispose()));
        if (typeof this.opts.draftModel === 'string') await s.draftModel?.dispose();
        if (typeof this.opts.model === 'string') await s.model.dispose();
      }
    })();
    return this.disposing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  private async load(): Promise<void> {
    const o = this.opts;
    const signal = this.loadAbort.signal;
    const load = (path: string, target = false) => loadModel(path, {
      signal, ...(o.backend ? { backend: o.backend } : {}), ...(o.cpuKernels ? { cpuKernels: o.cpuKernels } : {}),
      ...(target && o.rpc ? { rpc: o.rpc } : {}), ...(target && o.tensorSplit ? { tensorSplit: o.tensorSplit } : {}),
      // the draft model's Q8_0 copies at start-up, not in the first request that drafts
      ...(target ? {} : { draft: true }),
    });
    let model: Model | undefined;
    let draftModel: Model | undefined;
    const sessions: Session[] = [];
    try {
      model = typeof o.model === 'string' ? await load(o.model, true) : o.model;
      draftModel = o.draftModel === undefined ? undefined : typeof o.draftModel === 'string' ? await load(o.draftModel) : o.draftModel;
      if (draftModel && !draftModel.tokenizer.sameVocabulary(model.tokenizer)) {
        throw new InvalidOptionError(`the draft model ${draftModel.info.path} does not share the vocabulary of ${model.info.path}`);
      }
      let source: ChatTemplateSource | undefined;
      if (typeof o.chatTemplate === 'string') source = { template: o.chatTemplate, origin: 'option' };
      else {
        const fromFile = ggufString(await readGguf(model.info.path), 'tokenizer.chat_template');
        if (fromFile) source = { template: fromFile, origin: 'gguf' };
        else if (o.chatTemplate !== false) source = { template: CHATML_TEMPLATE, origin: 'fallback' };
      }
      let template: ChatTemplate | undefined;
      let templateError: string | undefined;
      if (source) {
        try {
          template = new ChatTemplate(source, model.tokenizer);
        } catch (err) {
          templateError = `the chat template (${source.origin}) cannot be parsed: ${(err as Error).message}`;
        }
      } else {
        templateError = 'the model has no chat template (tokenizer.chat_template) and the server has none: use /v1/completions';
      }
      // slots decode at the same time: by default they share the library's thread count (ggml's spinning
      // barriers collapse when more threads than CPUs spin)
      const threads = o.threads ?? model.threads ?? Math.max(1, Math.floor(defaultThreads() / this.parallel));
      for (let i = 0; i < this.parallel; i++) {
        signal.throwIfAborted();
        sessions.push(await model.createSession({
          ...(o.contextSize !== undefined ? { contextSize: o.contextSize } : {}),
          ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
          threads,
        }));
      }
      signal.throwIfAborted();
      this.state = {
        model, draftModel, template, templateError, created: Math.floor(Date.now() / 1000),
        pool: new SlotPool(sessions.map((s, i) => new Slot(i, s)), this.maxQueue),
      };
    } catch (err) {
      await Promise.all(sessions.map((s) => s.dispose()));
      if (typeof o.draftModel === 'string') await draftModel?.dispose();
      if (typeof o.model === 'string') await model?.dispose();
      throw err;
    }
  }

  /** The method of requests that name none. */
  get defaultMethod(): Method {
    return this.opts.method ?? (this.opts.draftModel !== undefined || this.opts.heads !== undefined ? 'auto' : 'autoregressive');
  }

  private modelId(model: Model | undefined): string {
    return this.opts.modelAlias ?? basename(model?.info.path ?? (typeof this.opts.model === 'string' ? this.opts.model : 'model'));
  }

  private authorized(req: http.IncomingMessage): boolean {
    if (!this.keyDigest) return true;
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer\s+(.+)$/i.exec(h.trim()) : null;
    // equal-length digests compared in constant time: neither the key nor its length leaks through timing
    return timingSafeEqual(digest(m ? m[1] : randomBytes(16).toString('hex')), this.keyDigest) && m !== null;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const routes: Record<string, { method: string; run: () => Promise<void> | void }> = {
      '/health': { method: 'GET', run: () => this.health(res) },
      '/metrics': { method: 'GET', run: () => this.sendMetrics(res) },
      '/v1/models': { method: 'GET', run: () => this.models(res) },
      '/models': { method: 'GET', run: () => this.models(res) },
      '/v1/completions': { method: 'POST', run: () => this.generate(req, res, 'completion') },
      '/completions': { method: 'POST', run: () => this.generate(req, res, 'completion') },
      '/v1/chat/completions': { method: 'POST', run: () => this.generate(req, res, 'chat') },
      '/chat/completions': { method: 'POST', run: () => this.generate(req, res, 'chat') },
    };
    const route = routes[path];
    try {
      if (!route) throw new HttpError(404, `no such endpoint: ${req.method} ${path}`);
      if (path !== '/health' && !this.authorized(req)) {
        throw new HttpError(401, 'invalid API key: send Authorization: Bearer <key>', null, 'invalid_api_key');
      }
      if (req.method !== route.method && !(route.method === 'GET' && req.method === 'HEAD')) {
        res.setHeader('Allow', route.method);
        throw new HttpError(405, `${path} takes ${route.method}, not ${req.method}`);
      }
      await route.run();
    } catch (err) {
      const e = toHttpError(err);
      if (e.status >= 400 && path.endsWith('completions')) {
        if (e.status === 429) this.metrics.requests.rejected++;
        else this.metrics.requests.error++;
      }
      if (e.status >= 500 && !(err instanceof HttpError)) {
        // not the client's doing: say what happened on the server's side too
        process.emitWarning(`specdec server: ${(err as Error)?.stack ?? String(err)}`);
      }
      if (!res.headersSent) sendError(res, e);
      else if (!res.writableEnded) {
        res.write(`data: ${JSON.stringify(e.toJSON())}\n\n`);
        res.end();
      }
    }
  }

  private ready_(): Ready {
    if (this.state) return this.state;
    if (this.loadError) throw new HttpError(503, `the model could not be loaded: ${this.loadError.message}`, null, 'model_load_failed');
    throw new HttpError(503, 'the model is loading', null, 'loading');
  }

  private health(res: http.ServerResponse): void {
    if (this.state && !this.disposing) sendJson(res, 200, { status: 'ok', slots_idle: this.state.pool.slots.length - this.state.pool.busy, slots_processing: this.state.pool.busy });
    else if (this.loadError) sendJson(res, 503, { status: 'error', error: { message: this.loadError.message, type: 'unavailable_error' } });
    else sendJson(res, 503, { status: this.disposing ? 'shutting down' : 'loading', error: { message: 'loading model', type: 'unavailable_error' } });
  }

  private sendMetrics(res: http.ServerResponse): void {
    const pool = this.state?.pool;
    const text = this.metrics.render({ slotsTotal: pool?.slots.length ?? 0, slotsBusy: pool?.busy ?? 0, queued: pool?.queued ?? 0, queueMax: this.maxQueue });
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private models(res: http.ServerResponse): void {
    const s = this.state;
    const info = s?.model.info;
    sendJson(res, 200, {
      object: 'list',
      data: [{
        id: this.modelId(s?.model),
        object: 'model',
        created: s?.created ?? Math.floor(Date.now() / 1000),
        owned_by: 'specdec',
        meta: info
          ? {
            architecture: info.architecture, n_params: info.parameterCount, size: info.sizeBytes, n_ctx_train: info.contextLength,
            n_vocab: info.vocabSize, n_embd: info.embeddingLength, weight_type: info.weightType,
            chat_template: s!.template?.source.origin ?? null, draft_model: s!.draftModel ? basename(s!.draftModel.info.path) : null,
            slots: s!.pool.slots.length,
          }
          : { loading: true },
      }],
    });
  }

  /** The request body as JSON, at most bodyLimit bytes (413 beyond). */
  private readJson(req: http.IncomingMessage): Promise<unknown> {
    const limit = this.bodyLimit;
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();  // discard what arrives while the answer goes out
      return Promise.reject(new HttpError(413, `the body (${declared} bytes) is larger than the limit of ${limit} bytes`, null, 'body_too_large'));
    }
    // the body is read as JSON whatever its Content-Type (as llama-server does: `curl -d` sends a form type)
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      req.on('data', (c: Buffer) => {
        if (over) return;
        size += c.length;
        if (size > limit) {
          over = true;
          chunks.length = 0;
          reject(new HttpError(413, `the body is larger than the limit of ${limit} bytes`, null, 'body_too_large'));
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (over) return;
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(new HttpError(400, `the body is not valid JSON: ${(err as Error).message}`));
        }
      });
      req.on('error', (err) => reject(err));
    });
  }

  /** The prompt's tokens, the generate() options of the request, and the method. */
  private prepare(s: Ready, p: ParsedRequest): { tokens: number[]; options: GenerateOptions } {
    let tokens: number[];
    if (p.messages) {
      if (!s.template) throw new HttpError(s.templateError?.includes('cannot be parsed') ? 500 : 400, s.templateError ?? 'no chat template', 'messages');
      tokens = tokenizeChatPrompt(s.model.tokenizer, s.template.render(p.messages, true));
    } else if (typeof p.prompt === 'string') {
      tokens = s.model.tokenize(p.prompt);
      if (tokens.length === 0) throw new HttpError(400, `'prompt' is empty: it tokenizes to no tokens`, 'prompt');
    } else {
      tokens = p.prompt!;
      const n = s.model.info.vocabSize;
      const bad = tokens.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= n);
      if (bad >= 0) throw new HttpError(400, `'prompt[${bad}]' (${tokens[bad]}) is not a token id in [0, ${n})`, 'prompt');
    }
    const method = p.method ?? this.defaultMethod;
    if ((method === 'draft' || method === 'rsd') && !s.draftModel) {
      throw new HttpError(400, `method '${method}' needs a draft model, and this server has none (start it with a draft model)`, 'method');
    }
    if ((method === 'medusa' || method === 'eagle' || method === 'chimera' || method === 'hidden-transfer') && !this.opts.heads) {
      throw new HttpError(400, `method '${method}' needs a head file, and this server has none (start it with heads)`, 'method');
    }
    const options: GenerateOptions = { ...this.opts.defaults, ...p.options, method };
    if (s.draftModel && DRAFT_METHODS.includes(method)) options.draft = { model: s.draftModel };
    if (this.opts.heads && HEAD_METHODS.includes(method)) options.heads = { file: this.opts.heads };
    return { tokens, options };
  }

  private async generate(req: http.IncomingMessage, res: http.ServerResponse, kind: 'completion' | 'chat'): Promise<void> {
    const s = this.ready_();
    const parsed = parseRequest(await this.readJson(req), kind);
    const { tokens, options } = this.prepare(s, parsed);

    const ac = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) ac.abort(new ClientGone('the client disconnected'));
    };
    res.on('close', onClose);
    this.active.add(ac);
    let slot: Slot | undefined;
    let gen: Generation | undefined;
    try {
      try {
        slot = await s.pool.acquire(tokens, ac.signal);
      } catch (err) {
        if (err instanceof ClientGone) {
          this.metrics.requests.aborted++;
          return;
        }
        throw err;
      }
      // checks every option (a bad one is a 400 before any header goes out)
      gen = slot.session.generate(tokens, { ...options, signal: ac.signal });
      const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
      const created = Math.floor(Date.now() / 1000);
      const model = this.modelId(s.model);
      try {
        if (parsed.stream) await this.stream(res, gen, kind, { id, created, model, includeUsage: parsed.includeUsage });
        else {
          const r = await gen.result();
          const choice = kind === 'chat'
            ? { index: 0, message: { role: 'assistant', content: r.text }, logprobs: null, finish_reason: finishReason(r.stats) }
            : { index: 0, text: r.text, logprobs: null, finish_reason: finishReason(r.stats) };
          sendJson(res, 200, {
            id, object: kind === 'chat' ? 'chat.completion' : 'text_completion', created, model, system_fingerprint: `specdec-${r.stats.method}`,
            choices: [choice], usage: usage(r.stats), timings: timings(r.stats),
          });
        }
        this.metrics.requests.ok++;
      } catch (err) {
        if (ac.signal.aborted && ac.signal.reason instanceof ClientGone) {
          this.metrics.requests.aborted++;
          return;
        }
        throw err;
      } finally {
        if (gen.stats) this.metrics.addGeneration(gen.stats);
      }
    } finally {
      res.off('close', onClose);
      this.active.delete(ac);
      if (slot) s.pool.release(slot);
    }
  }

  private async stream(
    res: http.ServerResponse, gen: Generation, kind: 'completion' | 'chat',
    meta: { id: string; created: number; model: string; includeUsage: boolean },
  ): Promise<void> {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.flushHeaders();
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const usageField = meta.includeUsage ? { usage: null } : {};
    const send = (choices: unknown[], extra: Record<string, unknown> = {}) => {
      res.write(`data: ${JSON.stringify({ id: meta.id, object, created: meta.created, model: meta.model, system_fingerprint: 'specdec', choices, ...usageField, ...extra })}\n\n`);
    };
    const choice = (text: string | undefined, finish: string | null, role = false) =>
      kind === 'chat'
        ? { index: 0, delta: text === undefined ? {} : { ...(role ? { role: 'assistant' } : {}), content: text }, logprobs: null, finish_reason: finish }
        : { index: 0, text: text ?? '', logprobs: null, finish_reason: finish };
    if (kind === 'chat') send([choice('', null, true)]);
    for await (const chunk of gen) {
      if (chunk.text.length > 0) send([choice(chunk.text, null)]);
    }
    const stats = gen.stats!;
    send([choice(undefined, finishReason(stats))], { timings: timings(stats) });
    if (meta.includeUsage) {
      res.write(`data: ${JSON.stringify({ id: meta.id, object, created: meta.created, model: meta.model, system_fingerprint: 'specdec', choices: [], usage: usage(stats) })}\n\n`);
    }
    res.write('data: [DONE]\n\n');
    res.end();
  }
}

/**
 * An OpenAI-compatible server (a Node http.Server, not yet listening): call `listen(port, host)`; bind
 * to 127.0.0.1 unless it is meant to be reached from other machines. `server.ready` settles when the
 * model is loaded; until then /health answers 503 and the generation endpoints 503.
 */
export function createServer(options: ServerOptions): SpecdecServer {
  return new SpecdecServer(options);
}
