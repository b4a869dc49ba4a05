// After every stop reason the session's sequence is exactly what the user saw: session.tokens equals
// the prompt plus run.tokens (eos, maxTokens, stop strings, abort; plain and speculative decoding),
// an abort's run.tokens are the tokens of the chunks yielded, and an already-aborted signal still
// leaves stats.
import { expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadModel, type Generation, type GenerateOptions, type Session } from '../lib';
import { gv, rewriteGgufMetadata } from './utils/gguf-writer';
import { describeShared } from './utils/shared';

const PROMPTS = ['Once upon a time', 'The little dog', 'Lily and Tom went to the park', 'One day, a girl named Sue'];

describeShared('the session sequence after a generation', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  // stories260K's greedy stories run past hundreds of tokens without its end-of-sequence token; this
  // copy ends a generation at the first '.', so eos stops come early, also inside accepted drafts
  const storiesEndAtDot = async () => {
    const m = await loadModel(stories);
    const dot = m.tokenize('ball.', { addBos: false }).at(-1)!;
    expect(m.detokenize([dot])).toBe('.');
    await m.dispose();
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-seq-')), 'stories-eos-dot.gguf');
    return rewriteGgufMetadata(stories, out, { 'tokenizer.ggml.eos_token_id': gv.u32(dot) });
  };

  const expectSequence = (s: Session, run: Generation, what: unknown) => {
    expect({ what, tokens: s.tokens }).toEqual({ what, tokens: [...run.promptTokens, ...run.tokens] });
  };

  for (const method of ['autoregressive', 'lookup', 'token-recycling'] as const) {
    it(`${method}: eos, maxTokens and stop strings leave prompt + run.tokens, and the next generation continues it`, async () => {
      const m = await loadModel(stories);
      try {
        const s = await m.createSession({ contextSize: 512 });
        let eos = 0;
        for (const prompt of PROMPTS) {
          // maxTokens
          const full = s.generate(prompt, { maxTokens: 400, method });
          const r = await full.result();
          if (r.stats.stopReason === 'eos') eos++;  // none: these stories run on
          expectSequence(s, full, { method, prompt, reason: r.stats.stopReason });
          // maxTokens at every length: speculation accepts runs of drafts that a limit cuts anywhere
          for (let n = 1; n <= 24; n += 1) {
            const run = s.generate(prompt, { maxTokens: n, method });
            const rn = await run.result();
            expect(rn.tokens).toEqual(r.tokens.slice(0, n));
            expectSequence(s, run, { method, prompt, maxTokens: n });
          }
          // stop strings that end inside a step (the step's later tokens are not returned)
          for (const at of [10, 25, 60]) {
            const stop = r.text.slice(at, at + 4);
            if (stop.length < 4) continue;
            const run = s.generate(prompt, { maxTokens: 400, method, stop: [stop] });
            const rs = await run.result();
            expect(rs.stats.stopReason).toBe('stop');
            expectSequence(s, run, { method, prompt, stop });
          }
          // continuing from prompt + tokens gives the rest of the output. The continuation is prefilled
          // afresh (prefix reuse keeps only what a fresh prefill computes bit for bit: the prompt's
          // whole batch chunks, none at these lengths), so this holds away from near-ties
          const head = s.generate(prompt, { maxTokens: 12, method });
          await head.result();
          const cont = await s.generate([...head.promptTokens, ...head.tokens], { maxTokens: 12, method }).result();
          expect(cont.stats.promptTokensReused).toBe(0);
          expect([...head.tokens, ...cont.tokens]).toEqual(r.tokens.slice(0, 24));
        }
        expect(eos).toBe(0);
      } finally {
        await m.dispose();
      }
      // eos stops
      const e = await loadModel(await storiesEndAtDot());
      try {
        const s = await e.createSession({ contextSize: 512 });
        for (const prompt of PROMPTS) {
          const run = s.generate(prompt, { maxTokens: 400, method });
          const r = await run.result();
          expect({ prompt, reason: r.stats.stopReason }).toEqual({ prompt, reason: 'eos' });
          expectSequence(s, run, { method, prompt, reason: 'eos' });
        }
      } finally {
        await e.dispose();
      }
    });

    it(`${method}: an abort returns the yielded chunks' tokens and leaves prompt + run.tokens`, async () => {
      const m = await loadModel(stories);
      try {
        const s = await m.createSession({ contextSize: 512 });
        for (const prompt of PROMPTS) {
          // aborted between steps (at once) or while a step runs (later): the step under way returns
          // tokens that are never yielded
          for (const delayMs of [-1, 0, 3, 10]) {
            const ac = new AbortController();
            const run = s.generate(prompt, { maxTokens: 2000, method, signal: ac.signal, ignoreEos: true });
            const yielded: number[] = [];
            let n = 0;
            const err = await (async () => {
              for await (const chunk of run) {
                yielded.push(...chunk.tokens);
                if (++n > 1) continue;
                if (delayMs < 0) ac.abort(new Error('stop here'));
                else setTimeout(() => ac.abort(new Error('stop here')), delayMs);
              }
            })().catch((e: Error) => e);
            const what = { method, prompt, delayMs };
            expect({ what, err }).toEqual({ what, err: new Error('stop here') });
            expect(run.stats?.stopReason).toBe('abort');
            expect({ what, tokens: run.tokens }).toEqual({ what, tokens: yielded });
            expect(run.stats?.generatedTokens).toBe(yielded.length);
            expectSequence(s, run, what);
          }
        }
      } finally {
        await m.dispose();
      }
    });
  }

  it('an already-aborted signal: the iteration rejects with its reason, and stats are set', async () => {
    const m = await loadModel(stories);
    try {
      const s = await m.createSession({ contextSize: 128 });
      const ac = new AbortController();
      ac.abort(new Error('before'));
      const opts: GenerateOptions = { maxTokens: 8, signal: ac.signal };
      const run = s.generate('Once upon a time', opts);
      await expect(run.result()).rejects.toThrow('before');
      expect(run.stats).toMatchObject({ stopReason: 'abort', generatedTokens: 0 });
      expect(run.tokens).toEqual([]);
      // the session still works
      expect((await s.generate('Once upon a time', { maxTokens: 4 }).result()).tokens).toHaveLength(4);
    } finally {
      await m.dispose();
    }
  });
});
