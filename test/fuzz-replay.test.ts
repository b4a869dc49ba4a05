// Replays the fuzz seed corpus as a regression test, on CI too (no clang there: the libFuzzer harnesses
// of tools/fuzz run outside CI, scripts/fuzz.sh).
// - the loader's corpus, written by tools/fuzz/make-corpus.ts into a temporary folder (fixed seeds, so
//   the same files every run; nothing binary committed): every file through the addon's loader as tools/fuzz/fuzz_load.cpp drives it (the native
//   loader directly, without the TypeScript header check in front of it, with both kernel sets), then
//   a small session and a few decoded tokens; and through loadModel(). Each either works or ends in a
//   typed error with a known code: never a crash, never an untyped (ERR_INTERNAL) error.
// - test/fuzz-corpus/tokenizer/: every text through every shared tokenizer as tools/fuzz/fuzz-tokenizer.mjs checks it.
import { beforeAll, describe, expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, readGguf, SpecdecError, Tokenizer } from '../lib';
import { binding } from '../lib/binding';
import { fromNative } from '../lib/errors';
import { loadCorpus } from './utils/fuzz-corpus';
import { describeShared } from './utils/shared';

const corpus = path.join(__dirname, 'fuzz-corpus');
// lone surrogates become U+FFFD on the way in, as TextEncoder writes them
const wellFormed = (s: string) => new TextDecoder('utf-8', { ignoreBOM: true }).decode(new TextEncoder().encode(s));
const CODES = /^(ERR_FILE_NOT_FOUND|ERR_NOT_GGUF|ERR_TRUNCATED_FILE|ERR_BAD_METADATA|ERR_MISSING_TENSOR|ERR_TENSOR_SHAPE|ERR_TENSOR_TYPE|ERR_UNSUPPORTED_ARCHITECTURE|ERR_INVALID_OPTION)$/;

async function nativeRun(file: string, kernels: string): Promise<string> {
  const b = binding();
  let m;
  try {
    m = await new b.LoadTask(file, 'cpu', kernels).start();
  } catch (e) {
    return (fromNative(e) as SpecdecError).code;
  }
  try {
    const info = m.info();
    const s = await b.createSession(m, { contextSize: Math.min(32, info.contextLength), batchSize: 8, threads: 1 });
    try {
      const prompt = Int32Array.from([1, 2, 3, 4].map((t) => t % info.vocabSize));
      await s.evaluate(prompt, false);
      s.truncate(0);
      s.begin({ prompt, maxTokens: 4, eog: new Int32Array(0), temperature: 0, topK: 40, topP: 1, minP: 0, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0, penaltyLastN: 64, seed: 1, method: 'lookup', draftMax: 4, lookupMaxNgram: 2 });
      for (let i = 0; i < 16; i++) if ((await s.step(1000, 4)).done) break;
      s.end();
    } finally {
      s.dispose();
    }
    return 'ok';
  } finally {
    m.dispose();
  }
}

describe('fuzz corpus: GGUF loader', () => {
  let loadDir = '';
  let loadFiles: string[] = [];
  beforeAll(async () => {
    ({ dir: loadDir, files: loadFiles } = await loadCorpus());
  }, 60_000);

  it('the corpus files through the native loader (both kernel sets) and loadModel(): each loads and decodes, or is a typed error', async () => {
    expect(loadFiles.length).toBeGreaterThanOrEqual(25);
    const outcome: Record<string, string> = {};
    for (const f of loadFiles) {
      const p = path.join(loadDir, f);
      const a = await nativeRun(p, 'specdec');
      const b = await nativeRun(p, 'ggml');
      expect([f, a]).toEqual([f, expect.stringMatching(/^ok$|^ERR_/)]);
      expect([f, b]).toEqual([f, a]);
      if (a !== 'ok') expect([f, a]).toEqual([f, expect.stringMatching(CODES)]);
      const api = await loadModel(p).then(async (m) => {
        try {
          const s = await m.createSession({ contextSize: Math.min(32, m.info.contextLength), threads: 1 });
          await s.generate([1, 2, 3], { maxTokens: 3 }).result();
          await s.dispose();
          return 'ok';
        } finally {
          await m.dispose();
        }
      }, (e: unknown) => (e instanceof SpecdecError ? e.code : `untyped ${String(e)}`));
      expect([f, api]).toEqual([f, expect.stringMatching(CODES.source.replace('^(', '^(ok|'))]);
      outcome[f] = `${a}/${api}`;
    }
    // the valid seeds do load: the corpus reaches the evaluation, not only the checks
    expect(Object.entries(outcome).filter(([, o]) => o.startsWith('ok')).length).toBeGreaterThanOrEqual(6);
  }, 60_000);
});

describeShared('fuzz corpus: tokenizer', (dir) => {
  const texts = fs.readdirSync(path.join(corpus, 'tokenizer')).sort().map((f) => fs.readFileSync(path.join(corpus, 'tokenizer', f), 'utf8'));
  const vocabs = ['vocab/ggml-vocab-llama-spm.gguf', 'vocab/ggml-vocab-llama-bpe.gguf', 'vocab/ggml-vocab-qwen2.gguf', 'vocab/ggml-vocab-gpt-2.gguf', 'stories260K.gguf'];
  it(`${texts.length} texts through ${vocabs.length} tokenizers: ids in the vocabulary, detokenize total, round trips exact`, async () => {
    for (const v of vocabs) {
      const t = Tokenizer.fromGguf(await readGguf(path.join(dir, 'models', v)));
      // the round trip is exact for well-formed text, except where llama.cpp changes text on purpose:
      // SentencePiece reads U+2581 as a space, gpt-2 cleans up spaces before punctuation
      const roundTrip = t.cleanSpaces ? null : t.type === 'spm' ? (x: string) => wellFormed(x).replaceAll('\u2581', ' ') : wellFormed;
      for (const s of texts) {
        for (const special of [false, true]) {
          const ids = t.tokenize(s, { special });
          for (const id of ids) expect(Number.isInteger(id) && id >= 0 && id < t.nVocab).toBe(true);
          expect(typeof t.detokenize(ids, { unparseSpecial: special })).toBe('string');
        }
        if (roundTrip) expect([v, t.detokenize(t.tokenize(s, { special: false, addBos: false }))]).toEqual([v, roundTrip(s)]);
      }
    }
  });
});
