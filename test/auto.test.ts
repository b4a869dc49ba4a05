// 'auto' decides per step whether and with which drafter to speculate. With a draft model that cannot
// pay (random weights: its proposals are all rejected), it falls back to plain decoding: its stats
// show that most steps drafted nothing and that the draft model was dropped after being tried, and
// the greedy output stays the autoregressive one. The assertions are on its decisions, not on timings.
import { expect, it } from '@jest/globals';
import * as path from 'path';
import { loadModel } from '../lib';
import { cachedRandomModel } from './utils/random-model';
import { describeShared } from './utils/shared';

describeShared("'auto' with a drafter that cannot pay", (dir) => {
  const target = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const randomDraft = () => cachedRandomModel({ arch: 'llama', vocabFrom: target, type: 'f32', nEmbd: 64, nLayer: 1, nHead: 2, nHeadKv: 1, nFf: 128, nCtx: 1024, seed: 3 });

  it('falls back to plain decoding: most steps draft nothing, the draft model is dropped, the output is unchanged', async () => {
    const m = await loadModel(target);
    const d = await loadModel(await randomDraft());
    try {
      const s = await m.createSession({ contextSize: 1024, threads: 1 });
      // a prompt whose continuation is not a copy of it (retrieval finds little)
      const prompt = 'def checksum(data: bytes) -> int:\n    """Return the Adler-32 checksum of data."""\n';
      const ar = await s.generate(prompt, { maxTokens: 96, ignoreEos: true }).result();
      const au = await s.generate(prompt, { maxTokens: 96, ignoreEos: true, method: 'auto', draft: { model: d } }).result();
      expect(au.tokens).toEqual(ar.tokens);
      const a = au.stats.auto!;
      const steps = a.plainSteps + Object.values(a.steps).reduce((x, y) => x + y, 0);
      expect(Object.keys(a.steps).sort()).toEqual(['aded', 'draft', 'rasd']);
      expect(steps).toBeGreaterThan(20);
      expect(a.plainSteps / steps).toBeGreaterThan(0.5);
      expect(a.steps.draft).toBeGreaterThanOrEqual(1);  // tried (an optimistic prior) ...
      expect(a.steps.draft / steps).toBeLessThan(0.15);  // ... then dropped, but for exploration
      // a second generation in the session starts from what the first learnt (GenerationStats.auto)
      const again = await s.generate(prompt, { maxTokens: 96, ignoreEos: true, method: 'auto', draft: { model: d } }).result();
      expect(again.tokens).toEqual(ar.tokens);
      expect(again.stats.auto!.steps.draft / steps).toBeLessThan(0.15);
    } finally {
      await d.dispose();
      await m.dispose();
    }
  });
});
