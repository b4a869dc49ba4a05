// The tree-drafting methods (rsd, token-recycling, aded, rasd, auto; draft with branches):
// greedy output equals autoregressive decoding on stories260K and on the code pair, sampling
// follows the autoregressive distribution (chi-square with a wrong verifier as the negative
// control), the KV cache after a tree verification equals an autoregressive one, tree budgets
// at their limits, abort, and the Token Recycling matrix's save / load.
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import { InvalidOptionError, loadModel, SpecdecError, type GenerateOptions, type Model } from '../lib';
import { TEST_BIASED_VERIFIER } from '../lib/session';
import { cachedRandomModel } from './utils/random-model';
import { firstDiff } from './utils/engine';
import { chiCritical, chiSquare } from './utils/stats';
import { describeShared, itWith } from './utils/shared';

const STORY_STARTS = [
  'Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a big', 'Tom and Sue', 'The sun was', 'A little bird',
  'Mom said', 'There was a cat', 'The boy saw', 'Sara had a toy', 'In the park', 'The big tree', 'Ben liked to',
  'The girl and her mom', 'A dog named Max', 'It was a rainy day', 'The king', 'Anna found a box', 'The car went',
];

type Method = NonNullable<GenerateOptions['method']>;
const TREE_METHODS: Method[] = ['rsd', 'token-recycling', 'aded', 'rasd', 'auto'];
const needsDraft = (m: Method) => m === 'rsd' || m === 'draft';

