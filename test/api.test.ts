// The public API: sampling, streaming, stop conditions, abort, dispose, the event loop, typed errors.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { execFile } from 'child_process';
import { availableParallelism } from 'os';
import * as path from 'path';
import { promisify } from 'util';
import {
  BusyError, ContextOverflowError, DisposedError, InvalidOptionError, loadModel, TokenOutOfRangeError, type Model,
} from '../lib';
import { describeShared } from './utils/shared';

const run = promisify(execFile);

describeShared('public API', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(stories);
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('reports model info', () => {
    expect(model.info).toMatchObject({
      architecture: 'llama', vocabSize: 512, contextLength: 2048, layerCount: 5, headCount: 8, headCountKv: 4,
      embeddingLength: 64, weightType: 'f32', backend: 'cpu', tokenizer: { type: 'spm', bos: 1, eos: 2, addBos: true },
    });
    expect(model.info.parameterCount).toBeGreaterThan(200000);
  });

  it('same seed gives the same sample, another seed another one', async () => {
    const s = await model.createSession();
    const opts = { maxTokens: 48, temperature: 1.0, topK: 0, topP: 1, minP: 0 };
    const a = await s.generate('Once upon a time', { ...opts, seed: 42 }).result();
    const b = await s.generate('Once upon a time', { ...opts, seed: 42 }).result();
    const c = await s.generate('Once upon a time', { ...opts, seed: 7 }).result();
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
    expect(a.stats.seed).toBe(42);
    await s.dispose();
  });

  it('top-k 1 sampling equals greedy; penalties change greedy output', async () => {
    const s = await model.createSession();
    const greedy = await s.generate('Once upon a time', { maxTokens: 40 }).result();
    const topk1 = await s.generate('Once upon a time', { maxTokens: 40, temperature: 0.8, topK: 1, seed: 3 }).result();
    expect(topk1.tokens).toEqual(greedy.tokens);
    const pen = await s.generate('Once upon a time', { maxTokens: 40, repeatPenalty: 1.5, frequencyPenalty: 0.5 }).result();
    expect(pen.tokens).not.toEqual(greedy.tokens);
    await s.dispose();
  });

  it('streams chunks whose text and tokens add up, with stats after the loop', async () => {
    const s = await model.createSession();
    const gen = s.generate('The little dog', { maxTokens: 64 });
    let text = '';
    const tokens: number[] = [];
    let chunks = 0;
    for await (const chunk of gen) {
      text += chunk.text;
      tokens.push(...chunk.tokens);
      chunks++;
    }
    expect(chunks).toBeGreaterThan(0);
    expect(tokens).toEqual(gen.tokens);
    expect(text).toBe(gen.text);
    // the stream is the tokens' pieces in the context of the prompt (so it keeps the leading space)
    expect(text).toBe(Buffer.concat(gen.tokens.map((t) => model.tokenizer.tokenToBytes(t))).toString('utf8'));
    expect(gen.stats).toMatchObject({ promptTokens: 5, generatedTokens: 64, stopReason: 'maxTokens', method: 'autoregressive' });
    expect(gen.stats!.decodeTokensPerSecond).toBeGreaterThan(0);
    expect(gen.stats!.prefillTokensPerSecond).toBeGreaterThan(0);
    await s.dispose();
  });

  it('stops at a stop string (excluded from the text)', async () => {
    const s = await model.createSession();
    const full = await s.generate('Once upon a time', { maxTokens: 64 }).result();
    const cut = full.text.indexOf('Lily');
    expect(cut).toBeGreaterThan(0);
    const stopped = await s.generate('Once upon a time', { maxTokens: 64, stop: ['Lily'] }).result();
    expect(stopped.text).toBe(full.text.slice(0, cut));
    expect(stopped.stats.stopReason).toBe('stop');
    await s.dispose();
  });

  it('stops at end of generation (the EOS token is not part of the output)', async () => {
    // stories260K separates stories with BOS and never emits EOS; the code model ends a file with <|endoftext|>
    const code = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
    const m = await loadModel(code);
    const s = await m.createSession({ contextSize: 256 });
    const r = await s.generate('if __name__ == "__main__":\n    main', { maxTokens: 100 }).result();
    expect(r.stats.stopReason).toBe('eos');
    expect(r.text).toBe('()\n');
    expect(r.tokens).not.toContain(m.info.tokenizer.eos);
    await m.dispose();
  });

  it('reuses the cached prompt prefix: the whole chunks of an earlier prefill, or the whole prompt again', async () => {
    // prompts are prefilled in chunks of batchSize tokens: a small one makes chunks to reuse
    const s = await model.createSession({ batchSize: 4 });
    const a = await s.generate('Once upon a time there was', { maxTokens: 8 }).result();
    const b = await s.generate('Once upon a time there was a dog', { maxTokens: 8 }).result();
    expect(a.stats.promptTokensReused).toBe(0);
    expect(b.stats.promptTokensReused).toBe(4 * Math.floor(a.stats.promptTokens / 4));
    const again = await s.generate('Once upon a time there was a dog', { maxTokens: 8 }).result();
    expect(again.stats.promptTokensReused).toBe(b.stats.promptTokens);
    expect(again.tokens).toEqual(b.tokens);
    const fresh = await model.createSession({ batchSize: 4 });
    const c = await fresh.generate('Once upon a time there was a dog', { maxTokens: 8 }).result();
    expect(b.tokens).toEqual(c.tokens);
    await s.dispose();
    await fresh.dispose();
  });

  it('abort mid-stream keeps the partial output and rejects with the signal reason', async () => {
    const s = await model.createSession();
    const ac = new AbortController();
    const gen = s.generate('Once upon a time', { maxTokens: 100000, signal: ac.signal });
    const reason = new Error('enough');
    let seen = 0;
    await expect((async () => {
      for await (const chunk of gen) {
        seen += chunk.tokens.length;
        if (seen >= 20) ac.abort(reason);
      }
    })()).rejects.toBe(reason);
    expect(gen.tokens.length).toBeGreaterThanOrEqual(20);
    expect(gen.tokens.length).toBeLessThan(100000);
    expect(gen.stats?.stopReason).toBe('abort');
    // the session is usable afterwards
    const again = await s.generate('Once upon a time', { maxTokens: 4 }).result();
    expect(again.tokens.length).toBe(4);
    // an already aborted signal rejects at once
    await expect(s.generate('x', { signal: AbortSignal.abort(reason) }).result()).rejects.toBe(reason);
    await s.dispose();
  });

  it('keeps the event loop turning during generation', async () => {
    const s = await model.createSession();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = Date.now();
    await s.generate('Once upon a time', { maxTokens: 1500 }).result();
    const elapsed = Date.now() - t0;
    clearInterval(timer);
    // a blocked loop would not tick at all; allow for timer coarseness
    expect(ticks).toBeGreaterThan(Math.min(20, elapsed / 10));
    await s.dispose();
  });

  it('dispose during generation waits for the native step, then calls throw DisposedError', async () => {
    const s = await model.createSession();
    const gen = s.generate('Once upon a time', { maxTokens: 100000 });
    const it = gen[Symbol.asyncIterator]();
    await it.next();
    const disposed = s.dispose();
    await expect(it.next()).rejects.toBeInstanceOf(DisposedError);
    await disposed;
    expect(s.disposed).toBe(true);
    expect(() => s.generate('x')).toThrow(DisposedError);
    await expect(s.evaluate([1])).rejects.toBeInstanceOf(DisposedError);
  });

  it('one generation at a time per session', async () => {
    const s = await model.createSession();
    const a = s.generate('Once upon a time', { maxTokens: 200 })[Symbol.asyncIterator]();
    const first = a.next();
    await expect(s.generate('x', { maxTokens: 2 }).result()).rejects.toBeInstanceOf(BusyError);
    await first;
    await a.return?.(undefined);
    await s.dispose();
  });

  it('typed errors for bad options and inputs', async () => {
    const s = await model.createSession({ contextSize: 64 });
    expect(() => s.generate('x', { temperature: -1 })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { maxTokens: 1.5 })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { topP: 2 })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'telepathy' as never })).toThrow(/method must be one of 'autoregressive'/);
    expect(() => s.generate('x', { stop: [''] })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { bogus: 1 } as never)).toThrow(/unknown generate option 'bogus'/);
    // the wrong verifier of the distribution tests' negative controls is no option for users
    expect(() => s.generate('x', { _testBiasedVerifier: true } as never)).toThrow(/unknown generate option '_testBiasedVerifier'/);
    expect(() => s.generate([1, 512])).toThrow(TokenOutOfRangeError);
    expect(() => s.generate([1, -1])).toThrow(TokenOutOfRangeError);
    expect(() => s.generate([])).toThrow(InvalidOptionError);
    expect(() => s.generate(42 as never)).toThrow(InvalidOptionError);
    expect(() => s.generate('word '.repeat(100))).toThrow(ContextOverflowError);
    expect(() => model.detokenize([9999])).toThrow(TokenOutOfRangeError);
    // the context fills up: generation stops with contextFull
    const r = await s.generate('Once upon a time', { maxTokens: 1000 }).result();
    expect(r.stats.stopReason).toBe('contextFull');
    // every cell holds a token; the last token sampled from the last cell's logits is emitted too
    expect(r.tokens.length + r.stats.promptTokens).toBe(65);
    await s.dispose();
    await expect(model.createSession({ contextSize: 0 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(model.createSession({ contextSize: 4096 })).rejects.toThrow(/larger than the model's training context/);
    await expect(model.createSession({ threads: 0 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(loadModel(stories, { backend: 'tpu' as never })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(loadModel(stories, { threads: -2 })).rejects.toBeInstanceOf(InvalidOptionError);
  });

  it('threads: a deterministic default that leaves a CPU to the event loop; explicit, at most the CPUs; auto calibration', async () => {
    const cpus = availableParallelism();
    const d = await model.createSession();
    expect(d.info.threads).toBe(Math.max(1, Math.min(cpus - 1, 8)));
    const e = await model.createSession({ threads: 1 });
    expect(e.info.threads).toBe(1);
    const a = await model.createSession({ threads: 'auto' });
    expect(a.info.threads).toBeGreaterThanOrEqual(1);
    expect(a.info.threads).toBeLessThanOrEqual(Math.min(cpus, 8));
    expect(a.info.usedTokens).toBe(0); // calibration leaves the cache empty
    const r = await a.generate('Once upon a time', { maxTokens: 8 }).result();
    expect(r.tokens).toEqual([432, 383, 286, 261, 376, 298, 315, 421]);
    // never more threads than CPUs (spinning barriers collapse when oversubscribed)
    const big = await model.createSession({ threads: cpus + 3 });
    expect(big.info.threads).toBe(cpus);
    await Promise.all([d.dispose(), e.dispose(), a.dispose(), big.dispose()]);
  });

  it('model.dispose disposes its sessions; later calls throw DisposedError', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession();
    await m.dispose();
    expect(s.disposed).toBe(true);
    expect(() => m.tokenize('x')).toThrow(DisposedError);
    await expect(m.createSession()).rejects.toBeInstanceOf(DisposedError);
    await m.dispose();
  });

  it('Symbol.asyncDispose disposes', async () => {
    const m = await loadModel(stories);
    await m[Symbol.asyncDispose]();
    expect(m.disposed).toBe(true);
  });

  it('loading reports progress and honours an abort signal', async () => {
    const seen: number[] = [];
    const m = await loadModel(stories, { onProgress: (f) => seen.push(f) });
    expect(seen[seen.length - 1]).toBe(1);
    await m.dispose();
    const reason = new Error('no');
    await expect(loadModel(stories, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  it('works from ESM and CommonJS', async () => {
    const root = path.resolve(__dirname, '..');
    const esm = `import { loadModel } from ${JSON.stringify(path.join(root, 'dist', 'index.mjs'))};
      const m = await loadModel(${JSON.stringify(stories)}); const s = await m.createSession();
      const r = await s.generate('Once upon a time', { maxTokens: 5 }).result(); console.log(JSON.stringify(r.tokens)); await m.dispose();`;
    const cjs = `const { loadModel } = require(${JSON.stringify(path.join(root, 'dist', 'index.js'))});
      (async () => { const m = await loadModel(${JSON.stringify(stories)}); const s = await m.createSession();
      const r = await s.generate('Once upon a time', { maxTokens: 5 }).result(); console.log(JSON.stringify(r.tokens)); await m.dispose(); })();`;
    const a = await run(process.execPath, ['--input-type=module', '-e', esm]);
    const b = await run(process.execPath, ['-e', cjs]);
    expect(JSON.parse(a.stdout)).toEqual([432, 383, 286, 261, 376]);
    expect(JSON.parse(b.stdout)).toEqual([432, 383, 286, 261, 376]);
  });
});
