// Online Speculative Decoding (`online` on method 'draft'): the differentiable forward pass the
// learner trains computes the model's own logits (llama, qwen2, qwen3 layouts, GQA), greedy
// output stays the autoregressive output while the draft model learns, acceptance rises over a
// stream of prompts, the learnt state saves and loads bit-exactly, and bad input is a typed error.
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import { InvalidOptionError, loadModel, SpecdecError, type Model } from '../lib';
import { cachedRandomModel } from './utils/random-model';
import { describeShared, itWith } from './utils/shared';

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function argmaxRows(a: Float32Array, V: number): number[] {
  const out: number[] = [];
  for (let r = 0; r * V < a.length; r++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (a[r * V + v] > a[r * V + best]) best = v;
    out.push(best);
  }
  return out;
}

describeShared('online speculative decoding', (dir) => {
  const code = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const codeDraft = path.join(dir, 'models', 'code', 'code-draft-f16.gguf');
  const stories = path.join(dir, 'models', 'stories260K.gguf');

  // the learner's trainable graph against the model's own evaluation of the same tokens
  async function forwardParity(target: Model, draft: Model, tokens: number[]): Promise<{ diff: number; scale: number; agree: number }> {
    const s = await target.createSession({ contextSize: 256, threads: 1 });
    await s.generate(tokens.slice(0, 4), { maxTokens: 2, method: 'draft', draft: { model: draft }, online: true }).result();
    const ours = (s as unknown as { nativeSession(): { _onlineForward(t: Int32Array): Float32Array } }).nativeSession()._onlineForward(Int32Array.from(tokens));
    const ds = await draft.createSession({ contextSize: 256, threads: 1 });
    const ref = await ds.evaluate(tokens, { allLogits: true });
    const V = draft.info.vocabSize;
    const a = argmaxRows(ours, V), b = argmaxRows(ref, V);
    let scale = 0;
    for (const x of ref) scale = Math.max(scale, Math.abs(x));
    await ds.dispose();
    await s.dispose();
    return { diff: maxAbsDiff(ours, ref), scale, agree: a.filter((x, i) => x === b[i]).length / a.length };
  }

  it('the trainable forward pass computes the model\'s logits: llama, qwen2 (biases), qwen3 (Q/K norms), GQA', async () => {
    const t = await loadModel(stories);
    const tokens = t.tokenize('Once upon a time, there was a little girl named Lily who liked to play.');
    for (const arch of ['llama', 'qwen2', 'qwen3'] as const) {
      const file = await cachedRandomModel({ arch, vocabFrom: stories, type: 'f32', nEmbd: 64, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 96, seed: 21 });
      const d = await loadModel(file);
      const r = await forwardParity(t, d, tokens);
      expect({ arch, close: r.diff < 1e-3 * Math.max(1, r.scale) }).toEqual({ arch, close: true });
      await d.dispose();
    }
    await t.dispose();
  });

  itWith(code, codeDraft)('on the code pair: the forward pass, greedy identity while learning, acceptance rising over a stream, save / load', async () => {
    const t = await loadModel(code);
    const d = await loadModel(codeDraft);
    const prompts = (JSON.parse(fs.readFileSync(path.join(dir, 'eval', 'code-prompts.json'), 'utf8')).prompts as { prompt: string }[])
      .slice(0, 6).map((p) => t.tokenize(p.prompt).slice(-200));

    // the F16 draft model against the learner's F32 copy: rounding only
    const fp = await forwardParity(t, d, prompts[0].slice(0, 64));
    expect(fp.diff).toBeLessThan(0.05);
    expect(fp.agree).toBeGreaterThan(0.95);

    const s = await t.createSession({ contextSize: 512, threads: 1 });
    const ar: number[][] = [];
    for (const p of prompts) {
      s.truncate(0);
      ar.push((await s.generate(p, { maxTokens: 48 }).result()).tokens);
    }
    // three passes over the stream: the draft model learns the target's continuations of it
    const online = { lr: 1e-4, every: 4, steps: 2 };
    const passRate: number[] = [];
    for (let pass = 0; pass < 3; pass++) {
      let acc = 0, drafted = 0;
      for (let i = 0; i < prompts.length; i++) {
        s.truncate(0);
        const r = await s.generate(prompts[i], { maxTokens: 48, method: 'draft', draft: { model: d }, online }).result();
        expect({ pass, i, tokens: r.tokens }).toEqual({ pass, i, tokens: ar[i] });
        acc += r.stats.acceptedTokens;
        drafted += r.stats.draftedTokens;
      }
      passRate.push(acc / drafted);
    }
    const st = s.onlineStats!;
    expect(st.updates).toBeGreaterThan(5);
    expect(st.steps).toBe(2 * st.updates);
    expect(st.windows).toBeGreaterThan(0);
    expect(passRate[2]).toBeGreaterThan(passRate[0] + 0.04);

    // without online learning the same stream accepts what the first pass accepted at most
    const plain = await t.createSession({ contextSize: 512, threads: 1 });
    let acc0 = 0, dr0 = 0;
    for (const p of prompts) {
      plain.truncate(0);
      const r = await plain.generate(p, { maxTokens: 48, method: 'draft', draft: { model: d } }).result();
      acc0 += r.stats.acceptedTokens;
      dr0 += r.stats.draftedTokens;
    }
    expect(passRate[2]).toBeGreaterThan(acc0 / dr0 + 0.04);
    expect(plain.onlineStats).toBeNull();

    // save / load: bit-exact, and the loaded state drafts as the saved one did
    const saved = s.saveOnline();
    const other = await t.createSession({ contextSize: 512, threads: 1 });
    other.loadOnline(saved, d);
    expect(Buffer.from(other.saveOnline()).equals(Buffer.from(saved))).toBe(true);
    s.truncate(0);
    const frozen = { lr: 1e-30, every: 1 << 20, steps: 1 };  // no update within this generation
    const a = await s.generate(prompts[1], { maxTokens: 48, method: 'draft', draft: { model: d }, online: frozen }).result();
    const b = await other.generate(prompts[1], { maxTokens: 48, method: 'draft', draft: { model: d }, online: frozen }).result();
    expect(b.tokens).toEqual(a.tokens);
    expect([b.stats.draftedTokens, b.stats.acceptedTokens]).toEqual([a.stats.draftedTokens, a.stats.acceptedTokens]);

    // typed errors: a corrupt state, a state for another model, options
    const bad = Uint8Array.from(saved);
    bad[0] ^= 0xff;
    expect(() => other.loadOnline(bad, d)).toThrow(InvalidOptionError);
    expect(() => other.loadOnline(saved.subarray(0, saved.length - 4), d)).toThrow(/truncated/);
    expect(() => other.loadOnline(saved, t)).toThrow(/another draft model/);
    expect(() => other.generate(prompts[0], { method: 'lookup', online: true })).toThrow(InvalidOptionError);
    expect(() => other.generate(prompts[0], { method: 'draft', draft: { model: d }, online: { lr: 0 } })).toThrow(InvalidOptionError);
    expect(() => other.generate(prompts[0], { method: 'draft', draft: { model: d }, online: { rate: 1 } as never })).toThrow(/rate/);
    const fresh = await t.createSession({ contextSize: 64 });
    expect(() => fresh.saveOnline()).toThrow(SpecdecError);

    // an abort reaches a generation that learns
    s.truncate(0);
    const ac = new AbortController();
    const g = s.generate(prompts[2], { maxTokens: 100000, ignoreEos: true, method: 'draft', draft: { model: d }, online: { every: 1, steps: 4 }, signal: ac.signal });
    await expect((async () => { for await (const c of g) if (c.tokens.length) ac.abort(new Error('stop now')); })()).rejects.toThrow('stop now');
    expect(g.stats?.stopReason).toBe('abort');

    for (const x of [fresh, other, plain, s]) await x.dispose();
    await d.dispose();
    await t.dispose();
  }, 300_000);
});
