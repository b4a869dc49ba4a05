/**
 * Pure-TypeScript GGUF (v2/v3) header reader: metadata key/values and tensor infos.
 * Never reads tensor data. The async reader streams the header in chunks through
 * fs.promises; the sync reader does the same with fs.readSync.
 */
import * as fs from 'fs';
import { ModelFileError } from '../errors';

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufValue[] | Float32Array | Int32Array | Uint32Array | string[];

export interface GgufTensorInfo {
  name: string;
  dims: number[];
  /** ggml type id */
  type: number;
  /** offset of the tensor data relative to `dataOffset` */
  offset: bigint;
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** absolute file offset of the tensor data section */
  dataOffset: number;
  fileSize: number;
}

/** GGUF value types. */
export const GgufType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;

const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
const DEFAULT_ALIGNMENT = 32;
const CHUNK = 1 << 20;
/** Counts/lengths beyond this are treated as corrupt metadata rather than truncation. */
const ABSURD_COUNT = 2 ** 32;
const GGML_MAX_DIMS = 4;

/** Fixed element sizes per GGUF value type (0 = variable). */
const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** ggml type id -> [block size, bytes per block] for the common types (used to check tensor data bounds). */
const GGML_TYPE_SIZE: Record<number, [number, number]> = {
  0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 6: [32, 22], 7: [32, 24], 8: [32, 34], 9: [32, 36],
  10: [256, 84], 11: [256, 110], 12: [256, 144], 13: [256, 176], 14: [256, 210], 15: [256, 292],
  16: [256, 66], 17: [256, 74], 18: [256, 98], 19: [256, 50], 20: [32, 18], 21: [256, 110], 22: [256, 82],
  23: [256, 136], 24: [1, 1], 25: [1, 2], 26: [1, 4], 27: [1, 8], 28: [1, 8], 29: [256, 56], 30: [1, 2],
  34: [256, 54], 35: [256, 66], 39: [32, 17],
};

class Source {
  buf: Buffer = Buffer.alloc(0);
  /** absolute file offset of buf[0] */
  base = 0;
  /** absolute cursor */
  pos = 0;
  constructor(readonly path: string, readonly fileSize: number) {}
  get end(): number { return this.base + this.buf.length; }
}

function fail(code: 'ERR_NOT_GGUF' | 'ERR_TRUNCATED_FILE' | 'ERR_BAD_METADATA' | 'ERR_FILE_NOT_FOUND', path: string, what: string): never {
  throw new ModelFileError(code, `${path}: ${what}`);
}

/**
 * The parser is a generator: whenever it needs `n` more bytes than are buffered at the cursor,
 * it yields `n`; the driver (sync or async) refills the buffer and resumes it.
 */
