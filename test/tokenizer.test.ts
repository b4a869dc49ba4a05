import { afterAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidOptionError, ModelFileError, TokenOutOfRangeError } from '../lib/errors';
import { readGguf, readGgufSync, type GgufFile } from '../lib/gguf/reader';
import { Tokenizer, Utf8StreamDecoder } from '../lib/tokenizer';
import { describeShared } from './utils/shared';

const NLC_SCRIPT = path.join(__dirname, 'utils', 'nlc-tokenize.mjs');
const VOCABS = ['gpt-2', 'llama-bpe', 'qwen2', 'llama-spm'];

const tokenizers = new Map<string, Tokenizer>();
async function loadTokenizer(file: string): Promise<Tokenizer> {
  let t = tokenizers.get(file);
  if (!t) {
    t = Tokenizer.fromGguf(await readGguf(file));
    tokenizers.set(file, t);
  }
  return t;
}

/** llama.cpp's tests/test-tokenizer-0.cpp reading of *.gguf.inp / *.gguf.out. */
function readVocabTests(base: string): { text: string; ids: number[] }[] {
  const raw = fs.readFileSync(`${base}.inp`, 'utf8');
  const outLines = fs.readFileSync(`${base}.out`, 'utf8').split('\n');
  const sep = '\n__ggml_vocab_test__\n';
  const inputs: string[] = [];
  let pos = 0;
  while (pos < raw.length) {
    const next = raw.indexOf(sep, pos);
    if (next === -1) { inputs.push(raw.slice(pos)); break; }
    inputs.push(raw.slice(pos, next));
    pos = next + sep.length;
  }
  if (outLines[outLines.length - 1] === '') outLines.pop();
  expect(inputs.length).toBe(outLines.length);
  return inputs.map((text, i) => {
    const o = outLines[i].trim();
    return { text, ids: o === '' ? [] : o.split(' ').map(Number) };
  });
}

interface NlcResult {
  ids: number[][]; detok: string[]; detokSpecial: string[];
  tokens: { bos: number | null; eos: number | null; eot: number | null; nl: number | null };
}

