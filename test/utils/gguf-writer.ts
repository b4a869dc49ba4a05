/**
 * A small GGUF v3 writer for tests (plus a header reader that keeps value types, tensor encoders/decoders
 * for the common ggml types, and corrupt-file variants for error tests).
 *
 * Layout written (as ggml's gguf.cpp reads it): magic "GGUF", u32 version, u64 tensor count, u64 kv count,
 * the key/values, the tensor infos (name, u32 n_dims, u64 dims[] with dims[0] = ne0 = the contiguous row
 * length, u32 ggml type, u64 offset relative to the data section), zero padding to the alignment, then
 * each tensor's data at an offset that is a multiple of the alignment (32, or the u32 `general.alignment`).
 *
 * Block layouts follow ggml-common.h; the quantizers follow ggml-quants.c's `quantize_row_*_ref`
 * (Q8_0 and Q4_0 bit-exact with float32 arithmetic; the K-quant searches are done in double precision,
 * so a scale can differ from ggml's in rare cases, but every block is valid and decodes as ggml decodes it).
 */
import * as fs from 'fs';
import * as path from 'path';
// Math functions bound to module constants: under jest (a vm context) every `Math.x` is a slow global lookup.
const { abs: M_abs, round: M_round, max: M_max, min: M_min, trunc: M_trunc, sqrt: M_sqrt, fround: M_fround, ceil: M_ceil, floor: M_floor } = Math;

// ---------------------------------------------------------------------------------------------
// GGUF metadata values
// ---------------------------------------------------------------------------------------------

/** GGUF value type ids. */
export const GGUF_VALUE_TYPE = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
} as const;
export type GgufScalarTypeName = Exclude<keyof typeof GGUF_VALUE_TYPE, 'array'>;
const TYPE_NAME_BY_ID: Record<number, keyof typeof GGUF_VALUE_TYPE> = Object.fromEntries(
  Object.entries(GGUF_VALUE_TYPE).map(([k, v]) => [v, k]),
) as Record<number, keyof typeof GGUF_VALUE_TYPE>;

export type GgufArrayValue =
  | number[] | bigint[] | boolean[] | string[]
  | Float32Array | Float64Array | Int32Array | Uint32Array | Int16Array | Uint16Array | Int8Array | Uint8Array
  | BigInt64Array | BigUint64Array;

/** A typed GGUF metadata value. u64/i64 take bigint (a number is accepted too). */
export type GgufMetaValue =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: bigint | number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: GgufScalarTypeName; value: GgufArrayValue };

/** Plain values are typed by inference: string→string, boolean→bool, bigint→i64, integer number→u32 (i32 when
 *  negative), other number→f32, string[]→[string], Float32Array→[f32], Int32Array→[i32], Uint32Array→[u32],
 *  number[]→[i32] when all integers else [f32], boolean[]→[bool]. Use `gv.*` for anything else. */
export type GgufMetaInput = GgufMetaValue | string | boolean | number | bigint | GgufArrayValue;

/** Helpers to build typed metadata values. */
export const gv = {
  u8: (value: number): GgufMetaValue => ({ type: 'u8', value }),
  i8: (value: number): GgufMetaValue => ({ type: 'i8', value }),
  u16: (value: number): GgufMetaValue => ({ type: 'u16', value }),
  i16: (value: number): GgufMetaValue => ({ type: 'i16', value }),
  u32: (value: number): GgufMetaValue => ({ type: 'u32', value }),
  i32: (value: number): GgufMetaValue => ({ type: 'i32', value }),
  u64: (value: bigint | number): GgufMetaValue => ({ type: 'u64', value }),
  i64: (value: bigint | number): GgufMetaValue => ({ type: 'i64', value }),
  f32: (value: number): GgufMetaValue => ({ type: 'f32', value }),
  f64: (value: number): GgufMetaValue => ({ type: 'f64', value }),
  bool: (value: boolean): GgufMetaValue => ({ type: 'bool', value }),
  str: (value: string): GgufMetaValue => ({ type: 'string', value }),
  arr: (itemType: GgufScalarTypeName, value: GgufArrayValue): GgufMetaValue => ({ type: 'array', itemType, value }),
};

function isMetaValue(v: unknown): v is GgufMetaValue {
  return typeof v === 'object' && v !== null && !ArrayBuffer.isView(v) && !Array.isArray(v) && 'type' in v && 'value' in v;
}

export function toMetaValue(v: GgufMetaInput): GgufMetaValue {
  if (isMetaValue(v)) return v;
  if (typeof v === 'string') return gv.str(v);
  if (typeof v === 'boolean') return gv.bool(v);
  if (typeof v === 'bigint') return gv.i64(v);
  if (typeof v === 'number') return Number.isInteger(v) ? (v < 0 ? gv.i32(v) : gv.u32(v)) : gv.f32(v);
  if (v instanceof Float32Array) return gv.arr('f32', v);
  if (v instanceof Float64Array) return gv.arr('f64', v);
  if (v instanceof Int32Array) return gv.arr('i32', v);
  if (v instanceof Uint32Array) return gv.arr('u32', v);
  if (v instanceof Int16Array) return gv.arr('i16', v);
  if (v instanceof Uint16Array) return gv.arr('u16', v);
  if (v instanceof Int8Array) return gv.arr('i8', v);
  if (v instanceof Uint8Array) return gv.arr('u8', v);
  if (v instanceof BigInt64Array) return gv.arr('i64', v);
  if (v instanceof BigUint64Array) return gv.arr('u64', v);
  if (Array.isArray(v)) {
    const a = v as unknown[];
    if (a.every((x) => typeof x === 'string')) return gv.arr('string', a as string[]);
    if (a.every((x) => typeof x === 'boolean')) return gv.arr('bool', a as boolean[]);
    if (a.every((x) => typeof x === 'bigint')) return gv.arr('i64', a as bigint[]);
    if (a.every((x) => typeof x === 'number')) return gv.arr((a as number[]).every(Number.isInteger) ? 'i32' : 'f32', a as number[]);
  }
  throw new Error(`cannot infer a GGUF type for metadata value ${String(v)}`);
}

export type GgufMetadataInput = Map<string, GgufMetaInput> | Array<[string, GgufMetaInput]> | Record<string, GgufMetaInput>;

function metaEntries(m: GgufMetadataInput): Array<[string, GgufMetaValue]> {
  const entries: Array<[string, GgufMetaInput]> =
    m instanceof Map ? [...m.entries()] : Array.isArray(m) ? m : Object.entries(m);
  return entries.map(([k, v]) => [k, toMetaValue(v)]);
}

