// Batch invariance: a token's logits are bit-identical whether it is decoded alone or evaluated
// inside a batch (the property speculative decoding needs to reproduce autoregressive output).
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import { describeShared, itWith } from './utils/shared';
import { withModel } from './utils/engine';
import { cachedRandomModel, type RandomModelType } from './utils/random-model';

function rows(logits: Float32Array, nVocab: number): Float32Array[] {
  const out: Float32Array[] = [];
  for (let i = 0; i < logits.length / nVocab; i++) out.push(logits.subarray(i * nVocab, (i + 1) * nVocab));
  return out;
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

describeShared('batch invariance', (dir) => {
  const cases: [string, string, number][] = [
    ['stories260K', path.join(dir, 'models', 'stories260K.gguf'), 2048],
    ['code target Q8_0', path.join(dir, 'models', 'code', 'code-target-q8_0.gguf'), 1024],
    ['code draft F16', path.join(dir, 'models', 'code', 'code-draft-f16.gguf'), 1024],
  ];
  // the other weight types specdec's kernels run, on random-weight models (Q4_K and Q6_K also
  // quantize their activations differently: Q8_K)
  const randomTypes: RandomModelType[] = ['q4_0', 'q4_k', 'q6_k', 'bf16'];
  for (const type of randomTypes) cases.push([`random llama ${type}`, `random:${type}`, 1024]);
  for (const [name, where, ctx] of cases) {
    const random = where.startsWith('random:');
    (random ? it : itWith(where))(`${name}: one-token decoding equals batched evaluation, short and long (split-KV) contexts, 1 and 2 threads`, async () => {
      const file = random
        ? await cachedRandomModel({ arch: 'llama', vocabFrom: path.join(dir, 'models', 'vocab', 'ggml-vocab-llama-spm.gguf'),
          type: where.slice('random:'.length) as RandomModelType, nEmbd: 256, nFf: 512, nCtx: ctx, seed: 11 })
        : where;
      await withModel(file, async (m) => {
        if (random) expect(m.info.cpuKernels).toMatch(/^specdec-/);
        const nVocab = m.info.vocabSize;
        const seq: number[] = [];
        let x = 12345;
        for (let i = 0; i < 560; i++) {
          x = (x * 1103515245 + 12345) % 2 ** 31;
          seq.push(3 + (x % (nVocab - 3)));
        }
        for (const threads of [1, 2]) {
          const s = await m.createSession({ threads, contextSize: ctx });
          // windows: short context; crossing 256; entirely past 512 cells (flash attention splits KV across threads)
          for (const [start, len] of [[0, 24], [240, 30], [520, 20]] as const) {
            s.truncate(0);
            await s.evaluate(seq.slice(0, start + 1));
            const batched = rows(await s.evaluate(seq.slice(start + 1, start + 1 + len), { allLogits: true }), nVocab);
            s.truncate(start + 1);
            const single: Float32Array[] = [];
            for (let i = 0; i < len; i++) single.push(await s.evaluate([seq[start + 1 + i]]));
            const mismatched = single.map((r, i) => (bitsEqual(r, batched[i]) ? -1 : i)).filter((i) => i >= 0);
            expect({ threads, start, mismatched }).toEqual({ threads, start, mismatched: [] });
          }
          await s.dispose();
        }
      });
    });
  }
});