/** Tokenizes with node-llama-cpp (llama.cpp) in a child process. */
function nlcTokenize(model: string, items: (string | { text: string; special: boolean })[]): NlcResult {
  const r = spawnSync(process.execPath, [NLC_SCRIPT, model], {
    input: JSON.stringify(items),
    maxBuffer: 256 * 1024 * 1024,
    timeout: 180000,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`nlc-tokenize failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as NlcResult;
}

// ---------- corpus for the live comparison ----------

function mulberry32(seed: number): () => number {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PROSE = [
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.',
  "I'm sure you'll agree: it's the best thing we've ever done. DON'T PANIC! They'd said 'no' twice.",
  "He said , \" hello \" . Isn't it ? Yes ! It is , isn 't it ' s ' ' ' quoted ' here .",
  'The quick brown fox jumps over the lazy dog. 1234567890 + 3.14159 = 1,000,000?',
  'Mr. Smith paid $42.50 (tax incl.) on 2024-03-15 at 10:30am; e-mail: smith@example.com #hashtag @user',
  'Numbers: 1 12 123 1234 12345 123456 1234567 0.5 -7 +8 1e10 0x1F 0b1010 007 ٣٤٥ १२३ １２３ ²³ ½ Ⅻ',
  "y'all 'S 'T 'RE 'Ve 'M 'LL 'D 's't 're've'm'll'd o'clock rock'n'roll",
];

const UNICODE = [
  '日本語のテキストです。東京は日本の首都です。', '中文文本，包括标点符号！还有数字123。', '한국어 텍스트입니다. 안녕하세요!',
  'Привет, мир! Ёжик в тумане.', 'Γειά σου Κόσμε· ελληνικά', 'שלום עולם! עברית מימין לשמאל', 'مرحبا بالعالم! العربية ١٢٣',
  'नमस्ते दुनिया। हिन्दी', 'สวัสดีชาวโลก ภาษาไทย', 'Tiếng Việt có dấu: ắ ằ ẳ ẵ ặ', 'e\u0301 a\u0308 o\u0303 n\u0303 Z\u0335\u0321\u0322a\u0336l\u0337g\u0338o\u0489',
  '🦙 llama 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇩🇪🇯🇵 ❤️ 🏳️‍🌈', '∑∫∂√∞ ≤≥≠≈ ∀∃∈∉ → ⇒ ⊂⊃ ∧∨¬ ℝℕℤ', '©®™ €£¥₹ §¶†‡ •…‰ ‹›«» “quotes” ‘single’',
  'mixed: ASCII + 中文 + emoji 🎉 + العربية + ñ', '\u00a0nbsp\u00a0 \u2009thin\u2009 \u3000ideographic\u3000 \u200bzero\u200bwidth \ufeffbom',
  '\u0085next-line\u2028line-sep\u2029para-sep\u000bvt\u000cff', 'ctrl:\u0001\u0002\u001b[0m\u007f\u0000end', 'ﬁ ﬂ ﬀ Å Ω K µ ǅ ǈ ᾈ', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝 𝟙𝟚𝟛 𓀀𓀁 𠀀𠀁',
  'Ä Ö Ü ä ö ü ß ẞ', 'a\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307 ̀leading mark', '\ud800 lone surrogate \udc00 end',
];

const WHITESPACE = [
  ' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\n\n\n', '\r\n', '\r\n\r\n', ' \n', '\n ', ' \n ', '\t\n', '\n\t',
  'a  b   c    d', 'word \n\n  next', '   leading', 'trailing   ', '  both  ', ' \t \n \r\n x', '\n\n\n\n\n\nx\n\n\n\n',
  ' '.repeat(17), '\t'.repeat(9) + 'x', 'x' + ' '.repeat(33) + 'y', '    def f():\n        return 1\n', '\r\r\n\n\r',
];

const SPECIAL_TEXT = [
  '<s>', '</s>', '<unk>', '<s> hello </s>', 'a <s> b </s>', '<|endoftext|>', 'text<|endoftext|>more', '<|im_start|>user\nhi<|im_end|>',
  '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>', '<0x0A> <0xFF>', '[INST] hi [/INST]',
  '<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>', '<|reserved_special_token_5|>', '<<SYS>>\nsys\n<</SYS>>',
];

function codeSnippets(shared: string): string[] {
  const prompts = (JSON.parse(fs.readFileSync(path.join(shared, 'eval', 'code-prompts.json'), 'utf8')) as { prompts: { prompt: string }[] }).prompts;
  const out: string[] = [];
  const rnd = mulberry32(7);
  for (const p of prompts) {
    out.push(p.prompt);
    const lines = p.prompt.split('\n');
    for (let k = 0; k < 3; k++) {
      const a = Math.floor(rnd() * lines.length);
      const b = Math.min(lines.length, a + 1 + Math.floor(rnd() * 6));
      out.push(lines.slice(a, b).join('\n'));
    }
    const start = Math.floor(rnd() * Math.max(1, p.prompt.length - 60));
    out.push(p.prompt.slice(start, start + 1 + Math.floor(rnd() * 120)));
  }
  return out;
}

function randomStrings(n: number, seed: number): string[] {
  const pool = [
    ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
    ...'      \t\n\n\r',
    ...".,;:!?'\"`~@#$%^&*()[]{}<>/\\|-_=+",
    'é', 'ñ', 'ü', 'ß', 'ø', 'Ω', 'λ', 'ж', 'я', '中', '文', '日', '本', '語', 'の', 'カ', '한', '국', 'ا', 'ل', 'ש', 'ע', 'क', '्', 'ก',
    '\u0301', '\u0308', '\u200d', '\u00a0', '\u3000', '😀', '🦙', '👍', '🏽', '❤', '\ufe0f', '₂', '²', '½', '٣', '１', '€', '→', '…', '—', '“', '”',
    "'s", "'t", "'re", "'ll", "'D", "'M", '...', '!!', '??', '\r\n', '    ',
  ];
  const rnd = mulberry32(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = 1 + Math.floor(rnd() * 40);
    let s = '';
    for (let j = 0; j < len; j++) s += pool[Math.floor(rnd() * pool.length)];
    out.push(s);
  }
  return out;
}

// ---------- tests that need no shared assets ----------

describe('Utf8StreamDecoder', () => {
  it('never emits half a character', () => {
    const text = 'a😀b€c\u00e9🦙';
    const bytes = Buffer.from(text, 'utf8');
    const d = new Utf8StreamDecoder();
    let acc = '';
    for (const b of bytes) {
      const s = d.push(Uint8Array.of(b));
      // every emitted chunk is well-formed (no lone surrogate, no replacement char)
      expect(s).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])|(?:[^\ud800-\udbff]|^)[\udc00-\udfff]|\ufffd/);
      acc += s;
    }
    acc += d.flush();
    expect(acc).toBe(text);
  });

  it('holds back an incomplete emoji until its last byte, flushes an incomplete tail as U+FFFD', () => {
    const emoji = Buffer.from('😀', 'utf8');
    const d = new Utf8StreamDecoder();
    expect(d.push(emoji.subarray(0, 1))).toBe('');
    expect(d.push(emoji.subarray(1, 3))).toBe('');
    expect(d.push(emoji.subarray(3))).toBe('😀');
    expect(d.push(emoji.subarray(0, 2))).toBe('');
    expect(d.flush()).toBe('\ufffd');
  });
});

