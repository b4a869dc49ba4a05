#!/usr/bin/env node
// Fuzzes the tokenizer and detokenizer (lib/tokenizer, TypeScript, so out of libFuzzer's reach): a
// mutation fuzzer over dist/ with the tokenizers of the shared vocabularies (SentencePiece, and
// byte-level BPE with the llama-bpe, qwen2 and gpt-2 pre-tokenizers) and the tiny models'.
//
//   node tools/fuzz/fuzz-tokenizer.mjs [--seconds N] [--executions N] [--seed N]
//
// Inputs start from seeds (test/fuzz-corpus/tokenizer/*.txt, the vocabularies' test texts) and are
// mutated: UTF-16 units and UTF-8 bytes flipped, inserted, deleted, duplicated; code points from
// hard ranges (lone surrogates, combining marks, zero-width and bidi controls, CJK, emoji, the
// private use area, U+FFFD, NUL) and the vocabulary's own special-token texts inserted; seeds
// spliced. One execution = one input through one tokenizer: tokenize (special on or off), every id
// an integer in the vocabulary, detokenize (unparseSpecial on or off) without throwing, the round
// trip exact on well-formed text (byte-level BPE; SentencePiece up to U+2581 read as a space);
// then detokenize of the ids mutated (in range: no throw; out of range: TokenOutOfRangeError). A
// failure writes its input to build-fuzz/findings/tokenizer/ and exits 1; the end prints the count.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const { readGguf, Tokenizer, SpecdecError, TokenOutOfRangeError, InvalidOptionError } = require(path.join(root, 'dist', 'index.js'));

const arg = (name, def) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : def; };
const seconds = arg('--seconds', 60);
const maxExec = arg('--executions', Infinity);
let state = BigInt(arg('--seed', Date.now() % 1e9)) | 1n;
const rnd = () => { state ^= state << 13n; state ^= state >> 7n; state ^= state << 17n; state &= (1n << 64n) - 1n; return Number(state >> 11n) / 2 ** 53; };
const ri = (n) => Math.floor(rnd() * n);
const pick = (a) => a[ri(a.length)];

const shared = process.env.SPECDEC_SHARED ?? path.join(root, '..', 'shared');
const files = [
  ['spm', 'models/vocab/ggml-vocab-llama-spm.gguf', false], ['llama-bpe', 'models/vocab/ggml-vocab-llama-bpe.gguf', true],
  ['qwen2', 'models/vocab/ggml-vocab-qwen2.gguf', true], ['gpt-2', 'models/vocab/ggml-vocab-gpt-2.gguf', true],
  ['stories260K', 'models/stories260K.gguf', false], ['code', 'models/code/code-target-q8_0.gguf', true],
];
const toks = [];
for (const [name, rel, exact] of files) {
  const p = path.join(shared, rel);
  if (!fs.existsSync(p)) { console.error(`[fuzz-tokenizer] ${p} missing: skipped`); continue; }
  const t = Tokenizer.fromGguf(await readGguf(p));
  const specials = [];
  for (let id = 0; id < t.nVocab; id++) if (t.isControl(id)) specials.push(t.tokenText(id));
  // llama.cpp's clean-up of spaces before punctuation (gpt-2) changes text on purpose
  // SentencePiece reads U+2581 as a space
  const roundTrip = t.cleanSpaces ? null : exact ? (x) => x.toWellFormed() : (x) => x.toWellFormed().replaceAll('\u2581', ' ');
  toks.push({ name, t, roundTrip, specials: specials.length ? specials : ['<s>'] });
}
if (toks.length === 0) { console.error('[fuzz-tokenizer] no vocabulary found (SPECDEC_SHARED)'); process.exit(1); }

const seeds = [];
const corpusDir = path.join(root, 'test', 'fuzz-corpus', 'tokenizer');
for (const f of fs.readdirSync(corpusDir)) seeds.push(fs.readFileSync(path.join(corpusDir, f), 'utf8'));
for (const [, rel] of files) {
  const inp = path.join(shared, rel + '.inp');
  if (fs.existsSync(inp)) seeds.push(...fs.readFileSync(inp, 'utf8').split('\n__ggml_vocab_test__\n'));
}

const hard = [
  [0xd800, 0xdfff], [0x300, 0x36f], [0x200b, 0x200f], [0x202a, 0x202e], [0x2066, 0x2069], [0x4e00, 0x9fff],
  [0x1f300, 0x1faff], [0xe000, 0xf8ff], [0xfffd, 0xffff], [0, 0x1f], [0x80, 0xff], [0x10000, 0x10ffff], [0x20, 0x7e],
];
const cp = () => { const [a, b] = pick(hard); const c = a + ri(b - a + 1); return c <= 0xffff ? String.fromCharCode(c) : String.fromCodePoint(c); };
const utf8 = new TextEncoder();
const fromBytes = new TextDecoder('utf-8');

