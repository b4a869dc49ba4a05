// Speculative decoding (prompt lookup, draft model): exactly the autoregressive output when greedy,
// the autoregressive distribution when sampling (a chi-square test, with a wrong verifier as the
// negative control), and the usual abort/stop behaviour.
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, VocabularyMismatchError, type Model, type Session } from '../lib';
import { TEST_BIASED_VERIFIER } from '../lib/session';
import { cachedRandomModel } from './utils/random-model';
import { firstDiff } from './utils/engine';
import { describeShared, itWith } from './utils/shared';
import { chiCritical, chiSquare } from './utils/stats';

const STORY_STARTS = [
  'Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a big', 'Tom and Sue', 'The sun was', 'A little bird',
  'Mom said', 'There was a cat', 'The boy saw', 'Sara had a toy', 'In the park', 'The big tree', 'Ben liked to',
  'The girl and her mom', 'A dog named Max', 'It was a rainy day', 'The king', 'Anna found a box', 'The car went',
];

async function both(s: Session, prompt: number[], n: number, draft?: Model) {
  s.truncate(0);
  const ar = await s.generate(prompt, { maxTokens: n }).result();
  s.truncate(0);
  const lk = await s.generate(prompt, draft ? { maxTokens: n, method: 'draft', draft: { model: draft } } : { maxTokens: n, method: 'lookup' }).result();
  return { ar, lk };
}

