// Property tests (fast-check) of the TypeScript side: tokenizer round trips on arbitrary Unicode,
// option validation on arbitrary option objects, and the GGUF header reader on mutated bytes. Each
// property runs a fixed number of cases from a fixed seed (reproducible; a failure prints the seed
// and the shrunk counterexample).
import { describe, expect, it, beforeAll, afterAll } from '@jest/globals';
import fc from 'fast-check';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadModel, Model, readGguf, Session, SpecdecError, Tokenizer } from '../lib';
import { readGgufSync } from '../lib/gguf/reader';
import { Utf8StreamDecoder } from '../lib/tokenizer';
import { loadCorpus } from './utils/fuzz-corpus';
import { describeShared } from './utils/shared';

const wellFormed = (s: string) => new TextDecoder('utf-8', { ignoreBOM: true }).decode(new TextEncoder().encode(s));
// any UTF-16 unit, lone surrogates included
const utf16 = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 40 });
// any code point, with a bias to the ranges where tokenizers differ
const hard = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: fc.constantFrom(' ', '  ', '\n', '\t', '\r', '\u00a0', '\u3000', '\u200d', '\u0301', '!', "'s", 'a', 'Z', '9', '🦙', '日', '\u0000', '\ufeff'), maxLength: 30 }),
  utf16,
);

describeShared('properties: tokenizer', (dir) => {
  const vocabs: Array<[string, string]> = [
    ['llama-spm', 'vocab/ggml-vocab-llama-spm.gguf'], ['llama-bpe', 'vocab/ggml-vocab-llama-bpe.gguf'],
    ['qwen2', 'vocab/ggml-vocab-qwen2.gguf'], ['gpt-2', 'vocab/ggml-vocab-gpt-2.gguf'], ['stories260K', 'stories260K.gguf'],
  ];
  const toks = new Map<string, Tokenizer>();
  beforeAll(async () => {
    for (const [name, rel] of vocabs) toks.set(name, Tokenizer.fromGguf(await readGguf(path.join(dir, 'models', rel))));
  });

  for (const [name] of vocabs) {
    it(`${name}: detokenize(tokenize(s)) gives s back (well-formed; SentencePiece reads U+2581 as a space), ids in the vocabulary`, () => {
      const t = toks.get(name)!;
      // gpt-2 cleans up spaces before punctuation on purpose (llama.cpp): only totality there
      const exact = !t.cleanSpaces;
      fc.assert(fc.property(hard, fc.boolean(), (s, special) => {
        const ids = t.tokenize(s, { special, addBos: false });
        for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < t.nVocab)) return false;
        const back = t.detokenize(ids, { unparseSpecial: special });
        if (!exact || special) return typeof back === 'string';
        const want = t.type === 'spm' ? wellFormed(s).replaceAll('\u2581', ' ') : wellFormed(s);
        return back === want;
      }), { seed: 10, numRuns: 300 });
    });
  }

  it('the streaming decoder gives the text of any split of its bytes (a leading U+FEFF kept)', () => {
    fc.assert(fc.property(hard, fc.array(fc.nat(), { maxLength: 6 }), (s, cuts) => {
      const bytes = new TextEncoder().encode('\ufeff' + s);
      const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const d = new Utf8StreamDecoder();
      let out = '';
      let prev = 0;
      for (const c of [...at, bytes.length]) { out += d.push(bytes.subarray(prev, c)); prev = c; }
      return out + d.flush() === wellFormed('\ufeff' + s);
    }), { seed: 15, numRuns: 300 });
  });

  it('detokenize of arbitrary numbers: a string, or TokenOutOfRangeError for anything not an id', () => {
    const t = toks.get('qwen2')!;
    const id = fc.oneof(fc.integer({ min: 0, max: t.nVocab - 1 }), fc.integer(), fc.double(), fc.constantFrom(NaN, -0, t.nVocab, -1, 2 ** 32));
    fc.assert(fc.property(fc.array(id, { maxLength: 20 }), fc.boolean(), (ids, unparse) => {
      const bad = ids.some((x) => !(Number.isInteger(x) && x >= 0 && x < t.nVocab));
      try {
        return typeof t.detokenize(ids, { unparseSpecial: unparse }) === 'string' && !bad;
      } catch (e) {
        return bad && e instanceof SpecdecError && e.code === 'ERR_TOKEN_OUT_OF_RANGE';
      }
    }), { seed: 11, numRuns: 500 });
  });
});

