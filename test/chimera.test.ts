// Chimera (arXiv 2402.15758): training on distillation plus next-hidden-state regression lowers the
// held-out loss (fixed seed, small budget) and writes the documented `specdec-chimera` layout; the
// 'chimera' method is lossless (greedy identity with random and trained weights, also through
// 'auto'; chi-square at T = 0.8 with the wrong-verifier negative control); typed errors for files of
// another target, corrupt and truncated files.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  HeadsMismatchError, InvalidOptionError, loadModel, ModelFileError, readGguf, trainDrafter,
  type GenerateOptions, type Model, type TrainReport,
} from '../lib';
import { TEST_BIASED_VERIFIER } from '../lib/session';
import { firstDiff } from './utils/engine';
import { GGML_TYPE, gv, writeGguf } from './utils/gguf-writer';
import { Rng } from './utils/random-model';
import { describeShared } from './utils/shared';
import { chiCritical, chiSquare } from './utils/stats';

const STARTS = [
  'Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a big', 'Tom and Sue', 'The sun was', 'A little bird', 'Mom said',
];

/** A Chimera file in the documented `specdec-chimera` layout, random weights, written independently of the native writer. */
async function writeChimera(file: string, o: { nEmbd: number; nVocab: number; nLayer: number; nHead: number; nFf: number; seed: number; scale: number }) {
  const rng = new Rng(o.seed);
  const rand = (n: number) => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = (rng.uniform() * 2 - 1) * o.scale; return a; };
  const ones = (n: number) => new Float32Array(n).fill(1);
  const d = o.nEmbd, ff = o.nFf;
  const t = (name: string, dims: number[], data: Float32Array) => ({ name, dims, type: GGML_TYPE.F32, data });
  const A = 'specdec-chimera.';
  await writeGguf(file, {
    metadata: {
      'general.architecture': 'specdec-chimera',
      [`${A}embedding_length`]: gv.u32(d),
      [`${A}feed_forward_length`]: gv.u32(ff),
      [`${A}attention.head_count`]: gv.u32(o.nHead),
      [`${A}attention.head_count_kv`]: gv.u32(o.nHead),
      [`${A}attention.layer_norm_rms_epsilon`]: gv.f32(1e-5),
      [`${A}rope.freq_base`]: gv.f32(10000),
      [`${A}context_length`]: gv.u32(2048),
      [`${A}vocab_size`]: gv.u32(o.nVocab),
      [`${A}target.block_count`]: gv.u32(o.nLayer),
      [`${A}target.layer`]: gv.u32(o.nLayer - 1),
      [`${A}target.architecture`]: 'llama',
    },
    tensors: [
      t('trigram.weight', [3 * d, 3 * d], rand(9 * d * d)), t('trigram.bias', [3 * d], rand(3 * d)), t('trigram_out.weight', [3 * d, d], rand(3 * d * d)),
      t('hidden_norm.weight', [d], ones(d)), t('blk.0.attn_norm.weight', [d], ones(d)),
      t('blk.0.attn_q.weight', [d, d], rand(d * d)), t('blk.0.attn_k.weight', [d, d], rand(d * d)), t('blk.0.attn_v.weight', [d, d], rand(d * d)),
      t('blk.0.attn_output.weight', [d, d], rand(d * d)), t('blk.0.ffn_norm.weight', [d], ones(d)),
      t('blk.0.ffn_gate.weight', [d, ff], rand(d * ff)), t('blk.0.ffn_up.weight', [d, ff], rand(d * ff)), t('blk.0.ffn_down.weight', [ff, d], rand(ff * d)),
      t('head_hidden.weight', [d, d], rand(d * d)), t('head_layer.weight', [d, d], rand(d * d)), t('head.bias', [d], rand(d)),
      t('output_norm.weight', [d], ones(d)),
    ],
  });
}

