// Chimera (arXiv 2402.15758) and Hidden Transfer (arXiv 2404.12022), on one corpus and one model load:
// - Chimera: training on distillation plus next-hidden-state regression lowers the held-out loss (fixed
//   seed, small budget) and writes the documented `specdec-chimera` layout; greedy identity with random
//   and trained weights (also through 'auto'); typed errors for files of another target, corrupt and
//   truncated files.
// - Hidden Transfer: the real rows' logits are bit-identical with and without the pseudo rows in the same
//   pass (batch invariance survives them); training the maps through the frozen upper layers lowers the
//   held-out loss; greedy identity with random and trained maps, one target pass per step; typed errors.
// - Both: chi-square at T = 0.8 against one autoregressive reference (10,000 samples each), and the
//   negative control (a wrong verifier is rejected).
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
import { chiCritical, chiSquare, sampleContinuations } from './utils/stats';

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

/** A Hidden Transfer file in the documented layout, random maps, written independently of the native writer. */
async function writeTransfer(file: string, o: { nEmbd: number; nVocab: number; nLayer: number; layer: number; k: number; seed: number; scale: number }) {
  const rng = new Rng(o.seed);
  const w = new Float32Array(o.nEmbd * o.nEmbd * o.k);
  for (let i = 0; i < w.length; i++) w[i] = (rng.uniform() * 2 - 1) * o.scale;
  const A = 'specdec-hidden-transfer.';
  await writeGguf(file, {
    metadata: {
      'general.architecture': 'specdec-hidden-transfer',
      [`${A}embedding_length`]: gv.u32(o.nEmbd),
      [`${A}vocab_size`]: gv.u32(o.nVocab),
      [`${A}target.block_count`]: gv.u32(o.nLayer),
      [`${A}target.architecture`]: 'llama',
      [`${A}transfer_layer`]: gv.u32(o.layer),
      [`${A}pseudo_count`]: gv.u32(o.k),
    },
    tensors: [{ name: 'transfer.weight', dims: [o.nEmbd, o.nEmbd, o.k], type: GGML_TYPE.F32, data: w }],
  });
}

