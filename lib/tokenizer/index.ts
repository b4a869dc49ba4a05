/**
 * Tokenizer built from GGUF metadata, token-for-token identical to llama.cpp's (llama-vocab.cpp as shipped
 * in node-llama-cpp 3.21.1 / llama.cpp 0.4.0) for SentencePiece (`llama`) and byte-level BPE (`gpt2`) vocabularies.
 */
import { InvalidOptionError, ModelFileError, TokenOutOfRangeError } from '../errors';
import type { GgufFile, GgufValue } from '../gguf/reader';
import { PRE_TOKENIZERS, type PreTokenizerConfig } from './pretokenizers';
import { CHAR_TO_BYTE, regexSplit } from './unicode';

export { Utf8StreamDecoder } from './stream';

/** Token attributes (llama_token_attr). */
export const TokenAttr = {
  UNDEFINED: 0,
  UNKNOWN: 1 << 0,
  UNUSED: 1 << 1,
  NORMAL: 1 << 2,
  CONTROL: 1 << 3,
  USER_DEFINED: 1 << 4,
  BYTE: 1 << 5,
  NORMALIZED: 1 << 6,
  LSTRIP: 1 << 7,
  RSTRIP: 1 << 8,
  SINGLE_WORD: 1 << 9,
} as const;

export interface TokenizeOptions {
  /** Parse control tokens written in the text (llama.cpp parse_special). Default false. */
  special?: boolean;
  /** Prepend BOS. Default: the model's add_bos (tokenizer.ggml.add_bos_token or llama.cpp's default). */
  addBos?: boolean;
  /** Append EOS. Default: the model's add_eos. */
  addEos?: boolean;
}

export interface DetokenizeOptions {
  /** Drop a leading BOS / trailing EOS when the model adds them (llama.cpp remove_special). Default false. */
  removeSpecial?: boolean;
  /** Render control/unknown tokens as their text (llama.cpp unparse_special). Default false. */
  unparseSpecial?: boolean;
}

const NULL = -1;
const A = TokenAttr;
const enc = new TextEncoder();
// ignoreBOM: a leading U+FEFF is text like any other (TextDecoder would drop it by default)
const dec = new TextDecoder('utf-8', { ignoreBOM: true });
const EMPTY = new Uint8Array(0);
const SPM_SPACE = '\u2581';

