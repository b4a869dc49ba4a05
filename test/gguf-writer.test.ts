// Tests of the test utilities: the GGUF writer and encoders, random models (loaded and run by llama.cpp
// through node-llama-cpp), corrupt variants, and the node-llama-cpp greedy reference wrapper.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { loadModel } from '../lib';
import { binding } from '../lib/binding';
import { readGguf } from '../lib/gguf/reader';
import {
  CORRUPT_KINDS, GGML_TYPE, bf16ToFp32, decodeTensor, encodeTensor, fp16ToFp32, fp32ToBf16, fp32ToFp16, gv,
  readGgufRaw, writeCorruptVariants, writeGguf,
} from './utils/gguf-writer';
import { RandomModelArch, RandomModelType, Rng, writeRandomModelWithInfo } from './utils/random-model';
import { llamaCppGreedy, llamaCppGreedyWithInfo, NLC_KERNELS_DIFFER } from './utils/reference';
import { firstDiff, gapAt } from './utils/engine';
import { describeShared } from './utils/shared';

let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-gguf-writer-')); });
afterAll(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

describe('fp16 / bf16 conversion', () => {
  it('rounds to nearest even like ggml', () => {
    expect(fp32ToFp16(1)).toBe(0x3c00);
    expect(fp32ToFp16(-2)).toBe(0xc000);
    expect(fp32ToFp16(65504)).toBe(0x7bff);
    expect(fp32ToFp16(1e6)).toBe(0x7c00);
    expect(fp32ToFp16(2 ** -24)).toBe(0x0001);
    expect(fp32ToFp16(2 ** -25)).toBe(0x0000); // tie -> even
    expect(fp32ToFp16(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(fp32ToFp16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(fp16ToFp32(0x3555)).toBeCloseTo(0.33325, 5);
    expect(fp32ToBf16(1)).toBe(0x3f80);
    expect(bf16ToFp32(fp32ToBf16(3.14159))).toBe(3.140625);
    const rng = new Rng(3, 'fp16');
    for (let i = 0; i < 1000; i++) {
      const v = Math.fround(rng.normal() * 100);
      expect(Math.abs(fp16ToFp32(fp32ToFp16(v)) - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25);
    }
  });
});

describe('tensor encoders', () => {
  const n = 256 * 32;
  const x = new Float32Array(n);
  const rng = new Rng(5, 'enc');
  for (let i = 0; i < n; i++) x[i] = rng.normal();
  // relative RMS error bounds (normal data): F16 ~3e-4, BF16 ~2e-3, Q8_0 ~5e-3, Q6_K ~1e-2, Q5_K ~3e-2, Q4_K/Q4_0 ~7e-2
  const cases: Array<[string, number, number, number]> = [
    ['F32', GGML_TYPE.F32, 4, 0], ['F16', GGML_TYPE.F16, 2, 1e-3], ['BF16', GGML_TYPE.BF16, 2, 5e-3],
    ['Q8_0', GGML_TYPE.Q8_0, 34 / 32, 1e-2], ['Q4_0', GGML_TYPE.Q4_0, 18 / 32, 0.15], ['Q4_K', GGML_TYPE.Q4_K, 144 / 256, 0.12],
    ['Q5_K', GGML_TYPE.Q5_K, 176 / 256, 0.06], ['Q6_K', GGML_TYPE.Q6_K, 210 / 256, 0.03],
  ];
  // checked against ggml's own decoding (its type traits, through a test hook of the addon), not
  // against the writer's decoder alone: an encoder and decoder wrong the same way would round-trip
  it.each(cases)('%s: ggml decodes what the encoder wrote within its quantization error, and decodeTensor as ggml does', (_name, type, bytesPerValue, maxRelRmse) => {
    const enc = encodeTensor(type, x);
    expect(enc.length).toBe(n * bytesPerValue);
    const y = binding()._ggmlDequantize(type, enc, n);
    let se = 0, sx = 0;
    for (let i = 0; i < n; i++) { se += (x[i] - y[i]) ** 2; sx += x[i] ** 2; }
    expect(Math.sqrt(se / sx)).toBeLessThanOrEqual(maxRelRmse);
    expect(Buffer.from(decodeTensor(type, enc, n).buffer).equals(Buffer.from(y.buffer))).toBe(true);
  });

  it('rejects values that are not a whole number of blocks', () => {
    expect(() => encodeTensor(GGML_TYPE.Q4_K, new Float32Array(128))).toThrow(/block size 256/);
    expect(() => encodeTensor(GGML_TYPE.Q8_0, new Float32Array(33))).toThrow(/block size 32/);
  });
});

describe('writeGguf', () => {
  it('round-trips every metadata type and the tensor layout through lib/gguf/reader', async () => {
    const file = path.join(tmp, 'all-types.gguf');
    const f32 = new Float32Array([0.5, -1.25, 3e-8]);
    const i32 = new Int32Array([-7, 0, 2147483647]);
    const strs = ['a', 'β', '', '<0x0A>'];
    const t0 = new Float32Array(64 * 3).map((_, i) => i / 7);
    const t1 = new Float32Array(32 * 2).map((_, i) => Math.sin(i));
    const res = await writeGguf(file, {
      metadata: [
        ['general.architecture', 'llama'],
        ['general.alignment', gv.u32(64)],
        ['t.u8', gv.u8(255)], ['t.i8', gv.i8(-128)], ['t.u16', gv.u16(65535)], ['t.i16', gv.i16(-32768)],
        ['t.u32', gv.u32(4294967295)], ['t.i32', gv.i32(-2147483648)], ['t.f32', gv.f32(1.5)],
        ['t.bool', true], ['t.string', 'héllo'], ['t.u64', gv.u64(2n ** 63n + 5n)], ['t.i64', gv.i64(-(2n ** 62n))],
        ['t.f64', gv.f64(Math.PI)], ['t.arr.str', strs], ['t.arr.f32', f32], ['t.arr.i32', i32],
        ['t.arr.u8', gv.arr('u8', [1, 2, 3])], ['t.arr.bool', [true, false]],
      ],
      tensors: [
        { name: 'a', dims: [64, 3], type: GGML_TYPE.F32, data: t0 },
        { name: 'b', dims: [32, 2], type: GGML_TYPE.Q8_0, data: t1 },
        { name: 'c', dims: [5], type: GGML_TYPE.F16, data: new Float32Array([1, 2, 3, 4, 5]) },
      ],
    });
    expect(res.alignment).toBe(64);
    expect(res.dataOffset % 64).toBe(0);

    const g = await readGguf(file);
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(64);
    expect(g.dataOffset).toBe(res.dataOffset);
    expect(g.fileSize).toBe(fs.statSync(file).size);
    const m = g.metadata;
    expect(m.get('general.architecture')).toBe('llama');
    expect(m.get('t.u8')).toBe(255);
    expect(m.get('t.i8')).toBe(-128);
    expect(m.get('t.u16')).toBe(65535);
    expect(m.get('t.i16')).toBe(-32768);
    expect(m.get('t.u32')).toBe(4294967295);
    expect(m.get('t.i32')).toBe(-2147483648);
    expect(m.get('t.f32')).toBe(1.5);
    expect(m.get('t.bool')).toBe(true);
    expect(m.get('t.string')).toBe('héllo');
    expect(BigInt(m.get('t.u64') as bigint)).toBe(2n ** 63n + 5n);
    expect(BigInt(m.get('t.i64') as bigint)).toBe(-(2n ** 62n));
    expect(m.get('t.f64')).toBe(Math.PI);
    expect([...(m.get('t.arr.str') as string[])]).toEqual(strs);
    expect([...(m.get('t.arr.f32') as Float32Array)]).toEqual([...f32]);
    expect([...(m.get('t.arr.i32') as Int32Array)]).toEqual([...i32]);
    expect(Array.from(m.get('t.arr.u8') as ArrayLike<number>)).toEqual([1, 2, 3]);
    expect(Array.from(m.get('t.arr.bool') as ArrayLike<boolean>)).toEqual([true, false]);
    expect(g.tensors.map((t) => [t.name, t.dims, t.type])).toEqual([
      ['a', [64, 3], 0], ['b', [32, 2], 8], ['c', [5], 1],
    ]);
    for (const t of g.tensors) expect(Number(t.offset) % 64).toBe(0);

    // the data lies where the header says
    const buf = fs.readFileSync(file);
    const at = (i: number) => g.dataOffset + Number(g.tensors[i].offset);
    expect([...decodeTensor(GGML_TYPE.F32, buf.subarray(at(0)), 64 * 3)]).toEqual([...t0]);
    expect([...decodeTensor(GGML_TYPE.Q8_0, buf.subarray(at(1)), 64)]).toEqual([...decodeTensor(GGML_TYPE.Q8_0, encodeTensor(GGML_TYPE.Q8_0, t1), 64)]);
    expect([...decodeTensor(GGML_TYPE.F16, buf.subarray(at(2)), 5)]).toEqual([1, 2, 3, 4, 5]);

    // and the type-keeping reader agrees
    const raw = await readGgufRaw(file);
    expect(raw.metadata.get('t.u16')).toEqual({ type: 'u16', value: 65535 });
    expect(raw.dataOffset).toBe(g.dataOffset);
  });
});

describeShared('node-llama-cpp reference wrapper', (shared) => {
  interface RefEntry { prompt_tokens: number[]; generated_tokens: number[] }
  const load = (name: string) => JSON.parse(fs.readFileSync(path.join(shared, 'models', 'reference', name), 'utf8')) as RefEntry[];

  it('reproduces stories260K-greedy.json', async () => {
    const ref = load('stories260K-greedy.json');
    const got = await llamaCppGreedy(path.join(shared, 'models', 'stories260K.gguf'), ref.map((r) => r.prompt_tokens), 64, { contextSize: 2048, threads: 1 });
    expect(got).toEqual(ref.map((r) => r.generated_tokens));
  });

  it('reproduces code-target-greedy.json (2 threads; includes early stops at end-of-generation)', async () => {
    const ref = load('code-target-greedy.json');
    const file = path.join(shared, 'models', 'code', 'code-target-q8_0.gguf');
    const got = await llamaCppGreedy(file, ref.map((r) => r.prompt_tokens), 64, { threads: 2 });
    if (!NLC_KERNELS_DIFFER) {
      expect(got).toEqual(ref.map((r) => r.generated_tokens));
      return;
    }
    // node-llama-cpp's kernels differ from the reference's here (AMX CPUs): every departure is a near-tie
    // of the model's logits (specdec's ggml path, the reference's kernels)
    const m = await loadModel(file, { cpuKernels: 'ggml' });
    try {
      for (let i = 0; i < ref.length; i++) {
        const at = firstDiff(got[i], ref[i].generated_tokens);
        if (at < 0 || at >= Math.min(got[i].length, ref[i].generated_tokens.length)) {
          if (at >= 0) expect(got[i].length).toBe(ref[i].generated_tokens.length);
          continue;
        }
        const gap = await gapAt(m, ref[i].prompt_tokens, ref[i].generated_tokens, got[i], at, 1);
        expect({ prompt: i, at, nearTie: Math.abs(gap) <= 0.1, gap }).toEqual({ prompt: i, at, nearTie: true, gap });
      }
    } finally {
      await m.dispose();
    }
  }, 300000);

  it('reports node-llama-cpp failures clearly', async () => {
    await expect(llamaCppGreedy(path.join(shared, 'models', 'vocab', 'ggml-vocab-llama-spm.gguf'), [[1]], 1))
      .rejects.toThrow(/node-llama-cpp reference failed .*ggml-vocab-llama-spm\.gguf[\s\S]*missing tensor 'token_embd.weight'/);
  });
});

describeShared('random models run in llama.cpp', (shared) => {
  const vocab = (name: string) => path.join(shared, 'models', 'vocab', name);
  const TYPES: RandomModelType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k'];
  const ARCHS: Array<[RandomModelArch, string]> = [
    ['llama', 'ggml-vocab-llama-spm.gguf'], ['qwen2', 'ggml-vocab-qwen2.gguf'], ['qwen3', 'ggml-vocab-qwen2.gguf'],
  ];
  // every type on llama (32k vocabulary); qwen2 and qwen3 (151k vocabulary, where the K-quant files
  // take minutes to write) with one type each: the types are encoded independently of the
  // architecture, whose own tensors (biases, Q/K norms) each case still checks
  const cases = [
    ...TYPES.map((type) => [ARCHS[0][0], type, ARCHS[0][1]] as const),
    [ARCHS[1][0], 'q8_0' as RandomModelType, ARCHS[1][1]] as const,
    [ARCHS[2][0], 'f16' as RandomModelType, ARCHS[2][1]] as const,
  ];

  it.each(cases)('%s %s: loads, greedy is deterministic and not degenerate, metadata round-trips', async (arch, type, v) => {
    const file = path.join(tmp, `${arch}-${type}.gguf`);
    const t0 = Date.now();
    const info = await writeRandomModelWithInfo({ path: file, arch, type, vocabFrom: vocab(v), seed: 11 });
    const writeMs = Date.now() - t0;
    try {
      // metadata round-trip through lib/gguf/reader
      const g = await readGguf(file);
      const m = g.metadata;
      expect(m.get('general.architecture')).toBe(arch);
      expect(m.get(`${arch}.embedding_length`)).toBe(info.nEmbd);
      expect(m.get(`${arch}.block_count`)).toBe(info.nLayer);
      expect(m.get(`${arch}.feed_forward_length`)).toBe(info.nFf);
      expect(m.get(`${arch}.attention.head_count`)).toBe(info.nHead);
      expect(m.get(`${arch}.attention.head_count_kv`)).toBe(info.nHeadKv);
      expect(m.get(`${arch}.context_length`)).toBe(512);
      expect((m.get('tokenizer.ggml.tokens') as string[]).length).toBe(info.nVocab);
      const src = await readGguf(vocab(v));
      for (const [k, val] of src.metadata) {
        if (!k.startsWith('tokenizer.')) continue;
        const got = m.get(k);
        if (ArrayBuffer.isView(val) || Array.isArray(val)) expect(Array.from(got as ArrayLike<unknown>)).toEqual(Array.from(val as ArrayLike<unknown>));
        else expect(got).toEqual(val);
      }
      const embd = g.tensors.find((t) => t.name === 'token_embd.weight')!;
      expect(embd.dims).toEqual([info.nEmbd, info.nVocab]);
      expect(g.tensors.find((t) => t.name === 'output_norm.weight')!.type).toBe(GGML_TYPE.F32);

      // llama.cpp: the same prompts twice in one process (the sequence is cleared in between)
      const bos = info.bosId ?? 1;
      const prompts = [[bos, 100, 200, 300], [bos, 5000, 17, 42, 9]];
      const r = await llamaCppGreedyWithInfo(file, [...prompts, ...prompts], 64, { threads: 1 });
      expect(r.tokens[2]).toEqual(r.tokens[0]);
      expect(r.tokens[3]).toEqual(r.tokens[1]);
      const distinct = r.tokens.slice(0, 2).map((s) => new Set(s).size);
      // eslint-disable-next-line no-console
      console.log(`${arch} ${type}: ${(info.fileSize / 1e6).toFixed(1)} MB, write ${writeMs} ms, llama.cpp load ${r.info.loadMs.toFixed(0)} ms, ` +
        `lengths ${r.tokens.slice(0, 2).map((s) => s.length)}, distinct ${distinct}`);
      for (let i = 0; i < 2; i++) {
        expect(r.tokens[i].length).toBeGreaterThan(0);
        expect(distinct[i]).toBeGreaterThanOrEqual(Math.min(16, Math.ceil(r.tokens[i].length / 4)));
        for (const t of r.tokens[i]) expect(t).toBeLessThan(info.nVocab);
      }
    } finally {
      fs.rmSync(file, { force: true });
    }
  }, 300000);

  it('tied embeddings (no output.weight) load and are not degenerate', async () => {
    const file = path.join(tmp, 'llama-tied.gguf');
    await writeRandomModelWithInfo({ path: file, arch: 'llama', type: 'f16', vocabFrom: vocab('ggml-vocab-llama-spm.gguf'), tiedEmbeddings: true, seed: 3 });
    const g = await readGguf(file);
    expect(g.tensors.some((t) => t.name === 'output.weight')).toBe(false);
    const [a] = await llamaCppGreedy(file, [[1, 100, 200, 300]], 64, { threads: 1 });
    expect(new Set(a).size).toBeGreaterThanOrEqual(16);
  });

  it('quantized blocks decode as ggml decodes them (Q4_K/Q5_K/Q6_K model ≈ its dequantized F32 twin)', async () => {
    // If a block layout were wrong, llama.cpp would compute with scrambled weights and the greedy tokens
    // of a quantized model and of an F32 model holding our own dequantization of the same blocks would
    // disagree from the first token. They may differ later: ggml quantizes activations to 8 bits in the
    // quantized dot products.
    const { buildRandomModelSpec } = await import('./utils/random-model');
    const prompts = Array.from({ length: 6 }, (_, i) => [1, 100 + 997 * i, 3000 + 31 * i, 50 + 7 * i]);
    for (const type of ['q4_k', 'q5_k', 'q6_k', 'q4_0', 'q8_0'] as RandomModelType[]) {
      const opts = { path: '', arch: 'llama' as const, type, vocabFrom: vocab('ggml-vocab-llama-spm.gguf'), nEmbd: 256, nFf: 512, seed: 7 };
      const q = path.join(tmp, `twin-${type}.gguf`);
      const d = path.join(tmp, `twin-${type}-deq.gguf`);
      await writeGguf(q, (await buildRandomModelSpec(opts)).spec);
      const { spec } = await buildRandomModelSpec(opts);
      for (const t of spec.tensors) {
        if (t.type === GGML_TYPE.F32) continue;
        const rows = t.data as (r: number, n: number) => Float32Array;
        const qt = t.type;
        t.data = (r, n) => { const v = rows(r, n); return decodeTensor(qt, encodeTensor(qt, v), v.length); };
        t.type = GGML_TYPE.F32;
      }
      await writeGguf(d, spec);
      const a = await llamaCppGreedy(q, prompts, 4, { threads: 1 });
      const b = await llamaCppGreedy(d, prompts, 4, { threads: 1 });
      const firstSame = a.filter((s, i) => s[0] === b[i][0]).length;
      // eslint-disable-next-line no-console
      console.log(`${type}: first token equal to the dequantized twin's on ${firstSame}/6 prompts`);
      expect(firstSame).toBeGreaterThanOrEqual(4);
      fs.rmSync(q, { force: true });
      fs.rmSync(d, { force: true });
    }
  }, 300000);

  it('Q8_0 re-encoding of the code target reproduces its blocks byte for byte', async () => {
    const file = path.join(shared, 'models', 'code', 'code-target-q8_0.gguf');
    const raw = await readGgufRaw(file);
    const t = raw.tensors.find((x) => x.type === GGML_TYPE.Q8_0)!;
    const nBlocks = 512;
    const fd = fs.openSync(file, 'r');
    const bytes = Buffer.alloc(nBlocks * 34);
    fs.readSync(fd, bytes, 0, bytes.length, raw.dataOffset + t.offset);
    fs.closeSync(fd);
    const again = encodeTensor(GGML_TYPE.Q8_0, decodeTensor(GGML_TYPE.Q8_0, bytes, nBlocks * 32));
    expect(Buffer.from(again).equals(bytes)).toBe(true);
  });

  it('corrupt variants fail to load in llama.cpp with the expected errors', async () => {
    const base = path.join(tmp, 'base.gguf');
    await writeRandomModelWithInfo({ path: base, arch: 'llama', type: 'f32', vocabFrom: vocab('ggml-vocab-llama-spm.gguf') });
    const variants = await writeCorruptVariants(base, path.join(tmp, 'corrupt'));
    expect(Object.keys(variants).sort()).toEqual([...CORRUPT_KINDS].sort());
    const expected: Record<string, RegExp> = {
      'truncated': /not within the file bounds/,
      'truncated-header': /failed to read/,
      'bad-magic': /magic/i,
      'bad-version': /version/,
      'missing-tensor': /missing tensor 'blk\.0\.attn_k\.weight'/,
      'wrong-shape': /tensor 'blk\.0\.ffn_up\.weight' has wrong shape/,
      'unknown-arch': /unknown model architecture: 'specdec-unknown-arch'/,
      'data-out-of-bounds': /failed to read tensor data|not within the file bounds/,
    };
    for (const [kind, file] of Object.entries(variants)) {
      await expect(llamaCppGreedy(file, [[1, 2]], 1)).rejects.toThrow(expected[kind]);
    }
    // lib/gguf/reader rejects the header-level corruptions
    await expect(readGguf(variants['bad-magic'])).rejects.toThrow();
    await expect(readGguf(variants['truncated-header'])).rejects.toThrow();
  }, 120000);
});