describeShared('chimera and hidden transfer', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-chimera-ht-'));
  const corpusFile = path.join(tmp, 'stories.jsonl');
  const chimeraFile = path.join(tmp, 'chimera.gguf');
  const chimeraRandom = path.join(tmp, 'chimera-random.gguf');
  const transferFile = path.join(tmp, 'ht.gguf');
  const transferRandom = path.join(tmp, 'ht-random.gguf');
  let model: Model;
  let chimeraReport: TrainReport;
  let transferReport: TrainReport;

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
    chimeraReport = await trainDrafter(model, {
      kind: 'chimera', corpus: corpusFile, out: chimeraFile, tokens: 12_288, threads: 1, learningRate: 2e-3, validationFraction: 0.1, seed: 7,
    });
    transferReport = await trainDrafter(model, {
      kind: 'hidden-transfer', corpus: corpusFile, out: transferFile, tokens: 16_000, threads: 1, learningRate: 2e-3, validationFraction: 0.1, seed: 7,
      hiddenTransfer: { layer: 2, k: 2 },
    });
    const info = model.info;
    await writeChimera(chimeraRandom, { nEmbd: info.embeddingLength, nVocab: info.vocabSize, nLayer: info.layerCount, nHead: 8, nFf: 96, seed: 3, scale: 0.3 });
    await writeTransfer(transferRandom, { nEmbd: info.embeddingLength, nVocab: info.vocabSize, nLayer: info.layerCount, layer: 2, k: 3, seed: 4, scale: 0.3 });
  }, 240_000);

  afterAll(async () => {
    await model?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('chimera: training lowers the held-out loss (fixed seed, small budget) and writes the documented layout', async () => {
    expect(chimeraReport.kind).toBe('chimera');
    expect(chimeraReport.tokens).toBeGreaterThanOrEqual(12_288);
    expect(chimeraReport.validationLossAfter).toBeLessThan(chimeraReport.validationLossBefore - 0.5);
    expect(chimeraReport.validationAccuracyAfter).toBeGreaterThan(chimeraReport.validationAccuracyBefore);
    expect(chimeraReport.headAccuracyAfter.length).toBe(2);  // the first draft step, the second where the first was right
    expect(chimeraReport.tauAfter).toBeGreaterThan(chimeraReport.tauBefore);
    const f = await readGguf(chimeraFile);
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

  async function greedyChimera(file: string, methods: GenerateOptions['method'][]): Promise<{ drafted: number; accepted: number }> {
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

  it('chimera: greedy output is identical to autoregressive decoding with random weights (also through auto) and trained weights; trained drafts are accepted more', async () => {
    const r = await greedyChimera(chimeraRandom, ['chimera', 'auto']);
    expect(r.drafted).toBeGreaterThan(200);
    const t = await greedyChimera(chimeraFile, ['chimera']);
    expect(t.drafted).toBeGreaterThan(200);
    // seconds of training on a 260K-parameter model: weak, but clearly better than random weights
    expect(t.accepted).toBeGreaterThan(30);
    expect(t.accepted).toBeGreaterThan(2 * r.accepted);
  }, 120_000);

  it('chimera: bad files give typed errors: another target, truncated, header only, not GGUF, another architecture; the session still works', async () => {
    const s = await model.createSession({ contextSize: 128 });
    const gen = (file: string) => s.generate('Once upon a time', { maxTokens: 4, method: 'chimera', heads: { file } }).result();
    const info = model.info;
    const other = path.join(tmp, 'other.gguf');
    await writeChimera(other, { nEmbd: info.embeddingLength * 2, nVocab: info.vocabSize, nLayer: info.layerCount, nHead: 8, nFf: 32, seed: 1, scale: 0.1 });
    await expect(gen(other)).rejects.toBeInstanceOf(HeadsMismatchError);
    const otherLayers = path.join(tmp, 'other-layers.gguf');
    await writeChimera(otherLayers, { nEmbd: info.embeddingLength, nVocab: info.vocabSize, nLayer: info.layerCount + 1, nHead: 8, nFf: 32, seed: 1, scale: 0.1 });
    await expect(gen(otherLayers)).rejects.toBeInstanceOf(HeadsMismatchError);
    const bytes = fs.readFileSync(chimeraFile);
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
    await expect(s.generate('x', { maxTokens: 2, method: 'medusa', heads: { file: chimeraFile } }).result()).rejects.toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'chimera' })).toThrow(InvalidOptionError);
    const ok = await gen(chimeraFile);
    expect(ok.tokens.length).toBe(4);
    await s.dispose();
  }, 60_000);
  it('hidden-transfer: the real rows\' logits are bit-identical with and without the pseudo rows in the same pass', async () => {
    const s = await model.createSession({ contextSize: 512 });
    const V = model.info.vocabSize;
    for (const text of ['Once upon a time, there was a little girl named Lily.', 'Tom and Sue went to the park to play']) {
      s.truncate(0);
      await s.evaluate(model.tokenize(text));
      // a tree: the root, two children, a grandchild of each
      const toks = model.tokenize(' She saw a big');
      const tokens = [toks[0], toks[1], toks[2], toks[3], toks[1]];
      const parents = [-1, 0, 0, 1, 2];
      const plain = s.nativeSession()._evalTree(Int32Array.from(tokens), Int32Array.from(parents));
      for (const file of [transferRandom, transferFile]) {
        const r = s.nativeSession()._evalTree(Int32Array.from(tokens), Int32Array.from(parents), file);
        expect(Buffer.compare(Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength), Buffer.from(r.logits.buffer, r.logits.byteOffset, r.logits.byteLength))).toBe(0);
        const k = file === transferRandom ? 3 : 2;
        expect(r.pseudo.length).toBe(tokens.length * k * V);
        expect(r.pseudo.every((x) => Number.isFinite(x))).toBe(true);
        // the pseudo rows are not the real rows' logits copied
        expect(r.pseudo.slice(0, V).some((x, i) => x !== plain[i])).toBe(true);
      }
      // a root alone (the first step after a prompt)
      const one = s.nativeSession()._evalTree(Int32Array.from([tokens[0]]), Int32Array.from([-1]));
      const oneT = s.nativeSession()._evalTree(Int32Array.from([tokens[0]]), Int32Array.from([-1]), transferRandom);
      expect(Buffer.compare(Buffer.from(one.buffer, one.byteOffset, one.byteLength), Buffer.from(oneT.logits.buffer, oneT.logits.byteOffset, oneT.logits.byteLength))).toBe(0);
    }
    await s.dispose();
  }, 60_000);

  it('hidden-transfer: training the maps through the frozen upper layers lowers the held-out loss and writes the documented layout', async () => {
    expect(transferReport.kind).toBe('hidden-transfer');
    expect(transferReport.tokens).toBeGreaterThanOrEqual(16_000);
    expect(transferReport.validationLossAfter).toBeLessThan(transferReport.validationLossBefore - 0.3);
    expect(transferReport.headAccuracyAfter.length).toBe(2);
    expect(transferReport.headAccuracyAfter[0]).toBeGreaterThan(transferReport.headAccuracyBefore[0]);
    const f = await readGguf(transferFile);
    expect(f.metadata.get('general.architecture')).toBe('specdec-hidden-transfer');
    expect(f.metadata.get('specdec-hidden-transfer.transfer_layer')).toBe(2);
    expect(f.metadata.get('specdec-hidden-transfer.pseudo_count')).toBe(2);
    const w = f.tensors.find((t) => t.name === 'transfer.weight')!;
    expect(w.dims.map(Number)).toEqual([model.info.embeddingLength, model.info.embeddingLength, 2]);
    expect(fs.readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  async function greedyTransfer(file: string): Promise<{ drafted: number; accepted: number; forward: number; generated: number }> {
    const s = await model.createSession({ contextSize: 512 });
    const out = { drafted: 0, accepted: 0, forward: 0, generated: 0 };
    for (const text of STARTS) {
      s.truncate(0);
      const ar = await s.generate(text, { maxTokens: 96 }).result();
      s.truncate(0);
      const r = await s.generate(text, { maxTokens: 96, method: 'hidden-transfer', heads: { file } }).result();
      expect({ text, diff: firstDiff(r.tokens, ar.tokens) }).toEqual({ text, diff: -1 });
      out.drafted += r.stats.draftedTokens;
      out.accepted += r.stats.acceptedTokens;
      out.forward += r.stats.forwardPasses;
      out.generated += r.tokens.length;
    }
    await s.dispose();
    return out;
  }

  it('hidden-transfer: greedy output is identical to autoregressive decoding with random and trained maps; one target pass per step, no drafter pass', async () => {
    const r = await greedyTransfer(transferRandom);
    expect(r.drafted).toBeGreaterThan(200);
    const t = await greedyTransfer(transferFile);
    expect(t.drafted).toBeGreaterThan(200);
    expect(t.accepted).toBeGreaterThan(2 * r.accepted);
    expect(t.accepted).toBeGreaterThan(30);
    // every token after the first of a step came without a pass of its own
    expect(t.forward).toBeLessThan(t.generated + STARTS.length);
  }, 120_000);

  it('hidden-transfer: bad files give typed errors: another target, a layer the target lacks, truncated, not GGUF, corrupt; the session still works', async () => {
    const s = await model.createSession({ contextSize: 128 });
    const gen = (file: string) => s.generate('Once upon a time', { maxTokens: 4, method: 'hidden-transfer', heads: { file } }).result();
    const info = model.info;
    const other = path.join(tmp, 'other.gguf');
    await writeTransfer(other, { nEmbd: info.embeddingLength * 2, nVocab: info.vocabSize, nLayer: info.layerCount, layer: 2, k: 2, seed: 1, scale: 0.1 });
    await expect(gen(other)).rejects.toBeInstanceOf(HeadsMismatchError);
    const layer = path.join(tmp, 'layer.gguf');
    await writeTransfer(layer, { nEmbd: info.embeddingLength, nVocab: info.vocabSize, nLayer: info.layerCount, layer: info.layerCount, k: 2, seed: 1, scale: 0.1 });
    await expect(gen(layer)).rejects.toBeInstanceOf(HeadsMismatchError);
    const bytes = fs.readFileSync(transferFile);
    const truncated = path.join(tmp, 'truncated.gguf');
    fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 1000));
    await expect(gen(truncated)).rejects.toMatchObject({ code: 'ERR_TRUNCATED_FILE' });
    await expect(gen(truncated)).rejects.toBeInstanceOf(ModelFileError);
    const notGguf = path.join(tmp, 'not.gguf');
    fs.writeFileSync(notGguf, 'not a gguf file');
    await expect(gen(notGguf)).rejects.toMatchObject({ code: 'ERR_NOT_GGUF' });
    const corrupt = path.join(tmp, 'corrupt.gguf');
    const c = Buffer.from(bytes);
    const key = Buffer.from('specdec-hidden-transfer.pseudo_count');
    const at = c.indexOf(key);
    expect(at).toBeGreaterThan(0);
    c.writeUInt32LE(5, at + key.length + 4);  // after the key: u32 type, then the value
    fs.writeFileSync(corrupt, c);
    await expect(gen(corrupt)).rejects.toMatchObject({ code: 'ERR_TENSOR_SHAPE' });
    await expect(s.generate('x', { maxTokens: 2, method: 'medusa', heads: { file: transferFile } }).result()).rejects.toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'hidden-transfer' })).toThrow(InvalidOptionError);
    await expect(s.generate('x', { maxTokens: 2, method: 'auto', heads: { file: transferFile } }).result()).rejects.toThrow(InvalidOptionError);
    const ok = await gen(transferFile);
    expect(ok.tokens.length).toBe(4);
    await s.dispose();
  }, 60_000);
  const sample = (prompt: number[], n: number, seed0: number, o: GenerateOptions) => sampleContinuations(model, prompt, n, seed0, o);

  it('sampling at T = 0.8 with chimera and hidden-transfer follows the autoregressive distribution (chi-square, 10,000 samples each); a wrong verifier is rejected', async () => {
    const N = 10000;
    const p = model.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    const ref = await sample(p, N, 31_000_000, {});
    for (const [method, file, seed] of [['chimera', chimeraFile, 32_000_000], ['hidden-transfer', transferFile, 33_000_000]] as const) {
      const got = await sample(p, N, seed, { method, heads: { file }, draftMax: 4 });
      expect({ method, accepted: got.accepted > 50 }).toEqual({ method, accepted: true });  // drafts were accepted: the arm exercises the verifier
      const [stat, dof] = chiSquare(ref.counts, got.counts, N, N);
      expect(dof).toBeGreaterThan(10);
      expect({ method, ok: Math.round(stat) <= chiCritical(dof) }).toEqual({ method, ok: true });
    }
    // the negative control: the same test rejects a wrong verifier (grossly wrong: fewer samples suffice)
    const biased = await sample(p, 3000, 34_000_000, { method: 'hidden-transfer', heads: { file: transferFile }, draftMax: 4, [TEST_BIASED_VERIFIER]: true } as GenerateOptions);
    const [stat2, dof2] = chiSquare(ref.counts, biased.counts, N, 3000);
    expect(stat2).toBeGreaterThan(chiCritical(dof2));
  }, 400_000);
});
