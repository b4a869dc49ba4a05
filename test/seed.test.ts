// The same seed gives the same output: sampled output is a function of (model, prompt, options, seed)
// alone. With verify: 'match' (the default) every method's sample at T = 0.8 (the full sampler chain,
// a repeat penalty included) is exactly the autoregressive sample for the seed, across prefix reuse
// (the same prompt again, another prompt, a prompt that continues an earlier generation) and after
// many generations in one session (the learning drafters' state grows meanwhile). The head methods
// ('medusa', 'eagle') need heads trained for the model: test/drafters.test.ts checks them.
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import { InvalidOptionError, loadModel, type GenerateOptions, type Model, type Session } from '../lib';
import { firstDiff } from './utils/engine';
import { describeShared, itWith } from './utils/shared';

const SAMPLING: GenerateOptions = { maxTokens: 40, temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1 };

async function tokensOf(s: Session, prompt: number[], o: GenerateOptions): Promise<{ tokens: number[]; accepted: number; reused: number }> {
  const r = await s.generate(prompt, { ...SAMPLING, ...o }).result();
  return { tokens: r.tokens, accepted: r.stats.acceptedTokens, reused: r.stats.promptTokensReused };
}

describeShared('the same seed gives the same output', (dir) => {
  const code = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const codeDraft = path.join(dir, 'models', 'code', 'code-draft-f16.gguf');
  const stories = path.join(dir, 'models', 'stories260K.gguf');

  itWith(code, codeDraft)('code pair: every method with verify \'match\' gives the autoregressive sample, across prefix reuse and many generations in one session', async () => {
    const m = await loadModel(code);
    const d = await loadModel(codeDraft);
    const texts = (JSON.parse(fs.readFileSync(path.join(dir, 'eval', 'code-prompts.json'), 'utf8')).prompts as { prompt: string }[]).slice(0, 2);
    const prompts = texts.map((t) => m.tokenize(t.prompt).slice(-200));
    // seed 1 on the second prompt: the re-evaluated last prompt token of a one-token prefix reuse
    // (decoding's numerics instead of the prefill's) gave another token 1
    const seeds = [5, 1];
    // references: fresh sessions
    const fresh = await m.createSession({ contextSize: 1024, threads: 1 });
    const ref: number[][] = [];
    for (let i = 0; i < prompts.length; i++) {
      fresh.truncate(0);
      ref.push((await tokensOf(fresh, prompts[i], { seed: seeds[i] })).tokens);
    }
    // a prompt that continues the first generation (its cells were decoded, not prefilled)
    const cont = prompts[0].concat(ref[0].slice(0, 20));
    fresh.truncate(0);
    const refCont = (await tokensOf(fresh, cont, { seed: 9 })).tokens;
    await fresh.dispose();

    const s = await m.createSession({ contextSize: 1024, threads: 1 });
    // the reported case: the same prompt twice in one session (the second reuses the whole prompt)
    for (let i = 0; i < prompts.length; i++) {
      expect((await tokensOf(s, prompts[i], { seed: seeds[i] })).tokens).toEqual(ref[i]);
      const again = await tokensOf(s, prompts[i], { seed: seeds[i] });
      expect({ prompt: i, tokens: again.tokens }).toEqual({ prompt: i, tokens: ref[i] });
      expect(again.reused).toBe(prompts[i].length);
    }
    s.truncate(0);
    await tokensOf(s, prompts[0], { seed: seeds[0] });
    const c = await tokensOf(s, cont, { seed: 9 });
    expect(c.tokens).toEqual(refCont);
    expect(c.reused).toBe(0);  // its cells after the prompt were decoded: a fresh prefill would chunk them otherwise

    const arms: [string, GenerateOptions][] = [
      ['lookup', { method: 'lookup' }], ['token-recycling', { method: 'token-recycling' }], ['aded', { method: 'aded' }],
      ['rasd', { method: 'rasd' }], ['auto', { method: 'auto' }], ['draft', { method: 'draft', draft: { model: d } }],
      ['rsd', { method: 'rsd', draft: { model: d } }], ['rsd beam-search', { method: 'rsd', draft: { model: d }, rsd: { tree: 'beam-search' } }],
      ['rasd + draft', { method: 'rasd', draft: { model: d } }], ['auto + draft', { method: 'auto', draft: { model: d } }],
    ];
    const report: { arm: string; prompt: number; at: number }[] = [];
    for (let round = 0; round < 2; round++) {
      for (const [arm, o] of arms) {
        let accepted = 0;
        for (let i = 0; i < prompts.length; i++) {
          const r = await tokensOf(s, prompts[i], { ...o, seed: seeds[i], verify: 'match' });
          accepted += r.accepted;
          const at = firstDiff(r.tokens, ref[i]);
          if (at >= 0) report.push({ arm, prompt: i, at });
        }
        expect({ arm, drafted: accepted > 0 }).toEqual({ arm, drafted: true });  // drafts were accepted: the verifier was exercised
      }
    }
    expect(report).toEqual([]);
    // rejection sampling follows the distribution, not the sample: it is not the autoregressive sample
    let differ = 0;
    for (let i = 0; i < prompts.length; i++) differ += firstDiff((await tokensOf(s, prompts[i], { method: 'lookup', seed: seeds[i], verify: 'rejection' })).tokens, ref[i]) >= 0 ? 1 : 0;
    expect(differ).toBeGreaterThan(0);
    expect(() => s.generate(prompts[0], { verify: 'exact' as never })).toThrow(InvalidOptionError);
    await s.dispose();
    await d.dispose();
    await m.dispose();
  }, 120_000);

  itWith(stories)('stories260K (ggml\'s kernels): the same prompt again in one session, and lookup with verify \'match\', give the autoregressive sample', async () => {
    const m: Model = await loadModel(stories);
    const prompt = m.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    const s = await m.createSession({ contextSize: 512 });
    const ref = (await tokensOf(s, prompt, { seed: 3, maxTokens: 64 })).tokens;
    for (let k = 0; k < 3; k++) {
      expect((await tokensOf(s, prompt, { seed: 3, maxTokens: 64 })).tokens).toEqual(ref);
      expect((await tokensOf(s, prompt, { seed: 3, maxTokens: 64, method: 'lookup' })).tokens).toEqual(ref);
    }
    await s.dispose();
    await m.dispose();
  }, 60_000);
});
