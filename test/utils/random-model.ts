/**
 * Random-weight GGUF models with llama.cpp's exact tensor names, shapes and metadata keys for
 * llama / qwen2 / qwen3 (see llama.cpp src/models/{llama,qwen2,qwen3}.cpp and src/llama-arch.cpp).
 *
 * Tensors (ggml dims, ne0 first; E = nEmbd, H = nHead, Hkv = nHeadKv, D = E / H, V = vocab size, F = nFf):
 *   token_embd.weight [E, V]          output_norm.weight [E] (F32)     output.weight [E, V] (absent when tied)
 *   blk.N.attn_norm.weight [E] (F32)  blk.N.attn_q.weight [E, H*D]     blk.N.attn_k.weight [E, Hkv*D]
 *   blk.N.attn_v.weight [E, Hkv*D]    blk.N.attn_output.weight [H*D, E]
 *   qwen2 only: blk.N.attn_q.bias [H*D], attn_k.bias [Hkv*D], attn_v.bias [Hkv*D] (F32)
 *   qwen3 only: blk.N.attn_q_norm.weight [D], blk.N.attn_k_norm.weight [D] (F32)
 *   blk.N.ffn_norm.weight [E] (F32)   blk.N.ffn_gate.weight [E, F]     blk.N.ffn_up.weight [E, F]
 *   blk.N.ffn_down.weight [F, E]
 * Every 2-D weight (token_embd included) has the model `type`; 1-D tensors (norms, biases) stay F32.
 *
 * Row lengths (ne0 = E, H*D and F) must be multiples of the type's block size: 32 for Q8_0/Q4_0 and 256
 * for the K-quants (Q4_K, Q5_K, Q6_K). So for K-quant types the defaults are nEmbd 256 and nFf 512
 * (instead of 64 and 128); other sizes throw unless they are multiples of 256.
 *
 * Weights come from a deterministic PRNG (xoshiro128**, Box-Muller normals), seeded per tensor from
 * `seed` and the tensor name. Scales: token embeddings N(0, 1) (N(0, 0.02^2) when tied, see `embdStd`), projections
 * N(0, 1/fan_in), norm weights 1 + N(0, 0.1^2), output head N(0, (outScale^2)/nEmbd) so logits have
 * standard deviation ~outScale.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GGML_TYPE, GgufMetaValue, GgufSpec, GgufTensorSpec, TensorRowSource, gv, readGgufRaw, writeGguf } from './gguf-writer';
// Math functions bound to module constants: under jest (a vm context) every `Math.x` is a slow global lookup.
const { sqrt: M_sqrt, log: M_log, cos: M_cos, sin: M_sin, imul: M_imul, PI: M_PI } = Math;

export type RandomModelArch = 'llama' | 'qwen2' | 'qwen3';
export type RandomModelType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q5_k' | 'q6_k';

export interface RandomModelOptions {
  path: string;
  arch: RandomModelArch;
  /** A vocab-only GGUF (e.g. ../shared/models/vocab/ggml-vocab-qwen2.gguf); its tokenizer.* metadata is copied. */
  vocabFrom: string;
  type: RandomModelType;
  /** default 64 (256 for K-quant types) */
  nEmbd?: number;
  /** default 2 */
  nLayer?: number;
  /** default 4 */
  nHead?: number;
  /** default 2 */
  nHeadKv?: number;
  /** default 128 (512 for K-quant types) */
  nFf?: number;
  /** {arch}.context_length; default 512 */
  nCtx?: number;
  /** default 1 */
  seed?: number;
  /** no output.weight: llama.cpp uses token_embd.weight as the output head. Default false. */
  tiedEmbeddings?: boolean;
  /** rope.freq_base; default 10000 (llama) or 1000000 (qwen2, qwen3) */
  ropeTheta?: number;
  /** attention.layer_norm_rms_epsilon; default 1e-5 (llama) or 1e-6 (qwen2, qwen3) */
  rmsEps?: number;
  /** std of token embeddings; default 1 (untied) or 0.02 (tied: with N(0,1) embeddings as the output head,
   *  each token's own embedding dominates its logits and greedy decoding repeats one token forever) */
  embdStd?: number;
  /** std of the logits (scale of the output head); default 4 */
  outScale?: number;
  /** general.name; default specdec-random-{arch}-{type} */
  name?: string;
}