// ---------------------------------------------------------------------------------------------
// ggml types
// ---------------------------------------------------------------------------------------------

export const GGML_TYPE = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q8_1: 9, Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13,
  Q6_K: 14, Q8_K: 15, I8: 24, I16: 25, I32: 26, I64: 27, F64: 28, BF16: 30,
} as const;

/** ggml type id -> [elements per block, bytes per block] (ggml's type traits). */
export const GGML_TYPE_TRAITS: Record<number, { name: string; blockSize: number; typeSize: number }> = {
  0: { name: 'F32', blockSize: 1, typeSize: 4 },
  1: { name: 'F16', blockSize: 1, typeSize: 2 },
  2: { name: 'Q4_0', blockSize: 32, typeSize: 18 },
  3: { name: 'Q4_1', blockSize: 32, typeSize: 20 },
  6: { name: 'Q5_0', blockSize: 32, typeSize: 22 },
  7: { name: 'Q5_1', blockSize: 32, typeSize: 24 },
  8: { name: 'Q8_0', blockSize: 32, typeSize: 34 },
  9: { name: 'Q8_1', blockSize: 32, typeSize: 36 },
  10: { name: 'Q2_K', blockSize: 256, typeSize: 84 },
  11: { name: 'Q3_K', blockSize: 256, typeSize: 110 },
  12: { name: 'Q4_K', blockSize: 256, typeSize: 144 },
  13: { name: 'Q5_K', blockSize: 256, typeSize: 176 },
  14: { name: 'Q6_K', blockSize: 256, typeSize: 210 },
  15: { name: 'Q8_K', blockSize: 256, typeSize: 292 },
  24: { name: 'I8', blockSize: 1, typeSize: 1 },
  25: { name: 'I16', blockSize: 1, typeSize: 2 },
  26: { name: 'I32', blockSize: 1, typeSize: 4 },
  27: { name: 'I64', blockSize: 1, typeSize: 8 },
  28: { name: 'F64', blockSize: 1, typeSize: 8 },
  30: { name: 'BF16', blockSize: 1, typeSize: 2 },
};

/** Types `encodeTensor` can produce. */
export const ENCODABLE_TYPES: readonly number[] = [0, 1, 30, 8, 2, 12, 13, 14];

function traits(type: number) {
  const t = GGML_TYPE_TRAITS[type];
  if (!t) throw new Error(`unknown ggml type ${type}`);
  return t;
}

/** Bytes of one row of `ne0` elements of `type` (ne0 must be a multiple of the block size). */
export function ggmlRowSize(type: number, ne0: number): number {
  const t = traits(type);
  if (ne0 % t.blockSize !== 0) throw new Error(`row length ${ne0} is not a multiple of ${t.name}'s block size ${t.blockSize}`);
  return (ne0 / t.blockSize) * t.typeSize;
}

export function ggmlTensorSize(type: number, dims: readonly number[]): number {
  let rows = 1;
  for (let i = 1; i < dims.length; i++) rows *= dims[i];
  return ggmlRowSize(type, dims[0] ?? 1) * rows;
}

// ---------------------------------------------------------------------------------------------
// fp16 / bf16
// ---------------------------------------------------------------------------------------------

const cvtF32 = new Float32Array(1);
const cvtU32 = new Uint32Array(cvtF32.buffer);

/** float32 -> IEEE half bits, round to nearest even (as F16C / GGML_FP32_TO_FP16). */
export function fp32ToFp16(f: number): number {
  cvtF32[0] = f;
  const x = cvtU32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++; // may carry into the exponent (up to inf): correct
  return sign | half;
}

/** IEEE half bits -> number. */
export function fp16ToFp32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 -> bfloat16 bits, round to nearest even (as ggml_compute_fp32_to_bf16). */
export function fp32ToBf16(f: number): number {
  cvtF32[0] = f;
  const u = cvtU32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff; // quiet NaN
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

export function bf16ToFp32(b: number): number {
  cvtU32[0] = (b & 0xffff) << 16;
  return cvtF32[0];
}

// ---------------------------------------------------------------------------------------------
// Quantizers (ggml-quants.c, quantize_row_*_ref) and dequantizers
// ---------------------------------------------------------------------------------------------

const fr = M_fround;
/** ggml's nearest_int: round half to even. */
function nearestInt(x: number): number {
  const r = M_round(x);
  return r - x === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}
/** C roundf: half away from zero. */
function roundf(x: number): number {
  return x < 0 ? -M_round(-x) : M_round(x);
}
const GROUP_MAX_EPS = 1e-15;

function quantizeQ8_0(x: Float32Array, out: Uint8Array, dv: DataView): void {
  const nb = x.length / 32;
  for (let i = 0; i < nb; i++) {
    const o = i * 34;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = M_max(amax, M_abs(x[i * 32 + j]));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(o, fp32ToFp16(d), true);
    for (let j = 0; j < 32; j++) out[o + 2 + j] = roundf(fr(x[i * 32 + j] * id)) & 0xff;
  }
}

function quantizeQ4_0(x: Float32Array, out: Uint8Array, dv: DataView): void {
  const nb = x.length / 32;
  for (let i = 0; i < nb; i++) {
    const o = i * 18;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[i * 32 + j];
      if (amax < M_abs(v)) { amax = M_abs(v); max = v; }
    }
    const d = fr(max / -8);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(o, fp32ToFp16(d), true);
    for (let j = 0; j < 16; j++) {
      const x0 = fr(x[i * 32 + j] * id);
      const x1 = fr(x[i * 32 + 16 + j] * id);
      const xi0 = M_min(15, M_trunc(fr(x0 + 8.5)));
      const xi1 = M_min(15, M_trunc(fr(x1 + 8.5)));
      out[o + 2 + j] = xi0 | (xi1 << 4);
    }
  }
}