describeShared('chimera', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-chimera-'));
  const corpusFile = path.join(tmp, 'stories.jsonl');
  const trained = path.join(tmp, 'chimera.gguf');
  const random = path.join(tmp, 'chimera-random.gguf');
  let model: Model;
  let report: TrainReport;

  beforeAll(async () => {
    model = await loadModel(stories);
    // a corpus of the model's own stories (sampled, seeded)
    const s = await model.createSession({ contextSize: 512 });
    const lines: string[] = [];
    for (let i = 0; i < 40; i++) {
      s.truncate(0);
      const r = await s.generate(STARTS[i % STARTS.length], { maxTokens: 200, temperature: 1, topK: 0, topP: 1, minP: 0, seed: 700 + i }).result();
      lines.push(JSON.stringify({ text: STARTS[i % STARTS.length] + r.text }));
    }
    await s.dispose();
    fs.writeFileSync(corpusFile, lines.join('\n') + '\n');
    report = await trainDrafter(model, {
      kind: 'chimera', corpus: corpusFile, out: trained, tokens: 12_288, threads: 1, learningRate: 2e-3, validationFraction: 0.1, seed: 7,
    });
    const info = model.info;
    await writeChimera(random, { nEmbd: info.embeddingLength, nVocab: info.vocabSize, nLayer: info.layerCount, nHead: 8, nFf: 96, seed: 3, scale: 0.3 });
  }, 240_000);

  afterAll(async () => {
    await model?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('training lowers the held-out loss (fixed seed, small budget) and writes the documented layout', async () => {
    expect(report.kind).toBe('chimera');
    expect(report.tokens).toBeGreaterThanOrEqual(12_288);
    expect(report.validationLossAfter).toBeLessThan(report.validationLossBefore - 0.5);
    expect(report.validationAccuracyAfter).toBeGreaterThan(report.validationAccuracyBefore);
    expect(report.headAccuracyAfter.length).toBe(2);  // the first draft step, the second where the first was right
    expect(report.tauAfter).toBeGreaterThan(report.tauBefore);
    const f = await readGguf(trained);
    const meta = f.metadata;
    const d = model.info.embeddingLength;
    expect(meta.get('general.architecture')).toBe('specdec-chimera');
    expect(meta.get('specdec-chimera.embedding_length')).toBe(d);
    expect(meta.get('specdec-chimera.target.block_count')).toBe(model.info.layerCount);
    expect(meta.get('specdec-chimera.target.layer')).toBe(model.info.layerCount - 1);
    expect(meta.get('specdec-chimera.vocab_size')).toBe(model.info.vocabSize);
    const dims = new Map(f.tensors.map((t) => [t.name, t.dims.map(Number)]));
    expect(dims.get('trigram.weight')).toEqual([3 * d, 3 * d]);
    expect(dims.get('trigram_out.weight')).toEqual([3 * d, d]);
    expect(dims.get('head_hidden.weight')).toEqual([d, d]);
    expect(dims.get('head_layer.weight')).toEqual([d, d]);
    for (const n of ['trigram.bias', 'hidden_norm.weight', 'blk.0.attn_norm.weight', 'blk.0.attn_q.weight', 'blk.0.attn_k.weight', 'blk.0.attn_v.weight',
      'blk.0.attn_output.weight', 'blk.0.ffn_norm.weight', 'blk.0.ffn_gate.weight', 'blk.0.ffn_up.weight', 'blk.0.ffn_down.weight', 'head.bias', 'output_norm.weight']) {
      expect({ n, has: dims.has(n) }).toEqual({ n, has: true });
    }
    expect(fs.readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  async function greedy(file: string, methods: GenerateOptions['method'][]): Promise<{ drafted: number; accepted: number }> {
    const s = await model.createSession({ contextSize: 512 });
    let drafted = 0;
    let accepted = 0;
    for (const text of STARTS) {
      s.truncate(0);
      const ar = await s.generate(text, { maxTokens: 96 }).result();
      for (const method of methods) {
        s.truncate(0);
        const r = await s.generate(text, { maxTokens: 96, method, heads: { file } }).result();
        expect({ text, method, diff: firstDiff(r.tokens, ar.tokens) }).toEqual({ text, method, diff: -1 });
        if (method === 'chimera') {
          drafted += r.stats.draftedTokens;
          accepted += r.stats.acceptedTokens;
        }
      }
    }
    await s.dispose();
    return { drafted, accepted };
  }

  it('greedy output is identical to autoregressive decoding with random weights (also through auto) and trained weights; trained drafts are accepted more', async () => {
    const r = await greedy(random, ['chimera', 'auto']);
    expect(r.drafted).toBeGreaterThan(200);
    const t = await greedy(trained, ['chimera']);
    expect(t.drafted).toBeGreaterThan(200);
    // seconds of training on a 260K-parameter model: weak, but clearly better than random weights
    expect(t.accepted).toBeGreaterThan(30);
    expect(t.accepted).toBeGreaterThan(2 * r.accepted);
  }, 120_000);

  async function sample(prompt: number[], n: number, seed0: number, o: GenerateOptions): Promise<{ counts: Map<string, number>; accepted: number }> {
    const s = await model.createSession({ contextSize: 256 });
    const counts = new Map<string, number>();
    let accepted = 0;
    for (let i = 0; i < n; i++) {
      const r = await s.generate(prompt, { maxTokens: 3, temperature: 0.8, topK: 0, topP: 1, minP: 0, seed: seed0 + i, verify: 'rejection', ...o }).result();
      const key = r.tokens.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
      accepted += r.stats.acceptedTokens;
    }
    await s.dispose();
    return { counts, accepted };
  }

  it('sampling at T = 0.8 follows the autoregressive distribution (chi-square, 10,000 samples); a wrong verifier is rejected', async () => {
    const N = 10000;
    const p = model.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    const ref = await sample(p, N, 31_000_000, {});
    const got = await sample(p, N, 32_000_000, { method: 'chimera', heads: { file: trained }, draftMax: 16 });
    expect(got.accepted).toBeGreaterThan(50);  // drafts were accepted: the arm exercises the verifier
    const [stat, dof] = chiSquare(ref.counts, got.counts, N, N);
    expect(dof).toBeGreaterThan(10);
    expect(Math.round(stat)).toBeLessThanOrEqual(chiCritical(dof));
    const biased = await sample(p, N, 33_000_000, { method: 'chimera', heads: { file: trained }, draftMax: 16, [TEST_BIASED_VERIFIER]: true } as GenerateOptions);
    const [stat2, dof2] = chiSquare(ref.counts, biased.counts, N, N);
    expect(stat2).toBeGreaterThan(chiCritical(dof2));
  }, 300_000);

  it('bad files give typed errors: another target, truncated, header only, not GGUF, another architecture; the session still works', async () => {
    const s = await model.createSession({ contextSize: 128 });
    const gen = (file: string) => s.generate('Once upon a time', { maxTokens: 4, method: 'chimera', heads: { file } }).result();
    const info = model.info;
    const other = path.join(tmp, 'other.gguf');
    await writeChimera(other, { nEmbd: info.embeddingLength * 2, nVocab: info.vocabSize, nLayer: info.layerCount, nHead: 8, nFf: 32, seed: 1, scale: 0.1 });
    await expect(gen(other)).rejects.toBeInstanceOf(HeadsMismatchError);
    const otherLayers = path.join(tmp, 'other-layers.gguf');
    await writeChimera(otherLayers, { nEmbd: info.embeddingLength, nVocab: info.vocabSize, nLayer: info.layerCount + 1, nHead: 8, nFf: 32, seed: 1, scale: 0.1 });
    await expect(gen(otherLayers)).rejects.toBeInstanceOf(HeadsMismatchError);
    const bytes = fs.readFileSync(trained);
    const truncated = path.join(tmp, 'truncated.gguf');
    fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 1000));
    await expect(gen(truncated)).rejects.toMatchObject({ code: 'ERR_TRUNCATED_FILE' });
    const header = path.join(tmp, 'header.gguf');
    fs.writeFileSync(header, bytes.subarray(0, 40));
    await expect(gen(header)).rejects.toBeInstanceOf(ModelFileError);
    const notGguf = path.join(tmp, 'not.gguf');
    fs.writeFileSync(notGguf, 'not a gguf file');
    await expect(gen(notGguf)).rejects.toMatchObject({ code: 'ERR_NOT_GGUF' });
    // a corrupt tensor shape: the file of a smaller FFN claims the target's
    const corrupt = path.join(tmp, 'corrupt.gguf');
    const c = Buffer.from(bytes);
    const key = Buffer.from('specdec-chimera.feed_forward_length');
    const at = c.indexOf(key);
    expect(at).toBeGreaterThan(0);
    c.writeUInt32LE(c.readUInt32LE(at + key.length + 4) + 1, at + key.length + 4);  // after the key: u32 type, then the value
    fs.writeFileSync(corrupt, c);
    await expect(gen(corrupt)).rejects.toMatchObject({ code: 'ERR_TENSOR_SHAPE' });
    // a Chimera file is not Medusa heads, and 'chimera' needs its file
    await expect(s.generate('x', { maxTokens: 2, method: 'medusa', heads: { file: trained } }).result()).rejects.toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'chimera' })).toThrow(InvalidOptionError);
    const ok = await gen(trained);
    expect(ok.tokens.length).toBe(4);
    await s.dispose();
  }, 60_000);
});
