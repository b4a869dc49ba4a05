// The sampler chain against a reference that sorts the whole vocabulary (what the chain did before it
// learned partial selection): the same tokens with the same probabilities, the most likely first (in
// the same order where top-k sorts them), for every filter setting, on peaked and flat logits (flat
// ones put tens of thousands of tokens in the top-p set), with ties (broken by token id) and -inf
// logits.
import { describe, expect, it } from '@jest/globals';
import { binding } from '../lib/binding';

const b = binding();

/** A small deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

interface Opts { temperature: number; topK: number; topP: number; minP: number; repeatPenalty: number; penaltyLastN: number }

/** The chain's order with a full sort (penalties -> top-k -> top-p -> min-p -> temperature -> softmax). */
function reference(logits: Float32Array, o: Opts, history: number[]): { ids: number[]; p: number[] } {
  const l = Array.from(logits);
  if (o.repeatPenalty !== 1) {
    for (const id of new Set(history.slice(-o.penaltyLastN))) l[id] = l[id] <= 0 ? l[id] * Math.fround(o.repeatPenalty) : l[id] / Math.fround(o.repeatPenalty);
  }
  let c = l.map((logit, id) => ({ id, logit: Math.fround(logit) }));
  c.sort((x, y) => (y.logit - x.logit) || (x.id - y.id));
  if (o.topK > 0 && o.topK < c.length) c = c.slice(0, o.topK);
  const softmax = (t: number) => {
    const mx = c[0].logit;
    const w = c.map((x) => Math.exp((x.logit - mx) / t));
    const z = w.reduce((a, v) => a + v, 0);
    return w.map((v) => v / z);
  };
  if (o.topP < 1) {
    const p = softmax(1);
    let cum = 0;
    let keep = c.length;
    for (let i = 0; i < p.length; ++i) {
      cum += p[i];
      if (cum >= o.topP) { keep = i + 1; break; }
    }
    c = c.slice(0, Math.max(1, keep));
  }
  if (o.minP > 0) {
    const thr = c[0].logit + Math.log(o.minP);
    let keep = 1;
    while (keep < c.length && c[keep].logit >= thr) keep++;
    c = c.slice(0, keep);
  }
  return { ids: c.map((x) => x.id), p: softmax(o.temperature) };
}

function makeLogits(n: number, seed: number, scale: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; ++i) out[i] = Math.round(normal(r) * scale * 8) / 8;  // rounded: many ties
  for (let i = 0; i < n; i += 97) out[i] = -Infinity;
  return out;
}

/**
 * 'equal' when `got` holds the reference's tokens with its probabilities, the most likely first; in
 * the reference's order too when `ordered` (top-k on: the chain sorts its k tokens). Else the first
 * difference (one expect per case: element-wise expects are slow on 60k tokens).
 */
function sameDistribution(got: { ids: Int32Array; p: Float32Array }, ref: { ids: number[]; p: number[] }, ordered: boolean): string {
  if (got.ids.length !== ref.ids.length) return `${got.ids.length} tokens, the reference ${ref.ids.length}`;
  if (got.ids[0] !== ref.ids[0]) return `first token ${got.ids[0]}, the reference's ${ref.ids[0]}`;
  const want = new Map(ref.ids.map((id, i) => [id, ref.p[i]]));
  for (let i = 0; i < got.ids.length; ++i) {
    const id = got.ids[i];
    if (ordered && id !== ref.ids[i]) return `token ${i}: ${id}, the reference's ${ref.ids[i]}`;
    const p = want.get(id);
    if (p === undefined) return `token ${id} is not in the reference's set`;
    if (Math.abs(got.p[i] - p) > 1e-6 + 1e-4 * p) return `p(${id}) = ${got.p[i]}, the reference's ${p}`;
    want.delete(id);  // each token once
  }
  return 'equal';
}

describe('sampler chain: partial selection equals a full sort', () => {
  const settings: Array<Partial<Opts>> = [
    { topK: 40, topP: 0.95, minP: 0.05 },  // the defaults
    { topK: 0, topP: 0.95, minP: 0.05 },   // top-k off (OpenAI-shaped requests)
    { topK: 0, topP: 0.95, minP: 0 },
    { topK: 0, topP: 0.5, minP: 0 },
    { topK: 0, topP: 0.999, minP: 0 },
    { topK: 0, topP: 1, minP: 0.05 },      // min-p alone
    { topK: 0, topP: 1, minP: 3 },         // min-p above 1: only the most likely stays
    { topK: 5000, topP: 1, minP: 0 },
    { topK: 0, topP: 0.9, minP: 0.01, repeatPenalty: 1.3 },
  ];
  for (const [name, n, scale] of [['peaked', 8192, 4], ['flat', 8192, 0.3], ['flat, 60k', 60000, 0.2]] as const) {
    for (const s of settings) {
      it(`${name} logits, ${JSON.stringify(s)}`, () => {
        const o: Opts = { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, penaltyLastN: 64, ...s };
        const logits = makeLogits(n, 17 + n, scale);
        const history = Array.from({ length: 80 }, (_, i) => (i * 131) % n);
        const ref = reference(logits, o, history);
        const got = b._samplerDistribution(logits, o as unknown as Record<string, number>, Int32Array.from(history));
        expect(sameDistribution(got, ref, o.topK > 0 && o.topK < n)).toBe('equal');
      });
    }
  }

  it('every filter off: the most likely token first, then the whole vocabulary', () => {
    const o: Opts = { temperature: 0.8, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, penaltyLastN: 64 };
    const logits = makeLogits(8192, 3, 4);
    const got = b._samplerDistribution(logits, o as unknown as Record<string, number>, new Int32Array(0));
    expect(got.ids.length).toBe(8192);
    expect(sameDistribution(got, reference(logits, o, []), false)).toBe('equal');
    expect(got.p.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 4);
  });

  it('the keyed draw (which skips tokens that cannot win) picks the Gumbel-max token of every position', () => {
    // the reference: argmax of log p + Gumbel(keyed_uniform(seed, position, id)) over every token
    const M = (1n << 64n) - 1n;
    const mix = (z0: bigint) => {
      let z = (z0 + 0x9e3779b97f4a7c15n) & M;
      z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
      z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
      return z ^ (z >> 31n);
    };
    const o = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 12345 };
    const logits = makeLogits(512, 9, 2);
    let agree = 0;
    const positions = 150;
    for (let pos = 0; pos < positions; ++pos) {
      const got = b._samplerDistribution(logits, { ...o, position: pos }, new Int32Array(0));
      const base = mix(mix(BigInt(o.seed)) ^ BigInt(pos));
      let best = -1;
      let bestKey = -Infinity;
      for (let i = 0; i < got.ids.length; ++i) {
        if (!(got.p[i] > 0)) continue;
        const u = (Number(mix(base ^ BigInt(got.ids[i])) >> 11n) + 0.5) * 2 ** -53;
        const key = Math.log(got.p[i]) - Math.log(-Math.log(u));
        if (key > bestKey) { bestKey = key; best = got.ids[i]; }
      }
      if (best === got.drawn) agree++;
    }
    expect(agree).toBe(positions);
  });

  it('a bad call is a typed error, not a crash', () => {
    expect(() => b._samplerDistribution(new Float32Array(0), {}, new Int32Array(0))).toThrow(/ERR_INVALID_OPTION/);
    expect(() => (b._samplerDistribution as unknown as (...a: unknown[]) => unknown)([1, 2], {}, [])).toThrow(/ERR_INVALID_OPTION/);
  });
});