describe('GGUF reader errors', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-gguf-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const expectCode = async (p: string, code: string, re?: RegExp) => {
    for (const read of [() => readGguf(p), async () => readGgufSync(p)]) {
      let err: unknown;
      try { await read(); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(ModelFileError);
      expect((err as ModelFileError).code).toBe(code);
      expect((err as Error).message).toContain(p);
      if (re) expect((err as Error).message).toMatch(re);
    }
  };

  /** A minimal GGUF v3 header with the given KV pairs (already encoded) and no tensors. */
  const ggufBytes = (kvs: Buffer[], nKv = kvs.length): Buffer => {
    const head = Buffer.alloc(24);
    head.write('GGUF', 0, 'latin1');
    head.writeUInt32LE(3, 4);
    head.writeBigUInt64LE(0n, 8);
    head.writeBigUInt64LE(BigInt(nKv), 16);
    return Buffer.concat([head, ...kvs]);
  };
  const str = (s: string) => { const b = Buffer.from(s, 'utf8'); const l = Buffer.alloc(8); l.writeBigUInt64LE(BigInt(b.length)); return Buffer.concat([l, b]); };
  const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };

  it('missing file -> ERR_FILE_NOT_FOUND', async () => {
    await expectCode(path.join(tmp, 'does-not-exist.gguf'), 'ERR_FILE_NOT_FOUND', /not found/);
  });

  it('non-GGUF file -> ERR_NOT_GGUF', async () => {
    const p = path.join(tmp, 'not.gguf');
    fs.writeFileSync(p, 'this is not a gguf file at all\n');
    await expectCode(p, 'ERR_NOT_GGUF', /not a GGUF file/);
  });

  it('header cut short -> ERR_TRUNCATED_FILE', async () => {
    const p = path.join(tmp, 'short.gguf');
    fs.writeFileSync(p, ggufBytes([Buffer.concat([str('general.name'), u32(8), str('abc')])]).subarray(0, 40));
    await expectCode(p, 'ERR_TRUNCATED_FILE', /truncated/);
  });

  it('unknown value type / absurd counts -> ERR_BAD_METADATA', async () => {
    const p1 = path.join(tmp, 'badtype.gguf');
    fs.writeFileSync(p1, ggufBytes([Buffer.concat([str('general.x'), u32(99), u32(0)])]));
    await expectCode(p1, 'ERR_BAD_METADATA', /unknown value type 99/);
    const p2 = path.join(tmp, 'absurd.gguf');
    const b = ggufBytes([]);
    b.writeBigUInt64LE(1n << 60n, 16);
    fs.writeFileSync(p2, b);
    await expectCode(p2, 'ERR_BAD_METADATA', /absurd/);
  });

  it('reads a small synthetic file', async () => {
    const p = path.join(tmp, 'ok.gguf');
    const arr = Buffer.concat([str('a.arr'), u32(9), u32(6), Buffer.from(new BigUint64Array([3n]).buffer), Buffer.from(new Float32Array([1, 2.5, -3]).buffer)]);
    const big = Buffer.concat([str('a.big'), u32(10), Buffer.from(new BigUint64Array([2n ** 60n]).buffer)]);
    const small = Buffer.concat([str('a.small'), u32(11), Buffer.from(new BigInt64Array([-5n]).buffer)]);
    fs.writeFileSync(p, ggufBytes([Buffer.concat([str('general.name'), u32(8), str('tiny')]), arr, big, small]));
    for (const f of [await readGguf(p), readGgufSync(p)]) {
      expect(f.version).toBe(3);
      expect(f.metadata.get('general.name')).toBe('tiny');
      expect(Array.from(f.metadata.get('a.arr') as Float32Array)).toEqual([1, 2.5, -3]);
      expect(f.metadata.get('a.arr')).toBeInstanceOf(Float32Array);
      expect(f.metadata.get('a.big')).toBe(2n ** 60n);
      expect(f.metadata.get('a.small')).toBe(-5);
      expect(f.tensors).toEqual([]);
      expect(f.alignment).toBe(32);
    }
  });
});

