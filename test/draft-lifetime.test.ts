// A draft model's lifetime and interruption: the native generation lets go of its drafter (draft
// session, thread pool) when it ends, so disposing the draft model afterwards frees it; and an abort
// reaches the drafter's own work (its first Q8_0 weight copy, its prompt prefill, its proposals).
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { loadModel, type GenerateOptions, type Model } from '../lib';
import { binding } from '../lib/binding';
import { cachedRandomModel } from './utils/random-model';
import { describeShared } from './utils/shared';

const live = () => binding()._liveModels();

// resident set size in bytes (statm: resident pages, file-backed included)
function rss(): number {
  return Number(fs.readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096;
}

describeShared('draft models: freed when the generation ends, interrupted by an abort', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  // drafts for stories260K: random weights with its exact vocabulary (512 tokens)
  const smallDraft = () => cachedRandomModel({ arch: 'llama', vocabFrom: stories, type: 'f32', nEmbd: 32, nLayer: 1, nHead: 2, nHeadKv: 1, nFf: 64, nCtx: 2048, seed: 11 });
  // ~65 M parameters in F32 (~260 MB): its Q8_0 copy and a long prompt's prefill take far more than 100 ms
  const bigDraft = () => cachedRandomModel({ arch: 'llama', vocabFrom: stories, type: 'f32', nEmbd: 1024, nLayer: 4, nHead: 8, nHeadKv: 8, nFf: 4096, nCtx: 2048, seed: 21 });
  // a long prompt of ordinary tokens (ids 3..511)
  const longPrompt = (n: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 7919) % 509));

  it('a disposed draft model is freed once the generation ended (done, abort, a broken-off iteration), for every method that runs one', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession({ contextSize: 2048 });
    const file = await smallDraft();
    const endings: [string, (o: GenerateOptions) => Promise<void>][] = [
      ['done', async (o) => { await s.generate('Once upon a time', { ...o, maxTokens: 24 }).result(); }],
      ['abort', async (o) => {
        const ac = new AbortController();
        const run = s.generate('Once upon a time', { ...o, maxTokens: 100000, ignoreEos: true, signal: ac.signal });
        await expect((async () => { for await (const c of run) if (c.tokens.length) ac.abort(new Error('stop')); })()).rejects.toThrow('stop');
      }],
      ['break', async (o) => {
        for await (const c of s.generate('Once upon a time', { ...o, maxTokens: 100000, ignoreEos: true })) if (c.tokens.length) break;
      }],
    ];
    for (const method of ['draft', 'rsd', 'rasd', 'auto', 'ead'] as const) {
      for (const [ending, run] of endings) {
        const d = await loadModel(file);
        const before = live();
        s.truncate(0);
        await run({ method, draft: { model: d } });
        await d.dispose();
        expect({ method, ending, freed: before - live() }).toEqual({ method, ending, freed: 1 });
      }
    }
    await s.dispose();
    await m.dispose();
  });

  it('disposing a large draft model after a generation gives its memory back (RSS)', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession({ contextSize: 2048 });
    const file = await bigDraft();
    const size = fs.statSync(file).size;
    const d = await loadModel(file);
    await s.generate(longPrompt(64), { method: 'draft', draft: { model: d }, maxTokens: 8 }).result();
    const held = rss();
    await d.dispose();
    const freed = held - rss();
    // the mapped F32 weights and their Q8_0 copies (~1.27 × the file) go; at least the file's size must
    expect(freed).toBeGreaterThan(0.8 * size);
    await s.dispose();
    await m.dispose();
  });

  it("loadModel's draft: true makes the Q8_0 draft copies at load (aborted with the load's signal); the output is the same", async () => {
    const m = await loadModel(stories);
    const s = await m.createSession({ contextSize: 2048 });
    const file = await smallDraft();
    const lazy = await loadModel(file);
    const eager = await loadModel(file, { draft: true });
    const a = await s.generate('Once upon a time', { method: 'draft', draft: { model: lazy }, maxTokens: 32 }).result();
    const b = await s.generate('Once upon a time', { method: 'draft', draft: { model: eager }, maxTokens: 32 }).result();
    expect(b.tokens).toEqual(a.tokens);
    await expect(loadModel(file, { draft: 'yes' as never })).rejects.toThrow(/'draft' must be a boolean/);
    // the copy of a large draft model takes long enough for an abort to land in it, or in the load before
    const ac = new AbortController();
    const big = loadModel(await bigDraft(), { draft: true, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop loading')), 50);
    await expect(big).rejects.toThrow('stop loading');
    await Promise.all([lazy.dispose(), eager.dispose(), s.dispose()]);
    await m.dispose();
  });

  it('abort reaches the drafter: latency from abort() to the rejection during the Q8_0 copy, the draft prefill and decoding', async () => {
    const m = await loadModel(stories);
    // batches of 128: a node of the target's own prefill (attention over 512 rows) can take over 100 ms
    // on a busy machine, and this test is about the drafter
    const s = await m.createSession({ contextSize: 2048, batchSize: 128 });
    const file = await bigDraft();
    const prompt = longPrompt(1500);
    // an unaborted run first, for its phases' durations (a fresh model: the copy runs again)
    let d: Model = await loadModel(file);
    s.truncate(0);
    let t = performance.now();
    const full = await s.generate(prompt, { method: 'draft', draft: { model: d }, maxTokens: 16 }).result();
    const total = performance.now() - t;
    await d.dispose();
    expect(full.stats.prefillMs).toBeGreaterThan(300);  // the draft's copy and prefill are slow enough to show a stuck abort
    const latencies: { at: number; ms: number; reason: string }[] = [];
    const N = 16;
    for (let i = 0; i < N; i++) {
      const at = Math.round((i + 0.5) * (total / N));
      d = await loadModel(file);
      s.truncate(0);
      const ac = new AbortController();
      const run = s.generate(prompt, { method: 'draft', draft: { model: d }, maxTokens: 1 << 20, ignoreEos: true, signal: ac.signal });
      let t0 = 0;
      const timer = setTimeout(() => { t0 = performance.now(); ac.abort(new Error('aborted')); }, at);
      await expect(run.result()).rejects.toThrow('aborted');
      const t1 = performance.now();
      clearTimeout(timer);
      latencies.push({ at, ms: t1 - t0, reason: run.stats!.stopReason });
      await d.dispose();
    }
    const worst = Math.max(...latencies.map((l) => l.ms));
    // eslint-disable-next-line no-console
    console.log(`abort latency over ${N} runs (ms, abort at t ms of a ${total.toFixed(0)} ms run): ${latencies.map((l) => `${l.at}:${l.ms.toFixed(1)}`).join(' ')}; worst ${worst.toFixed(1)}`);
    expect(latencies.every((l) => l.reason === 'abort')).toBe(true);
    expect(worst).toBeLessThan(ABORT_BOUND_MS);
    await s.dispose();
    await m.dispose();
  });
});

// README, "Use": an abort is seen within one graph node or one weight slice. Measured worst cases
// over 16 aborts, on 2 CPUs shared with a 2-thread benchmark: 84 ms (without the abort reaching the
// drafter: 1.5 s). The target is 100 ms; the bound leaves a margin for a busy machine.
const ABORT_BOUND_MS = 250;
