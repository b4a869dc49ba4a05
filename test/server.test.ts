// The OpenAI-compatible server (lib/server) through the official `openai` client and plain fetch, on
// 127.0.0.1: completions and chat, streaming and not, against generate(); a speculative method against
// autoregressive decoding with its drafted/accepted counts in `timings`; slots, the queue bound (429),
// abort by disconnect (the slot freed, seen in /metrics); the 400, 401, 413 paths; /health and /metrics.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { AddressInfo } from 'net';
import OpenAI from 'openai';
import * as path from 'path';
import { createServer, loadModel, type Model, type SpecdecServer } from '../lib';
import { describeShared } from './utils/shared';

async function listen(server: SpecdecServer): Promise<string> {
  // no host given: the server binds to 127.0.0.1, not to every interface
  await new Promise<void>((resolve) => server.listen(0, resolve));
  expect((server.address() as AddressInfo).address).toBe('127.0.0.1');
  await server.ready;
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The server's Prometheus text as name{labels} -> value. */
async function metrics(base: string, key?: string): Promise<Map<string, number>> {
  const r = await fetch(`${base}/metrics`, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  expect(r.status).toBe(200);
  const m = new Map<string, number>();
  for (const line of (await r.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

async function until(what: () => Promise<boolean>, ms: number): Promise<number> {
  const t0 = Date.now();
  while (!(await what())) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

const post = (base: string, route: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${base}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

describeShared('server: stories260K, 2 slots, an API key', (dir) => {
  const KEY = 'sk-test-0123456789';
  let model: Model;
  let server: SpecdecServer;
  let base: string;
  let client: OpenAI;
  beforeAll(async () => {
    model = await loadModel(path.join(dir, 'models', 'stories260K.gguf'));
    server = createServer({ model, parallel: 2, apiKey: KEY, bodyLimit: 64 * 1024 });
    base = await listen(server);
    client = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY, maxRetries: 0 });
  });
  afterAll(async () => {
    await server?.dispose();
    await model?.dispose();
  });

  it('/health and /v1/models', async () => {
    const h = await fetch(`${base}/health`);  // no key needed
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ status: 'ok', slots_idle: 2 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['stories260K.gguf']);
  });

  it('completions: greedy output identical to generate(), streamed or not; usage and timings', async () => {
    const s = await model.createSession();
    const run = s.generate('Once upon a time', { maxTokens: 40 });
    const ref = { ...(await run.result()), promptTokens: run.promptTokens };
    await s.dispose();
    const r = await client.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 40, temperature: 0 });
    expect(r.choices[0].text).toBe(ref.text);
    expect(r.choices[0].finish_reason).toBe(ref.stats.stopReason === 'maxTokens' ? 'length' : 'stop');
    expect(r.usage).toEqual({ prompt_tokens: ref.promptTokens.length, completion_tokens: ref.tokens.length, total_tokens: ref.promptTokens.length + ref.tokens.length });
    const timings = (r as unknown as { timings: Record<string, number> }).timings;
    expect(timings).toMatchObject({ predicted_n: ref.tokens.length, draft_n: 0, draft_n_accepted: 0 });

    const stream = await client.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stream: true });
    let text = '';
    let finish: string | null = null;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      text += c.choices[0]?.text ?? '';
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
    }
    expect(text).toBe(ref.text);
    expect(finish).toBe(r.choices[0].finish_reason);
    expect(chunks).toBeGreaterThan(1);
    // token ids as the prompt
    const t = await client.completions.create({ model: 'x', prompt: ref.promptTokens, max_tokens: 40, temperature: 0 });
    expect(t.choices[0].text).toBe(ref.text);
  });

  it('chat through the ChatML fallback (the model has no template): equal to generate() on the rendered prompt; streaming with usage and [DONE]', async () => {
    const s = await model.createSession();
    const run = s.generate('<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n', { maxTokens: 30, special: true });
    const ref = { ...(await run.result()), promptTokens: run.promptTokens };
    await s.dispose();
    const messages = [{ role: 'user' as const, content: 'Once upon a time' }];
    const r = await client.chat.completions.create({ model: 'x', messages, max_tokens: 30, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0].message).toMatchObject({ role: 'assistant', content: ref.text });
    expect(r.usage?.prompt_tokens).toBe(ref.promptTokens.length);

    const stream = await client.chat.completions.create({ model: 'x', messages, max_tokens: 30, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let role: string | undefined;
    let finish: string | null = null;
    let usage: unknown;
    for await (const c of stream) {
      if (c.choices[0]?.delta.role) role = c.choices[0].delta.role;
      text += c.choices[0]?.delta.content ?? '';
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      if (c.usage) usage = c.usage;
    }
    expect({ role, text, finish }).toEqual({ role: 'assistant', text: ref.text, finish: r.choices[0].finish_reason });
    expect(usage).toEqual(r.usage);

    // the wire format: data: lines, the finish chunk, the usage chunk with no choices, then [DONE]
    const raw = await (await post(base, '/v1/chat/completions', { messages, max_tokens: 5, stream: true, stream_options: { include_usage: true } }, { Authorization: `Bearer ${KEY}` })).text();
    const events = raw.split('\n\n').filter((e) => e !== '');
    expect(events.every((e) => e.startsWith('data: '))).toBe(true);
    expect(events[events.length - 1]).toBe('data: [DONE]');
    const last = JSON.parse(events[events.length - 2].slice(6));
    expect(last).toMatchObject({ object: 'chat.completion.chunk', choices: [], usage: { completion_tokens: 5 } });
    const fin = JSON.parse(events[events.length - 3].slice(6));
    expect(fin.choices[0]).toMatchObject({ finish_reason: 'length', delta: {} });
  });

  it('chat templates: one given to the server (its exceptions are 400s, BOS once), or none (a clear 400)', async () => {
    const mistral = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";
    for (const [chatTemplate, check] of [
      [mistral, async (url: string) => {
        const bad = await post(url, '/v1/chat/completions', { messages: [{ role: 'system', content: 'x' }, { role: 'user', content: 'Hi' }], max_tokens: 1 });
        expect(bad.status).toBe(400);
        expect(await bad.json()).toMatchObject({ error: { param: 'messages', message: expect.stringMatching(/Conversation roles must alternate/) } });
        const ok = await post(url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 1 });
        expect(ok.status).toBe(200);
        // '<s>' written by the template is the BOS token, and the only one
        expect(((await ok.json()) as { usage: { prompt_tokens: number } }).usage.prompt_tokens).toBe(model.tokenize('[INST] Once upon a time [/INST]').length);
      }],
      [false, async (url: string) => {
        const r = await post(url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }] });
        expect(r.status).toBe(400);
        expect(await r.json()).toMatchObject({ error: { message: expect.stringMatching(/no chat template/) } });
        expect((await post(url, '/v1/completions', { prompt: 'Hi', max_tokens: 1 })).status).toBe(200);
      }],
    ] as Array<[string | false, (url: string) => Promise<void>]>) {
      const other = createServer({ model, chatTemplate });
      try {
        await check(await listen(other));
      } finally {
        await other.dispose();
      }
    }
    expect(model.disposed).toBe(false);  // a Model given to a server stays the caller's
  });

  it('401 for a missing or wrong key (also /metrics), /health stays open', async () => {
    const wrong = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-test-0123456788', maxRetries: 0 });
    await expect(wrong.completions.create({ model: 'x', prompt: 'a', max_tokens: 1 })).rejects.toMatchObject({ status: 401 });
    for (const headers of [{} as Record<string, string>, { Authorization: `Bearer ${KEY}x` }, { Authorization: KEY }, { Authorization: 'Bearer ' }]) {
      const r = await post(base, '/v1/completions', { prompt: 'a', max_tokens: 1 }, headers);
      expect(r.status).toBe(401);
      expect(await r.json()).toMatchObject({ error: { type: 'authentication_error', code: 'invalid_api_key' } });
    }
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  it('400 for bad bodies, naming the field, never a 500', async () => {
    const auth = { Authorization: `Bearer ${KEY}` };
    const cases: Array<[string, unknown, RegExp]> = [
      ['/v1/completions', '{"prompt": "a",', /not valid JSON/],
      ['/v1/completions', '[1, 2]', /must be a JSON object/],
      ['/v1/completions', { max_tokens: 3 }, /'prompt' must be a string/],
      ['/v1/completions', { prompt: 'a', temperature: 'hot' }, /'temperature' must be a number/],
      ['/v1/completions', { prompt: 'a', top_k: -1 }, /top_k/],
      ['/v1/completions', { prompt: 'a', max_tokens: 1.5 }, /'max_tokens' must be an integer/],
      ['/v1/completions', { prompt: 'a', repeat_penalty: 0 }, /repeat_penalty/],
      ['/v1/completions', { prompt: 'a', stop: [''] }, /stop/],
      ['/v1/completions', { prompt: 'a', n: 2 }, /only one choice/],
      ['/v1/completions', { prompt: 'a', method: 'warp' }, /'method' must be one of/],
      ['/v1/completions', { prompt: 'a', method: 'draft' }, /needs a draft model/],
      ['/v1/completions', { prompt: 'a', method: 'medusa' }, /needs a head file/],
      ['/v1/completions', { prompt: [1, 2, 99999] }, /not a token id/],
      ['/v1/completions', { prompt: 'once '.repeat(3000) }, /more than the context size/],
      ['/v1/completions', { prompt: 'a', logprobs: 2 }, /logprobs/],
      ['/v1/chat/completions', { messages: [] }, /'messages' must be a non-empty array/],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, /only text/],
      ['/v1/chat/completions', { messages: [{ content: 'hi' }] }, /role/],
    ];
    for (const [route, body, re] of cases) {
      const r = await post(base, route, body, auth);
      const j = (await r.json()) as { error: { message: string; type: string } };
      expect({ body, status: r.status, type: j.error.type }).toEqual({ body, status: 400, type: 'invalid_request_error' });
      expect(j.error.message).toMatch(re);
    }
    // through the client: its typed error
    await expect(client.completions.create({ model: 'x', prompt: 'a', top_p: 7 })).rejects.toMatchObject({ status: 400 });
    expect((await post(base, '/v1/nope', {}, auth)).status).toBe(404);
    expect((await fetch(`${base}/v1/completions`, { headers: auth })).status).toBe(405);
  });

  it('413 for a body over the limit, declared or streamed', async () => {
    const big = JSON.stringify({ prompt: 'x'.repeat(100 * 1024), max_tokens: 1 });
    const r = await post(base, '/v1/completions', big, { Authorization: `Bearer ${KEY}` });
    expect(r.status).toBe(413);
    expect(await r.json()).toMatchObject({ error: { code: 'body_too_large' } });
    // no Content-Length (chunked): counted as it arrives
    const chunked = new ReadableStream({
      start(c) {
        for (let i = 0; i < 100; i++) c.enqueue(new TextEncoder().encode(i === 0 ? '{"prompt": "' : 'x'.repeat(1024)));
        c.close();
      },
    });
    const r2 = await fetch(`${base}/v1/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` }, body: chunked, duplex: 'half',
    } as RequestInit);
    expect(r2.status).toBe(413);
    // the server still serves
    const ok = await client.completions.create({ model: 'x', prompt: 'Once', max_tokens: 2 });
    expect(ok.usage?.completion_tokens).toBe(2);
  });
});