describe('Tokenizer typed errors (synthetic vocab)', () => {
  const fake = (md: [string, unknown][]): GgufFile => ({
    path: '/fake/model.gguf', version: 3, metadata: new Map(md as [string, never][]), tensors: [], alignment: 32, dataOffset: 0, fileSize: 0,
  });
  const tokens = ['<unk>', '<s>', '</s>', '▁a', 'a', 'b', '▁'];
  const spm = () => Tokenizer.fromGguf(fake([
    ['tokenizer.ggml.model', 'llama'], ['tokenizer.ggml.tokens', tokens], ['tokenizer.ggml.scores', new Float32Array(tokens.length)],
  ]));

  it('unknown tokenizer model or pre-tokenizer -> ModelFileError ERR_BAD_METADATA naming the value', () => {
    const run = (md: [string, unknown][]) => { try { Tokenizer.fromGguf(fake(md)); } catch (e) { return e as ModelFileError; } throw new Error('no error'); };
    let e = run([['tokenizer.ggml.model', 'wordpiece-x'], ['tokenizer.ggml.tokens', tokens]]);
    expect(e).toBeInstanceOf(ModelFileError);
    expect(e.code).toBe('ERR_BAD_METADATA');
    expect(e.message).toContain('wordpiece-x');
    e = run([['tokenizer.ggml.model', 'gpt2'], ['tokenizer.ggml.pre', 'no-such-pre'], ['tokenizer.ggml.tokens', tokens], ['tokenizer.ggml.merges', []]]);
    expect(e.code).toBe('ERR_BAD_METADATA');
    expect(e.message).toContain('no-such-pre');
  });

  it('tokenize rejects non-strings; detokenize rejects ids outside the vocabulary', () => {
    const t = spm();
    expect(t.tokenize('a b', { addBos: false })).toEqual([3, 6, 5]);
    expect(() => t.tokenize(42 as unknown as string)).toThrow(InvalidOptionError);
    expect(() => t.tokenize(undefined as unknown as string)).toThrow(InvalidOptionError);
    expect(() => t.detokenize([3, tokens.length])).toThrow(TokenOutOfRangeError);
    expect(() => t.detokenize([-1])).toThrow(TokenOutOfRangeError);
    expect(() => t.detokenize([1.5])).toThrow(TokenOutOfRangeError);
  });
});

// ---------- tests on the shared vocabularies and models ----------

