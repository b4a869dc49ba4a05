// Learned drafters: hidden-state taps (no bit of the logits changes), training Medusa heads on
// ggml-opt (held-out loss falls), the 'medusa' method (greedy identity with random and trained
// heads, chi-square at T = 0.8 with the wrong-verifier negative control), head files in the
// documented layout, and typed errors for every bad input (files, corpora, output paths, abort).
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import {
  HeadsMismatchError, InvalidOptionError, loadModel, ModelFileError, readGguf, trainDrafter, UnsupportedArchitectureError,
  type GenerateOptions, type Model, type TrainReport,
} from '../lib';
import { TEST_BIASED_VERIFIER } from '../lib/session';
import { firstDiff } from './utils/engine';
import { GGML_TYPE, gv, writeGguf } from './utils/gguf-writer';
import { Rng } from './utils/random-model';
import { describeShared } from './utils/shared';
import { chiCritical, chiSquare, sampleContinuations } from './utils/stats';

const STORY_STARTS = [
  'Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a big', 'Tom and Sue', 'The sun was', 'A little bird',
  'Mom said', 'There was a cat', 'The boy saw', 'Sara had a toy', 'In the park',
];

/** A Medusa head file in specdec's documented layout, written independently of the native writer. */
async function writeMedusaHeads(file: string, o: { nEmbd: number; nVocab: number; nLayer: number; heads: number; scale: number; seed: number }) {
  const rng = new Rng(o.seed);
  const w = new Float32Array(o.nEmbd * o.nEmbd * o.heads);
  for (let i = 0; i < w.length; i++) w[i] = (rng.uniform() * 2 - 1) * o.scale;
  const b = new Float32Array(o.nEmbd * o.heads);
  for (let i = 0; i < b.length; i++) b[i] = (rng.uniform() * 2 - 1) * o.scale;
  await writeGguf(file, {
    metadata: {
      'general.architecture': 'specdec-medusa',
      'specdec-medusa.head_count': gv.u32(o.heads),
      'specdec-medusa.embedding_length': gv.u32(o.nEmbd),
      'specdec-medusa.vocab_size': gv.u32(o.nVocab),
      'specdec-medusa.target.block_count': gv.u32(o.nLayer),
      'specdec-medusa.target.architecture': 'llama',
    },
    tensors: [
      { name: 'medusa.weight', dims: [o.nEmbd, o.nEmbd, o.heads], type: GGML_TYPE.F32, data: w },
      { name: 'medusa.bias', dims: [o.nEmbd, o.heads], type: GGML_TYPE.F32, data: b },
    ],
  });
}

/**
 * An EAGLE-3 head in llama.cpp's own `eagle3` GGUF layout (src/models/eagle3.cpp, llama-arch.cpp:
 * metadata keys and tensor names as its converter writes them), random weights.
 */