function mutate(s, tk) {
  const n = 1 + ri(4);
  for (let k = 0; k < n; k++) {
    const at = ri(s.length + 1);
    switch (ri(9)) {
      case 0: s = s.slice(0, at) + cp() + s.slice(at); break;
      case 1: s = s.slice(0, at) + s.slice(at + 1 + ri(8)); break;
      case 2: s = s.slice(0, at) + pick(tk.specials) + s.slice(at); break;
      case 3: s = s.slice(0, at) + pick([' ', '  ', '\n', '\t', '\r\n', '\u00a0', '\u3000', '\u2581']).repeat(1 + ri(5)) + s.slice(at); break;
      case 4: { const b = utf8.encode(s); if (b.length) { b[ri(b.length)] ^= 1 << ri(8); } s = fromBytes.decode(b); break; }
      case 5: s = s.slice(0, at) + pick(seeds).slice(0, 1 + ri(40)) + s.slice(at); break;
      case 6: { const len = 1 + ri(16); s = s.slice(0, at) + s.slice(at, at + len).repeat(1 + ri(30)) + s.slice(at + len); break; }
      case 7: s = s.slice(0, at) + String.fromCharCode(ri(0x10000)) + s.slice(at); break;  // any UTF-16 unit
      default: s = s.slice(0, ri(s.length + 1)); break;
    }
  }
  return s.length > 1024 ? s.slice(0, 1024) : s;
}

const findings = path.join(root, 'build-fuzz', 'findings', 'tokenizer');
function fail(tk, input, why, extra) {
  fs.mkdirSync(findings, { recursive: true });
  const f = path.join(findings, `crash-${Date.now()}.json`);
  fs.writeFileSync(f, JSON.stringify({ tokenizer: tk.name, input, why, extra: String(extra) }));
  console.error(`[fuzz-tokenizer] FINDING (${tk.name}): ${why}\n  ${extra}\n  input written to ${f}`);
  process.exit(1);
}

function execute(tk, s) {
  const t = tk.t;
  const special = rnd() < 0.5;
  let ids;
  try {
    ids = t.tokenize(s, { special, addBos: rnd() < 0.5 });
  } catch (e) {
    fail(tk, s, 'tokenize threw', e && e.stack);
  }
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= t.nVocab) fail(tk, s, `id ${id} outside the vocabulary`, ids);
  let back;
  try {
    back = t.detokenize(ids, { unparseSpecial: rnd() < 0.5 });
    t.detokenize(ids, { removeSpecial: true });
  } catch (e) {
    fail(tk, s, 'detokenize threw', e && e.stack);
  }
  if (typeof back !== 'string') fail(tk, s, 'detokenize returned no string', back);
  // byte-level BPE and SentencePiece with byte fallback keep every byte: the round trip of
  // well-formed text (lone surrogates become U+FFFD on the way in) is exact when no special token was
  // parsed, no BOS added and the vocabulary does not clean up spaces (gpt-2: " !" gives "!")
  if (tk.roundTrip && !special) {
    const plain = t.detokenize(t.tokenize(s, { special: false, addBos: false }));
    if (plain !== tk.roundTrip(s)) fail(tk, s, 'round trip differs', JSON.stringify(plain));
  }
  // detokenize of mutated ids
  const m = ids.slice();
  if (m.length === 0 || rnd() < 0.3) m.push(ri(t.nVocab));
  m[ri(m.length)] = rnd() < 0.8 ? ri(t.nVocab) : pick([-1, t.nVocab, t.nVocab + ri(1000), 1.5, NaN, 2 ** 31, -(2 ** 31)]);
  const bad = m.some((id) => !Number.isInteger(id) || id < 0 || id >= t.nVocab);
  try {
    t.detokenize(m, { unparseSpecial: rnd() < 0.5 });
    if (bad) fail(tk, s, 'detokenize accepted an id outside the vocabulary', m);
  } catch (e) {
    if (!(bad && e instanceof TokenOutOfRangeError)) fail(tk, s, 'detokenize of ids threw', e && e.stack);
  }
  // option validation: wrong types are typed errors
  if (rnd() < 0.02) {
    try {
      t.tokenize(pick([undefined, null, 5, {}, [s]]));
      fail(tk, s, 'tokenize accepted a non-string', '');
    } catch (e) {
      if (!(e instanceof SpecdecError || e instanceof InvalidOptionError)) fail(tk, s, 'tokenize of a non-string threw an untyped error', e && e.stack);
    }
  }
}

const t0 = Date.now();
let n = 0;
let lastReport = t0;
while (n < maxExec && Date.now() - t0 < seconds * 1000) {
  const tk = pick(toks);
  let s = pick(seeds);
  if (rnd() < 0.9) s = mutate(s, tk);
  execute(tk, s);
  n++;
  if ((n & 1023) === 0 && Date.now() - lastReport > 30000) {
    lastReport = Date.now();
    console.error(`[fuzz-tokenizer] #${n} ${(n / ((Date.now() - t0) / 1000)).toFixed(0)} exec/s`);
  }
}
const secs = (Date.now() - t0) / 1000;
console.log(`[fuzz-tokenizer] done: ${n} executions in ${secs.toFixed(0)} s (${(n / secs).toFixed(0)} exec/s), ${toks.length} tokenizers, no finding`);