describeShared('GGUF reader on real files', (shared) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-gguf-real-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const stories = path.join(shared, 'models', 'stories260K.gguf');

  const codeOf = async (p: string) => {
    const codes: string[] = [];
    for (const read of [() => readGguf(p), async () => readGgufSync(p)]) {
      try { await read(); codes.push('ok'); } catch (e) {
        expect(e).toBeInstanceOf(ModelFileError);
        expect((e as Error).message).toContain(p);
        codes.push((e as ModelFileError).code);
      }
    }
    return codes;
  };

  it('reads stories260K.gguf header (v3, 48 tensors, llama SPM vocab of 512)', async () => {
    const a = await readGguf(stories);
    const b = readGgufSync(stories);
    for (const f of [a, b]) {
      expect(f.version).toBe(3);
      expect(f.tensors.length).toBe(48);
      expect(f.metadata.get('general.architecture')).toBe('llama');
      expect((f.metadata.get('tokenizer.ggml.tokens') as string[]).length).toBe(512);
      expect(f.metadata.get('tokenizer.ggml.scores')).toBeInstanceOf(Float32Array);
      expect(f.metadata.get('tokenizer.ggml.token_type')).toBeInstanceOf(Int32Array);
      expect(f.dataOffset % f.alignment).toBe(0);
      expect(f.fileSize).toBe(fs.statSync(stories).size);
    }
    expect(b.tensors).toEqual(a.tensors);
  });

  it('truncated in the metadata or in the tensor data -> ERR_TRUNCATED_FILE', async () => {
    const full = fs.readFileSync(stories);
    const f = readGgufSync(stories);
    const cuts = [2000, f.dataOffset - 10, full.length - 1000];
    const expected = ['ERR_TRUNCATED_FILE', 'ERR_TRUNCATED_FILE', 'ERR_TRUNCATED_FILE'];
    for (let i = 0; i < cuts.length; i++) {
      const p = path.join(tmp, `cut-${cuts[i]}.gguf`);
      fs.writeFileSync(p, full.subarray(0, cuts[i]));
      expect({ cut: cuts[i], codes: await codeOf(p) }).toEqual({ cut: cuts[i], codes: [expected[i], expected[i]] });
    }
    const p = path.join(tmp, 'gg.gguf');
    fs.writeFileSync(p, 'GG');
    expect(await codeOf(p)).toEqual(['ERR_TRUNCATED_FILE', 'ERR_TRUNCATED_FILE']);
    fs.writeFileSync(p, 'XY');
    expect(await codeOf(p)).toEqual(['ERR_NOT_GGUF', 'ERR_NOT_GGUF']);
  });
});

describeShared('llama.cpp vocabulary tests (tests/test-tokenizer-0: add_special=false, parse_special=false)', (shared) => {
  for (const v of VOCABS) {
    it(`ggml-vocab-${v}: every case`, async () => {
      const base = path.join(shared, 'models', 'vocab', `ggml-vocab-${v}.gguf`);
      const tok = await loadTokenizer(base);
      const cases = readVocabTests(base);
      const failures: string[] = [];
      for (const c of cases) {
        const got = tok.tokenize(c.text, { special: false, addBos: false, addEos: false });
        if (JSON.stringify(got) !== JSON.stringify(c.ids)) failures.push(`${JSON.stringify(c.text)}: expected ${c.ids.join(' ')} got ${got.join(' ')}`);
      }
      expect(failures).toEqual([]);
      expect(cases.length).toBe(46);
    });
  }
});

describeShared('node-llama-cpp reference files (models/reference/*-tokenize.json)', (shared) => {
  const refDir = path.join(shared, 'models', 'reference');
  const files = fs.existsSync(refDir) ? fs.readdirSync(refDir).filter((f) => f.endsWith('-tokenize.json')) : [];
  it('has reference files', () => expect(files.length).toBeGreaterThanOrEqual(6));
  for (const f of files) {
    it(f, async () => {
      const ref = JSON.parse(fs.readFileSync(path.join(refDir, f), 'utf8')) as {
        model: string; bos: number; eos: number; add_bos: boolean;
        cases: { text: string; tokens: number[]; pieces: string[]; roundtrip: string }[];
      };
      const candidates = [path.join(shared, 'models', 'vocab', ref.model), path.join(shared, 'models', ref.model)];
      const model = candidates.find((p) => fs.existsSync(p));
      expect(model).toBeDefined();
      const tok = await loadTokenizer(model!);
      expect(tok.bos).toBe(ref.bos);
      expect(tok.eos).toBe(ref.eos);
      expect(tok.addBos).toBe(ref.add_bos);
      for (const c of ref.cases) {
        const ids = tok.tokenize(c.text, { addBos: false });
        expect({ text: c.text, ids }).toEqual({ text: c.text, ids: c.tokens });
        expect(ids.map((id) => tok.detokenize([id]))).toEqual(c.pieces);
        expect(tok.detokenize(ids)).toBe(c.roundtrip);
      }
    });
  }

  it('code-target-q8_0.gguf (qwen2 pre-tokenizer, 8192 tokens) round-trips code exactly', async () => {
    const tok = await loadTokenizer(path.join(shared, 'models', 'code', 'code-target-q8_0.gguf'));
    expect(tok.type).toBe('bpe');
    expect(tok.preTokenizer).toBe('qwen2');
    expect(tok.nVocab).toBe(8192);
    expect(tok.addBos).toBe(false);
    expect(tok.isEog(tok.eos)).toBe(true);
    for (const s of codeSnippets(shared)) expect(tok.detokenize(tok.tokenize(s))).toBe(s);
  });
});

