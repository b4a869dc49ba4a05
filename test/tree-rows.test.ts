// Tree rows on ggml's attention (F32 and Q5_K weights, which have no specdec kernels): every row of a
// verification pass has the bits of a one-token decode of its token after its path, for trees whose
// nodes sit on the other side of the 256-cell boundary from their decode position (a longer view) and
// for trees past 512 cells (ggml's split flash-attention kernel, whose chunks depend on the view and
// the thread count), at 1 and 2 threads.
import { expect } from '@jest/globals';
import * as path from 'path';
import { loadModel, type Session } from '../lib';
import { cachedRandomModel, type RandomModelType } from './utils/random-model';
import { describeShared, itWith } from './utils/shared';

// root, a chain of two, then siblings hanging off each of the three in turn (depths 1, 2, 3): the
// siblings' cells run past their decode positions by up to 14 cells
const TREE_PARENTS = [-1, 0, 1, ...Array.from({ length: 15 }, (_, k) => k % 3)];

function pathOf(i: number): number[] {
  const p: number[] = [];
  for (let a = i; a >= 0; a = TREE_PARENTS[a]) p.unshift(a);
  return p;
}

// rows whose logits differ in any bit from the one-token decode of the same path
async function rowsOffDecode(s: Session, prefix: number[], tokens: number[], vocab: number): Promise<number[]> {
  s.truncate(0);
  await s.evaluate(prefix);
  const tree = s.nativeSession()._evalTree(Int32Array.from(tokens), Int32Array.from(TREE_PARENTS));
  const bad: number[] = [];
  for (let i = 0; i < tokens.length; i++) {
    s.truncate(prefix.length);
    let logits: Float32Array = new Float32Array(0);
    for (const a of pathOf(i)) logits = await s.evaluate([tokens[a]]);  // one-token decodes
    const row = tree.subarray(i * vocab, (i + 1) * vocab);
    if (Buffer.compare(Buffer.from(row.buffer, row.byteOffset, row.byteLength), Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength)) !== 0) bad.push(i);
  }
  return bad;
}

describeShared('tree rows on ggml attention', (dir) => {
  const vocab = path.join(dir, 'models', 'stories260K.gguf');

  itWith(vocab)('every row equals a one-token decode across 256 and 512 cells, F32 and Q5_K, 1 and 2 threads', async () => {
    for (const type of ['f32', 'q5_k'] as RandomModelType[]) {
      const file = await cachedRandomModel({ arch: 'llama', vocabFrom: vocab, type, nLayer: 1, nHead: 4, nHeadKv: 2, nCtx: 1024, seed: 21 });
      const m = await loadModel(file);
      const n = m.info.vocabSize;
      let x = 7;
      const rand = () => (x = (x * 1103515245 + 12345) % 2147483648) % n;
      for (const threads of [1, 2]) {
        const s = await m.createSession({ contextSize: 1024, threads });
        // 250: decode views of 256 cells, nodes stored past cell 256; 505: decode views of 512 (split kernel)
        for (const nPast of [250, 505]) {
          const prefix = Array.from({ length: nPast }, rand);
          const tokens = TREE_PARENTS.map(rand);
          expect({ type, threads, nPast, bad: await rowsOffDecode(s, prefix, tokens, n) }).toEqual({ type, threads, nPast, bad: [] });
        }
        await s.dispose();
      }
      await m.dispose();
    }
  }, 120_000);
});
