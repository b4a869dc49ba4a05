// What lives with a session stays bounded however long it runs: ADED's tri-gram table (kept across
// generations, like the Token Recycling matrix) evicts the contexts refreshed longest ago; and what a
// session costs (KV cache, compute buffers, graph metadata) is measured, for the README.
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import { loadModel } from '../lib';
import { firstDiff } from './utils/engine';
import { Rng } from './utils/random-model';
import { describeShared, itWith } from './utils/shared';

// resident set size in bytes
function rss(): number {
  return Number(fs.readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096;
}
const MiB = (n: number) => (n / 2 ** 20).toFixed(1);

describeShared('bounded session memory', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const code = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');

  itWith(code)('a session of the code model at its default context: KV cache, compute buffers and graph metadata, measured', async () => {
    const m = await loadModel(code);
    const rss0 = rss();
    const s = await m.createSession({ threads: 1 });
    const native = s.nativeSession();
    const created = native._memory();
    const rss1 = rss();
    // prefill, one-token decoding, verification (lookup) and batched evaluation
    await s.generate('def fib(n):\n    if n < 2:\n        return n\n', { maxTokens: 48 }).result();
    await s.generate('def fib(n):\n    if n < 2:\n        return n\n', { maxTokens: 48, method: 'lookup' }).result();
    await s.evaluate([1, 2, 3], { allLogits: true });
    const used = native._memory();
    const rss2 = rss();
    const { layerCount, embeddingLength, headCount, headCountKv } = m.info;
    const kv = layerCount * 2 * (embeddingLength / headCount) * headCountKv * s.info.contextSize * 2;  // F16 K and V
    expect(used.kvBytes).toBeGreaterThanOrEqual(kv);
    expect(used.kvBytes).toBeLessThan(kv + 4096 * layerCount);
    // every graph is built in the one graph buffer, and the compute buffers were sized up front
    expect(used).toEqual(created);
    const total = used.kvBytes + used.computeBytes + used.graphBytes;
    // eslint-disable-next-line no-console
    console.log(`code model session (context ${s.info.contextSize}, batch ${s.info.batchSize}): KV ${MiB(used.kvBytes)} MiB, ` +
      `compute ${MiB(used.computeBytes)} MiB, graph metadata ${MiB(used.graphBytes)} MiB, total ${MiB(total)} MiB; ` +
      `RSS +${MiB(rss1 - rss0)} MiB at creation, +${MiB(rss2 - rss0)} MiB after generating`);
    await s.dispose();
    await m.dispose();
  });

  it("ADED's table stays under its bound over long generations, and ADED stays exact once it evicts", async () => {
    const m = await loadModel(stories);
    const s = await m.createSession({ contextSize: 2048 });
    const native = s.nativeSession();
    expect(native._adedSize().maxTrigrams).toBeGreaterThan(1000);  // the default bound
    const { maxTrigrams } = native._adedSize(2000);                    // a small one, reached in seconds
    // sampled at a high temperature from random prompts, the (token, token) contexts are many: 512^2 possible
    const rng = new Rng(1, 'aded-prompts');
    let peak = 0;
    let generated = 0;
    for (let g = 0; g < 60 && peak < maxTrigrams; g++) {
      s.truncate(0);
      const prompt = [1, ...Array.from({ length: 16 }, () => 3 + (rng.nextU32() % 509))];
      const r = await s.generate(prompt, { method: 'aded', maxTokens: 1000, ignoreEos: true, temperature: 2, topK: 0, topP: 1, minP: 0, seed: g }).result();
      generated += r.tokens.length;
      const z = native._adedSize();
      expect(z.trigrams).toBeLessThanOrEqual(maxTrigrams);
      expect(z.bigrams).toBeLessThanOrEqual(m.info.vocabSize);
      peak = Math.max(peak, z.trigrams);
    }
    expect({ peak, generated }).toEqual({ peak: maxTrigrams, generated: expect.any(Number) });  // the bound was reached: eviction ran
    // still lossless with a full table
    const prompt = m.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    s.truncate(0);
    const ar = await s.generate(prompt, { maxTokens: 128 }).result();
    s.truncate(0);
    const ad = await s.generate(prompt, { maxTokens: 128, method: 'aded' }).result();
    expect(firstDiff(ar.tokens, ad.tokens)).toBe(-1);
    expect(ad.stats.acceptedTokens).toBeGreaterThan(0);
    expect(native._adedSize().trigrams).toBeLessThanOrEqual(maxTrigrams);
    await m.dispose();
  }, 300_000);
});