describeShared('speculative decoding: prompt lookup and draft model', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const code = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const codeDraft = path.join(dir, 'models', 'code', 'code-draft-f16.gguf');
  // a draft for stories260K: random weights with its exact vocabulary
  const storiesDraft = () => cachedRandomModel({ arch: 'llama', vocabFrom: stories, type: 'f32', nEmbd: 32, nLayer: 1, nHead: 2, nHeadKv: 1, nFf: 64, nCtx: 2048, seed: 11 });

  it('greedy output equals autoregressive: stories260K, 20 prompts x 128 tokens', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession({ contextSize: 2048 });
    const bad: string[] = [];
    let accepted = 0;
    for (const text of STORY_STARTS) {
      const { ar, lk } = await both(s, m.tokenize(text), 128);
      if (firstDiff(ar.tokens, lk.tokens) >= 0) bad.push(text);
      accepted += lk.stats.acceptedTokens;
      expect(lk.stats.method).toBe('lookup');
    }
    expect(bad).toEqual([]);
    expect(accepted).toBeGreaterThan(100); // the drafter really drafted and was accepted
    await m.dispose();
  });

  it('draft model: greedy output equals autoregressive on stories260K (20 prompts x 128 tokens); vocabulary mismatch is a typed error', async () => {
    const m = await loadModel(stories);
    const d = await loadModel(await storiesDraft());
    const s = await m.createSession({ contextSize: 2048 });
    const bad: string[] = [];
    let drafted = 0;
    for (const text of STORY_STARTS) {
      const { ar, lk } = await both(s, m.tokenize(text), 128, d);
      if (firstDiff(ar.tokens, lk.tokens) >= 0) bad.push(text);
      drafted += lk.stats.draftedTokens;
      expect(lk.stats.method).toBe('draft');
    }
    expect(bad).toEqual([]);
    expect(drafted).toBeGreaterThan(1000);
    const other = await loadModel(path.join(dir, 'models', 'llama-2-tiny-random.gguf'));
    expect(() => s.generate('x', { method: 'draft', draft: { model: other } })).toThrow(VocabularyMismatchError);
    expect(() => s.generate('x', { method: 'draft' })).toThrow(/needs `draft: \{ model \}`/);
    await other.dispose();
    await d.dispose();
    await m.dispose();
  });

  itWith(codeDraft)('draft model: greedy output equals autoregressive on the code pair, 20 prompts x 128 tokens', async () => {
    const m = await loadModel(code);
    const d = await loadModel(codeDraft);
    const prompts = (JSON.parse(fs.readFileSync(path.join(dir, 'eval', 'code-prompts.json'), 'utf8')).prompts as { prompt: string }[]).slice(0, 20);
    const s = await m.createSession({ contextSize: 1024, threads: 1 });
    const bad: number[] = [];
    let accepted = 0;
    for (let i = 0; i < prompts.length; i++) {
      const { ar, lk } = await both(s, m.tokenize(prompts[i].prompt).slice(-400), 128, d);
      if (firstDiff(ar.tokens, lk.tokens) >= 0) bad.push(i);
      accepted += lk.stats.acceptedTokens;
    }
    expect(bad).toEqual([]);
    expect(accepted).toBeGreaterThan(20 * 60); // the draft agrees often (tau ~6-8 with 8 drafted tokens)
    await d.dispose();
    await m.dispose();
  });

  itWith(code)('greedy output equals autoregressive: code target, 20 prompts x 128 tokens, 1 and 2 threads', async () => {
    const m = await loadModel(code);
    const prompts = (JSON.parse(fs.readFileSync(path.join(dir, 'eval', 'code-prompts.json'), 'utf8')).prompts as { prompt: string }[]).slice(0, 20);
    for (const threads of [1, 2]) {
      const s = await m.createSession({ contextSize: 1024, threads });
      const bad: number[] = [];
      for (let i = 0; i < prompts.length; i++) {
        if (threads === 2 && i % 4 !== 0) continue; // a sample at 2 threads (split-KV attention) keeps the suite short
        const { ar, lk } = await both(s, m.tokenize(prompts[i].prompt).slice(-400), 128);
        if (firstDiff(ar.tokens, lk.tokens) >= 0) bad.push(i);
      }
      expect({ threads, bad }).toEqual({ threads, bad: [] });
      await s.dispose();
    }
    await m.dispose();
  });

  // independent samples: each arm draws its own seeds (shared seeds would couple the arms, since a
  // draft equal to the target's top token is accepted on the same uniform that picks it)
  async function sampleTokens(m: Model, prompt: number[], n: number, seed0: number, opts: Record<string, unknown>): Promise<Map<string, number>> {
    const s = await m.createSession({ contextSize: 256 });
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      // recursive rejection sampling (verify: 'match' is the autoregressive sample itself: test/seed.test.ts)
      const r = await s.generate(prompt, { maxTokens: 3, temperature: 1.0, topK: 0, topP: 1, minP: 0, seed: seed0 + i, verify: 'rejection', ...opts } as never).result();
      const key = r.tokens.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    await s.dispose();
    return counts;
  }

  it('sampling follows the autoregressive distribution (chi-square, 10,000 samples each), and a wrong verifier is rejected', async () => {
    const m = await loadModel(stories);
    // a prompt whose n-grams repeat, so lookup drafts at (nearly) every step
    const prompt = m.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    const N = 10000;
    const ar = await sampleTokens(m, prompt, N, 1, {});
    const lk = await sampleTokens(m, prompt, N, 1_000_001, { method: 'lookup' });
    const [stat, dof] = chiSquare(ar, lk, N, N);
    expect(dof).toBeGreaterThan(10);
    expect(stat).toBeLessThan(chiCritical(dof));
    // negative control: a verifier that accepts every draft token
    const biased = await sampleTokens(m, prompt, N, 2_000_001, { method: 'lookup', [TEST_BIASED_VERIFIER]: true } as Record<string, unknown>);
    const [stat2, dof2] = chiSquare(ar, biased, N, N);
    expect(stat2).toBeGreaterThan(chiCritical(dof2));
    await m.dispose();
  });

  it('draft model sampling follows the autoregressive distribution (chi-square, 10,000 samples each), and a wrong verifier is rejected', async () => {
    const m = await loadModel(stories);
    const d = await loadModel(await storiesDraft());
    const prompt = m.tokenize('Once upon a time');
    const N = 10000;
    const ar = await sampleTokens(m, prompt, N, 3_000_001, {});
    const dr = await sampleTokens(m, prompt, N, 4_000_001, { method: 'draft', draft: { model: d } });
    const [stat, dof] = chiSquare(ar, dr, N, N);
    // enough categories (continuations with >= 5 expected samples) for the test to have power; how many
    // is a property of the samples drawn (10 with these seeds, 11 before the sampler stopped sorting the
    // unfiltered vocabulary, which maps each seed of rejection sampling to another token)
    expect(dof).toBeGreaterThanOrEqual(8);
    expect(stat).toBeLessThan(chiCritical(dof));
    const biased = await sampleTokens(m, prompt, N, 5_000_001, { method: 'draft', draft: { model: d }, [TEST_BIASED_VERIFIER]: true } as Record<string, unknown>);
    const [stat2, dof2] = chiSquare(ar, biased, N, N);
    expect(stat2).toBeGreaterThan(chiCritical(dof2));
    await d.dispose();
    await m.dispose();
  });

  it('verification at the batch limits: 1 drafted token, and 255 (256 tokens in one pass)', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession({ contextSize: 2048 });
    // a long text whose opening (unique) comes back at the end: lookup drafts the whole text after it
    const head = m.tokenize('Zq Xv Jk Wp', { addBos: false });
    const body = m.tokenize(STORY_STARTS.map((t) => `${t} went to see the big red ball in the park.`).join(' '), { addBos: false });
    expect(body.length).toBeGreaterThan(300);
    const prompt = [m.info.tokenizer.bos, ...head, ...body, ...head];
    s.truncate(0);
    const ar = await s.generate(prompt, { maxTokens: 300 }).result();
    for (const draftMax of [1, 255]) {
      s.truncate(0);
      const r = await s.generate(prompt, { maxTokens: 300, method: 'lookup', draftMax }).result();
      expect(firstDiff(r.tokens, ar.tokens)).toBe(-1);
      expect(r.stats.draftedTokens).toBeGreaterThan(draftMax === 1 ? 50 : 255);
    }
    await m.dispose();
  });

  it('stops at stop strings, maxTokens and abort like autoregressive decoding', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession();
    const full = await s.generate('Once upon a time', { maxTokens: 64 }).result();
    const cut = full.text.indexOf('Lily');
    const stopped = await s.generate('Once upon a time', { maxTokens: 64, method: 'lookup', stop: 'Lily' }).result();
    expect(stopped.text).toBe(full.text.slice(0, cut));
    for (const n of [1, 2, 7, 33]) {
      const r = await s.generate('Once upon a time', { maxTokens: n, method: 'lookup' }).result();
      expect(r.tokens).toEqual(full.tokens.slice(0, n));
    }
    const ac = new AbortController();
    const g = s.generate('Once upon a time', { maxTokens: 100000, method: 'lookup', signal: ac.signal });
    await expect((async () => { for await (const c of g) if (c.tokens.length) ac.abort(new Error('x')); })()).rejects.toThrow('x');
    await m.dispose();
  });
});
