// Hidden Transfer (arXiv 2404.12022): pseudo rows inside the target's own verification pass. The real
// rows' logits are bit-identical with and without the pseudo rows in the same pass (batch invariance
// survives them); the 'hidden-transfer' method is lossless (greedy identity with random and trained
// maps; chi-square at T = 0.8 with the wrong-verifier negative control); training the maps through the
// frozen upper layers lowers the held-out loss (fixed seed, small budget); typed errors for files of
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

const STARTS = ['Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a big', 'Tom and Sue', 'The sun was', 'A little bird', 'Mom said'];

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

describeShared('hidden transfer', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-ht-'));
  const corpusFile = path.join(tmp, 'stories.jsonl');
  const trained = path.join(tmp, 'ht.gguf');
  const random = path.join(tmp, 'ht-random.gguf');
  let model: Model;
  let report: TrainReport;

  beforeAll(async () => {
    model = await loadModel(stories);
    const s = await model.createSession({ contextSize: 512 });
    const lines: string[] = [];
    for (let i = 0; i < 40; i++) {
      s.truncate(0);
      const r = await s.generate(STARTS[i % STARTS.length], { maxTokens: 200, temperature: 1, topK: 0, topP: 1, minP: 0, seed: 900 + i }).result();
      lines.push(JSON.stringify({ text: STARTS[i % STARTS.length] + r.text }));
    }
    await s.dispose();
    fs.writeFileSync(corpusFile, lines.join('\n') + '\n');
    report = await trainDrafter(model, {
      kind: 'hidden-transfer', corpus: corpusFile, out: trained, tokens: 16_000, threads: 1, learningRate: 2e-3, validationFraction: 0.1, seed: 7,
      hiddenTransfer: { layer: 2, k: 2 },
    });
    const info = model.info;
    await writeTransfer(random, { nEmbd: info.embeddingLength, nVocab: info.vocabSize, nLayer: info.layerCount, layer: 2, k: 3, seed: 4, scale: 0.3 });
  }, 240_000);

  afterAll(async () => {
    await model?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('the real rows\' logits are bit-identical with and without the pseudo rows in the same pass', async () => {
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
      for (const file of [random, trained]) {
        const r = s.nativeSession()._evalTree(Int32Array.from(tokens), Int32Array.from(parents), file);
        expect(Buffer.compare(Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength), Buffer.from(r.logits.buffer, r.logits.byteOffset, r.logits.byteLength))).toBe(0);
        const k = file === random ? 3 : 2;
        expect(r.pseudo.length).toBe(tokens.length * k * V);
        expect(r.pseudo.every((x) => Number.isFinite(x))).toBe(true);
        // the pseudo rows are not the real rows' logits copied
        expect(r.pseudo.slice(0, V).some((x, i) => x !== plain[i])).toBe(true);
      }
      // a root alone (the first step after a prompt)
      const one = s.nativeSession()._evalTree(Int32Array.from([tokens[0]]), Int32Array.from([-1]));
      const oneT = s.nativeSession()._evalTree(Int32Array.from([tokens[0]]), Int32Array.from([-1]), random);
      expect(Buffer.compare(Buffer.from(one.buffer, one.byteOffset, one.byteLength), Buffer.from(oneT.logits.buffer, oneT.logits.byteOffset, oneT.logits.byteLength))).toBe(0);
    }
    await s.dispose();
  }, 60_000);

  it('training the maps through the frozen upper layers lowers the held-out loss and writes the documented layout', async () => {
    expect(report.kind).toBe('hidden-transfer');
    expect(report.tokens).toBeGreaterThanOrEqual(16_000);
    expect(report.validationLossAfter).toBeLessThan(report.validationLossBefore - 0.3);
    expect(report.headAccuracyAfter.length).toBe(2);
    expect(report.headAccuracyAfter[0]).toBeGreaterThan(report.headAccuracyBefore[0]);
    const f = await readGguf(trained);
    expect(f.metadata.get('general.architecture')).toBe('specdec-hidden-transfer');
    expect(f.metadata.get('specdec-hidden-transfer.transfer_layer')).toBe(2);
    expect(f.metadata.get('specdec-hidden-transfer.pseudo_count')).toBe(2);
    const w = f.tensors.find((t) => t.name === 'transfer.weight')!;
    expect(w.dims.map(Number)).toEqual([model.info.embeddingLength, model.info.embeddingLength, 2]);
    expect(fs.readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  async function greedy(file: string): Promise<{ drafted: number; accepted: number; forward: number; generated: number }> {
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

  it('greedy output is identical to autoregressive decoding with random and trained maps; one target pass per step, no drafter pass', async () => {
    const r = await greedy(random);
    expect(r.drafted).toBeGreaterThan(200);
    const t = await greedy(trained);
    expect(t.drafted).toBeGreaterThan(200);
    expect(t.accepted).toBeGreaterThan(2 * r.accepted);
    expect(t.accepted).toBeGreaterThan(30);
    // every token after the first of a step came without a pass of its own
    expect(t.forward).toBeLessThan(t.generated + STARTS.length);
  }, 120_000);

  async function sample(prompt: number[], n: number, seed0: number, o: GenerateOptions): Promise<{ counts: Map<string, number>; accepted: number }> {
    const s = await model.createSession({ contextSize: 256 });
    const counts = new Map<string, number>();
    let accepted = 0;
    for (let i = 0; i < n; i++) {
      const r = await s.generate(prompt, { maxTokens: 4, temperature: 0.8, topK: 0, topP: 1, minP: 0, seed: seed0 + i, verify: 'rejection', ...o }).result();
      const key = r.tokens.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
      accepted += r.stats.acceptedTokens;
    }
    await s.dispose();
    return { counts, accepted };
  }

  it('sampling at T = 0.8 follows the autoregressive distribution (chi-square, 10,000 samples)', async () => {
    const N = 10000;
    const p = model.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    const ref = await sample(p, N, 41_000_000, {});
    const got = await sample(p, N, 42_000_000, { method: 'hidden-transfer', heads: { file: trained } });
    expect(got.accepted).toBeGreaterThan(50);
    const [stat, dof] = chiSquare(ref.counts, got.counts, N, N);
    expect(dof).toBeGreaterThan(10);
    expect(Math.round(stat)).toBeLessThanOrEqual(chiCritical(dof));
  }, 300_000);

  it('the negative control: with a wrong verifier the same test rejects (fewer samples suffice)', async () => {
    const N = 3000;
    const p = model.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    const ref = await sample(p, N, 44_000_000, {});
    const biased = await sample(p, N, 43_000_000, { method: 'hidden-transfer', heads: { file: trained }, [TEST_BIASED_VERIFIER]: true } as GenerateOptions);
    const [stat, dof] = chiSquare(ref.counts, biased.counts, N, N);
    expect(stat).toBeGreaterThan(chiCritical(dof));
  }, 120_000);

  it('bad files give typed errors: another target, a layer the target lacks, truncated, not GGUF, corrupt; the session still works', async () => {
    const s = await model.createSession({ contextSize: 128 });
    const gen = (file: string) => s.generate('Once upon a time', { maxTokens: 4, method: 'hidden-transfer', heads: { file } }).result();
    const info = model.info;
    const other = path.join(tmp, 'other.gguf');
    await writeTransfer(other, { nEmbd: info.embeddingLength * 2, nVocab: info.vocabSize, nLayer: info.layerCount, layer: 2, k: 2, seed: 1, scale: 0.1 });
    await expect(gen(other)).rejects.toBeInstanceOf(HeadsMismatchError);
    const layer = path.join(tmp, 'layer.gguf');
    await writeTransfer(layer, { nEmbd: info.embeddingLength, nVocab: info.vocabSize, nLayer: info.layerCount, layer: info.layerCount, k: 2, seed: 1, scale: 0.1 });
    await expect(gen(layer)).rejects.toBeInstanceOf(HeadsMismatchError);
    const bytes = fs.readFileSync(trained);
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
    await expect(s.generate('x', { maxTokens: 2, method: 'medusa', heads: { file: trained } }).result()).rejects.toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'hidden-transfer' })).toThrow(InvalidOptionError);
    await expect(s.generate('x', { maxTokens: 2, method: 'auto', heads: { file: trained } }).result()).rejects.toThrow(InvalidOptionError);
    const ok = await gen(trained);
    expect(ok.tokens.length).toBe(4);
    await s.dispose();
  }, 60_000);
});