describeShared('server: the code pair, speculative methods, slots under load', (dir) => {
  let server: SpecdecServer;
  let base: string;
  let client: OpenAI;
  beforeAll(async () => {
    server = createServer({
      model: path.join(dir, 'models', 'code', 'code-target-q8_0.gguf'),
      draftModel: path.join(dir, 'models', 'code', 'code-draft-f16.gguf'),
      parallel: 2, maxQueue: 1,
    });
    base = await listen(server);
    client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it('a speculative method gives the autoregressive output, with drafted and accepted counts in timings', async () => {
    const prompt = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n';
    const ar = await client.completions.create({ model: 'x', prompt, max_tokens: 64, temperature: 0, method: 'autoregressive' } as never);
    for (const method of ['draft', 'auto']) {
      const sp = await client.completions.create({ model: 'x', prompt, max_tokens: 64, temperature: 0, method } as never);
      const t = (sp as unknown as { timings: { draft_n: number; draft_n_accepted: number; method: string } }).timings;
      expect({ method, text: sp.choices[0].text }).toEqual({ method, text: ar.choices[0].text });
      if (method === 'draft') {
        expect(t.method).toBe('draft');
        expect(t.draft_n).toBeGreaterThan(0);
        expect(t.draft_n_accepted).toBeGreaterThan(0);
      }
    }
    const plain = (ar as unknown as { timings: { draft_n: number } }).timings;
    expect(plain.draft_n).toBe(0);
    const m = await metrics(base);
    expect(m.get('specdec_draft_tokens_total')).toBeGreaterThan(0);
    expect(m.get('specdec_draft_tokens_accepted_total')).toBeGreaterThan(0);
    // the chat endpoint with a method, streamed
    const stream = await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: prompt }], max_tokens: 32, stream: true, method: 'draft' } as never);
    let text = '';
    for await (const c of stream as unknown as AsyncIterable<{ choices: Array<{ delta: { content?: string } }> }>) text += c.choices[0]?.delta.content ?? '';
    const again = await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: prompt }], max_tokens: 32, method: 'autoregressive' } as never);
    expect(text).toBe((again as unknown as { choices: Array<{ message: { content: string } }> }).choices[0].message.content);
  });

  it('two slots busy (streaming and not) and one request queued: the next one gets 429; clients that disconnect free their slots at once, and the slots serve again', async () => {
    const long = { model: 'x', prompt: 'import os\n', max_tokens: 1000, temperature: 0, ignore_eos: true, stream: true } as const;
    const before = await metrics(base);
    const acs = [new AbortController(), new AbortController(), new AbortController()];
    const started: Array<Promise<unknown>> = [];
    // a stream and a non-streaming request hold the slots
    const s0 = await client.completions.create(long, { signal: acs[0].signal });
    const it = s0[Symbol.asyncIterator]();
    await it.next();
    started.push((async () => { try { for (;;) if ((await it.next()).done) break; } catch { /* aborted */ } })());
    started.push(client.completions.create({ ...long, stream: false }, { signal: acs[1].signal }).catch((e: unknown) => e));
    await until(async () => (await metrics(base)).get('specdec_slots_busy') === 2, 5000);
    // a third waits in the queue
    const queued = client.completions.create({ ...long, stream: false }, { signal: acs[2].signal }).catch((e: unknown) => e);
    await until(async () => (await metrics(base)).get('specdec_requests_queued') === 1, 5000);
    let m = await metrics(base);
    expect(m.get('specdec_slots_busy')).toBe(2);
    // the queue is full: 429, as JSON
    const r = await post(base, '/v1/completions', { prompt: 'x', max_tokens: 1 });
    expect(r.status).toBe(429);
    expect(await r.json()).toMatchObject({ error: { type: 'rate_limit_error', code: 'queue_full' } });
    await expect(client.completions.create({ model: 'x', prompt: 'x', max_tokens: 1 })).rejects.toMatchObject({ status: 429 });

    // the queued one leaves, then the two generating ones: the slots are free within a step
    acs[2].abort();
    await until(async () => (await metrics(base)).get('specdec_requests_queued') === 0, 2000);
    const t0 = Date.now();
    acs[0].abort();
    acs[1].abort();
    await until(async () => (await metrics(base)).get('specdec_slots_busy') === 0, 2000);
    const freedMs = Date.now() - t0;
    await Promise.all(started);
    await queued;
    m = await metrics(base);
    expect(m.get('specdec_requests_total{outcome="aborted"}')! - before.get('specdec_requests_total{outcome="aborted"}')!).toBe(3);
    expect(m.get('specdec_requests_total{outcome="rejected"}')! - before.get('specdec_requests_total{outcome="rejected"}')!).toBe(2);
    // far less than the rest of the 1000-token generations (seconds on this machine)
    expect(freedMs).toBeLessThan(1000);
    const generated = m.get('specdec_tokens_predicted_total')! - before.get('specdec_tokens_predicted_total')!;
    expect(generated).toBeLessThan(2000);

    // both slots serve again, at once
    const [a, b] = await Promise.all([0, 1].map(() => client.completions.create({ model: 'x', prompt: 'def f(x):', max_tokens: 16, temperature: 0 })));
    expect(a.choices[0].text).toBe(b.choices[0].text);
    expect(a.usage?.completion_tokens).toBe(16);
  });

  it('/health: 503 with the reason when the model cannot be loaded', async () => {
    const bad = createServer({ model: path.join(dir, 'models', 'PROVENANCE.md') });
    await new Promise<void>((resolve) => bad.listen(0, '127.0.0.1', resolve));
    await expect(bad.ready).rejects.toMatchObject({ code: 'ERR_NOT_GGUF' });
    const url = `http://127.0.0.1:${(bad.address() as AddressInfo).port}`;
    const h = await fetch(`${url}/health`);
    expect(h.status).toBe(503);
    expect(await h.json()).toMatchObject({ status: 'error' });
    const c = await post(url, '/v1/completions', { prompt: 'a' });
    expect(c.status).toBe(503);
    expect(await c.json()).toMatchObject({ error: { type: 'unavailable_error', code: 'model_load_failed' } });
    await bad.dispose();
  });
});
