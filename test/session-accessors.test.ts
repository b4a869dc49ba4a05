// session.tokens and session.info are safe to read while native work is in flight (issue 10 item
// 3): they used to read the committed token list that a step worker was appending to, without the
// busy check. While a step, an evaluate() or a thread calibration runs, they report the state as it
// was when that work was queued (a copy taken on the JS thread); once it completes, the state after it.
// This test hammers both accessors from the event loop during generations and evaluations.
import { expect, it } from '@jest/globals';
import * as path from 'path';
import { loadModel, type Method } from '../lib';
import { describeShared } from './utils/shared';

describeShared('session accessors while work is in flight', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');

  it('session.tokens / session.info during generate() and evaluate(): consistent, stable within a tick, a prefix of the final sequence', async () => {
    const m = await loadModel(stories);
    try {
      const s = await m.createSession({ contextSize: 512, threads: 1 });
      for (const method of ['autoregressive', 'lookup'] as Method[]) {
        s.truncate(0);
        const reads: number[][] = [];
        let inconsistent = 0;
        let running = true;
        // reads on every turn of the event loop while the worker runs
        const hammer = async () => {
          while (running) {
            const a = s.tokens;
            const info = s.info;
            const b = s.tokens;
            if (a.length !== info.usedTokens || a.length !== b.length || a.some((t, i) => t !== b[i] || !(t >= 0 && t < m.info.vocabSize))) inconsistent++;
            reads.push(a);
            await new Promise((r) => setImmediate(r));
          }
        };
        const h = hammer();
        const run = s.generate('Once upon a time', { maxTokens: 300, method });
        await run.result();
        // an evaluate() in flight too (its tokens are appended on completion)
        const ev = s.evaluate(m.tokenize(' The end', { addBos: false }));
        const during = s.tokens.length;
        await ev;
        running = false;
        await h;
        const final = [...run.promptTokens, ...run.tokens];
        expect({ method, inconsistent }).toEqual({ method, inconsistent: 0 });
        // every read is a prefix of the sequence the generation ended with (greedy: the native
        // sequence only grows along it), then the evaluated tokens
        const all = [...final, ...m.tokenize(' The end', { addBos: false })];
        const notPrefix = reads.filter((r) => r.length > all.length || r.some((t, i) => t !== all[i]));
        expect({ method, notPrefix: notPrefix.length }).toEqual({ method, notPrefix: 0 });
        expect(during).toBe(final.length);
        expect(s.tokens).toEqual(all);
        // the hammer did overlap the steps: it saw the sequence at several lengths
        expect(new Set(reads.map((r) => r.length)).size).toBeGreaterThan(2);
        expect(reads.length).toBeGreaterThan(20);
      }
      await s.dispose();
    } finally {
      await m.dispose();
    }
  }, 60_000);
});
