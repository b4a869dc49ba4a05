// Degenerate sampler inputs: repeatPenalty <= 0 is an option error (it divided positive logits by 0:
// infinities, then NaN probabilities), and a NaN logit is read as -inf (it made the sort comparator
// undefined behaviour and stuck the greedy argmax to token 0).
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidOptionError, loadModel, type GenerateOptions } from '../lib';
import { cachedRandomModel } from './utils/random-model';
import { readGgufRaw, specFromRaw, writeGguf } from './utils/gguf-writer';
import { describeShared } from './utils/shared';

/** A copy of the f32 model `src` whose output row `row` (the logit of token `row`) is `value` everywhere. */
async function withOutputRow(src: string, out: string, row: number, value: number): Promise<string> {
  const raw = await readGgufRaw(src);
  const spec = specFromRaw(src, raw);
  const t = spec.tensors.find((x) => x.name === 'output.weight')!;
  expect(t.type).toBe(0);  // f32
  const d = t.data as { file: string; offset: number; length: number };
  const bytes = Buffer.alloc(d.length);
  const fh = await fs.promises.open(d.file, 'r');
  try { await fh.read(bytes, 0, d.length, d.offset); } finally { await fh.close(); }
  const f = new Float32Array(bytes.buffer, bytes.byteOffset, d.length / 4);
  f.fill(value, row * t.dims[0], (row + 1) * t.dims[0]);
  t.data = { raw: bytes };
  await writeGguf(out, spec);
  return out;
}

describeShared('degenerate sampler values', (dir) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-sampler-'));
  const vocab = path.join(dir, 'models', 'vocab', 'ggml-vocab-llama-spm.gguf');
  const base = () => cachedRandomModel({ arch: 'llama', vocabFrom: vocab, type: 'f32', seed: 5 });

  it('repeatPenalty <= 0 is an InvalidOptionError naming the option; 1 stays off, small positive values work', async () => {
    const m = await loadModel(await base());
    try {
      const s = await m.createSession({ contextSize: 128 });
      for (const repeatPenalty of [0, -1]) {
        expect(() => s.generate('hello', { repeatPenalty })).toThrow(InvalidOptionError);
        expect(() => s.generate('hello', { repeatPenalty })).toThrow(/option 'repeatPenalty' must be/);
      }
      expect(() => s.generate('hello', { repeatPenalty: 0 })).toThrow(/greater than 0/);
      const off = await s.generate('hello', { maxTokens: 8 }).result();
      expect((await s.generate('hello', { maxTokens: 8, repeatPenalty: 1 }).result()).tokens).toEqual(off.tokens);
      const r = await s.generate('hello', { maxTokens: 8, repeatPenalty: 0.01, temperature: 0.8, seed: 3 }).result();
      expect(r.tokens).toHaveLength(8);
    } finally {
      await m.dispose();
    }
  });

  it('a NaN logit is never chosen: the same output as a logit of 0 far below the others, greedy and sampled', async () => {
    // token 0's logit: NaN in one model, exactly 0 in the other (far below the top logits of a random
    // model whose logits have std 4 over 32k tokens, so outside top-k and never the argmax)
    const nan = await withOutputRow(await base(), path.join(tmp, 'nan.gguf'), 0, NaN);
    const zero = await withOutputRow(await base(), path.join(tmp, 'zero.gguf'), 0, 0);
    const runs: Array<[string, GenerateOptions]> = [
      ['greedy', { maxTokens: 24 }],
      ['sampled', { maxTokens: 24, temperature: 0.8, seed: 7 }],
      ['sampled, top-p and min-p only', { maxTokens: 24, temperature: 1.2, seed: 9, topK: 0, topP: 0.9, minP: 0.1 }],
      ['greedy lookup', { maxTokens: 24, method: 'lookup' }],
    ];
    const out: Record<string, number[][]> = {};
    for (const f of [nan, zero]) {
      const m = await loadModel(f);
      const s = await m.createSession({ contextSize: 128 });
      for (const [name, o] of runs) (out[name] ??= []).push((await s.generate([1, 100, 200, 300], o).result()).tokens);
      await m.dispose();
    }
    for (const [name] of runs) {
      expect({ name, nan: out[name][0] }).toEqual({ name, nan: out[name][1] });
      expect(out[name][0]).not.toContain(0);
    }
  });
});