// anything a caller might pass where an option goes
const weird = fc.oneof(
  fc.integer({ min: -3, max: 6 }), fc.double({ noDefaultInfinity: false }), fc.constantFrom(NaN, Infinity, -Infinity, -0, 0.5, 2 ** 31, 2 ** 53),
  fc.string({ maxLength: 6 }), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.array(fc.integer({ min: -2, max: 3 }), { maxLength: 3 }),
  fc.constant({}), fc.constantFrom('auto', 'lookup', 'aded', 'token-recycling', 'draft', 'medusa', 'autoregressive', 'gumbel-top-k'),
);
const GENERATE_KEYS = ['maxTokens', 'temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'frequencyPenalty', 'presencePenalty', 'penaltyLastN',
  'seed', 'stop', 'method', 'draftMax', 'lookup', 'rsd', 'retrieval', 'ignoreEos', 'special', 'addBos', 'draft', 'heads', 'verify', 'bogus'];

describeShared('properties: option validation', (dir) => {
  let model: Model;
  let session: Session;
  beforeAll(async () => {
    model = await loadModel(path.join(dir, 'models', 'stories260K.gguf'));
    session = await model.createSession({ contextSize: 64, threads: 1 });
  });
  afterAll(async () => {
    await session?.dispose();
    await model?.dispose();
  });

  it('generate(): random option objects give a result or a typed error, never anything else', async () => {
    const opts = fc.dictionary(fc.constantFrom(...GENERATE_KEYS), weird, { maxKeys: 4 });
    let ran = 0;
    await fc.assert(fc.asyncProperty(opts, fc.oneof(fc.constant('Once upon'), fc.array(fc.integer({ min: -1, max: 600 }), { maxLength: 4 })), async (o, prompt) => {
      // keep each case short: a valid maxTokens above 8 is lowered (what is validated is the rest)
      if (typeof o.maxTokens === 'number' && o.maxTokens > 8) o.maxTokens = 8;
      if (o.maxTokens === undefined) o.maxTokens = 4;
      try {
        const r = await session.generate(prompt as string | number[], o as never).result();
        ran++;
        return typeof r.text === 'string' && r.stats !== undefined;
      } catch (e) {
        if (!(e instanceof SpecdecError)) throw e;
        return true;
      }
    }), { seed: 12, numRuns: 150 });
    // not only rejections: a fair share of the objects were valid and generated
    expect(ran).toBeGreaterThan(15);
    // the session is still usable afterwards
    expect((await session.generate('Once', { maxTokens: 2 }).result()).tokens.length).toBeGreaterThan(0);
  }, 60_000);

  it('createSession() and tokenize(): random options give an object or a typed error', async () => {
    const keys = ['contextSize', 'batchSize', 'threads', 'bogus'];
    await fc.assert(fc.asyncProperty(fc.dictionary(fc.constantFrom(...keys), weird, { maxKeys: 3 }), async (o) => {
      if (typeof o.contextSize === 'number' && o.contextSize > 256) o.contextSize = 256;
      if (typeof o.threads === 'number' && o.threads > 2) o.threads = 2;
      try {
        const s = await model.createSession(o as never);
        await s.dispose();
      } catch (e) {
        if (!(e instanceof SpecdecError)) throw e;
      }
      try {
        model.tokenize('Once upon', o as never);
      } catch (e) {
        if (!(e instanceof SpecdecError)) throw e;
      }
      return true;
    }), { seed: 13, numRuns: 60 });
  }, 60_000);
});

describe('properties: GGUF reader on mutated bytes', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-prop-gguf-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  // a tiny valid model of the fuzz corpus: its header (metadata, tokenizer, tensor infos) is ~1.3 kB
  let seed = Buffer.alloc(0);
  beforeAll(async () => {
    seed = fs.readFileSync(path.join((await loadCorpus()).dir, 'llama-q4_0.gguf'));
  }, 60_000);
  const header = 1400;

  it('readGguf on bytes flipped, set to extremes, cut or spliced: a header or a ModelFileError, fast', () => {
    const edit = fc.record({ at: fc.integer({ min: 0, max: header - 1 }), value: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 0xff, 0x7f, 0x80)), len: fc.integer({ min: 1, max: 8 }) });
    let n = 0;
    fc.assert(fc.property(fc.array(edit, { minLength: 1, maxLength: 6 }), fc.option(fc.integer({ min: 0, max: seed.length }), { nil: undefined }), (edits, cut) => {
      const b = Buffer.from(seed);
      for (const e of edits) b.fill(e.value, e.at, Math.min(e.at + e.len, b.length));
      const f = path.join(tmp, `m${n++ % 8}.gguf`);
      fs.writeFileSync(f, cut === undefined ? b : b.subarray(0, cut));
      const t0 = Date.now();
      try {
        const g = readGgufSync(f);
        return g.metadata instanceof Map && Array.isArray(g.tensors);
      } catch (e) {
        if (!(e instanceof SpecdecError && e.name === 'ModelFileError')) throw e;
        return true;
      } finally {
        // a length field set to 2^64-1 must be rejected from the file size, not allocated or looped over
        expect(Date.now() - t0).toBeLessThan(2000);
      }
    }), { seed: 14, numRuns: 800 });
  });
});