async function writeEagle3Head(file: string, o: {
  nEmbd: number; nVocab: number; targetHidden: number; targetLayers: number[]; nHead: number; nHeadKv: number; nFf: number;
  seed: number; scale: number; draftVocab?: number;
}) {
  const rng = new Rng(o.seed);
  const rand = (n: number, scale = o.scale) => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = (rng.uniform() * 2 - 1) * scale; return a; };
  const ones = (n: number) => new Float32Array(n).fill(1);
  const d = o.nEmbd, hd = d / o.nHead, nq = hd * o.nHead, nkv = hd * o.nHeadKv;
  const tensors: Parameters<typeof writeGguf>[1]['tensors'] = [
    { name: 'fc.weight', dims: [3 * o.targetHidden, d], type: GGML_TYPE.F32, data: rand(3 * o.targetHidden * d) },
    { name: 'blk.0.attn_norm.weight', dims: [d], type: GGML_TYPE.F32, data: ones(d) },
    { name: 'blk.0.attn_norm_2.weight', dims: [d], type: GGML_TYPE.F32, data: ones(d) },
    { name: 'blk.0.attn_q.weight', dims: [2 * d, nq], type: GGML_TYPE.F32, data: rand(2 * d * nq) },
    { name: 'blk.0.attn_k.weight', dims: [2 * d, nkv], type: GGML_TYPE.F32, data: rand(2 * d * nkv) },
    { name: 'blk.0.attn_v.weight', dims: [2 * d, nkv], type: GGML_TYPE.F32, data: rand(2 * d * nkv) },
    { name: 'blk.0.attn_output.weight', dims: [nq, d], type: GGML_TYPE.F32, data: rand(nq * d) },
    { name: 'blk.0.ffn_norm.weight', dims: [d], type: GGML_TYPE.F32, data: ones(d) },
    { name: 'blk.0.ffn_gate.weight', dims: [d, o.nFf], type: GGML_TYPE.F32, data: rand(d * o.nFf) },
    { name: 'blk.0.ffn_up.weight', dims: [d, o.nFf], type: GGML_TYPE.F32, data: rand(d * o.nFf) },
    { name: 'blk.0.ffn_down.weight', dims: [o.nFf, d], type: GGML_TYPE.F32, data: rand(o.nFf * d) },
    { name: 'output_norm.weight', dims: [d], type: GGML_TYPE.F32, data: ones(d) },
  ];
  if (o.draftVocab) {
    // a reduced draft vocabulary: its own head and d2t (absolute target ids, i64)
    tensors.push({ name: 'output.weight', dims: [d, o.draftVocab], type: GGML_TYPE.F32, data: rand(d * o.draftVocab, 0.5) });
    const d2t = new BigInt64Array(o.draftVocab);
    for (let i = 0; i < o.draftVocab; i++) d2t[i] = BigInt(i * 2);
    tensors.push({ name: 'd2t', dims: [o.draftVocab], type: GGML_TYPE.I64, data: { raw: new Uint8Array(d2t.buffer) } });
  }
  await writeGguf(file, {
    metadata: {
      'general.architecture': 'eagle3',
      'eagle3.context_length': gv.u32(2048),
      'eagle3.embedding_length': gv.u32(d),
      'eagle3.feed_forward_length': gv.u32(o.nFf),
      'eagle3.block_count': gv.u32(1),
      'eagle3.attention.head_count': gv.u32(o.nHead),
      'eagle3.attention.head_count_kv': gv.u32(o.nHeadKv),
      'eagle3.attention.layer_norm_rms_epsilon': gv.f32(1e-5),
      'eagle3.rope.freq_base': gv.f32(10000),
      'eagle3.vocab_size': gv.u32(o.nVocab),
      'eagle3.target_layers': gv.arr('i32', o.targetLayers),
      'eagle3.target_hidden_size': gv.u32(o.targetHidden),
      'eagle3.norm_before_residual': gv.bool(false),
    },
    tensors,
  });
}