function* parse(src: Source): Generator<number, Omit<GgufFile, 'path' | 'fileSize'>, void> {
  const path = src.path;
  const truncated = (what: string): never => fail('ERR_TRUNCATED_FILE', path, `file is truncated (${what} runs past end of file at ${src.fileSize} bytes)`);

  function* need(n: number, what: string): Generator<number, void, void> {
    if (src.pos + n > src.fileSize) truncated(what);
    if (src.pos + n > src.end) yield n;
  }
  const u32 = (): number => { const v = src.buf.readUInt32LE(src.pos - src.base); src.pos += 4; return v; };
  const u64 = (): bigint => { const v = src.buf.readBigUInt64LE(src.pos - src.base); src.pos += 8; return v; };
  const toCount = (v: bigint, what: string): number => {
    if (v >= BigInt(ABSURD_COUNT)) fail('ERR_BAD_METADATA', path, `absurd ${what} ${v} at offset ${src.pos - 8}`);
    return Number(v);
  };

  function* readString(what: string): Generator<number, string, void> {
    yield* need(8, what);
    const len = toCount(u64(), `${what} length`);
    yield* need(len, what);
    const o = src.pos - src.base;
    src.pos += len;
    return src.buf.toString('utf8', o, o + len);
  }

  if (src.fileSize < 4) {
    yield* need(src.fileSize, 'magic');
    const head = src.buf.subarray(0, src.fileSize).toString('latin1');
    if (src.fileSize > 0 && 'GGUF'.startsWith(head)) truncated('magic');
    fail('ERR_NOT_GGUF', path, `not a GGUF file (only ${src.fileSize} bytes)`);
  }
  yield* need(4, 'magic');
  if (src.buf.readUInt32LE(0) !== GGUF_MAGIC) {
    fail('ERR_NOT_GGUF', path, `not a GGUF file (bad magic 0x${src.buf.readUInt32BE(0).toString(16).padStart(8, '0')})`);
  }
  src.pos = 4;
  yield* need(4 + 8 + 8, 'header');
  const version = u32();
  if (version !== 2 && version !== 3) {
    if (version === 1) fail('ERR_BAD_METADATA', path, 'GGUF version 1 is not supported (only v2 and v3)');
    if ((version & 0xffff) === 0 && version !== 0) fail('ERR_BAD_METADATA', path, `GGUF file has the wrong byte order (version field 0x${version.toString(16)})`);
    fail('ERR_BAD_METADATA', path, `unsupported GGUF version ${version}`);
  }
  const nTensorsBig = u64();
  const nKvBig = u64();
  const nTensors = toCount(nTensorsBig, 'tensor count');
  const nKv = toCount(nKvBig, 'metadata key/value count');

  function* readArray(key: string): Generator<number, GgufValue, void> {
    const what = `array value of '${key}'`;
    yield* need(12, what);
    const et = u32();
    const count = toCount(u64(), `element count of '${key}'`);
    if (et === GgufType.STRING) {
      const out: string[] = new Array(count);
      for (let i = 0; i < count; i++) {
        // fast path: length + bytes already buffered
        let o = src.pos - src.base;
        if (o + 8 <= src.buf.length) {
          const len = src.buf.readBigUInt64LE(o);
          if (len < 0x100000000n) {
            const l = Number(len);
            if (o + 8 + l <= src.buf.length) {
              o += 8;
              out[i] = src.buf.toString('utf8', o, o + l);
              src.pos += 8 + l;
              continue;
            }
          }
        }
        out[i] = yield* readString(what);
      }
      return out;
    }
    if (et === GgufType.ARRAY) {
      const out: GgufValue[] = new Array(count);
      for (let i = 0; i < count; i++) out[i] = yield* readArray(key);
      return out;
    }
    const esize = SCALAR_SIZE[et];
    if (esize === undefined) fail('ERR_BAD_METADATA', path, `unknown array element type ${et} for key '${key}'`);
    const nbytes = count * esize;
    if (src.pos + nbytes > src.fileSize) truncated(what);
    // read in pieces so a large array never needs the whole thing buffered at once beyond its own size
    yield* need(nbytes, what);
    const o = src.pos - src.base;
    const bytes = src.buf.subarray(o, o + nbytes);
    src.pos += nbytes;
    if (et === GgufType.FLOAT32 || et === GgufType.INT32 || et === GgufType.UINT32) {
      const copy = new Uint8Array(nbytes);
      copy.set(bytes);
      if (et === GgufType.FLOAT32) return new Float32Array(copy.buffer);
      if (et === GgufType.INT32) return new Int32Array(copy.buffer);
      return new Uint32Array(copy.buffer);
    }
    const out: GgufValue[] = new Array(count);
    for (let i = 0; i < count; i++) out[i] = scalarAt(bytes, i * esize, et);
    return out;
  }

  function scalarAt(b: Buffer, o: number, t: number): GgufScalar {
    switch (t) {
      case 0: return b.readUInt8(o);
      case 1: return b.readInt8(o);
      case 2: return b.readUInt16LE(o);
      case 3: return b.readInt16LE(o);
      case 4: return b.readUInt32LE(o);
      case 5: return b.readInt32LE(o);
      case 6: return b.readFloatLE(o);
      case 7: return b.readUInt8(o) !== 0;
      case 10: { const v = b.readBigUInt64LE(o); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
      case 11: {
        const v = b.readBigInt64LE(o);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      }
      case 12: return b.readDoubleLE(o);
      default: return fail('ERR_BAD_METADATA', path, `unknown value type ${t}`);
    }
  }

  // every key/value takes at least 8 (key len) + 4 (type) + 1 bytes
  if (nKv * 13 > src.fileSize - src.pos) truncated(`${nKv} metadata key/values`);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = yield* readString(`metadata key #${i}`);
    yield* need(4, `type of '${key}'`);
    const t = u32();
    let value: GgufValue;
    if (t === GgufType.STRING) value = yield* readString(`value of '${key}'`);
    else if (t === GgufType.ARRAY) value = yield* readArray(key);
    else {
      const size = SCALAR_SIZE[t];
      if (size === undefined) fail('ERR_BAD_METADATA', path, `unknown value type ${t} for key '${key}'`);
      yield* need(size, `value of '${key}'`);
      value = scalarAt(src.buf, src.pos - src.base, t);
      src.pos += size;
    }
    if (metadata.has(key)) fail('ERR_BAD_METADATA', path, `duplicate metadata key '${key}'`);
    metadata.set(key, value);
  }

  let alignment = DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    if (typeof al !== 'number' || al <= 0 || (al & (al - 1)) !== 0) fail('ERR_BAD_METADATA', path, `bad general.alignment ${String(al)}`);
    alignment = al;
  }

  // every tensor info takes at least 8 + 4 + 4 + 8 bytes
  if (nTensors * 24 > src.fileSize - src.pos) truncated(`${nTensors} tensor infos`);
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = yield* readString(`tensor info #${i}`);
    yield* need(4, `tensor info '${name}'`);
    const nDims = u32();
    if (nDims > GGML_MAX_DIMS) fail('ERR_BAD_METADATA', path, `tensor '${name}' has ${nDims} dimensions (max ${GGML_MAX_DIMS})`);
    yield* need(nDims * 8 + 4 + 8, `tensor info '${name}'`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const v = u64();
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('ERR_BAD_METADATA', path, `tensor '${name}' has absurd dimension ${v}`);
      dims.push(Number(v));
    }
    const type = u32();
    const offset = u64();
    if (offset % BigInt(alignment) !== 0n) fail('ERR_BAD_METADATA', path, `tensor '${name}' data offset ${offset} is not aligned to ${alignment}`);
    tensors.push({ name, dims, type, offset });
  }

  const dataOffset = Math.ceil(src.pos / alignment) * alignment;
  // tensor data must lie inside the file
  for (const t of tensors) {
    const ts = GGML_TYPE_SIZE[t.type];
    let nbytes = 0n;
    if (ts) {
      let ne = 1n;
      for (const d of t.dims) ne *= BigInt(d);
      const [blk, sz] = ts;
      if (t.dims.length > 0 && t.dims[0] % blk !== 0) fail('ERR_BAD_METADATA', path, `tensor '${t.name}' row size ${t.dims[0]} is not a multiple of the block size ${blk} of type ${t.type}`);
      nbytes = (ne / BigInt(blk)) * BigInt(sz);
    }
    const end = BigInt(dataOffset) + t.offset + nbytes;
    if (end > BigInt(src.fileSize)) {
      fail('ERR_TRUNCATED_FILE', path, `file is truncated: data of tensor '${t.name}' ends at byte ${end} but the file has ${src.fileSize} bytes`);
    }
  }
  return { version, metadata, tensors, alignment, dataOffset };
}