// make_qkx2_quants (asymmetric scale+min search used by Q4_K / Q5_K). Hot: values are copied to a local
// Float64Array and rounding is inlined (RNE via the 1.5*2^52 trick, same result as ggml's nearest_int).
const RNE = 6755399441055744; // 1.5 * 2^52: (v + RNE) - RNE rounds v to the nearest integer, ties to even
const qkxX = new Float64Array(32);
function makeQkx2Quants(
  n: number, nmax: number, xs: Float32Array, xo: number, weights: Float64Array, L: Uint8Array, lo: number,
  Laux: Uint8Array, rmin: number, rdelta: number, nstep: number,
): { scale: number; theMin: number } {
  const x = qkxX;
  for (let i = 0; i < n; i++) x[i] = xs[xo + i];
  let min = x[0];
  let max = x[0];
  let sumW = weights[0];
  let sumX = sumW * x[0];
  for (let i = 1; i < n; i++) {
    const v = x[i];
    if (v < min) min = v;
    if (v > max) max = v;
    const w = weights[i];
    sumW += w;
    sumX += w * v;
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return { scale: 0, theMin: -min };
  }
  let iscale = nmax / (max - min);
  let scale = 1 / iscale;
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    let l = (iscale * (x[i] - min) + RNE) - RNE;
    l = l < 0 ? 0 : l > nmax ? nmax : l;
    L[lo + i] = l;
    const diff = scale * l + min - x[i];
    bestError += weights[i] * diff * diff;
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      let l = (iscale * (x[i] - min) + RNE) - RNE;
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      Laux[i] = l;
      const w = weights[i];
      const wl = w * l;
      sumL += wl;
      sumL2 += wl * l;
      sumXL += wl * x[i];
    }
    const D = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let thisScale = (sumW * sumXL - sumX * sumL) / D;
      let thisMin = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) { thisMin = 0; thisScale = sumXL / sumL2; }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        const diff = thisScale * Laux[i] + thisMin - x[i];
        curError += weights[i] * diff * diff;
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i];
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return { scale, theMin: -min };
}

function getScaleMinK4(j: number, q: Uint8Array, qo: number): [number, number] {
  if (j < 4) return [q[qo + j] & 63, q[qo + j + 4] & 63];
  return [(q[qo + j + 4] & 0xf) | ((q[qo + j - 4] >> 6) << 4), (q[qo + j + 4] >> 4) | ((q[qo + j] >> 6) << 4)];
}

const kWeights = new Float64Array(32);
const kLaux = new Uint8Array(32);
const kScales = new Float64Array(8);
const kMins = new Float64Array(8);

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): scales/mins of the 8 sub-blocks, packed into 12 bytes.
function quantizeKScalesMins(
  x: Float32Array, xo: number, nmax: number, rmin: number, nstep: number, out: Uint8Array, o: number, dv: DataView,
  L: Uint8Array,
): void {
  const weights = kWeights, Laux = kLaux, scales = kScales, mins = kMins;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 += x[xo + 32 * j + l] * x[xo + 32 * j + l];
    const avX = M_sqrt(sumX2 / 32);
    for (let l = 0; l < 32; l++) weights[l] = avX + M_abs(x[xo + 32 * j + l]);
    const r = makeQkx2Quants(32, nmax, x, xo + 32 * j, weights, L, 32 * j, Laux, rmin, 0.1, nstep);
    scales[j] = r.scale;
    mins[j] = r.theMin;
    if (r.scale > maxScale) maxScale = r.scale;
    if (r.theMin > maxMin) maxMin = r.theMin;
  }
  const invScale = maxScale > 0 ? 63 / maxScale : 0;
  const invMin = maxMin > 0 ? 63 / maxMin : 0;
  const sc = o + 4; // scales[12] after d, dmin
  for (let k = 0; k < 12; k++) out[sc + k] = 0;
  for (let j = 0; j < 8; j++) {
    const ls = M_min(63, nearestInt(invScale * scales[j]));
    const lm = M_min(63, nearestInt(invMin * mins[j]));
    if (j < 4) {
      out[sc + j] = ls;
      out[sc + j + 4] = lm;
    } else {
      out[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      out[sc + j - 4] |= (ls >> 4) << 6;
      out[sc + j] |= (lm >> 4) << 6;
    }
  }
  const dBits = fp32ToFp16(maxScale / 63);
  const dminBits = fp32ToFp16(maxMin / 63);
  dv.setUint16(o, dBits, true);
  dv.setUint16(o + 2, dminBits, true);
  const d0 = fp16ToFp32(dBits);
  const dmin0 = fp16ToFp32(dminBits);
  for (let j = 0; j < 8; j++) {
    const [s, m] = getScaleMinK4(j, out, sc);
    const d = d0 * s;
    if (!d) continue;
    const dm = dmin0 * m;
    for (let ii = 0; ii < 32; ii++) {
      const l = nearestInt((x[xo + 32 * j + ii] + dm) / d);
      L[32 * j + ii] = M_max(0, M_min(nmax, l));
    }
  }
}

function quantizeQ4_K(x: Float32Array, out: Uint8Array, dv: DataView): void {
  const nb = x.length / 256;
  const L = new Uint8Array(256);
  for (let i = 0; i < nb; i++) {
    const o = i * 144;
    quantizeKScalesMins(x, i * 256, 15, -1, 20, out, o, dv, L);
    let q = o + 16;
    for (let j = 0; j < 256; j += 64) {
      for (let l = 0; l < 32; l++) out[q + l] = L[j + l] | (L[j + l + 32] << 4);
      q += 32;
    }
  }
}

function quantizeQ5_K(x: Float32Array, out: Uint8Array, dv: DataView): void {
  const nb = x.length / 256;
  const L = new Uint8Array(256);
  for (let i = 0; i < nb; i++) {
    const o = i * 176;
    quantizeKScalesMins(x, i * 256, 31, -0.5, 15, out, o, dv, L);
    const qh = o + 16; // qh[32]
    let ql = o + 48; // qs[128]
    for (let k = 0; k < 32; k++) out[qh + k] = 0;
    let m1 = 1, m2 = 2;
    for (let n = 0; n < 256; n += 64) {
      for (let j = 0; j < 32; j++) {
        let l1 = L[n + j];
        if (l1 > 15) { l1 -= 16; out[qh + j] |= m1; }
        let l2 = L[n + j + 32];
        if (l2 > 15) { l2 -= 16; out[qh + j] |= m2; }
        out[ql + j] = l1 | (l2 << 4);
      }
      m1 <<= 2; m2 <<= 2;
      ql += 32;
    }
  }
}

