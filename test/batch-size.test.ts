// A small batchSize bounds the draft tree (the root token is verified with it: at most batchSize - 1
// nodes), and batchSize 1 decodes plainly; every method then still gives exactly the greedy
// autoregressive output, without an internal "batch of N tokens" error mid-generation.
import { expect, it } from '@jest/globals';
import * as path from 'path';
import { loadModel, LOSSY_METHODS, METHODS, type GenerateOptions } from '../lib';
import { describeShared } from './utils/shared';

// repetitive code, so that lookup, retrieval and the tables draft long trees
const PROMPT = `def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def mul(a, b):
    return a * b


def div(a, b):
    return a / b


def `;

describeShared('small batch sizes', (dir) => {
  const code = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const codeDraft = path.join(dir, 'models', 'code', 'code-draft-f16.gguf');

  it('every method at batchSize 1, 2 and 8 gives the greedy autoregressive output', async () => {
    const m = await loadModel(code);
    const d = await loadModel(codeDraft);
    try {
      const N = 48;
      const ref = await (await m.createSession({ contextSize: 512 })).generate(PROMPT, { maxTokens: N }).result();
      expect(ref.tokens).toHaveLength(N);
      // every lossless method, and the ones that take an optional draft model with it too (the head
      // methods, which need a head file trained for the model, are covered by test/drafters.test.ts and
      // test/chimera-hidden-transfer.test.ts; 'lud', which needs a LUD model of it, by test/lud.test.ts;
      // the lossy ones by their own tests)
      const needsFile = ['medusa', 'eagle', 'chimera', 'hidden-transfer', 'lud'];  // a file trained for the model: their own tests
      const configs: Array<[string, GenerateOptions]> = METHODS.filter((method) => !needsFile.includes(method) && !LOSSY_METHODS.includes(method)).map((method) => [method, { method, ...(method === 'draft' || method === 'rsd' ? { draft: { model: d } } : {}) }]);
      configs.push(['rasd + draft', { method: 'rasd', draft: { model: d } }], ['auto + draft', { method: 'auto', draft: { model: d } }]);
      const got: Record<string, unknown> = {};
      const want: Record<string, unknown> = {};
      for (const batchSize of [1, 2, 8]) {
        const s = await m.createSession({ contextSize: 512, batchSize });
        for (const [name, opts] of configs) {
          const key = `${name} @ batchSize ${batchSize}`;
          const r = await s.generate(PROMPT, { maxTokens: N, ...opts }).result().catch((e: Error) => ({ tokens: [] as number[], stats: undefined, error: e.message }));
          const diff = r.tokens.findIndex((t, i) => t !== ref.tokens[i]);
          got[key] = 'error' in r ? r.error : diff >= 0 || r.tokens.length !== N ? `differs at token ${diff >= 0 ? diff : r.tokens.length}` : 'greedy output';
          want[key] = 'greedy output';
          // batchSize 1 cannot verify a draft: plain decoding, one forward pass per token
          if (batchSize === 1 && r.stats) expect({ key, drafted: r.stats.draftedTokens ?? 0 }).toEqual({ key, drafted: 0 });
        }
        await s.dispose();
      }
      expect(got).toEqual(want);
    } finally {
      await d.dispose();
      await m.dispose();
    }
  });
});
