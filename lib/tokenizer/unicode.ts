/**
 * Unicode helpers mirroring llama.cpp's src/unicode.cpp behaviour: code point flags, UTF-8 decoding with
 * U+FFFD replacement, GPT-2 byte<->unicode mapping, and the pre-tokenizer regex splits.
 */
import { RANGES, WHITESPACE } from './unicode-data';

export const F_UNDEFINED = 0x0001;
export const F_NUMBER = 0x0002;
export const F_LETTER = 0x0004;
export const F_SEPARATOR = 0x0008;
export const F_MARK = 0x0010;
export const F_PUNCTUATION = 0x0020;
export const F_SYMBOL = 0x0040;
export const F_CONTROL = 0x0080;
export const F_WHITESPACE = 0x0100;

const MAX_CODEPOINTS = 0x110000;
let FLAGS: Uint16Array | null = null;

function flagsTable(): Uint16Array {
  if (FLAGS) return FLAGS;
  const t = new Uint16Array(MAX_CODEPOINTS);
  let start = 0;
  let prevStart = 0;
  let prevFlags = -1;
  for (const item of RANGES.split(',')) {
    const c = item.indexOf(':');
    start += parseInt(item.slice(0, c), 36);
    const flags = parseInt(item.slice(c + 1), 36);
    if (prevFlags >= 0) t.fill(prevFlags, prevStart, Math.min(start, MAX_CODEPOINTS));
    prevStart = start;
    prevFlags = flags;
  }
  for (const cp of WHITESPACE) t[cp] |= F_WHITESPACE;
  FLAGS = t;
  return t;
}

/** llama.cpp's unicode_cpt_flags_from_cpt (category bits | whitespace bit). */
export function cptFlags(cp: number): number {
  return cp < MAX_CODEPOINTS ? flagsTable()[cp] : F_UNDEFINED;
}

/** UTF-8 sequence length from the lead byte, as llama.cpp's unicode_len_utf8. */
export function utf8Len(b: number): number {
  const hi = b >> 4;
  return hi < 12 ? 1 : hi < 14 ? 2 : hi === 14 ? 3 : 4;
}

/** Decodes UTF-8 to code points exactly as llama.cpp's unicode_cpts_from_utf8 (invalid byte -> U+FFFD, skip 1). */
export function cptsFromUtf8(b: Uint8Array): number[] {
  const out: number[] = [];
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i];
    if (c < 0x80) { out.push(c); i += 1; continue; }
    if ((c & 0x40) === 0) { out.push(0xfffd); i += 1; continue; }
    if ((c & 0x20) === 0) {
      if (i + 1 >= n || (b[i + 1] & 0xc0) !== 0x80) { out.push(0xfffd); i += 1; continue; }
      out.push(((c & 0x1f) << 6) | (b[i + 1] & 0x3f)); i += 2; continue;
    }
    if ((c & 0x10) === 0) {
      if (i + 2 >= n || (b[i + 1] & 0xc0) !== 0x80 || (b[i + 2] & 0xc0) !== 0x80) { out.push(0xfffd); i += 1; continue; }
      out.push(((c & 0x0f) << 12) | ((b[i + 1] & 0x3f) << 6) | (b[i + 2] & 0x3f)); i += 3; continue;
    }
    if ((c & 0x08) === 0) {
      if (i + 3 >= n || (b[i + 1] & 0xc0) !== 0x80 || (b[i + 2] & 0xc0) !== 0x80 || (b[i + 3] & 0xc0) !== 0x80) { out.push(0xfffd); i += 1; continue; }
      out.push(((c & 0x07) << 18) | ((b[i + 1] & 0x3f) << 12) | ((b[i + 2] & 0x3f) << 6) | (b[i + 3] & 0x3f)); i += 4; continue;
    }
    out.push(0xfffd); i += 1;
  }
  return out;
}