// make_qx_quants with rmse_type 1 and no quant weights (used by Q6_K); L gets values in [0, 2*nmax)
const qxX = new Float64Array(16);
const qxW = new Float64Array(16);
function makeQxQuants(n: number, nmax: number, xs: Float32Array, xo: number, L: Int8Array, lo: number): number {
  const x = qxX, wt = qxW;
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const v = xs[xo + i];
    x[i] = v;
    wt[i] = v * v;
    const ax = M_abs(v);
    if (ax > amax) { amax = ax; max = v; }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  let iscale = -nmax / max;
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    let l = (iscale * x[i] + RNE) - RNE;
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    L[lo + i] = l + nmax;
    const w = wt[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  let scale = suml2 ? sumlx / suml2 : 0;
  let best = scale * sumlx;
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = -(nmax + 0.1 * is) / max;
    sumlx = suml2 = 0;
    for (let i = 0; i < n; i++) {
      let l = (iscale * x[i] + RNE) - RNE;
      l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
      const w = wt[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (let i = 0; i < n; i++) {
        let l = (iscale * x[i] + RNE) - RNE;
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[lo + i] = nmax + l;
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

function quantizeQ6_K(x: Float32Array, out: Uint8Array, dv: DataView): void {
  const nb = x.length / 256;
  const L = new Int8Array(256);
  const scales = new Float64Array(16);
  for (let i = 0; i < nb; i++) {
    const o = i * 210; // ql[128] qh[64] scales[16] d
    const xo = i * 256;
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < 16; ib++) {
      const scale = makeQxQuants(16, 32, x, xo + 16 * ib, L, 16 * ib);
      scales[ib] = scale;
      if (M_abs(scale) > maxAbsScale) { maxAbsScale = M_abs(scale); maxScale = scale; }
    }
    for (let k = 0; k < 210; k++) out[o + k] = 0;
    if (maxAbsScale < GROUP_MAX_EPS) continue; // all-zero block (d = 0)
    const iscale = -128 / maxScale;
    const dBits = fp32ToFp16(1 / iscale);
    dv.setUint16(o + 208, dBits, true);
    const dd = fp16ToFp32(dBits);
    const sc = new Int8Array(out.buffer, out.byteOffset + o + 192, 16);
    for (let ib = 0; ib < 16; ib++) sc[ib] = M_min(127, nearestInt(iscale * scales[ib]));
    for (let j = 0; j < 16; j++) {
      const d = dd * sc[j];
      if (!d) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = M_max(-32, M_min(31, nearestInt(x[xo + 16 * j + ii] / d)));
        L[16 * j + ii] = l + 32;
      }
    }
    let ql = o;
    let qh = o + 128;
    for (let j = 0; j < 256; j += 128) {
      for (let l = 0; l < 32; l++) {
        const q1 = L[j + l] & 0xf;
        const q2 = L[j + l + 32] & 0xf;
        const q3 = L[j + l + 64] & 0xf;
        const q4 = L[j + l + 96] & 0xf;
        out[ql + l] = q1 | (q3 << 4);
        out[ql + l + 32] = q2 | (q4 << 4);
        out[qh + l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6);
      }
      ql += 64;
      qh += 32;
    }
  }
}

/**
 * Encode float values (a whole number of rows, row-major, ne0 contiguous) as ggml `type`:
 * F32 (0), F16 (1), BF16 (30), Q8_0 (8), Q4_0 (2), Q4_K (12), Q5_K (13), Q6_K (14).
 * The value count must be a multiple of the type's block size (32, or 256 for K-quants).
 */
export function encodeTensor(type: number, values: Float32Array | ArrayLike<number>): Uint8Array {
  const x = values instanceof Float32Array ? values : Float32Array.from(values);
  const t = traits(type);
  if (x.length % t.blockSize !== 0) throw new Error(`${t.name}: ${x.length} values is not a multiple of the block size ${t.blockSize}`);
  const out = new Uint8Array((x.length / t.blockSize) * t.typeSize);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  switch (type) {
    case GGML_TYPE.F32:
      out.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
      break;
    case GGML_TYPE.F16:
      for (let i = 0; i < x.length; i++) dv.setUint16(2 * i, fp32ToFp16(x[i]), true);
      break;
    case GGML_TYPE.BF16:
      for (let i = 0; i < x.length; i++) dv.setUint16(2 * i, fp32ToBf16(x[i]), true);
      break;
    case GGML_TYPE.Q8_0: quantizeQ8_0(x, out, dv); break;
    case GGML_TYPE.Q4_0: quantizeQ4_0(x, out, dv); break;
    case GGML_TYPE.Q4_K: quantizeQ4_K(x, out, dv); break;
    case GGML_TYPE.Q5_K: quantizeQ5_K(x, out, dv); break;
    case GGML_TYPE.Q6_K: quantizeQ6_K(x, out, dv); break;
    default:
      throw new Error(`encodeTensor: type ${t.name} (${type}) is not supported`);
  }
  return out;
}

/** Decode `n` values of ggml `type` (as ggml's dequantize_row_* / to_float do). */
export function decodeTensor(type: number, bytes: Uint8Array, n: number): Float32Array {
  const t = traits(type);
  if (n % t.blockSize !== 0) throw new Error(`${t.name}: ${n} values is not a multiple of the block size ${t.blockSize}`);
  const need = (n / t.blockSize) * t.typeSize;
  if (bytes.length < need) throw new Error(`${t.name}: need ${need} bytes for ${n} values, got ${bytes.length}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const y = new Float32Array(n);
  const nb = n / t.blockSize;
  switch (type) {
    case GGML_TYPE.F32:
      for (let i = 0; i < n; i++) y[i] = dv.getFloat32(4 * i, true);
      break;
    case GGML_TYPE.F16:
      for (let i = 0; i < n; i++) y[i] = fp16ToFp32(dv.getUint16(2 * i, true));
      break;
    case GGML_TYPE.BF16:
      for (let i = 0; i < n; i++) y[i] = bf16ToFp32(dv.getUint16(2 * i, true));
      break;
    case GGML_TYPE.Q8_0:
      for (let i = 0; i < nb; i++) {
        const d = fp16ToFp32(dv.getUint16(i * 34, true));
        for (let j = 0; j < 32; j++) y[i * 32 + j] = ((bytes[i * 34 + 2 + j] << 24) >> 24) * d;
      }
      break;
    case GGML_TYPE.Q4_0:
      for (let i = 0; i < nb; i++) {
        const d = fp16ToFp32(dv.getUint16(i * 18, true));
        for (let j = 0; j < 16; j++) {
          const b = bytes[i * 18 + 2 + j];
          y[i * 32 + j] = ((b & 0xf) - 8) * d;
          y[i * 32 + 16 + j] = ((b >> 4) - 8) * d;
        }
      }
      break;
    case GGML_TYPE.Q4_K:
    case GGML_TYPE.Q5_K: {
      const is5 = type === GGML_TYPE.Q5_K;
      for (let i = 0; i < nb; i++) {
        const o = i * t.typeSize;
        const d = fp16ToFp32(dv.getUint16(o, true));
        const min = fp16ToFp32(dv.getUint16(o + 2, true));
        const qh = o + 16;
        let q = is5 ? o + 48 : o + 16;
        let yo = i * 256;
        let u1 = 1, u2 = 2;
        for (let j = 0, is = 0; j < 256; j += 64, is += 2) {
          const [s1, m1] = getScaleMinK4(is, bytes, o + 4);
          const [s2, m2] = getScaleMinK4(is + 1, bytes, o + 4);
          const d1 = d * s1, mm1 = min * m1, d2 = d * s2, mm2 = min * m2;
          for (let l = 0; l < 32; l++) y[yo++] = d1 * ((bytes[q + l] & 0xf) + (is5 && bytes[qh + l] & u1 ? 16 : 0)) - mm1;
          for (let l = 0; l < 32; l++) y[yo++] = d2 * ((bytes[q + l] >> 4) + (is5 && bytes[qh + l] & u2 ? 16 : 0)) - mm2;
          q += 32;
          u1 <<= 2; u2 <<= 2;
        }
      }
      break;
    }
    case GGML_TYPE.Q6_K:
      for (let i = 0; i < nb; i++) {
        const o = i * 210;
        const d = fp16ToFp32(dv.getUint16(o + 208, true));
        let ql = o, qh = o + 128, sc = o + 192, yo = i * 256;
        for (let n2 = 0; n2 < 256; n2 += 128) {
          for (let l = 0; l < 32; l++) {
            const is = (l / 16) | 0;
            const q1 = ((bytes[ql + l] & 0xf) | (((bytes[qh + l] >> 0) & 3) << 4)) - 32;
            const q2 = ((bytes[ql + l + 32] & 0xf) | (((bytes[qh + l] >> 2) & 3) << 4)) - 32;
            const q3 = ((bytes[ql + l] >> 4) | (((bytes[qh + l] >> 4) & 3) << 4)) - 32;
            const q4 = ((bytes[ql + l + 32] >> 4) | (((bytes[qh + l] >> 6) & 3) << 4)) - 32;
            const s = (k: number) => (bytes[sc + k] << 24) >> 24;
            y[yo + l] = d * s(is + 0) * q1;
            y[yo + l + 32] = d * s(is + 2) * q2;
            y[yo + l + 64] = d * s(is + 4) * q3;
            y[yo + l + 96] = d * s(is + 6) * q4;
          }
          yo += 128; ql += 64; qh += 32; sc += 8;
        }
      }
      break;
    default:
      throw new Error(`decodeTensor: type ${t.name} (${type}) is not supported`);
  }
  return y;
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/** Values of rows [rowStart, rowStart + rowCount) (row = ne0 contiguous values). Called in row order. */
export type TensorRowSource = (rowStart: number, rowCount: number) => Float32Array;

export interface GgufTensorSpec {
  name: string;
  /** ggml order: dims[0] = ne0 (row length, contiguous), dims[1] = number of rows, ... */
  dims: number[];
  /** ggml type id (GGML_TYPE.*) */
  type: number;
  /** Float values (encoded to `type`), a row source (encoded in chunks), raw already-encoded bytes,
   *  or a byte range of another file (copied). Raw/file data must have exactly the tensor's byte size
   *  unless `allowSizeMismatch` (for corrupt files). */
  data: Float32Array | TensorRowSource | { raw: Uint8Array } | { file: string; offset: number; length: number };
}

export interface GgufSpec {
  metadata: GgufMetadataInput;
  tensors: GgufTensorSpec[];
  /** Default 3. */
  version?: number;
  /** Tensor data alignment; default: the `general.alignment` metadata value, else 32. */
  alignment?: number;
  /** Override each tensor's data offset (relative to the data section); for corrupt files. */
  offsets?: Array<number | bigint | undefined>;
  /** Skip size checks of raw/file data (for corrupt files). */
  allowSizeMismatch?: boolean;
}

export interface GgufWriteResult {
  path: string;
  fileSize: number;
  dataOffset: number;
  alignment: number;
  /** offsets of each tensor relative to dataOffset */
  tensorOffsets: number[];
}

class ByteSink {
  private chunks: Buffer[] = [];
  private cur = Buffer.alloc(1 << 16);
  private pos = 0;
  length = 0;
  private ensure(n: number) {
    if (this.pos + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.cur = Buffer.alloc(M_max(1 << 16, n));
    this.pos = 0;
  }
  u8(v: number) { this.ensure(1); this.cur.writeUInt8(v & 0xff, this.pos); this.pos += 1; this.length += 1; }
  i8(v: number) { this.ensure(1); this.cur.writeInt8(v, this.pos); this.pos += 1; this.length += 1; }
  u16(v: number) { this.ensure(2); this.cur.writeUInt16LE(v, this.pos); this.pos += 2; this.length += 2; }
  i16(v: number) { this.ensure(2); this.cur.writeInt16LE(v, this.pos); this.pos += 2; this.length += 2; }
  u32(v: number) { this.ensure(4); this.cur.writeUInt32LE(v >>> 0, this.pos); this.pos += 4; this.length += 4; }
  i32(v: number) { this.ensure(4); this.cur.writeInt32LE(v | 0, this.pos); this.pos += 4; this.length += 4; }
  f32(v: number) { this.ensure(4); this.cur.writeFloatLE(v, this.pos); this.pos += 4; this.length += 4; }
  f64(v: number) { this.ensure(8); this.cur.writeDoubleLE(v, this.pos); this.pos += 8; this.length += 8; }
  u64(v: bigint | number) { this.ensure(8); this.cur.writeBigUInt64LE(BigInt(v), this.pos); this.pos += 8; this.length += 8; }
  i64(v: bigint | number) { this.ensure(8); this.cur.writeBigInt64LE(BigInt(v), this.pos); this.pos += 8; this.length += 8; }
  bytes(b: Uint8Array) { this.ensure(b.length); this.cur.set(b, this.pos); this.pos += b.length; this.length += b.length; }
  str(s: string) { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.bytes(b); }
  zeros(n: number) { this.ensure(n); this.cur.fill(0, this.pos, this.pos + n); this.pos += n; this.length += n; }
  toBuffer(): Buffer { return Buffer.concat([...this.chunks, this.cur.subarray(0, this.pos)]); }
}

function writeScalar(s: ByteSink, type: GgufScalarTypeName, v: unknown) {
  switch (type) {
    case 'u8': s.u8(v as number); break;
    case 'i8': s.i8(v as number); break;
    case 'u16': s.u16(v as number); break;
    case 'i16': s.i16(v as number); break;
    case 'u32': s.u32(v as number); break;
    case 'i32': s.i32(v as number); break;
    case 'f32': s.f32(v as number); break;
    case 'f64': s.f64(v as number); break;
    case 'u64': s.u64(v as bigint); break;
    case 'i64': s.i64(v as bigint); break;
    case 'bool': s.u8(v ? 1 : 0); break;
    case 'string': s.str(v as string); break;
    default: throw new Error(`bad GGUF scalar type ${type as string}`);
  }
}

function writeMetaValue(s: ByteSink, v: GgufMetaValue) {
  s.u32(GGUF_VALUE_TYPE[v.type]);
  if (v.type === 'array') {
    s.u32(GGUF_VALUE_TYPE[v.itemType]);
    const a = v.value as ArrayLike<unknown>;
    s.u64(a.length);
    for (let i = 0; i < a.length; i++) writeScalar(s, v.itemType, a[i]);
  } else {
    writeScalar(s, v.type, v.value);
  }
}

/** Encode the header (everything before the tensor data, including the padding). */
export function encodeGgufHeader(spec: GgufSpec): { header: Buffer; alignment: number; tensorOffsets: number[]; tensorSizes: number[] } {
  const entries = metaEntries(spec.metadata);
  const alignEntry = entries.find(([k]) => k === 'general.alignment');
  const alignment = spec.alignment ?? (alignEntry ? Number(alignEntry[1].value) : 32);
  if (!(alignment > 0)) throw new Error(`bad alignment ${alignment}`);
  const s = new ByteSink();
  s.u32(0x46554747); // "GGUF"
  s.u32(spec.version ?? 3);
  s.u64(spec.tensors.length);
  s.u64(entries.length);
  for (const [k, v] of entries) { s.str(k); writeMetaValue(s, v); }
  const tensorOffsets: number[] = [];
  const tensorSizes: number[] = [];
  let off = 0;
  spec.tensors.forEach((t, i) => {
    const size = ggmlTensorSize(t.type, t.dims);
    tensorOffsets.push(off);
    tensorSizes.push(size);
    s.str(t.name);
    s.u32(t.dims.length);
    for (const d of t.dims) s.u64(d);
    s.u32(t.type);
    s.u64(spec.offsets?.[i] ?? off);
    off += M_ceil(size / alignment) * alignment;
  });
  const pad = (alignment - (s.length % alignment)) % alignment;
  s.zeros(pad);
  return { header: s.toBuffer(), alignment, tensorOffsets, tensorSizes };
}

const CHUNK_VALUES = 1 << 20; // ~4 MB of floats per encode step

/** Write a GGUF file, streaming the tensor data tensor by tensor (and row chunk by row chunk). */
export async function writeGguf(filePath: string, spec: GgufSpec): Promise<GgufWriteResult> {
  const { header, alignment, tensorOffsets, tensorSizes } = encodeGgufHeader(spec);
  await fs.promises.mkdir(path.dirname(path.resolve(filePath)), { recursive: true });
  const fh = await fs.promises.open(filePath, 'w');
  let pos = 0;
  const write = async (b: Uint8Array) => {
    let done = 0;
    while (done < b.length) {
      const { bytesWritten } = await fh.write(b, done, b.length - done, pos + done);
      done += bytesWritten;
    }
    pos += b.length;
  };
  try {
    await write(header);
    const dataOffset = header.length;
    for (let i = 0; i < spec.tensors.length; i++) {
      const t = spec.tensors[i];
      const size = tensorSizes[i];
      const target = dataOffset + tensorOffsets[i];
      if (pos < target) await write(new Uint8Array(target - pos));
      const ne0 = t.dims[0] ?? 1;
      const nRows = t.dims.slice(1).reduce((a, b) => a * b, 1);
      const d = t.data;
      let written = 0;
      if (typeof d === 'function') {
        const rowsPerChunk = M_max(1, M_floor(CHUNK_VALUES / ne0));
        for (let r = 0; r < nRows; r += rowsPerChunk) {
          const n = M_min(rowsPerChunk, nRows - r);
          const vals = d(r, n);
          if (vals.length !== n * ne0) throw new Error(`${t.name}: row source gave ${vals.length} values for ${n} rows of ${ne0}`);
          const enc = encodeTensor(t.type, vals);
          await write(enc);
          written += enc.length;
        }
      } else if (d instanceof Float32Array) {
        if (d.length !== ne0 * nRows) throw new Error(`${t.name}: ${d.length} values for dims [${t.dims}]`);
        const rowsPerChunk = M_max(1, M_floor(CHUNK_VALUES / ne0));
        for (let r = 0; r < nRows; r += rowsPerChunk) {
          const n = M_min(rowsPerChunk, nRows - r);
          const enc = encodeTensor(t.type, d.subarray(r * ne0, (r + n) * ne0));
          await write(enc);
          written += enc.length;
        }
      } else if ('raw' in d) {
        if (d.raw.length !== size && !spec.allowSizeMismatch) throw new Error(`${t.name}: ${d.raw.length} raw bytes, expected ${size}`);
        await write(d.raw);
        written = d.raw.length;
      } else {
        if (d.length !== size && !spec.allowSizeMismatch) throw new Error(`${t.name}: ${d.length} bytes from file, expected ${size}`);
        const src = await fs.promises.open(d.file, 'r');
        try {
          const buf = Buffer.alloc(M_min(d.length, 4 << 20));
          for (let done = 0; done < d.length;) {
            const n = M_min(buf.length, d.length - done);
            const { bytesRead } = await src.read(buf, 0, n, d.offset + done);
            if (bytesRead <= 0) throw new Error(`${d.file}: short read`);
            await write(buf.subarray(0, bytesRead));
            done += bytesRead;
          }
        } finally {
          await src.close();
        }
        written = d.length;
      }
      if (written !== size && !spec.allowSizeMismatch) throw new Error(`${t.name}: wrote ${written} bytes, expected ${size}`);
    }
    // pad the end of the file to the alignment, as gguf.cpp's writer does
    const end = M_ceil(pos / alignment) * alignment;
    if (end > pos) await write(new Uint8Array(end - pos));
    return { path: filePath, fileSize: pos, dataOffset, alignment, tensorOffsets };
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Header reader that keeps GGUF value types (to copy metadata exactly)
// ---------------------------------------------------------------------------------------------

export interface GgufRawTensorInfo {
  name: string;
  dims: number[];
  type: number;
  /** relative to dataOffset */
  offset: number;
  /** bytes (from the type traits; undefined for an unknown type) */
  size: number | undefined;
}

export interface GgufRaw {
  version: number;
  metadata: Map<string, GgufMetaValue>;
  tensors: GgufRawTensorInfo[];
  alignment: number;
  dataOffset: number;
  fileSize: number;
}

class OutOfData extends Error {}

function parseHeader(b: Buffer, fileSize: number): GgufRaw {
  let p = 0;
  const need = (n: number) => { if (p + n > b.length) throw new OutOfData(); };
  const u32 = () => { need(4); const v = b.readUInt32LE(p); p += 4; return v; };
  const u64 = () => { need(8); const v = b.readBigUInt64LE(p); p += 8; return v; };
  const str = () => {
    const n = Number(u64());
    if (n > fileSize) throw new Error(`string length ${n} is larger than the file`);
    need(n); const s = b.toString('utf8', p, p + n); p += n; return s;
  };
  const scalar = (t: number): number | bigint | boolean | string => {
    switch (t) {
      case 0: need(1); return b.readUInt8(p++);
      case 1: need(1); return b.readInt8(p++);
      case 2: { need(2); const v = b.readUInt16LE(p); p += 2; return v; }
      case 3: { need(2); const v = b.readInt16LE(p); p += 2; return v; }
      case 4: return u32();
      case 5: { need(4); const v = b.readInt32LE(p); p += 4; return v; }
      case 6: { need(4); const v = b.readFloatLE(p); p += 4; return v; }
      case 7: need(1); return b.readUInt8(p++) !== 0;
      case 8: return str();
      case 10: return u64();
      case 11: { need(8); const v = b.readBigInt64LE(p); p += 8; return v; }
      case 12: { need(8); const v = b.readDoubleLE(p); p += 8; return v; }
      default: throw new Error(`bad GGUF value type ${t}`);
    }
  };
  const magic = u32();
  if (magic !== 0x46554747) throw new Error(`not a GGUF file (magic 0x${magic.toString(16)})`);
  const version = u32();
  const nTensors = Number(u64());
  const nKv = Number(u64());
  const metadata = new Map<string, GgufMetaValue>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const t = u32();
    if (t === 9) {
      const it = u32();
      const n = Number(u64());
      if (n > fileSize) throw new Error(`array length ${n} is larger than the file`);
      const itemType = TYPE_NAME_BY_ID[it] as GgufScalarTypeName;
      let value: GgufArrayValue;
      if (it === 6) { need(4 * n); value = new Float32Array(n); for (let j = 0; j < n; j++) value[j] = b.readFloatLE(p + 4 * j); p += 4 * n; }
      else if (it === 5) { need(4 * n); value = new Int32Array(n); for (let j = 0; j < n; j++) value[j] = b.readInt32LE(p + 4 * j); p += 4 * n; }
      else if (it === 4) { need(4 * n); value = new Uint32Array(n); for (let j = 0; j < n; j++) value[j] = b.readUInt32LE(p + 4 * j); p += 4 * n; }
      else { const a: unknown[] = []; for (let j = 0; j < n; j++) a.push(scalar(it)); value = a as GgufArrayValue; }
      metadata.set(key, { type: 'array', itemType, value });
    } else {
      const type = TYPE_NAME_BY_ID[t];
      if (!type) throw new Error(`bad GGUF value type ${t} for ${key}`);
      metadata.set(key, { type, value: scalar(t) } as GgufMetaValue);
    }
  }
  const tensors: GgufRawTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const dims: number[] = [];
    for (let j = 0; j < nd; j++) dims.push(Number(u64()));
    const type = u32();
    const offset = Number(u64());
    let size: number | undefined;
    try { size = ggmlTensorSize(type, dims); } catch { size = undefined; }
    tensors.push({ name, dims, type, offset, size });
  }
  const al = metadata.get('general.alignment');
  const alignment = al && al.type !== 'array' ? Number(al.value) : 32;
  const dataOffset = M_ceil(p / alignment) * alignment;
  return { version, metadata, tensors, alignment, dataOffset, fileSize };
}

/** Read a GGUF header (metadata with exact value types, tensor infos). Never reads tensor data. */
export async function readGgufRaw(filePath: string): Promise<GgufRaw> {
  const fileSize = (await fs.promises.stat(filePath)).size;
  const fh = await fs.promises.open(filePath, 'r');
  try {
    let len = M_min(fileSize, 1 << 20);
    for (;;) {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, 0);
      try {
        return parseHeader(buf.subarray(0, bytesRead), fileSize);
      } catch (e) {
        if (!(e instanceof OutOfData)) throw e;
        if (len >= fileSize) throw new Error(`${filePath}: truncated GGUF header`);
        len = M_min(fileSize, len * 4);
      }
    }
  } finally {
    await fh.close();
  }
}

/** A spec that rewrites an existing GGUF file (same metadata/tensors; data copied from the file). */
export function specFromRaw(filePath: string, raw: GgufRaw): GgufSpec {
  return {
    version: raw.version,
    metadata: [...raw.metadata.entries()],
    tensors: raw.tensors.map((t) => {
      if (t.size === undefined) throw new Error(`${t.name}: unsupported ggml type ${t.type}`);
      return { name: t.name, dims: [...t.dims], type: t.type, data: { file: filePath, offset: raw.dataOffset + t.offset, length: t.size } };
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Corrupt variants for error tests
// ---------------------------------------------------------------------------------------------

export type CorruptKind =
  | 'truncated'          // cut in the middle of the tensor data
  | 'truncated-header'   // cut in the middle of the metadata
  | 'bad-magic'          // "GGUX" instead of "GGUF"
  | 'bad-version'        // version 99
  | 'missing-tensor'     // one required tensor left out
  | 'wrong-shape'        // one tensor with other dims than the architecture needs
  | 'unknown-arch'       // general.architecture (and its {arch}.* keys) renamed to an unknown architecture
  | 'data-out-of-bounds';// a tensor whose offset points past the end of the file

export const CORRUPT_KINDS: readonly CorruptKind[] = [
  'truncated', 'truncated-header', 'bad-magic', 'bad-version', 'missing-tensor', 'wrong-shape', 'unknown-arch', 'data-out-of-bounds',
];

export interface CorruptOptions {
  /** tensor for missing-tensor / wrong-shape / data-out-of-bounds; default blk.0.attn_k.weight (missing),
   *  blk.0.ffn_up.weight (wrong shape, data-out-of-bounds), or the first 2-D tensor */
  tensor?: string;
  /** architecture name for unknown-arch; default 'specdec-unknown-arch' */
  arch?: string;
}

function pickTensor(raw: GgufRaw, preferred: string[], explicit?: string): GgufRawTensorInfo {
  const byName = new Map(raw.tensors.map((t) => [t.name, t]));
  if (explicit) {
    const t = byName.get(explicit);
    if (!t) throw new Error(`no tensor ${explicit}`);
    return t;
  }
  for (const n of preferred) { const t = byName.get(n); if (t) return t; }
  const t = raw.tensors.find((x) => x.dims.length >= 2 && x.dims[1] > 1) ?? raw.tensors[0];
  if (!t) throw new Error('the file has no tensors');
  return t;
}

/**
 * Write a corrupt variant of a valid GGUF file `srcPath` to `outPath`. Returns details of the change
 * (which tensor was dropped/reshaped, the new dims, ...) for error-message checks.
 */
export async function writeCorruptGguf(
  srcPath: string, outPath: string, kind: CorruptKind, opts: CorruptOptions = {},
): Promise<{ kind: CorruptKind; path: string; tensor?: string; dims?: number[]; expectedDims?: number[]; arch?: string; size: number }> {
  const raw = await readGgufRaw(srcPath);
  const spec = specFromRaw(srcPath, raw);
  const info: { kind: CorruptKind; path: string; tensor?: string; dims?: number[]; expectedDims?: number[]; arch?: string; size: number } = { kind, path: outPath, size: 0 };
  const copyFile = async (bytes: number) => {
    await fs.promises.mkdir(path.dirname(path.resolve(outPath)), { recursive: true });
    const src = await fs.promises.open(srcPath, 'r');
    try {
      const buf = Buffer.alloc(bytes);
      await src.read(buf, 0, bytes, 0);
      return buf;
    } finally {
      await src.close();
    }
  };
  switch (kind) {
    case 'truncated': {
      const dataEnd = raw.fileSize;
      const cut = raw.dataOffset + M_floor((dataEnd - raw.dataOffset) / 2);
      await fs.promises.writeFile(outPath, await copyFile(cut));
      break;
    }
    case 'truncated-header': {
      const cut = M_max(24, M_floor(raw.dataOffset / 2));
      await fs.promises.writeFile(outPath, await copyFile(cut));
      break;
    }
    case 'bad-magic':
    case 'bad-version': {
      await fs.promises.copyFile(srcPath, outPath);
      const fh = await fs.promises.open(outPath, 'r+');
      try {
        if (kind === 'bad-magic') await fh.write(Buffer.from('GGUX', 'latin1'), 0, 4, 0);
        else { const b = Buffer.alloc(4); b.writeUInt32LE(99); await fh.write(b, 0, 4, 4); }
      } finally {
        await fh.close();
      }
      break;
    }
    case 'missing-tensor': {
      const t = pickTensor(raw, ['blk.0.attn_k.weight'], opts.tensor);
      spec.tensors = spec.tensors.filter((x) => x.name !== t.name);
      info.tensor = t.name;
      await writeGguf(outPath, spec);
      break;
    }
    case 'wrong-shape': {
      const t = pickTensor(raw, ['blk.0.ffn_up.weight'], opts.tensor);
      const st = spec.tensors.find((x) => x.name === t.name)!;
      const bs = traits(t.type).blockSize;
      let dims: number[];
      const zeroPad = (extra: number) => ({ raw: Buffer.alloc(extra) });
      if (t.dims.length >= 2 && t.dims[0] !== t.dims[1] && t.dims[1] % bs === 0) {
        dims = [t.dims[1], t.dims[0], ...t.dims.slice(2)]; // same byte size: swap ne0 and ne1
      } else {
        dims = [...t.dims];
        if (dims.length < 2) dims.push(1);
        dims[1] += 1; // one more row
        const extra = ggmlTensorSize(t.type, dims) - (t.size ?? 0);
        const src = st.data as { file: string; offset: number; length: number };
        const head = await (async () => {
          const fh = await fs.promises.open(src.file, 'r');
          try { const b = Buffer.alloc(src.length); await fh.read(b, 0, src.length, src.offset); return b; } finally { await fh.close(); }
        })();
        st.data = { raw: Buffer.concat([head, zeroPad(extra).raw]) };
      }
      st.dims = dims;
      info.tensor = t.name;
      info.dims = dims;
      info.expectedDims = [...t.dims];
      await writeGguf(outPath, spec);
      break;
    }
    case 'unknown-arch': {
      const a = raw.metadata.get('general.architecture');
      const oldArch = a && a.type === 'string' ? a.value : undefined;
      const newArch = opts.arch ?? 'specdec-unknown-arch';
      spec.metadata = [...raw.metadata.entries()].map(([k, v]): [string, GgufMetaValue] => {
        if (k === 'general.architecture') return [k, gv.str(newArch)];
        if (oldArch && k.startsWith(oldArch + '.')) return [newArch + k.slice(oldArch.length), v];
        return [k, v];
      });
      info.arch = newArch;
      await writeGguf(outPath, spec);
      break;
    }
    case 'data-out-of-bounds': {
      const t = pickTensor(raw, ['blk.0.ffn_up.weight'], opts.tensor);
      const idx = spec.tensors.findIndex((x) => x.name === t.name);
      const offsets: number[] = [];
      // an aligned offset far past the end of the file
      offsets[idx] = M_ceil((raw.fileSize * 4) / raw.alignment) * raw.alignment;
      spec.offsets = offsets;
      info.tensor = t.name;
      await writeGguf(outPath, spec);
      break;
    }
    default:
      throw new Error(`unknown corrupt kind ${kind as string}`);
  }
  info.size = (await fs.promises.stat(outPath)).size;
  return info;
}

/** Write every corrupt variant of `srcPath` into `outDir` (files `<kind>.gguf`). */
export async function writeCorruptVariants(
  srcPath: string, outDir: string, opts: CorruptOptions = {},
): Promise<Record<CorruptKind, string>> {
  await fs.promises.mkdir(outDir, { recursive: true });
  const out = {} as Record<CorruptKind, string>;
  for (const kind of CORRUPT_KINDS) {
    const p = path.join(outDir, `${kind}.gguf`);
    await writeCorruptGguf(srcPath, p, kind, opts);
    out[kind] = p;
  }
  return out;
}

/** A copy of the GGUF file `srcPath` at `outPath` with metadata keys replaced or added (`undefined`
 *  drops a key); tensors unchanged. For files that differ from a valid one in one value. */
export async function rewriteGgufMetadata(
  srcPath: string, outPath: string, changes: Record<string, GgufMetaInput | undefined>,
): Promise<string> {
  const raw = await readGgufRaw(srcPath);
  const spec = specFromRaw(srcPath, raw);
  const md = new Map<string, GgufMetaInput>(raw.metadata);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) md.delete(k);
    else md.set(k, v);
  }
  spec.metadata = md;
  await writeGguf(outPath, spec);
  return outPath;
}