// ---------- small binary heap ----------
class Heap<T> {
  private a: T[] = [];
  constructor(private readonly before: (x: T, y: T) => boolean) {}
  get size(): number { return this.a.length; }
  push(v: T): void {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): T {
    const a = this.a;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.before(a[l], a[m])) m = l;
        if (r < a.length && this.before(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

interface Sym { prev: number; next: number; start: number; n: number }
interface SpmBigram { left: number; right: number; score: number; size: number }
interface BpeBigram { left: number; right: number; text: string; rank: number }

type Fragment = { token: number } | { offset: number; length: number };

function metaNum(v: GgufValue | undefined): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

function isCSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

export class Tokenizer {
  readonly type: 'spm' | 'bpe';
  /** tokenizer.ggml.model */
  readonly model: string;
  /** tokenizer.ggml.pre as given ('default' when absent); for SPM always 'default' */
  readonly preTokenizer: string;
  readonly nVocab: number;
  readonly bos: number;
  readonly eos: number;
  readonly eot: number;
  readonly eom: number;
  readonly unk: number;
  readonly pad: number;
  readonly sep: number;
  readonly nl: number;
  readonly fim: { pre: number; suf: number; mid: number; pad: number; rep: number; sep: number };
  readonly eogTokens: Set<number>;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  readonly cleanSpaces: boolean;
  readonly removeExtraWhitespaces: boolean;

  private readonly texts: string[];
  private readonly scores: Float32Array;
  private readonly attrs: Uint16Array;
  private readonly tokenToId = new Map<string, number>();
  private readonly bpeRanks = new Map<string, number>();
  private readonly pre: PreTokenizerConfig | null;
  private readonly ignoreMerges: boolean;
  private readonly specialCache: number[];
  private readonly pieceCache: Uint8Array[];
  private readonly bpeWordCache = new Map<string, number[]>();

  private constructor(file: GgufFile) {
    const md = file.metadata;
    const where = file.path;
    const bad = (msg: string): never => { throw new ModelFileError('ERR_BAD_METADATA', `${where}: ${msg}`); };
    const model = md.get('tokenizer.ggml.model');
    if (typeof model !== 'string') bad(`tokenizer.ggml.model is missing (no tokenizer in this file)`);
    this.model = model as string;
    const preRaw = md.get('tokenizer.ggml.pre');
    const preName = typeof preRaw === 'string' ? preRaw : '';

    let bos = 1, eos = 2, unk = 0;
    let addSpacePrefix = false, addBos = false, addEos = false, cleanSpaces = false, ignoreMerges = false;
    let pre: PreTokenizerConfig | null = null;
    if (model === 'llama') {
      this.type = 'spm';
      bos = 1; eos = 2; unk = 0;
      addSpacePrefix = true; cleanSpaces = false; addBos = true; addEos = false;
      this.preTokenizer = 'default';
    } else if (model === 'gpt2') {
      this.type = 'bpe';
      bos = 11; eos = 11; unk = NULL;
      cleanSpaces = true;
      const name = preName === '' ? 'default' : preName;
      pre = PRE_TOKENIZERS[name] ?? null;
      if (!pre) bad(`unsupported tokenizer pre-tokenizer tokenizer.ggml.pre = '${preName}'`);
      pre = pre as PreTokenizerConfig;
      if (pre.cleanSpaces === false) cleanSpaces = false;
      if (pre.ignoreMerges) ignoreMerges = true;
      if (pre.addBos) addBos = true;
      if (pre.bosNull) bos = NULL;
      this.preTokenizer = name;
    } else {
      bad(`unsupported tokenizer model tokenizer.ggml.model = '${String(model)}' (supported: 'llama', 'gpt2')`);
      throw new Error('unreachable');
    }
    this.pre = pre;
    this.ignoreMerges = ignoreMerges;
    const asp = md.get('tokenizer.ggml.add_space_prefix');
    if (typeof asp === 'boolean') addSpacePrefix = asp;
    const rew = md.get('tokenizer.ggml.remove_extra_whitespaces');
    this.removeExtraWhitespaces = typeof rew === 'boolean' ? rew : false;

    // vocabulary
    const tokens = md.get('tokenizer.ggml.tokens');
    if (!Array.isArray(tokens) || (tokens.length > 0 && typeof tokens[0] !== 'string')) bad('tokenizer.ggml.tokens is missing or not an array of strings');
    const n = (tokens as string[]).length;
    this.nVocab = n;
    const scoresV = md.get('tokenizer.ggml.scores');
    let scores: Float32Array;
    if (scoresV === undefined) scores = new Float32Array(n);
    else if (scoresV instanceof Float32Array) scores = scoresV;
    else if (scoresV instanceof Int32Array) scores = Float32Array.from(scoresV);
    else { bad('tokenizer.ggml.scores has an invalid type'); throw new Error('unreachable'); }
    if (scores.length < n) bad(`tokenizer.ggml.scores has ${scores.length} entries for ${n} tokens`);
    const ttV = md.get('tokenizer.ggml.token_type');
    let toktypes: Int32Array | null = null;
    if (ttV !== undefined) {
      if (!(ttV instanceof Int32Array)) bad('tokenizer.ggml.token_type is not an int32 array');
      toktypes = ttV as Int32Array;
      if (toktypes.length < n) bad(`tokenizer.ggml.token_type has ${toktypes.length} entries for ${n} tokens`);
    }
    this.scores = scores;
    const texts: string[] = new Array(n);
    const attrs = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      let w = (tokens as string[])[i];
      if (w.length === 0) w = `[EMPTY_${i}]`;
      texts[i] = w;
      this.tokenToId.set(w, i);
      let attr: number = A.NORMAL;
      if (toktypes) {
        switch (toktypes[i]) {
          case 2: attr = A.UNKNOWN; break;
          case 5: attr = A.UNUSED; break;
          case 1: attr = A.NORMAL; break;
          case 3: attr = A.CONTROL; break;
          case 4: attr = A.USER_DEFINED; break;
          case 6: attr = A.BYTE; break;
          default: attr = A.UNDEFINED; break;
        }
      }
      attrs[i] = attr;
    }
    this.texts = texts;
    this.attrs = attrs;

    // merges
    if (this.type === 'bpe') {
      const merges = md.get('tokenizer.ggml.merges');
      if (merges === undefined) bad('tokenizer.ggml.merges is missing (required for a gpt2 tokenizer)');
      if (!Array.isArray(merges) || (merges.length > 0 && typeof merges[0] !== 'string')) bad('tokenizer.ggml.merges is not an array of strings');
      const ms = merges as string[];
      for (let i = 0; i < ms.length; i++) {
        const w = ms[i];
        const pos = w.indexOf(' ', 1);
        // llama.cpp stores ("", "") for a merge without a separating space; the key below is then " "
        const key = pos === -1 ? ' ' : w;
        if (!this.bpeRanks.has(key)) this.bpeRanks.set(key, i);
      }
    }

    // newline token
    let nl = NULL;
    // special token ids
    let eot = NULL, eom = NULL, sep = NULL, pad = NULL, mask = NULL;
    const fim = { pre: NULL, suf: NULL, mid: NULL, pad: NULL, rep: NULL, sep: NULL };
    // A special-token id outside the vocabulary (or not an integer) is ignored, as llama.cpp ignores it
    // ("bad special token ... using default id"): the default stays, and a default outside the vocabulary
    // means no such token. Rejecting the file would refuse models llama.cpp runs; keeping the id would
    // hand the native side a token it has no embedding row for.
    const inVocab = (id: number) => Number.isInteger(id) && id >= 0 && id < n;
    const readId = (key: string, def: number): number => {
      if (!inVocab(def)) def = NULL;
      const v = metaNum(md.get(key));
      if (v === undefined || !inVocab(v)) return def;
      return v;
    };
    bos = readId('tokenizer.ggml.bos_token_id', bos);
    eos = readId('tokenizer.ggml.eos_token_id', eos);
    eot = readId('tokenizer.ggml.eot_token_id', eot);
    eom = readId('tokenizer.ggml.eom_token_id', eom);
    unk = readId('tokenizer.ggml.unknown_token_id', unk);
    sep = readId('tokenizer.ggml.seperator_token_id', sep);
    pad = readId('tokenizer.ggml.padding_token_id', pad);
    mask = readId('tokenizer.ggml.mask_token_id', mask);
    fim.pre = readId('tokenizer.ggml.fim_pre_token_id', fim.pre);
    fim.suf = readId('tokenizer.ggml.fim_suf_token_id', fim.suf);
    fim.mid = readId('tokenizer.ggml.fim_mid_token_id', fim.mid);
    fim.pad = readId('tokenizer.ggml.fim_pad_token_id', fim.pad);
    fim.rep = readId('tokenizer.ggml.fim_rep_token_id', fim.rep);
    fim.sep = readId('tokenizer.ggml.fim_sep_token_id', fim.sep);
    fim.pre = readId('tokenizer.ggml.prefix_token_id', fim.pre);
    fim.suf = readId('tokenizer.ggml.suffix_token_id', fim.suf);
    fim.mid = readId('tokenizer.ggml.middle_token_id', fim.mid);
    void mask;

    const ab = md.get('tokenizer.ggml.add_bos_token');
    if (typeof ab === 'boolean') addBos = ab;
    const ae = md.get('tokenizer.ggml.add_eos_token');
    if (typeof ae === 'boolean') addEos = ae;

    // auto-detect special tokens by text. llama.cpp walks an unordered_map, so where several candidate texts
    // exist its choice depends on hash order; we take the first candidate in llama.cpp's list order, which is
    // what llama.cpp picks for the shared vocabularies (<|im_end|> for Qwen2, <|eot_id|> for Llama 3).
    const byText = (cands: string[]): number[] => {
      const ids: number[] = [];
      for (const c of cands) { const id = this.tokenToId.get(c); if (id !== undefined) ids.push(id); }
      return ids;
    };
    const setControl = (id: number) => { attrs[id] |= A.CONTROL; };
    const detect = (cur: number, cands: string[]): number => {
      if (cur !== NULL) return cur;
      const ids = byText(cands);
      if (ids.length === 0) return NULL;
      setControl(ids[0]);
      return ids[0];
    };
    eot = detect(eot, ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|end_of_text|>', '<EOT>', '_<EOT>', '[EOT]', '<｜end▁of▁sentence｜>', '<end_of_utterance>']);
    eom = detect(eom, ['<|eom_id|>']);
    fim.pre = detect(fim.pre, ['<|fim_prefix|>', '<fim-prefix>', '<fim_prefix>', '<｜fim▁begin｜>', '<PRE>', '▁<PRE>', '<|code_prefix|>', '<|prefix|>']);
    fim.suf = detect(fim.suf, ['<|fim_suffix|>', '<fim-suffix>', '<fim_suffix>', '<｜fim▁hole｜>', '<SUF>', '▁<SUF>', '<|code_suffix|>', '<|suffix|>']);
    fim.mid = detect(fim.mid, ['<|fim_middle|>', '<fim-middle>', '<fim_middle>', '<｜fim▁end｜>', '<MID>', '▁<MID>', '<|code_middle|>', '<|middle|>']);
    fim.pad = detect(fim.pad, ['<|fim_pad|>', '<fim-pad>', '<fim_pad>', '<PAD>', '[PAD]']);
    fim.rep = detect(fim.rep, ['<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>', '<reponame>']);
    fim.sep = detect(fim.sep, ['<|file_sep|>']);

    // unused control tokens
    for (let i = 0; i < n; i++) {
      if ((attrs[i] & A.CONTROL) && !(attrs[i] & A.UNUSED) && texts[i].includes('unused')) attrs[i] |= A.UNUSED;
    }

    // end-of-generation tokens
    const eog = new Set<number>();
    if (fim.pad !== NULL) eog.add(fim.pad);
    if (fim.rep !== NULL) eog.add(fim.rep);
    if (fim.sep !== NULL) eog.add(fim.sep);
    for (const id of byText(['<|eot_id|>', '<|im_end|>', '<|end|>', '<|return|>', '<|call|>', '<|flush|>', '<|calls|>',
      '<end_of_turn>', '<|endoftext|>', '</s>', '<|eom_id|>', '<EOT>', '_<EOT>', '[EOT]', '[EOS]', '<|end_of_text|>',
      '<end_of_utterance>', '<eos>', '<turn|>', '<|tool_response>', '<｜end▁of▁sentence｜>', '[e~['])) {
      eog.add(id);
      setControl(id);
    }
    for (const t of ['<|channel|>', '<|message|>', '<|start|>', '<|constrain|>']) {
      const id = this.tokenToId.get(t);
      if (id !== undefined) attrs[id] = A.USER_DEFINED;
    }
    if (eos !== NULL) eog.add(eos);
    if (eot !== NULL) eog.add(eot);
    if (eom !== NULL) eog.add(eom);
    {
      let hasReturn = false, hasCall = false, hasEnd = false, hasFlush = false, endId = NULL;
      for (const id of eog) {
        if (id < 0 || id >= n) continue;
        const t = texts[id];
        if (t === '<|return|>') hasReturn = true;
        else if (t === '<|call|>' || t === '<|calls|>') hasCall = true;
        else if (t === '<|flush|>') hasFlush = true;
        else if (t === '<|end|>') { hasEnd = true; endId = id; }
      }
      if ((hasReturn && hasCall && hasEnd) || (hasCall && hasFlush && hasEnd)) {
        eog.delete(endId);
        attrs[endId] = A.USER_DEFINED;
      }
    }
    {
      let hasTool = false, sId = NULL;
      for (const id of eog) {
        if (id < 0 || id >= n) continue;
        if (texts[id] === '<|tool_response>') hasTool = true;
        else if (texts[id] === '</s>') sId = id;
      }
      if (hasTool && sId !== NULL) { eog.delete(sId); attrs[sId] = A.NORMAL; }
    }

    // special tokens cache: longest text first (llama.cpp uses an unstable std::sort; ties here keep id order)
    const special: number[] = [];
    for (let i = 0; i < n; i++) if (attrs[i] & (A.CONTROL | A.USER_DEFINED | A.UNKNOWN)) special.push(i);
    const byteLen = (id: number) => Buffer.byteLength(texts[id], 'utf8');
    const lens = new Map<number, number>(special.map((id) => [id, byteLen(id)]));
    special.sort((a, b) => lens.get(b)! - lens.get(a)! || a - b);
    this.specialCache = special;

    this.bos = bos; this.eos = eos; this.eot = eot; this.eom = eom; this.unk = unk; this.pad = pad; this.sep = sep;
    this.fim = fim;
    this.eogTokens = eog;
    this.addBos = addBos;
    this.addEos = addEos;
    this.addSpacePrefix = addSpacePrefix;
    this.cleanSpaces = cleanSpaces;

    // token -> piece cache (special = true); built before the per-model LSTRIP/RSTRIP attributes, as in llama.cpp
    const cache: Uint8Array[] = new Array(n);
    for (let i = 0; i < n; i++) cache[i] = this.computePiece(i);
    this.pieceCache = cache;

    // per-model token attributes
    const name = asciiLower(typeof md.get('general.name') === 'string' ? (md.get('general.name') as string) : '');
    const arch = typeof md.get('general.architecture') === 'string' ? (md.get('general.architecture') as string) : '';
    const has = (s: string, subs: string[]) => subs.some((x) => s.includes(x));
    if (has(preName, ['jina-v2-de', 'jina-v2-es', 'jina-v2-code']) || has(arch, ['nomic-bert-moe', 'jina-bert-v3'])) {
      const id = this.tokenToId.get('<mask>');
      if (id !== undefined) attrs[id] |= A.LSTRIP;
    } else if (has(name, ['phi-3', 'phi3'])) {
      for (const id of special) attrs[id] |= A.RSTRIP;
      const set = (t: string, v: boolean) => {
        const id = this.tokenToId.get(t);
        if (id === undefined) throw new ModelFileError('ERR_BAD_METADATA', `${where}: token '${t}' missing from the vocabulary`);
        attrs[id] = v ? attrs[id] | A.RSTRIP : attrs[id] & ~A.RSTRIP;
      };
      set('</s>', true);
      for (const t of ['<unk>', '<s>', '<|endoftext|>']) set(t, false);
    } else if (has(name, ['modern-bert'])) {
      const id = this.tokenToId.get('[MASK]');
      if (id !== undefined) attrs[id] |= A.LSTRIP;
    }

    // linefeed token
    if (this.type === 'spm') {
      nl = this.byteToTokenOrNull(0x0a);
      if (nl === NULL) nl = pad;
    } else {
      const ids = this.tokenize('\n', { addBos: false, addEos: false });
      nl = ids.length > 0 ? ids[0] : pad;
    }
    this.nl = nl;
  }

  /** Builds a tokenizer from a GGUF file's metadata (see readGguf). */
  static fromGguf(file: GgufFile): Tokenizer {
    return new Tokenizer(file);
  }

  // ---------------- queries ----------------

  /** True when both tokenizers have the same tokens, types and special ids (a draft model can serve this target). */
  sameVocabulary(other: Tokenizer): boolean {
    if (other.nVocab !== this.nVocab || other.type !== this.type || other.bos !== this.bos || other.eos !== this.eos) return false;
    for (let i = 0; i < this.nVocab; i++) {
      if (this.texts[i] !== other.texts[i] || this.attrs[i] !== other.attrs[i]) return false;
    }
    return true;
  }

  isEog(id: number): boolean {
    return id !== NULL && this.eogTokens.has(id);
  }

  /** llama_token_attr of a token. */
  tokenAttr(id: number): number {
    this.checkId(id);
    return this.attrs[id];
  }

  isControl(id: number): boolean {
    return (this.tokenAttr(id) & A.CONTROL) !== 0;
  }

  /** The raw vocabulary text of a token. */
  tokenText(id: number): string {
    this.checkId(id);
    return this.texts[id];
  }

  /** Score of a token (SPM). */
  tokenScore(id: number): number {
    this.checkId(id);
    return this.scores[id];
  }

  /** The id of the token with exactly this vocabulary text, or undefined. */
  textToToken(text: string): number | undefined {
    return this.tokenToId.get(text);
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.nVocab) {
      throw new TokenOutOfRangeError(`token id ${String(id)} is outside the vocabulary [0, ${this.nVocab})`);
    }
  }

  // ---------------- pieces ----------------

  private tokenToByte(id: number): number {
    const v = parseInt(this.texts[id].substr(3, 2), 16);
    return Number.isNaN(v) ? 0 : v & 0xff;
  }

  /** llama.cpp's token_to_piece without cache, special = true. */
  private computePiece(id: number): Uint8Array {
    const attr = this.attrs[id];
    const text = this.texts[id];
    if (attr & (A.UNKNOWN | A.CONTROL | A.USER_DEFINED)) return enc.encode(text);
    if (attr & A.NORMAL) {
      if (this.type === 'spm') return enc.encode(text.split(SPM_SPACE).join(' '));
      // byte-level BPE: map every character back to its byte
      const out: number[] = [];
      for (const ch of text) {
        const cp = ch.codePointAt(0)!;
        const b = cp < 512 ? CHAR_TO_BYTE[cp] : -1;
        if (b >= 0) { out.push(b); continue; }
        const u = enc.encode(ch);
        const hex = Array.from(u, (x) => x.toString(16).padStart(2, '0')).join('');
        for (const x of enc.encode(`[UNK_BYTE_0x${hex}${text}]`)) out.push(x);
      }
      return Uint8Array.from(out);
    }
    if (attr & A.BYTE) return Uint8Array.of(this.tokenToByte(id));
    return EMPTY;
  }

  /**
   * llama_token_to_piece: the bytes of one token. `special` renders control/unknown tokens as their text
   * (default false, as node-llama-cpp's detokenize); `lstrip` removes up to that many leading spaces.
   */
  tokenToPiece(id: number, opts: { special?: boolean; lstrip?: number } = {}): Uint8Array {
    this.checkId(id);
    const attr = this.attrs[id];
    if (!opts.special && (attr & (A.UNKNOWN | A.CONTROL))) return EMPTY;
    let p = this.pieceCache[id];
    const lstrip = opts.lstrip ?? 0;
    let i = 0;
    while (i < lstrip && i < p.length && p[i] === 0x20) i++;
    if (i > 0) p = p.subarray(i);
    return p;
  }

  /** Bytes of one token for streaming output (special tokens render as nothing unless `special`). */
  tokenToBytes(id: number, special = false): Uint8Array {
    return this.tokenToPiece(id, { special });
  }

  // ---------------- tokenize ----------------

  /** llama.cpp tokenization (llama_tokenize with add_special = addBos/addEos, parse_special = special). */
  tokenize(text: string, opts: TokenizeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new InvalidOptionError(`tokenize() expects a string, got ${text === null ? 'null' : typeof text}`);
    }
    if (opts === null || typeof opts !== 'object') throw new InvalidOptionError('tokenize() options must be an object');
    const parseSpecial = opts.special ?? false;
    const addBos = opts.addBos ?? this.addBos;
    const addEos = opts.addEos ?? this.addEos;
    if (typeof parseSpecial !== 'boolean') throw new InvalidOptionError('tokenize() option "special" must be a boolean');
    if (typeof addBos !== 'boolean') throw new InvalidOptionError('tokenize() option "addBos" must be a boolean');
    if (typeof addEos !== 'boolean') throw new InvalidOptionError('tokenize() option "addEos" must be a boolean');

    // llama.cpp receives UTF-8: lone surrogates become U+FFFD
    const raw = /[\uD800-\uDFFF]/.test(text) ? Buffer.from(text, 'utf8').toString('utf8') : text;
    const frags: Fragment[] = raw.length > 0 ? this.partition(raw, parseSpecial) : [];
    const out: number[] = [];

    if (this.type === 'spm') {
      let prevSpecial = true;
      if (addBos) {
        if (this.bos === NULL) throw new InvalidOptionError('this vocabulary has no BOS token');
        out.push(this.bos);
      }
      for (const f of frags) {
        if ('token' in f) { out.push(f.token); prevSpecial = true; continue; }
        let s = this.addSpacePrefix && prevSpecial ? ' ' : '';
        s += raw.substr(f.offset, f.length);
        this.spmTokenize(s.split(' ').join(SPM_SPACE), out);
        prevSpecial = false;
      }
      if (addEos) {
        if (this.eos === NULL) throw new InvalidOptionError('this vocabulary has no EOS token');
        out.push(this.eos);
      }
    } else {
      if (addBos) {
        if (this.bos === NULL) throw new InvalidOptionError('this vocabulary has no BOS token');
        out.push(this.bos);
      }
      for (const f of frags) {
        if ('token' in f) { out.push(f.token); continue; }
        this.bpeTokenize(raw.substr(f.offset, f.length), out);
      }
      if (addEos) {
        if (this.eos === NULL) throw new InvalidOptionError('this vocabulary has no EOS token');
        out.push(this.eos);
      }
    }
    return out;
  }

  /** llama.cpp's tokenizer_st_partition. */
  private partition(raw: string, parseSpecial: boolean): Fragment[] {
    let frags: Fragment[] = [{ offset: 0, length: raw.length }];
    for (const id of this.specialCache) {
      const attr = this.attrs[id];
      if (!parseSpecial && (attr & (A.CONTROL | A.UNKNOWN))) continue;
      const st = this.texts[id];
      let changed = false;
      const next: Fragment[] = [];
      for (const f of frags) {
        if ('token' in f) { next.push(f); continue; }
        let base = f.offset;
        let len = f.length;
        let done = false;
        while (!done) {
          const limit = base + len;
          const m = raw.indexOf(st, base);
          if (m === -1 || m + st.length > limit) { if (len > 0) next.push({ offset: base, length: len }); break; }
          changed = true;
          if (m > base) {
            let ll = m - base;
            if (attr & A.LSTRIP) while (ll > 0 && isCSpace(raw.charCodeAt(base + ll - 1))) ll--;
            if (ll > 0) next.push({ offset: base, length: ll });
          }
          next.push({ token: id });
          if (m + st.length < limit) {
            let ro = m + st.length;
            let rl = len - (m - base + st.length);
            if (attr & A.RSTRIP) while (rl > 0 && isCSpace(raw.charCodeAt(ro))) { ro++; rl--; }
            base = ro;
            len = rl;
            if (len <= 0) done = true;
          } else {
            done = true;
          }
        }
      }
      if (changed) frags = next;
    }
    return frags;
  }

  private byteToTokenOrNull(b: number): number {
    const hex = b.toString(16).toUpperCase().padStart(2, '0');
    const id = this.tokenToId.get(`<0x${hex}>`);
    if (id !== undefined) return id;
    if (b > 0 && b < 0x80) {
      const id2 = this.tokenToId.get(String.fromCharCode(b));
      if (id2 !== undefined) return id2;
    }
    return NULL;
  }

  /** llama.cpp's SPM session (text already has spaces escaped). */
  private spmTokenize(text: string, out: number[]): void {
    const syms: Sym[] = [];
    // split into code points (== UTF-8 characters for well-formed text)
    for (let i = 0; i < text.length;) {
      const c = text.charCodeAt(i);
      const n = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length ? 2 : 1;
      syms.push({ prev: syms.length - 1, next: i + n === text.length ? -1 : syms.length + 1, start: i, n });
      i += n;
    }
    if (syms.length === 0) return;
    const heap = new Heap<SpmBigram>((x, y) => x.score > y.score || (x.score === y.score && x.left < y.left));
    const tryAdd = (left: number, right: number) => {
      if (left === -1 || right === -1) return;
      const s = text.substr(syms[left].start, syms[left].n + syms[right].n);
      const id = this.tokenToId.get(s);
      if (id === undefined) return;
      heap.push({ left, right, score: this.scores[id], size: s.length });
    };
    for (let i = 1; i < syms.length; i++) tryAdd(i - 1, i);
    while (heap.size > 0) {
      const bg = heap.pop();
      const l = syms[bg.left];
      const r = syms[bg.right];
      if (l.n === 0 || r.n === 0 || l.n + r.n !== bg.size) continue;
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = bg.left;
      tryAdd(l.prev, bg.left);
      tryAdd(bg.left, l.next);
    }
    // llama.cpp's resegment: a final symbol is either a vocabulary token (every merge forms one) or a single
    // character that is not; its rev_merge lookup can then never hit (merge texts span 2+ characters), so
    // the character goes out as byte-fallback tokens.
    const reseg = (sym: Sym) => {
      const s = text.substr(sym.start, sym.n);
      const id = this.tokenToId.get(s);
      if (id !== undefined) { out.push(id); return; }
      for (const b of enc.encode(s)) {
        const t = this.byteToTokenOrNull(b);
        if (t === NULL) {
          throw new ModelFileError('ERR_BAD_METADATA', `vocabulary has no byte-fallback token for byte 0x${b.toString(16).padStart(2, '0')}`);
        }
        out.push(t);
      }
    };
    for (let i = 0; i !== -1; i = syms[i].next) reseg(syms[i]);
  }

  /** llama.cpp's BPE session for one raw-text fragment. */
  private bpeTokenize(text: string, out: number[]): void {
    const words = regexSplit(enc.encode(text), this.pre!.regexes, true);
    for (const word of words) {
      let ids = this.bpeWordCache.get(word);
      if (ids === undefined) {
        ids = this.bpeWord(word);
        if (this.bpeWordCache.size > 50000) this.bpeWordCache.clear();
        this.bpeWordCache.set(word, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  private bpeWord(word: string): number[] {
    const out: number[] = [];
    if (word.length === 0) return out;
    if (this.ignoreMerges) {
      const id = this.tokenToId.get(word);
      if (id !== undefined) { out.push(id); return out; }
    }
    // byte-encoded words consist of one-UTF-16-unit characters, each one UTF-8 character
    const syms: Sym[] = new Array(word.length);
    for (let i = 0; i < word.length; i++) syms[i] = { prev: i - 1, next: i + 1 === word.length ? -1 : i + 1, start: i, n: 1 };
    const heap = new Heap<BpeBigram>((x, y) => x.rank < y.rank || (x.rank === y.rank && x.left < y.left));
    const add = (left: number, right: number) => {
      if (left === -1 || right === -1) return;
      const lt = word.substr(syms[left].start, syms[left].n);
      const rt = word.substr(syms[right].start, syms[right].n);
      const rank = this.bpeRanks.get(lt + ' ' + rt);
      if (rank === undefined) return;
      heap.push({ left, right, text: lt + rt, rank });
    };
    for (let i = 1; i < syms.length; i++) add(i - 1, i);
    while (heap.size > 0) {
      const bg = heap.pop();
      const l = syms[bg.left];
      const r = syms[bg.right];
      if (l.n === 0 || r.n === 0) continue;
      if (word.substr(l.start, l.n) + word.substr(r.start, r.n) !== bg.text) continue;
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = bg.left;
      add(l.prev, bg.left);
      add(bg.left, l.next);
    }
    for (const s of syms) {
      if (s.n === 0) continue;
      const str = word.substr(s.start, s.n);
      const id = this.tokenToId.get(str);
      if (id !== undefined) { out.push(id); continue; }
      // llama.cpp looks up every single byte of the (byte-encoded) symbol as a token
      for (const b of enc.encode(str)) {
        if (b >= 0x80) continue; // a lone non-ASCII byte is never a valid token text
        const t = this.tokenToId.get(String.fromCharCode(b));
        if (t !== undefined) out.push(t);
      }
    }
    return out;
  }

  // ---------------- detokenize ----------------

  /** llama_detokenize as bytes. */
  detokenizeBytes(tokens: ArrayLike<number>, opts: DetokenizeOptions = {}): Uint8Array {
    const removeSpecial = opts.removeSpecial ?? false;
    const unparseSpecial = opts.unparseSpecial ?? false;
    let begin = 0;
    let end = tokens.length;
    for (let i = 0; i < end; i++) this.checkId(tokens[i]);
    let removeSpace = this.addSpacePrefix;
    if (removeSpecial && this.addBos && end > 0 && tokens[0] === this.bos) { removeSpace = false; begin++; }
    if (removeSpecial && this.addEos && end > begin && tokens[end - 1] === this.eos) end--;
    const pieces: Uint8Array[] = [];
    let total = 0;
    for (let i = begin; i < end; i++) {
      const p = this.tokenToPiece(tokens[i], { special: unparseSpecial, lstrip: removeSpace ? 1 : 0 });
      removeSpace = false;
      pieces.push(p);
      total += p.length;
    }
    const text = new Uint8Array(total);
    let o = 0;
    for (const p of pieces) { text.set(p, o); o += p.length; }
    if (!this.cleanSpaces) return text;
    return cleanUpSpaces(text);
  }

  /** llama_detokenize decoded as UTF-8 (invalid sequences become U+FFFD). */
  detokenize(tokens: ArrayLike<number>, opts: DetokenizeOptions = {}): string {
    if (tokens === null || typeof tokens !== 'object' || typeof (tokens as ArrayLike<number>).length !== 'number') {
      throw new InvalidOptionError('detokenize() expects an array of token ids');
    }
    return dec.decode(this.detokenizeBytes(tokens, opts));
  }
}

/** llama.cpp's clean_up_tokenization_spaces passes (applied in place on a byte buffer). */
function cleanUpSpaces(text: Uint8Array): Uint8Array {
  const SP = 0x20, Q = 0x3f, EX = 0x21, DOT = 0x2e, COMMA = 0x2c, AP = 0x27;
  let total = text.length;
  // pass 1: " ?", " !", " .", " ,"
  {
    const t1 = total;
    total = t1 ? 1 : 0;
    for (let i = 1; i < t1; i++) {
      const x = text[i];
      if (text[i - 1] === SP && (x === Q || x === EX || x === DOT || x === COMMA)) total--;
      text[total++] = x;
    }
  }
  // pass 2: " ' " -> "'"
  {
    const t2 = total;
    total = t2 ? 1 : 0;
    for (let i = 1; i < t2; i++) {
      const x = text[i];
      if (x === AP && i + 1 < t2 && text[i - 1] === SP && text[i + 1] === SP) {
        total--;
        text[++i] = 0;
      }
      text[total++] = x;
    }
  }
  // pass 3: " 's", " 'm", " 're", " 've"
  {
    const t3 = total;
    total = t3 ? 1 : 0;
    for (let i = 1; i < t3; i++) {
      const x = text[i];
      if (text[i - 1] === SP && x === AP && i + 1 < t3) {
        const x1 = text[i + 1];
        if (x1 === 0x74 || x1 === 0x64) {
          // " 't", " 'd": kept
        } else if (x1 === 0x73 || x1 === 0x6d) {
          total--;
        } else if (i + 2 < t3) {
          const x2 = text[i + 2];
          if ((x1 === 0x72 && x2 === 0x65) || (x1 === 0x76 && x2 === 0x65)) total--;
        }
      }
      text[total++] = x;
    }
  }
  return text.subarray(0, total);
}