/** Appends the UTF-8 encoding of a code point to `out`. */
export function pushUtf8(out: number[], cp: number): void {
  if (cp <= 0x7f) out.push(cp);
  else if (cp <= 0x7ff) out.push(0xc0 | ((cp >> 6) & 0x1f), 0x80 | (cp & 0x3f));
  else if (cp <= 0xffff) out.push(0xe0 | ((cp >> 12) & 0x0f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  else out.push(0xf0 | ((cp >> 18) & 0x07), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
}

// --- GPT-2 byte <-> unicode mapping ---

/** byte -> mapped character (a one-UTF-16-unit JS string; all mapped code points are < 0x144). */
export const BYTE_TO_CHAR: string[] = new Array(256);
/** mapped code point -> byte, or -1 */
export const CHAR_TO_BYTE = new Int16Array(512).fill(-1);
{
  const direct = (ch: number) => (ch >= 0x21 && ch <= 0x7e) || (ch >= 0xa1 && ch <= 0xac) || (ch >= 0xae && ch <= 0xff);
  let n = 0;
  for (let ch = 0; ch < 256; ch++) {
    const cp = direct(ch) ? ch : 256 + n++;
    BYTE_TO_CHAR[ch] = String.fromCharCode(cp);
    CHAR_TO_BYTE[cp] = ch;
  }
}

// --- pre-tokenizer splits. Each splitter maps segment lengths (in code points) to finer segment lengths. ---

type Splitter = (cpts: number[], offsets: number[]) => number[];

const OUT_OF_RANGE = -1;
const CH_APOS = 0x27;
const CH_CR = 0x0d;
const CH_LF = 0x0a;
const CH_SPACE = 0x20;

function lowerAscii(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c + 32 : c;
}

/** GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
const splitGpt2: Splitter = (cpts, offsets) => {
  const out: number[] = [];
  const T = flagsTable();
  let start = 0;
  for (const offset of offsets) {
    const ini = start;
    const end = start + offset;
    start = end;
    const cpt = (p: number) => (p >= ini && p < end ? cpts[p] : OUT_OF_RANGE);
    const fl = (p: number) => (p >= ini && p < end ? (cpts[p] < MAX_CODEPOINTS ? T[cpts[p]] : F_UNDEFINED) : 0);
    let prevEnd = ini;
    const add = (e: number) => { const len = e - prevEnd; if (len > 0) out.push(len); prevEnd = e; return len; };
    for (let pos = ini; pos < end;) {
      const c = cpt(pos);
      const f = fl(pos);
      if (c === CH_APOS && pos + 1 < end) {
        const n1 = cpt(pos + 1);
        if (n1 === 0x73 || n1 === 0x74 || n1 === 0x6d || n1 === 0x64) { pos += add(pos + 2); continue; }
        if (pos + 2 < end) {
          const n2 = cpt(pos + 2);
          if ((n1 === 0x72 && n2 === 0x65) || (n1 === 0x76 && n2 === 0x65) || (n1 === 0x6c && n2 === 0x6c)) { pos += add(pos + 3); continue; }
        }
      }
      let f2 = c === CH_SPACE ? fl(pos + 1) : f;
      if (f2 & F_LETTER) {
        if (c === CH_SPACE) pos++;
        while (f2 & F_LETTER) f2 = fl(++pos);
        add(pos);
        continue;
      }
      if (f2 & F_NUMBER) {
        if (c === CH_SPACE) pos++;
        while (f2 & F_NUMBER) f2 = fl(++pos);
        add(pos);
        continue;
      }
      if (!(f2 & (F_WHITESPACE | F_LETTER | F_NUMBER)) && f2) {
        if (c === CH_SPACE) pos++;
        while (!(f2 & (F_WHITESPACE | F_LETTER | F_NUMBER)) && f2) f2 = fl(++pos);
        add(pos);
        continue;
      }
      let nws = 0;
      while (fl(pos + nws) & F_WHITESPACE) nws++;
      if (nws > 1 && cpt(pos + nws) !== OUT_OF_RANGE) { pos += nws - 1; add(pos); continue; }
      if (nws > 0) { pos += nws; add(pos); continue; }
      add(++pos);
    }
  }
  return out;
};

/**
 * LLaMA-3 / Qwen2 / Qwen3.5 family:
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (withMarks: letters runs also take \p{M}, as llama.cpp's qwen35 splitter)
 */
function makeLlama3Like(maxDigits: number, withMarks: boolean): Splitter {
  const LM = withMarks ? F_LETTER | F_MARK : F_LETTER;
  return (cpts, offsets) => {
    const out: number[] = [];
    const T = flagsTable();
    let start = 0;
    for (const offset of offsets) {
      const ini = start;
      const end = start + offset;
      start = end;
      const cpt = (p: number) => (p >= ini && p < end ? cpts[p] : OUT_OF_RANGE);
      const fl = (p: number) => (p >= ini && p < end ? (cpts[p] < MAX_CODEPOINTS ? T[cpts[p]] : F_UNDEFINED) : 0);
      let prevEnd = ini;
      const add = (e: number) => { const len = e - prevEnd; if (len > 0) out.push(len); prevEnd = e; return len; };
      for (let pos = ini; pos < end;) {
        const c = cpt(pos);
        const f = fl(pos);
        if (c === CH_APOS && pos + 1 < end) {
          const n1 = lowerAscii(cpt(pos + 1));
          if (n1 === 0x73 || n1 === 0x74 || n1 === 0x6d || n1 === 0x64) { pos += add(pos + 2); continue; }
          if (pos + 2 < end) {
            const n2 = lowerAscii(cpt(pos + 2));
            if ((n1 === 0x72 && n2 === 0x65) || (n1 === 0x76 && n2 === 0x65) || (n1 === 0x6c && n2 === 0x6c)) { pos += add(pos + 3); continue; }
          }
        }
        if (!(c === CH_CR || c === CH_LF || (f & F_NUMBER))) {
          if ((f & LM) || (fl(pos + 1) & LM)) {
            pos++;
            while (fl(pos) & LM) pos++;
            add(pos);
            continue;
          }
        }
        if (f & F_NUMBER) {
          if (maxDigits === 1) { pos++; add(pos); continue; }
          let i0 = pos;
          while (fl(pos) & F_NUMBER) {
            if (++pos - i0 >= maxDigits) { add(pos); i0 = pos; }
          }
          add(pos);
          continue;
        }
        let f2 = c === CH_SPACE ? fl(pos + 1) : f;
        const NOT = F_WHITESPACE | LM | F_NUMBER;
        if (!(f2 & NOT) && f) {
          if (c === CH_SPACE) pos++;
          while (!(f2 & NOT) && f2) f2 = fl(++pos);
          let c2 = cpt(pos);
          while (c2 === CH_CR || c2 === CH_LF) c2 = cpt(++pos);
          add(pos);
          continue;
        }
        let nws = 0;
        let lastRN = 0;
        while (fl(pos + nws) & F_WHITESPACE) {
          const c2 = cpt(pos + nws);
          if (c2 === CH_CR || c2 === CH_LF) lastRN = pos + nws + 1;
          nws++;
        }
        if (lastRN > 0) { pos = lastRN; add(pos); continue; }
        if (nws > 1 && cpt(pos + nws) !== OUT_OF_RANGE) { pos += nws - 1; add(pos); continue; }
        if (nws > 0) { pos += nws; add(pos); continue; }
        add(++pos);
      }
    }
    return out;
  };
}

/** [^\n]+|[\n]+ */
const splitNewlines: Splitter = (cpts, offsets) => {
  const out: number[] = [];
  let start = 0;
  for (const offset of offsets) {
    const end = start + offset;
    let pos = start;
    while (pos < end) {
      const nl = cpts[pos] === CH_LF;
      const rs = pos;
      while (pos < end && (cpts[pos] === CH_LF) === nl) pos++;
      out.push(pos - rs);
    }
    start = end;
  }
  return out;
};

const CUSTOM: Record<string, Splitter> = {
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)": splitGpt2,
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": makeLlama3Like(3, false),
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": makeLlama3Like(3, false),
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": makeLlama3Like(1, false),
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": makeLlama3Like(1, true),
  '[^\\n]+|[\\n]+': splitNewlines,
};

// --- general regexes, emulating llama.cpp's std::regex fallback ---

const UCAT: Record<string, number> = {
  '\\p{N}': F_NUMBER, '\\p{L}': F_LETTER, '\\p{P}': F_PUNCTUATION, '\\p{M}': F_MARK, '\\p{S}': F_SYMBOL,
  '\\p{Lu}': F_LETTER, '\\p{Ll}': F_LETTER, '\\p{Lt}': F_LETTER, '\\p{Lm}': F_LETTER, '\\p{Lo}': F_LETTER,
};
const UCAT_CPT: Record<number, number> = { [F_NUMBER]: 0xd1, [F_LETTER]: 0xd2, [F_PUNCTUATION]: 0xd3, [F_MARK]: 0xd4, [F_SYMBOL]: 0xd5 };
const UCAT_MAP: Record<number, string> = {
  [F_NUMBER]: '\x30-\x39',
  [F_LETTER]: '\x41-\x5A\x61-\x7A',
  [F_PUNCTUATION]: '\x21-\x23\x25-\x2A\x2C-\x2F\x3A-\x3B\x3F-\x40\\\x5B-\\\x5D\x5F\\\x7B\\\x7D',
  [F_MARK]: '',
  [F_SYMBOL]: '\\\x24\\\x2B\x3C-\x3E\x5E\x60\\\x7C\\\x7E',
};

const usesCategory = (re: string) => Object.keys(UCAT).some((k) => re.includes(k));

/** C-locale \s for JS patterns (JS \s also matches U+FEFF, U+00A0, ... which std::regex does not). */
function cSpaces(re: string): string {
  let out = '';
  let inside = false;
  for (let i = 0; i < re.length; i++) {
    const ch = re[i];
    if (ch === '\\' && i + 1 < re.length) {
      const nx = re[i + 1];
      if (nx === 's') { out += inside ? '\\t\\n\\v\\f\\r ' : '[\\t\\n\\v\\f\\r ]'; i++; continue; }
      if (nx === 'S' && !inside) { out += '[^\\t\\n\\v\\f\\r ]'; i++; continue; }
      out += ch + nx; i++; continue;
    }
    if (ch === '[') inside = true;
    else if (ch === ']') inside = false;
    out += ch;
  }
  return out;
}

const compiled = new Map<string, { re: RegExp; collapsed: boolean }>();

function compileGeneral(regexExpr: string): { re: RegExp; collapsed: boolean } {
  let c = compiled.get(regexExpr);
  if (c) return c;
  if (usesCategory(regexExpr)) {
    for (const ch of regexExpr) if (ch.codePointAt(0)! >= 128) throw new Error('Regex includes both unicode categories and non-ASCII characters - not supported');
    let col = '';
    let inside = false;
    for (let i = 0; i < regexExpr.length; i++) {
      if (regexExpr[i] === '[' && (i === 0 || regexExpr[i - 1] !== '\\')) { col += '['; inside = true; continue; }
      if (inside && regexExpr[i] === ']' && regexExpr[i - 1] !== '\\') { col += ']'; inside = false; continue; }
      if (regexExpr[i] === '\\' && i + 3 < regexExpr.length && regexExpr[i + 1] === 'p' && regexExpr[i + 2] === '{') {
        const close = regexExpr.indexOf('}', i + 3);
        if (close !== -1 && close <= i + 10) {
          const pat = regexExpr.slice(i, close + 1);
          const cat = UCAT[pat];
          if (cat !== undefined) {
            if (!inside) col += '[';
            col += String.fromCharCode(UCAT_CPT[cat]) + UCAT_MAP[cat];
            if (!inside) col += ']';
            i = close;
            continue;
          }
        }
      }
      col += regexExpr[i];
    }
    c = { re: new RegExp(cSpaces(col), 'g'), collapsed: true };
  } else {
    c = { re: new RegExp(cSpaces(regexExpr), 'gu'), collapsed: false };
  }
  compiled.set(regexExpr, c);
  return c;
}

function splitGeneral(regexExpr: string, cpts: number[], offsets: number[]): number[] {
  const { re, collapsed } = compileGeneral(regexExpr);
  const out: number[] = [];
  let start = 0;
  for (const offset of offsets) {
    let text: string;
    // index maps from UTF-16 unit index to code point index (only needed when not collapsed)
    let unitToCp: Int32Array | null = null;
    if (collapsed) {
      const codes = new Array<number>(offset);
      for (let i = 0; i < offset; i++) {
        const cp = cpts[start + i];
        if (cp < 128) { codes[i] = cp; continue; }
        const f = cptFlags(cp);
        if (f & F_WHITESPACE) codes[i] = 0x0b;
        else codes[i] = UCAT_CPT[f & 0xff] ?? 0xd0;
      }
      text = codesToString(codes);
    } else {
      const parts: string[] = [];
      unitToCp = new Int32Array(offset * 2 + 1);
      let u = 0;
      for (let i = 0; i < offset; i++) {
        let cp = cpts[start + i];
        if (cp > 0x7f && (cptFlags(cp) & F_WHITESPACE)) cp = 0x0b;
        const s = String.fromCodePoint(cp);
        parts.push(s);
        unitToCp[u++] = i;
        if (s.length === 2) unitToCp[u++] = i;
      }
      unitToCp[u] = offset;
      text = parts.join('');
    }
    const toCp = (unit: number) => (unitToCp ? unitToCp[unit] : unit);
    re.lastIndex = 0;
    let startIdx = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      const mStart = toCp(m.index);
      const mEnd = toCp(m.index + m[0].length);
      if (m[0].length === 0) { re.lastIndex++; continue; }
      if (mStart > startIdx) out.push(mStart - startIdx);
      out.push(mEnd - mStart);
      startIdx = mEnd;
    }
    if (startIdx < offset) out.push(offset - startIdx);
    start += offset;
  }
  return out;
}

function codesToString(codes: number[]): string {
  let s = '';
  for (let i = 0; i < codes.length; i += 8192) s += String.fromCharCode(...codes.slice(i, i + 8192));
  return s;
}

/**
 * llama.cpp's unicode_regex_split: returns the words (as code point arrays' UTF-8 byte strings, GPT-2
 * byte-encoded to JS strings when byteEncode) for the given regexes.
 */
export function regexSplit(textBytes: Uint8Array, regexExprs: readonly string[], byteEncode: boolean): string[] {
  const cpts = cptsFromUtf8(textBytes);
  let offsets = [cpts.length];
  for (const expr of regexExprs) {
    const custom = CUSTOM[expr];
    if (custom) {
      const tmp = custom(cpts, offsets);
      if (tmp.length > 0) { offsets = tmp; continue; }
    }
    offsets = splitGeneral(expr, cpts, offsets);
  }
  const words: string[] = new Array(offsets.length);
  let start = 0;
  const bytes: number[] = [];
  for (let w = 0; w < offsets.length; w++) {
    const end = start + offsets[w];
    bytes.length = 0;
    for (let i = start; i < end; i++) pushUtf8(bytes, cpts[i]);
    let s = '';
    if (byteEncode) {
      for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]];
    } else {
      s = Buffer.from(bytes).toString('utf8');
    }
    words[w] = s;
    start = end;
  }
  return words;
}