describeShared('tree drafts', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const code = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const codeDraft = path.join(dir, 'models', 'code', 'code-draft-f16.gguf');
  const storiesDraft = () => cachedRandomModel({ arch: 'llama', vocabFrom: stories, type: 'f32', nEmbd: 32, nLayer: 1, nHead: 2, nHeadKv: 1, nFf: 64, nCtx: 2048, seed: 11 });

  function opts(method: Method, draft: Model | undefined, extra: GenerateOptions = {}): GenerateOptions {
    return { method, ...(needsDraft(method) || (draft && (method === 'auto' || method === 'rasd')) ? { draft: { model: draft! } } : {}), ...extra };
  }

  it('greedy output equals autoregressive on stories260K, every tree method, 20 prompts x 128 tokens', async () => {
    const m = await loadModel(stories);
    const d = await loadModel(await storiesDraft());
    const s = await m.createSession({ contextSize: 2048 });
    const ar: number[][] = [];
    for (const text of STORY_STARTS) {
      s.truncate(0);
      ar.push((await s.generate(m.tokenize(text), { maxTokens: 128 }).result()).tokens);
    }
    for (const method of TREE_METHODS) {
      const bad: number[] = [];
      let drafted = 0;
      let compactions = 0;
      for (let i = 0; i < STORY_STARTS.length; i++) {
        s.truncate(0);
        const r = await s.generate(m.tokenize(STORY_STARTS[i]), { maxTokens: 128, ...opts(method, d) }).result();
        if (firstDiff(r.tokens, ar[i]) >= 0) bad.push(i);
        drafted += r.stats.draftedTokens;
        compactions += r.stats.treeCompactions;
        expect(r.stats.method).toBe(method);
      }
      expect({ method, bad }).toEqual({ method, bad: [] });
      expect(drafted).toBeGreaterThan(100);
      if (method === 'token-recycling') expect(compactions).toBeGreaterThan(0); // off-first-branch paths were taken
    }
    await d.dispose();
    await m.dispose();
  }, 600_000);

  itWith(codeDraft)('greedy output equals autoregressive on the code pair, every tree method and draft, 20 prompts x 128 tokens', async () => {
    const m = await loadModel(code);
    const d = await loadModel(codeDraft);
    const prompts = (JSON.parse(fs.readFileSync(path.join(dir, 'eval', 'code-prompts.json'), 'utf8')).prompts as { prompt: string }[]).slice(0, 20).map((p) => m.tokenize(p.prompt).slice(-400));
    const s = await m.createSession({ contextSize: 1024, threads: 1 });
    const ar: number[][] = [];
    for (const p of prompts) {
      s.truncate(0);
      ar.push((await s.generate(p, { maxTokens: 128 }).result()).tokens);
    }
    for (const method of ['draft', ...TREE_METHODS] as Method[]) {
      const bad: number[] = [];
      for (let i = 0; i < prompts.length; i++) {
        s.truncate(0);
        const r = await s.generate(prompts[i], { maxTokens: 128, ...opts(method, d) }).result();
        if (firstDiff(r.tokens, ar[i]) >= 0) bad.push(i);
      }
      expect({ method, bad }).toEqual({ method, bad: [] });
    }
    await d.dispose();
    await m.dispose();
  }, 600_000);

  // independent samples per arm (see speculative.test.ts)
  async function sample(m: Model, prompt: number[], n: number, seed0: number, o: GenerateOptions): Promise<Map<string, number>> {
    const s = await m.createSession({ contextSize: 256 });
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      // recursive rejection sampling (verify: 'match' is the autoregressive sample itself: test/seed.test.ts)
      const r = await s.generate(prompt, { maxTokens: 3, temperature: 1.0, topK: 0, topP: 1, minP: 0, seed: seed0 + i, verify: 'rejection', ...o }).result();
      const key = r.tokens.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    await s.dispose();
    return counts;
  }

  it('sampling follows the autoregressive distribution for every tree method (chi-square, 10,000 samples each); a wrong verifier is rejected', async () => {
    const m = await loadModel(stories);
    const d = await loadModel(await storiesDraft());
    const prompt = m.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    const N = 10000;
    const ar = await sample(m, prompt, N, 1, {});
    let seed = 10_000_000;
    const arms: [string, GenerateOptions][] = TREE_METHODS.map((method) => [method, opts(method, d)]);
    arms.push(['rsd (beam search)', opts('rsd', d, { rsd: { tree: 'beam-search' } })]);
    for (const [name, o] of arms) {
      const got = await sample(m, prompt, N, (seed += 1_000_000), o);
      const [stat, dof] = chiSquare(ar, got, N, N);
      expect({ name, dofOk: dof > 10 }).toEqual({ name, dofOk: true });
      expect({ name, stat: Math.round(stat) <= chiCritical(dof) }).toEqual({ name, stat: true });
    }
    // negative control on a tree method whose trees have siblings: the first child always accepted
    const biased = await sample(m, prompt, N, (seed += 1_000_000), opts('rsd', d, { [TEST_BIASED_VERIFIER]: true } as GenerateOptions));
    const [stat2, dof2] = chiSquare(ar, biased, N, N);
    expect(stat2).toBeGreaterThan(chiCritical(dof2));
    await d.dispose();
    await m.dispose();
  }, 900_000);

  it('after tree verifications the KV cache equals an autoregressive one: the next logits are bit-identical', async () => {
    const m = await loadModel(stories);
    const prompt = m.tokenize('Once upon a time, there was a little girl named Lily. She');
    const tr = await m.createSession({ contextSize: 512 });
    // warm the matrix so that trees branch, then a generation with off-first-branch paths
    await tr.generate(prompt, { maxTokens: 64, method: 'token-recycling' }).result();
    tr.truncate(0);
    const r = await tr.generate(prompt, { maxTokens: 96, method: 'token-recycling', draftMax: 32 }).result();
    expect(r.stats.treeCompactions).toBeGreaterThan(0);
    const ar = await m.createSession({ contextSize: 512 });
    const a = await ar.generate(prompt, { maxTokens: 96 }).result();
    expect(a.tokens).toEqual(r.tokens);
    // a speculative generation may end with its last token already in the cache: compare at the same length
    const used = Math.min(ar.info.usedTokens, tr.info.usedTokens);
    ar.truncate(used);
    tr.truncate(used);
    for (const next of [r.tokens[r.tokens.length - 1], 100, 200]) {
      const la = await ar.evaluate([next]);
      const lt = await tr.evaluate([next]);
      expect(Buffer.compare(Buffer.from(la.buffer, la.byteOffset, la.byteLength), Buffer.from(lt.buffer, lt.byteOffset, lt.byteLength))).toBe(0);
      ar.truncate(ar.info.usedTokens - 1);
      tr.truncate(tr.info.usedTokens - 1);
    }
    await m.dispose();
  });

  it('tree budgets at the limits (1 node, 255 nodes = 256 tokens in one pass) keep the output', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession({ contextSize: 2048 });
    const prompt = m.tokenize('Once upon a time, there was a little girl. Once upon a time');
    const ar = await s.generate(prompt, { maxTokens: 200 }).result();
    await s.generate(prompt, { maxTokens: 200, method: 'token-recycling' }).result(); // fill the matrix
    for (const draftMax of [1, 255]) {
      s.truncate(0);
      const r = await s.generate(prompt, { maxTokens: 200, method: 'token-recycling', draftMax }).result();
      expect(firstDiff(r.tokens, ar.tokens)).toBe(-1);
      expect(r.stats.draftedTokens / r.stats.verifyPasses).toBeGreaterThan(draftMax === 1 ? 0.5 : 30);
      expect(r.stats.draftedTokens / r.stats.verifyPasses).toBeLessThanOrEqual(draftMax);
    }
    await m.dispose();
  });

  it('abort during tree verification stops the generation', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession();
    const ac = new AbortController();
    const g = s.generate('Once upon a time', { maxTokens: 100000, method: 'token-recycling', draftMax: 64, ignoreEos: true, signal: ac.signal });
    await expect((async () => { for await (const c of g) if (c.tokens.length) ac.abort(new Error('stop now')); })()).rejects.toThrow('stop now');
    expect(g.stats?.stopReason).toBe('abort');
    await m.dispose();
  });

  it('Token Recycling matrix: save, load, validation, and its size for a 32k vocabulary', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession();
    await s.generate('Once upon a time', { maxTokens: 32, method: 'token-recycling' }).result();
    const saved = s.saveTokenRecycling();
    expect(saved.byteLength).toBe(16 + m.info.vocabSize * 8 * 4);
    // the README's figure, measured on a real 32k vocabulary (a random-weight model with Llama 2's): ~1 MiB
    const big = await loadModel(await cachedRandomModel({ arch: 'llama', vocabFrom: path.join(dir, 'models', 'vocab', 'ggml-vocab-llama-spm.gguf'), type: 'f16', seed: 7 }));
    const bs = await big.createSession({ contextSize: 64 });
    await bs.generate('Hello', { maxTokens: 4, method: 'token-recycling' }).result();
    const bigSaved = bs.saveTokenRecycling();
    expect(big.info.vocabSize).toBe(32000);
    expect(bigSaved.byteLength).toBe(16 + 32000 * 8 * 4);
    expect(bigSaved.byteLength).toBeLessThan(1.01 * 1024 * 1024);
    await big.dispose();
    const other = await m.createSession();
    other.loadTokenRecycling(saved);
    expect(Buffer.from(other.saveTokenRecycling()).equals(Buffer.from(saved))).toBe(true);
    // a loaded matrix drafts from the first step
    const r = await other.generate('Once upon a time', { maxTokens: 16, method: 'token-recycling' }).result();
    expect(r.stats.draftedTokens).toBeGreaterThan(0);
    expect(() => other.loadTokenRecycling(saved.subarray(0, 100))).toThrow(SpecdecError);
    const bad = Uint8Array.from(saved);
    bad[8] ^= 1; // another vocabulary size
    expect(() => other.loadTokenRecycling(bad)).toThrow(/vocabulary/);
    expect(() => other.loadTokenRecycling('x' as unknown as Uint8Array)).toThrow(InvalidOptionError);
    await m.dispose();
  });

  it('rasd retrieves from a user corpus; options are checked', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession({ contextSize: 1024 });
    const prompt = 'Once upon a time';
    const ar = await s.generate(prompt, { maxTokens: 64 }).result();
    s.truncate(0);
    // the corpus holds the very continuation: retrieval drafts it
    const r = await s.generate(prompt, { maxTokens: 64, method: 'rasd', retrieval: { corpus: [prompt + ar.text] } }).result();
    expect(r.tokens).toEqual(ar.tokens);
    expect(r.stats.acceptedTokens).toBeGreaterThan(40);
    expect(() => s.generate(prompt, { method: 'lookup', retrieval: { corpus: 'x' } })).toThrow(InvalidOptionError);
    expect(() => s.generate(prompt, { method: 'rasd', retrieval: { corpus: [[1, 2, 1e9]] } })).toThrow(/token id/);
    expect(() => s.generate(prompt, { method: 'rsd' })).toThrow(/needs `draft: \{ model \}`/);
    expect(() => s.generate(prompt, { method: 'aded', draft: { model: m } })).toThrow(/does not use a draft model/);
    expect(() => s.generate(prompt, { method: 'lookup', rsd: { tree: 'beam-search' } })).toThrow(InvalidOptionError);
    await m.dispose();
  });
});
