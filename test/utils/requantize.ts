/**
 * Rewrites a GGUF model with its matrices in other ggml types, the way llama.cpp's llama-quantize
 * chooses them for a file type (src/llama-quant.cpp, llama_tensor_get_type), simplified to the
 * recipes used here:
 *   q4_k_m: Q4_K; Q6_K for the output head (token_embd when tied) and for attn_v and ffn_down in
 *           the layers llama.cpp's use_more_bits() picks (first and last eighth, every third);
 *   q4_0:   Q4_0; Q6_K for the output head;
 *   f16, bf16: every matrix in that type.
 * Values are dequantized from the source and quantized with gguf-writer's reference quantizers.
 * Used by the benchmarks (bench/verify.mjs) to measure specdec's kernels on these weight types.
 */
import * as fs from 'fs';
import { GGML_TYPE, GgufTensorSpec, decodeTensor, ggmlTensorSize, gv, readGgufRaw, writeGguf } from './gguf-writer';

export type Recipe = 'q4_k_m' | 'q4_0' | 'f16' | 'bf16';

const FILE_TYPE: Record<Recipe, number> = { q4_k_m: 15, q4_0: 2, f16: 1, bf16: 32 };

function useMoreBits(i: number, n: number): boolean {
  return i < n / 8 || i >= (7 * n) / 8 || (i - Math.floor(n / 8)) % 3 === 2;
}

export function typeFor(recipe: Recipe, name: string, nLayer: number, hasOutput: boolean): number | undefined {
  const layer = /^blk\.(\d+)\./.exec(name);
  if (recipe === 'f16' || recipe === 'bf16') {
    if (/norm/.test(name) || !name.endsWith('.weight')) return undefined;
    return recipe === 'f16' ? GGML_TYPE.F16 : GGML_TYPE.BF16;
  }
  if (name === 'output.weight' || (!hasOutput && name === 'token_embd.weight')) return GGML_TYPE.Q6_K;
  if (name === 'token_embd.weight') return recipe === 'q4_k_m' ? GGML_TYPE.Q4_K : GGML_TYPE.Q4_0;
  if (!layer || !name.endsWith('.weight') || /norm/.test(name)) return undefined;  // norms, biases: unchanged
  if (recipe === 'q4_0') return GGML_TYPE.Q4_0;
  const i = Number(layer[1]);
  if ((name.includes('attn_v.') || name.includes('ffn_down.')) && useMoreBits(i, nLayer)) return GGML_TYPE.Q6_K;
  return GGML_TYPE.Q4_K;
}

/** Writes `src` requantized by `recipe` to `dst`. */
export async function requantize(src: string, dst: string, recipe: Recipe): Promise<void> {
  const raw = await readGgufRaw(src);
  const nLayer = new Set(raw.tensors.map((t) => /^blk\.(\d+)\./.exec(t.name)?.[1]).filter((x) => x !== undefined)).size;
  const hasOutput = raw.tensors.some((t) => t.name === 'output.weight');
  const fd = fs.openSync(src, 'r');
  try {
    const tensors: GgufTensorSpec[] = raw.tensors.map((t) => {
      if (t.size === undefined) throw new Error(`${t.name}: unsupported ggml type ${t.type}`);
      const n = t.dims.reduce((a, b) => a * b, 1);
      const bytes = new Uint8Array(t.size);
      fs.readSync(fd, bytes, 0, t.size, raw.dataOffset + t.offset);
      const type = t.dims.length === 2 ? typeFor(recipe, t.name, nLayer, hasOutput) : undefined;
      if (type === undefined || t.dims[0] % 256 !== 0) return { name: t.name, dims: [...t.dims], type: t.type, data: { raw: bytes } };
      ggmlTensorSize(type, t.dims);  // throws on a row length the type cannot hold
      return { name: t.name, dims: [...t.dims], type, data: decodeTensor(t.type, bytes, n) };
    });
    const metadata = [...raw.metadata.entries()].map(([k, v]) => (k === 'general.file_type' ? [k, gv.u32(FILE_TYPE[recipe])] : [k, v]) as [string, typeof v]);
    await writeGguf(dst, { version: raw.version, metadata, tensors });
  } finally {
    fs.closeSync(fd);
  }
}