export const RANDOM_MODEL_GGML_TYPE: Record<RandomModelType, number> = {
  f32: GGML_TYPE.F32, f16: GGML_TYPE.F16, bf16: GGML_TYPE.BF16, q8_0: GGML_TYPE.Q8_0, q4_0: GGML_TYPE.Q4_0,
  q4_k: GGML_TYPE.Q4_K, q5_k: GGML_TYPE.Q5_K, q6_k: GGML_TYPE.Q6_K,
};

/** llama_ftype written as general.file_type */
export const RANDOM_MODEL_FILE_TYPE: Record<RandomModelType, number> = {
  f32: 0, f16: 1, bf16: 32, q8_0: 7, q4_0: 2, q4_k: 15 /* Q4_K_M */, q5_k: 17 /* Q5_K_M */, q6_k: 18,
};

export function isKQuant(type: RandomModelType): boolean {
  return type === 'q4_k' || type === 'q5_k' || type === 'q6_k';
}

// ---------------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------------

function splitmix32(a: number): () => number {
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let z = a;
    z = M_imul(z ^ (z >>> 16), 0x85ebca6b);
    z = M_imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function hashString(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = M_imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Deterministic normal-distribution generator (xoshiro128** + Box-Muller). */
export class Rng {
  private s0: number; private s1: number; private s2: number; private s3: number;
  private spare: number | undefined;
  constructor(seed: number, stream = '') {
    const sm = splitmix32(hashString(stream, seed >>> 0));
    this.s0 = sm(); this.s1 = sm(); this.s2 = sm(); this.s3 = sm();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }
  nextU32(): number {
    const result = M_imul(rotl(M_imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0; this.s3 ^= this.s1; this.s1 ^= this.s2; this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }
  /** uniform in (0, 1) */
  uniform(): number {
    return (this.nextU32() + 0.5) / 4294967296;
  }
  normal(): number {
    if (this.spare !== undefined) { const v = this.spare; this.spare = undefined; return v; }
    const r = M_sqrt(-2 * M_log(this.uniform()));
    const th = 2 * M_PI * this.uniform();
    this.spare = r * M_sin(th);
    return r * M_cos(th);
  }
}
function rotl(x: number, k: number): number { return (x << k) | (x >>> (32 - k)); }

/** Row source of N(mean, std^2) values, for sequential row access (as writeGguf does). */
function normalRows(seed: number, name: string, ne0: number, std: number, mean = 0): TensorRowSource {
  const rng = new Rng(seed, name);
  let next = 0;
  return (rowStart, rowCount) => {
    if (rowStart !== next) throw new Error(`${name}: rows must be read in order (asked ${rowStart}, next ${next})`);
    next = rowStart + rowCount;
    const out = new Float32Array(rowCount * ne0);
    for (let i = 0; i < out.length; i++) out[i] = mean + std * rng.normal();
    return out;
  };
}

function normalVector(seed: number, name: string, n: number, std: number, mean = 0): Float32Array {
  return normalRows(seed, name, n, std, mean)(0, 1);
}

// ---------------------------------------------------------------------------------------------
// Model spec
// ---------------------------------------------------------------------------------------------

export interface RandomModelInfo {
  arch: RandomModelArch;
  type: RandomModelType;
  nVocab: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  nFf: number;
  nCtx: number;
  tiedEmbeddings: boolean;
  bosId?: number;
  eosId?: number;
  addBos?: boolean;
}

/** Build the GGUF spec (metadata + lazily generated tensors) of a random model; see writeRandomModel. */
export async function buildRandomModelSpec(opts: RandomModelOptions): Promise<{ spec: GgufSpec; info: RandomModelInfo }> {
  const { arch, type } = opts;
  if (!['llama', 'qwen2', 'qwen3'].includes(arch)) throw new Error(`unsupported arch ${arch}`);
  const gtype = RANDOM_MODEL_GGML_TYPE[type];
  if (gtype === undefined) throw new Error(`unsupported type ${type}`);
  const kq = isKQuant(type);
  const nEmbd = opts.nEmbd ?? (kq ? 256 : 64);
  const nLayer = opts.nLayer ?? 2;
  const nHead = opts.nHead ?? 4;
  const nHeadKv = opts.nHeadKv ?? 2;
  const nFf = opts.nFf ?? (kq ? 512 : 128);
  const nCtx = opts.nCtx ?? 512;
  const seed = opts.seed ?? 1;
  const tied = opts.tiedEmbeddings ?? false;
  const qwen = arch !== 'llama';
  const ropeTheta = opts.ropeTheta ?? (qwen ? 1000000 : 10000);
  const rmsEps = opts.rmsEps ?? (qwen ? 1e-6 : 1e-5);
  if (nEmbd % nHead !== 0) throw new Error(`nEmbd ${nEmbd} is not a multiple of nHead ${nHead}`);
  if (nHead % nHeadKv !== 0) throw new Error(`nHead ${nHead} is not a multiple of nHeadKv ${nHeadKv}`);
  const headDim = nEmbd / nHead;
  if (headDim % 2 !== 0) throw new Error(`head dim ${headDim} must be even (RoPE)`);
  const block = kq ? 256 : type === 'q8_0' || type === 'q4_0' ? 32 : 1;
  for (const [what, n] of [['nEmbd', nEmbd], ['nFf', nFf]] as const) {
    if (n % block !== 0) throw new Error(`${what} = ${n} must be a multiple of ${block} for type ${type} (ggml row block size)`);
  }

  const vocab = await readGgufRaw(opts.vocabFrom);
  const tokens = vocab.metadata.get('tokenizer.ggml.tokens');
  if (!tokens || tokens.type !== 'array') throw new Error(`${opts.vocabFrom}: no tokenizer.ggml.tokens`);
  const nVocab = (tokens.value as ArrayLike<unknown>).length;
  const num = (k: string): number | undefined => {
    const v = vocab.metadata.get(k);
    return v && v.type !== 'array' ? Number(v.value) : undefined;
  };
  const bool = (k: string): boolean | undefined => {
    const v = vocab.metadata.get(k);
    return v && v.type === 'bool' ? v.value : undefined;
  };

  const A = (k: string) => `${arch}.${k}`;
  const metadata: Array<[string, GgufMetaValue]> = [
    ['general.architecture', gv.str(arch)],
    ['general.type', gv.str('model')],
    ['general.name', gv.str(opts.name ?? `specdec-random-${arch}-${type}`)],
    ['general.file_type', gv.u32(RANDOM_MODEL_FILE_TYPE[type])],
    ['general.quantization_version', gv.u32(2)],
    [A('vocab_size'), gv.u32(nVocab)],
    [A('context_length'), gv.u32(nCtx)],
    [A('embedding_length'), gv.u32(nEmbd)],
    [A('block_count'), gv.u32(nLayer)],
    [A('feed_forward_length'), gv.u32(nFf)],
    [A('attention.head_count'), gv.u32(nHead)],
    [A('attention.head_count_kv'), gv.u32(nHeadKv)],
    [A('rope.freq_base'), gv.f32(ropeTheta)],
    [A('attention.layer_norm_rms_epsilon'), gv.f32(rmsEps)],
  ];
  if (arch === 'llama') metadata.push([A('rope.dimension_count'), gv.u32(headDim)]);
  if (arch === 'qwen3') {
    metadata.push([A('attention.key_length'), gv.u32(headDim)]);
    metadata.push([A('attention.value_length'), gv.u32(headDim)]);
  }
  for (const [k, v] of vocab.metadata) if (k.startsWith('tokenizer.')) metadata.push([k, v]);

  const embdStd = opts.embdStd ?? (tied ? 0.02 : 1);
  const outScale = opts.outScale ?? 4;
  const tensors: GgufTensorSpec[] = [];
  const mat = (name: string, ne0: number, ne1: number, std: number) =>
    tensors.push({ name, dims: [ne0, ne1], type: gtype, data: normalRows(seed, name, ne0, std) });
  const vec = (name: string, n: number, std: number, mean: number) =>
    tensors.push({ name, dims: [n], type: GGML_TYPE.F32, data: normalVector(seed, name, n, std, mean) });

  const nQ = nHead * headDim;
  const nKv = nHeadKv * headDim;
  mat('token_embd.weight', nEmbd, nVocab, embdStd);
  for (let i = 0; i < nLayer; i++) {
    const b = `blk.${i}.`;
    vec(b + 'attn_norm.weight', nEmbd, 0.1, 1);
    mat(b + 'attn_q.weight', nEmbd, nQ, 1 / M_sqrt(nEmbd));
    mat(b + 'attn_k.weight', nEmbd, nKv, 1 / M_sqrt(nEmbd));
    mat(b + 'attn_v.weight', nEmbd, nKv, 1 / M_sqrt(nEmbd));
    if (arch === 'qwen2') {
      vec(b + 'attn_q.bias', nQ, 0.1, 0);
      vec(b + 'attn_k.bias', nKv, 0.1, 0);
      vec(b + 'attn_v.bias', nKv, 0.1, 0);
    }
    if (arch === 'qwen3') {
      vec(b + 'attn_q_norm.weight', headDim, 0.1, 1);
      vec(b + 'attn_k_norm.weight', headDim, 0.1, 1);
    }
    mat(b + 'attn_output.weight', nQ, nEmbd, 1 / M_sqrt(nQ));
    vec(b + 'ffn_norm.weight', nEmbd, 0.1, 1);
    mat(b + 'ffn_gate.weight', nEmbd, nFf, 1 / M_sqrt(nEmbd));
    mat(b + 'ffn_up.weight', nEmbd, nFf, 1 / M_sqrt(nEmbd));
    mat(b + 'ffn_down.weight', nFf, nEmbd, 1 / M_sqrt(nFf));
  }
  vec('output_norm.weight', nEmbd, 0.1, 1);
  if (!tied) mat('output.weight', nEmbd, nVocab, outScale / M_sqrt(nEmbd));

  const info: RandomModelInfo = {
    arch, type, nVocab, nEmbd, nLayer, nHead, nHeadKv, headDim, nFf, nCtx, tiedEmbeddings: tied,
    bosId: num('tokenizer.ggml.bos_token_id'), eosId: num('tokenizer.ggml.eos_token_id'), addBos: bool('tokenizer.ggml.add_bos_token'),
  };
  return { spec: { metadata, tensors }, info };
}

/**
 * Write a runnable random-weight model (see the header of this file for names, shapes and scales).
 * K-quant types need nEmbd and nFf multiples of 256 (defaults 256 / 512 for them).
 */
export async function writeRandomModel(opts: RandomModelOptions): Promise<void> {
  await writeRandomModelWithInfo(opts);
}

/** Like writeRandomModel, also returning the model's sizes and the file size. */
export async function writeRandomModelWithInfo(opts: RandomModelOptions): Promise<RandomModelInfo & { fileSize: number }> {
  const { spec, info } = await buildRandomModelSpec(opts);
  await writeGguf(opts.path, spec);
  return { ...info, fileSize: (await fs.promises.stat(opts.path)).size };
}

/** Bump when the generated weights or layout change, so cached files are regenerated. */
export const RANDOM_MODEL_VERSION = 1;

/**
 * Path of a random model with these options, cached under os.tmpdir()/specdec-random-models (or `dir`):
 * written once (atomically, via a temporary file and rename) and reused by later tests and runs.
 */
export async function cachedRandomModel(opts: Omit<RandomModelOptions, 'path'>, dir?: string): Promise<string> {
  const cacheDir = dir ?? path.join(os.tmpdir(), 'specdec-random-models');
  await fs.promises.mkdir(cacheDir, { recursive: true });
  const st = await fs.promises.stat(opts.vocabFrom);
  const key = crypto.createHash('sha1')
    .update(JSON.stringify({ v: RANDOM_MODEL_VERSION, opts, vocab: [path.resolve(opts.vocabFrom), st.size, st.mtimeMs] }))
    .digest('hex').slice(0, 16);
  const file = path.join(cacheDir, `${opts.arch}-${opts.type}-${key}.gguf`);
  if (fs.existsSync(file)) return file;
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeRandomModel({ ...opts, path: tmp });
    await fs.promises.rename(tmp, file);
  } finally {
    await fs.promises.rm(tmp, { force: true });
  }
  return file;
}