function notFound(path: string, err: unknown): never {
  const e = err as NodeJS.ErrnoException;
  if (e && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) {
    throw new ModelFileError('ERR_FILE_NOT_FOUND', `${path}: model file not found`, { cause: err });
  }
  if (e && e.code === 'EISDIR') throw new ModelFileError('ERR_FILE_NOT_FOUND', `${path}: is a directory, not a model file`, { cause: err });
  throw new ModelFileError('ERR_FILE_NOT_FOUND', `${path}: cannot open model file (${e?.code ?? String(err)})`, { cause: err });
}

/** Makes the buffer hold at least `n` bytes from the cursor (the caller checked they exist in the file). */
function refillPlan(src: Source, n: number): { keep: Buffer; want: number } {
  const keep = src.buf.subarray(src.pos - src.base);
  const want = Math.min(Math.max(n, CHUNK) - keep.length, src.fileSize - src.end);
  return { keep, want };
}

/** Reads the header (metadata + tensor infos) of a GGUF file without loading tensor data. */
export async function readGguf(path: string): Promise<GgufFile> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(path, 'r');
  } catch (err) {
    notFound(path, err);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new ModelFileError('ERR_FILE_NOT_FOUND', `${path}: is a directory, not a model file`);
    const src = new Source(path, st.size);
    const gen = parse(src);
    let r = gen.next();
    while (!r.done) {
      const { keep, want } = refillPlan(src, r.value);
      const fresh = Buffer.allocUnsafe(keep.length + want);
      keep.copy(fresh, 0);
      let filled = 0;
      while (filled < want) {
        const { bytesRead } = await fh.read(fresh, keep.length + filled, want - filled, src.end + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      src.base = src.pos;
      src.buf = fresh.subarray(0, keep.length + filled);
      if (src.pos + r.value > src.end) fail('ERR_TRUNCATED_FILE', path, 'file is truncated (unexpected end of file while reading the header)');
      r = gen.next();
    }
    return { path, fileSize: st.size, ...r.value };
  } finally {
    await fh.close();
  }
}

/** Synchronous variant of readGguf. */
export function readGgufSync(path: string): GgufFile {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    notFound(path, err);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw new ModelFileError('ERR_FILE_NOT_FOUND', `${path}: is a directory, not a model file`);
    const src = new Source(path, st.size);
    const gen = parse(src);
    let r = gen.next();
    while (!r.done) {
      const { keep, want } = refillPlan(src, r.value);
      const fresh = Buffer.allocUnsafe(keep.length + want);
      keep.copy(fresh, 0);
      let filled = 0;
      while (filled < want) {
        const n = fs.readSync(fd, fresh, keep.length + filled, want - filled, src.end + filled);
        if (n === 0) break;
        filled += n;
      }
      src.base = src.pos;
      src.buf = fresh.subarray(0, keep.length + filled);
      if (src.pos + r.value > src.end) fail('ERR_TRUNCATED_FILE', path, 'file is truncated (unexpected end of file while reading the header)');
      r = gen.next();
    }
    return { path, fileSize: st.size, ...r.value };
  } finally {
    fs.closeSync(fd);
  }
}

/** Convenience accessors for metadata values. */
export function ggufString(file: GgufFile, key: string): string | undefined {
  const v = file.metadata.get(key);
  return typeof v === 'string' ? v : undefined;
}