describeShared('learned drafters', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-drafters-'));
  const corpusFile = path.join(tmp, 'stories.jsonl');
  const headsFile = path.join(tmp, 'stories-medusa.gguf');
  const eagleFile = path.join(tmp, 'stories-eagle3.gguf');
  let model: Model;
  let report: TrainReport;
  let eagleReport: TrainReport;
  let randomAcceptance = -1;

  beforeAll(async () => {
    model = await loadModel(stories);
    // a corpus of the model's own stories (sampled, seeded): 48 documents
    const s = await model.createSession({ contextSize: 512 });
    const lines: string[] = [];
    for (let i = 0; i < 48; i++) {
      s.truncate(0);
      const r = await s.generate(STORY_STARTS[i % STORY_STARTS.length], { maxTokens: 200, temperature: 1, topK: 0, topP: 1, minP: 0, seed: 100 + i }).result();
      lines.push(JSON.stringify({ text: STORY_STARTS[i % STORY_STARTS.length] + r.text }));
    }
    await s.dispose();
    fs.writeFileSync(corpusFile, lines.join('\n') + '\n');
    report = await trainDrafter(model, {
      kind: 'medusa', corpus: corpusFile, out: headsFile, tokens: 12_000, heads: 3, threads: 1, learningRate: 1e-2,
      validationFraction: 0.1, validationPositions: 256, sequenceLength: 128,
    });
    eagleReport = await trainDrafter(model, {
      kind: 'eagle3', corpus: corpusFile, out: eagleFile, tokens: 16_384, threads: 1, learningRate: 1e-3, validationFraction: 0.1,
    });
  }, 300_000);

  afterAll(async () => {
    await model?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('hidden-state taps change no bit of the logits; layer 0 is the token embedding', async () => {
    const s = await model.createSession({ contextSize: 256 });
    const toks = model.tokenize('Once upon a time, there was a little girl named Lily.');
    const plain = await s.evaluate(toks, { allLogits: true });
    s.truncate(0);
    const nLayer = model.info.layerCount;
    const nEmbd = model.info.embeddingLength;
    const layers = [0, nLayer >> 1, nLayer];
    const r = await s.evaluateHidden(toks, { layers });
    expect(Buffer.compare(Buffer.from(plain.buffer), Buffer.from(r.logits.buffer))).toBe(0);
    expect(r.hidden.length).toBe(toks.length * layers.length * nEmbd);
    expect(r.hidden.every((x) => Number.isFinite(x))).toBe(true);
    // layer 0's input is the token's embedding row (stories260K is F32)
    const f = await readGguf(stories);
    const te = f.tensors.find((t) => t.name === 'token_embd.weight')!;
    const fd = fs.openSync(stories, 'r');
    for (const [i, t] of toks.entries()) {
      const row = Buffer.alloc(nEmbd * 4);
      fs.readSync(fd, row, 0, row.length, Number(BigInt(f.dataOffset) + BigInt(te.offset)) + t * nEmbd * 4);
      const got = Buffer.from(r.hidden.buffer, r.hidden.byteOffset + (i * layers.length) * nEmbd * 4, nEmbd * 4);
      expect(Buffer.compare(row, got)).toBe(0);
    }
    fs.closeSync(fd);
    // the layers differ from each other (the taps are not one tensor read three times)
    const row0 = r.hidden.slice(nEmbd, 2 * nEmbd);
    const rowN = r.hidden.slice(2 * nEmbd, 3 * nEmbd);
    expect(row0.some((x, j) => x !== rowN[j])).toBe(true);
    // taps during a generation: the same greedy tokens as without
    s.truncate(0);
    const a = await s.generate(toks, { maxTokens: 40 }).result();
    await expect(s.evaluateHidden(toks, { layers: [nLayer + 1] })).rejects.toThrow(InvalidOptionError);
    await s.dispose();
    expect(a.tokens.length).toBe(40);
  }, 60_000);

  it('training lowers the held-out loss (soft cross-entropy to the target) and writes the documented layout', async () => {
    expect(report.validationLossAfter).toBeLessThan(report.validationLossBefore);
    expect(report.tokens).toBeGreaterThanOrEqual(12_000);
    expect(report.steps).toBeGreaterThan(100);
    expect(report.headAccuracyAfter.length).toBe(3);
    expect(report.headAccuracyAfter[0]).toBeGreaterThan(report.headAccuracyBefore[0]);
    const f = await readGguf(headsFile);
    expect(f.metadata.get('general.architecture')).toBe('specdec-medusa');
    expect(f.metadata.get('specdec-medusa.head_count')).toBe(3);
    expect(f.metadata.get('specdec-medusa.embedding_length')).toBe(model.info.embeddingLength);
    const w = f.tensors.find((t) => t.name === 'medusa.weight')!;
    expect(w.dims).toEqual([model.info.embeddingLength, model.info.embeddingLength, 3]);
    expect(fs.readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  async function greedyIdentity(heads: string, methods: GenerateOptions['method'][]): Promise<{ drafted: number; accepted: number }> {
    const s = await model.createSession({ contextSize: 512 });
    let drafted = 0;
    let accepted = 0;
    for (const text of STORY_STARTS) {
      s.truncate(0);
      const ar = await s.generate(text, { maxTokens: 96 }).result();
      for (const method of methods) {
        s.truncate(0);
        const r = await s.generate(text, { maxTokens: 96, method, heads: { file: heads } }).result();
        expect({ text, method, diff: firstDiff(r.tokens, ar.tokens) }).toEqual({ text, method, diff: -1 });
        if (method === 'medusa' || method === 'eagle') {
          drafted += r.stats.draftedTokens;
          accepted += r.stats.acceptedTokens;
        }
      }
    }
    await s.dispose();
    return { drafted, accepted };
  }

  it('medusa with random heads: rarely accepted, greedy output identical to autoregressive (also through auto)', async () => {
    const file = path.join(tmp, 'random-heads.gguf');
    await writeMedusaHeads(file, { nEmbd: model.info.embeddingLength, nVocab: model.info.vocabSize, nLayer: model.info.layerCount, heads: 4, scale: 0.5, seed: 3 });
    const { drafted, accepted } = await greedyIdentity(file, ['medusa', 'auto']);
    expect(drafted).toBeGreaterThan(500);
    randomAcceptance = accepted / drafted;
    expect(randomAcceptance).toBeLessThan(0.02);
  }, 120_000);

  it('medusa with trained heads: greedy output identical, drafts accepted more often than random heads', async () => {
    const { drafted, accepted } = await greedyIdentity(headsFile, ['medusa']);
    // Medusa heads guess tokens without seeing the token before them: on a 260K-parameter model they are
    // weak (a few % top-1 after seconds of training), but clearly better than random heads
    expect(accepted).toBeGreaterThan(20);
    expect(randomAcceptance).toBeGreaterThanOrEqual(0);
    expect(accepted / drafted).toBeGreaterThan(2 * randomAcceptance);
  }, 120_000);

  it('eagle: a head in llama.cpp\'s eagle3 layout loads and drafts; greedy output identical to autoregressive (also with a draft vocabulary and d2t, and through auto)', async () => {
    const info = model.info;
    const base = { nEmbd: info.embeddingLength, nVocab: info.vocabSize, targetHidden: info.embeddingLength, targetLayers: [1, 2, 3], nHead: 4, nHeadKv: 2, nFf: 96, scale: 0.2 };
    const file = path.join(tmp, 'eagle3.gguf');
    await writeEagle3Head(file, { ...base, seed: 5 });
    const { drafted } = await greedyIdentity(file, ['eagle', 'auto']);
    expect(drafted).toBeGreaterThan(0);
    const withD2t = path.join(tmp, 'eagle3-d2t.gguf');
    await writeEagle3Head(withD2t, { ...base, seed: 6, draftVocab: 128 });
    const s = await model.createSession({ contextSize: 512 });
    for (const text of STORY_STARTS.slice(0, 4)) {
      s.truncate(0);
      const ar = await s.generate(text, { maxTokens: 64 }).result();
      s.truncate(0);
      const r = await s.generate(text, { maxTokens: 64, method: 'eagle', heads: { file: withD2t } }).result();
      expect(firstDiff(r.tokens, ar.tokens)).toBe(-1);
      expect(r.stats.draftedTokens).toBeGreaterThan(0);
    }
    // an abort stops the draft layer too, and only that generation: the next one drafts again, exactly
    const ac = new AbortController();
    s.truncate(0);
    let seen = 0;
    await expect((async () => {
      for await (const chunk of s.generate(STORY_STARTS[0], { maxTokens: 200, method: 'eagle', heads: { file }, signal: ac.signal })) {
        seen += chunk.tokens.length;
        if (seen >= 8) ac.abort();
      }
    })()).rejects.toMatchObject({ name: 'AbortError' });
    s.truncate(0);
    const ar0 = await s.generate(STORY_STARTS[0], { maxTokens: 64 }).result();
    s.truncate(0);
    const after = await s.generate(STORY_STARTS[0], { maxTokens: 64, method: 'eagle', heads: { file } }).result();
    expect(firstDiff(after.tokens, ar0.tokens)).toBe(-1);
    expect(after.stats.draftedTokens).toBeGreaterThan(0);
    // sampling runs (lossless by construction: deterministic drafts through the verifier)
    const t = await s.generate('Once upon a time', { maxTokens: 32, method: 'eagle', heads: { file }, temperature: 0.8, seed: 3 }).result();
    expect(t.tokens.length).toBe(32);
    // typed errors: another target, layers the target does not have, a Medusa file for 'eagle'
    const other = path.join(tmp, 'eagle3-other.gguf');
    await writeEagle3Head(other, { ...base, seed: 7, targetHidden: info.embeddingLength * 2 });
    await expect(s.generate('x', { maxTokens: 2, method: 'eagle', heads: { file: other } }).result()).rejects.toBeInstanceOf(HeadsMismatchError);
    const layers = path.join(tmp, 'eagle3-layers.gguf');
    await writeEagle3Head(layers, { ...base, seed: 8, targetLayers: [1, 2, info.layerCount] });
    await expect(s.generate('x', { maxTokens: 2, method: 'eagle', heads: { file: layers } }).result()).rejects.toBeInstanceOf(HeadsMismatchError);
    await expect(s.generate('x', { maxTokens: 2, method: 'eagle', heads: { file: headsFile } }).result()).rejects.toThrow(InvalidOptionError);
    const bytes = fs.readFileSync(file);
    const trunc = path.join(tmp, 'eagle3-truncated.gguf');
    fs.writeFileSync(trunc, bytes.subarray(0, bytes.length - 100));
    await expect(s.generate('x', { maxTokens: 2, method: 'eagle', heads: { file: trunc } }).result()).rejects.toMatchObject({ code: 'ERR_TRUNCATED_FILE' });
    await s.dispose();
  }, 180_000);

  it('eagle3: training with the training-time test lowers the held-out loss; the file is llama.cpp\'s eagle3 layout with the target\'s tokenizer; it drafts losslessly', async () => {
    const r = eagleReport;
    expect(r.validationLossAfter).toBeLessThan(r.validationLossBefore);
    expect(r.headAccuracyAfter.length).toBe(3);  // the three depths of the training-time test
    expect(r.headAccuracyAfter[0]).toBeGreaterThan(r.headAccuracyBefore[0]);
    const f = await readGguf(eagleFile);
    const meta = f.metadata;
    expect(meta.get('general.architecture')).toBe('eagle3');
    for (const k of ['eagle3.embedding_length', 'eagle3.feed_forward_length', 'eagle3.block_count', 'eagle3.attention.head_count',
      'eagle3.attention.head_count_kv', 'eagle3.attention.layer_norm_rms_epsilon', 'eagle3.target_layers', 'eagle3.target_hidden_size',
      'tokenizer.ggml.model', 'tokenizer.ggml.tokens']) {
      expect({ k, has: meta.has(k) }).toEqual({ k, has: true });
    }
    expect(meta.get('eagle3.block_count')).toBe(1);
    expect(Array.from(meta.get('eagle3.target_layers') as ArrayLike<number>).length).toBe(3);
    const d = model.info.embeddingLength;
    const names = new Map(f.tensors.map((t) => [t.name, t.dims.map(Number)]));
    expect(names.get('fc.weight')).toEqual([3 * d, d]);
    expect(names.get('blk.0.attn_q.weight')?.[0]).toBe(2 * d);
    for (const n of ['blk.0.attn_norm.weight', 'blk.0.attn_norm_2.weight', 'blk.0.attn_k.weight', 'blk.0.attn_v.weight', 'blk.0.attn_output.weight',
      'blk.0.ffn_norm.weight', 'blk.0.ffn_gate.weight', 'blk.0.ffn_up.weight', 'blk.0.ffn_down.weight', 'output_norm.weight']) {
      expect({ n, has: names.has(n) }).toEqual({ n, has: true });
    }
    const { drafted, accepted } = await greedyIdentity(eagleFile, ['eagle']);
    expect(drafted).toBeGreaterThan(100);
    expect(accepted).toBeGreaterThan(0);
  }, 180_000);

  it('the CLI trains heads (train-drafter --json) and generates with them; usage errors before any work', async () => {
    const run = promisify(execFile);
    const cli = path.join(__dirname, '..', 'dist', 'cli', 'index.js');
    const out = path.join(tmp, 'cli-medusa.gguf');
    const { stdout } = await run(process.execPath, [cli, 'train-drafter', '--model', stories, '--kind', 'medusa', '--corpus', corpusFile,
      '--out', out, '--tokens', '2048', '--heads', '2', '--threads', '1', '--json']);
    const r = JSON.parse(stdout);
    expect(r.tokens).toBeGreaterThanOrEqual(2048);
    expect(fs.existsSync(out)).toBe(true);
    const g = await run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'Once upon a time', '--max-tokens', '16',
      '--method', 'medusa', '--heads', out, '--json']);
    expect(JSON.parse(g.stdout).tokens.length).toBe(16);
    await expect(run(process.execPath, [cli, 'train-drafter', '--model', stories, '--kind', 'nope', '--corpus', corpusFile, '--out', out, '--tokens', '10']))
      .rejects.toMatchObject({ code: 2 });
    await expect(run(process.execPath, [cli, 'train-drafter', '--model', stories, '--kind', 'medusa', '--corpus', corpusFile, '--out', out]))
      .rejects.toMatchObject({ code: 2 });
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'x', '--method', 'medusa']))
      .rejects.toMatchObject({ code: 2 });
  }, 120_000);

  const sample = (prompt: number[], n: number, seed0: number, o: GenerateOptions) => sampleContinuations(model, prompt, n, seed0, o);

  it('sampling with medusa and eagle at T = 0.8 follows the autoregressive distribution (chi-square, 10,000 samples each); a wrong verifier is rejected', async () => {
    const N = 10000;
    let seed = 5_000_000;
    // each arm on a prompt where its (seconds-trained, weak) heads get drafts accepted, against its own autoregressive samples
    for (const [method, file, text] of [
      ['medusa', headsFile, 'Once upon a time, there was a little girl. Once upon a time, there was a little'],
      ['eagle', eagleFile, 'Lily wanted to play with her'],
    ] as const) {
      const p = model.tokenize(text);
      const ref = await sample(p, N, (seed += 1_000_000), {});
      const got = await sample(p, N, (seed += 1_000_000), { method, heads: { file }, draftMax: 16 });
      expect({ method, accepted: got.accepted > 50 }).toEqual({ method, accepted: true });  // drafts were accepted: the arm exercises the verifier
      const [stat, dof] = chiSquare(ref.counts, got.counts, N, N);
      expect(dof).toBeGreaterThan(10);
      expect({ method, ok: Math.round(stat) <= chiCritical(dof) }).toEqual({ method, ok: true });
    }
    const prompt = model.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    const ar = await sample(prompt, N, 1, {});
    const biased = await sample(prompt, N, 19_000_000, { method: 'medusa', heads: { file: headsFile }, draftMax: 16, [TEST_BIASED_VERIFIER]: true } as GenerateOptions);
    const [stat2, dof2] = chiSquare(ar.counts, biased.counts, N, N);
    expect(stat2).toBeGreaterThan(chiCritical(dof2));
  }, 900_000);

  it('medusa and eagle at T = 0.8 with verify \'match\' give exactly the autoregressive sample for the seed, many generations in one session', async () => {
    const prompt = model.tokenize('Once upon a time, there was a little girl. Once upon a time, there was a little');
    const o: GenerateOptions = { maxTokens: 48, temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1 };
    const s = await model.createSession({ contextSize: 256 });
    for (const [method, file] of [['medusa', headsFile], ['eagle', eagleFile]] as const) {
      let accepted = 0;
      for (let seed = 1; seed <= 6; seed++) {
        const ar = await s.generate(prompt, { ...o, seed }).result();
        const r = await s.generate(prompt, { ...o, seed, method, heads: { file }, draftMax: 16, verify: 'match' }).result();
        expect({ method, seed, tokens: r.tokens }).toEqual({ method, seed, tokens: ar.tokens });
        accepted += r.stats.acceptedTokens;
      }
      expect({ method, accepted: accepted > 0 }).toEqual({ method, accepted: true });
    }
    await s.dispose();
  }, 60_000);

  it('bad head files give typed errors: missing, not GGUF, truncated, another architecture, another target', async () => {
    const s = await model.createSession({ contextSize: 128 });
    const gen = (file: string) => s.generate('Once upon a time', { maxTokens: 4, method: 'medusa', heads: { file } }).result();
    await expect(gen(path.join(tmp, 'nope.gguf'))).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
    const notGguf = path.join(tmp, 'not.gguf');
    fs.writeFileSync(notGguf, 'hello, not a gguf file at all');
    await expect(gen(notGguf)).rejects.toMatchObject({ code: 'ERR_NOT_GGUF' });
    const bytes = fs.readFileSync(headsFile);
    const truncated = path.join(tmp, 'truncated.gguf');
    fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 1000));
    await expect(gen(truncated)).rejects.toMatchObject({ code: 'ERR_TRUNCATED_FILE' });
    await expect(gen(truncated)).rejects.toBeInstanceOf(ModelFileError);
    const header = path.join(tmp, 'header-only.gguf');
    fs.writeFileSync(header, bytes.subarray(0, 40));
    await expect(gen(header)).rejects.toBeInstanceOf(ModelFileError);
    await expect(gen(stories)).rejects.toBeInstanceOf(UnsupportedArchitectureError);
    const other = path.join(tmp, 'other-target.gguf');
    await writeMedusaHeads(other, { nEmbd: model.info.embeddingLength * 2, nVocab: model.info.vocabSize, nLayer: model.info.layerCount, heads: 2, scale: 0.1, seed: 1 });
    await expect(gen(other)).rejects.toBeInstanceOf(HeadsMismatchError);
    const otherVocab = path.join(tmp, 'other-vocab.gguf');
    await writeMedusaHeads(otherVocab, { nEmbd: model.info.embeddingLength, nVocab: model.info.vocabSize + 1, nLayer: model.info.layerCount, heads: 2, scale: 0.1, seed: 1 });
    await expect(gen(otherVocab)).rejects.toBeInstanceOf(HeadsMismatchError);
    // option errors
    expect(() => s.generate('x', { method: 'medusa' })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'lookup', heads: { file: headsFile } })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'medusa', heads: { file: 3 as unknown as string } })).toThrow(InvalidOptionError);
    // the session still works
    const ok = await s.generate('Once upon a time', { maxTokens: 4, method: 'medusa', heads: { file: headsFile } }).result();
    expect(ok.tokens.length).toBe(4);
    await s.dispose();
  }, 60_000);

  it('bad training input gives typed errors: empty, binary and too-short corpora, --out a directory, a missing budget', async () => {
    const base = { kind: 'medusa' as const, out: path.join(tmp, 'x.gguf'), tokens: 1000, threads: 1 };
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    await expect(trainDrafter(model, { ...base, corpus: empty })).rejects.toThrow(InvalidOptionError);
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'a.bin'), Buffer.from([0, 1, 2, 3, 0, 0, 255, 254]));
    await expect(trainDrafter(model, { ...base, corpus: bin })).rejects.toThrow(/binary/);
    const short = path.join(tmp, 'short.txt');
    fs.writeFileSync(short, 'Once upon a time.');
    await expect(trainDrafter(model, { ...base, corpus: short })).rejects.toThrow(/too short/);
    await expect(trainDrafter(model, { ...base, corpus: corpusFile, out: tmp })).rejects.toThrow(/directory/);
    await expect(trainDrafter(model, { ...base, corpus: corpusFile, out: path.join(tmp, 'no', 'such', 'dir', 'x.gguf') })).rejects.toThrow(InvalidOptionError);
    await expect(trainDrafter(model, { kind: 'medusa', corpus: corpusFile, out: path.join(tmp, 'y.gguf') })).rejects.toThrow(/budget/);
    await expect(trainDrafter(model, { ...base, corpus: corpusFile, kind: 'nope' as 'medusa' })).rejects.toThrow(InvalidOptionError);
    const badJsonl = path.join(tmp, 'bad.jsonl');
    fs.writeFileSync(badJsonl, '{"text": "ok"}\nnot json\n');
    await expect(trainDrafter(model, { ...base, corpus: badJsonl })).rejects.toThrow(/line 2/);
    expect(fs.existsSync(base.out)).toBe(false);
  }, 60_000);

  it('an abort mid-training rejects with the signal reason and leaves no file behind', async () => {
    const out = path.join(tmp, 'aborted.gguf');
    const ac = new AbortController();
    let sawTrain = false;
    const p = trainDrafter(model, {
      kind: 'medusa', corpus: corpusFile, out, minutes: 5, threads: 1, signal: ac.signal,
      onProgress: (pr) => {
        if (pr.phase === 'train' && pr.tokens > 0 && !sawTrain) {
          sawTrain = true;
          ac.abort(new Error('stop now'));
        }
      },
    });
    const t0 = Date.now();
    await expect(p).rejects.toThrow('stop now');
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(sawTrain).toBe(true);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('aborted'))).toEqual([]);
  }, 120_000);
});