describeShared('live comparison with node-llama-cpp 3.21.1 (llama.cpp) tokenization', (shared) => {
  const models: [string, string][] = [
    ...VOCABS.map((v): [string, string] => [`ggml-vocab-${v}`, path.join(shared, 'models', 'vocab', `ggml-vocab-${v}.gguf`)]),
    ['code-target-q8_0', path.join(shared, 'models', 'code', 'code-target-q8_0.gguf')],
    ['stories260K', path.join(shared, 'models', 'stories260K.gguf')],
  ];
  const corpus = [
    ...codeSnippets(shared), ...PROSE, ...UNICODE, ...WHITESPACE, ...SPECIAL_TEXT, ...randomStrings(160, 1234), '',
  ];

  for (const [name, model] of models) {
    it(`${name}: ${corpus.length} strings (special=false) + special-token strings (special=true): ids and detokenized text`, async () => {
      const tok = await loadTokenizer(model);
      // strings that embed this vocabulary's own control / user-defined tokens, parsed with special=true
      const specials = specialTexts(tok);
      const specialItems = specials.map((text) => ({ text, special: true }));
      const ref = nlcTokenize(model, [...corpus, ...specials, ...specialItems]);
      const failures: string[] = [];
      const orNull = (id: number) => (id < 0 ? null : id);
      expect({ bos: orNull(tok.bos), eos: orNull(tok.eos), eot: orNull(tok.eot), nl: orNull(tok.nl) }).toEqual(ref.tokens);
      const all = [...corpus, ...specials];
      all.forEach((text, i) => {
        const ids = tok.tokenize(text, { special: false, addBos: false });
        if (JSON.stringify(ids) !== JSON.stringify(ref.ids[i])) failures.push(`ids ${JSON.stringify(text)}: llama.cpp ${ref.ids[i].join(' ')} / ours ${ids.join(' ')}`);
        const d = tok.detokenize(ref.ids[i]);
        if (d !== ref.detok[i]) failures.push(`detok ${JSON.stringify(text)}: llama.cpp ${JSON.stringify(ref.detok[i])} / ours ${JSON.stringify(d)}`);
        const ds = tok.detokenize(ref.ids[i], { unparseSpecial: true });
        if (ds !== ref.detokSpecial[i]) failures.push(`detok(special) ${JSON.stringify(text)}: llama.cpp ${JSON.stringify(ref.detokSpecial[i])} / ours ${JSON.stringify(ds)}`);
      });
      specialItems.forEach((item, k) => {
        const i = all.length + k;
        const ids = tok.tokenize(item.text, { special: true, addBos: false });
        if (JSON.stringify(ids) !== JSON.stringify(ref.ids[i])) failures.push(`ids(special) ${JSON.stringify(item.text)}: llama.cpp ${ref.ids[i].join(' ')} / ours ${ids.join(' ')}`);
        const ds = tok.detokenize(ref.ids[i], { unparseSpecial: true });
        if (ds !== ref.detokSpecial[i]) failures.push(`detok(special) ${JSON.stringify(item.text)}: llama.cpp ${JSON.stringify(ref.detokSpecial[i])} / ours ${JSON.stringify(ds)}`);
      });
      expect(failures.slice(0, 20)).toEqual([]);
      expect(specialItems.length).toBeGreaterThan(0);
    });
  }
});

/** Texts embedding a vocabulary's control / user-defined tokens (and near misses). */
function specialTexts(tok: Tokenizer): string[] {
  const ids: number[] = [];
  for (let id = 0; id < tok.nVocab && ids.length < 40; id++) {
    if (tok.tokenAttr(id) & (8 | 16 | 1)) ids.push(id);
  }
  const texts = ids.map((id) => tok.tokenText(id));
  const out: string[] = [...SPECIAL_TEXT];
  const rnd = mulberry32(99);
  const pick = () => texts[Math.floor(rnd() * texts.length)];
  for (let i = 0; i < 30 && texts.length > 0; i++) {
    const a = pick(), b = pick(), c = pick();
    out.push(`${a}Hello${b} world ${c}\n${a}`);
    out.push(`  ${a} x ${b}${c}  `);
    out.push(`${a.slice(0, Math.max(1, a.length - 1))} partial ${b}`);
  }
  return out;
}
