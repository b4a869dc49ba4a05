// Lexical Unit Decoding (method 'lud', trainDrafter kind 'lud'): the fine-tune lowers the held-out
// loss of the parallel (placeholder) positions; the file is a whole model of the target's
// architecture with one input-only placeholder row and the lud.* keys, the target's file untouched;
// verify mode is lossless (greedy identity with autoregressive decoding, chi-square at T = 0.8);
// lossy mode with nothing confident (alpha > 1) is exactly the LUD model's own greedy decoding, and
// with a low alpha emits several tokens per pass; stats.lossless; typed errors; abort.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { execFile } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import {
  InvalidOptionError, loadModel, ModelFileError, readGguf, trainDrafter, VocabularyMismatchError, type Model, type TrainReport,
} from '../lib';
import { describeShared } from './utils/shared';
import { chiCritical, chiSquare } from './utils/stats';

const STARTS = ['Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a big', 'Tom and Sue', 'The sun was', 'A little bird', 'Mom said'];
const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

describeShared('Lexical Unit Decoding', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-lud-'));
  const corpusFile = path.join(tmp, 'stories.jsonl');
  const ludFile = path.join(tmp, 'stories-lud.gguf');
  let model: Model;
  let lud: Model;
  let report: TrainReport;
  let targetHash = '';

  beforeAll(async () => {
    targetHash = sha(stories);
    model = await loadModel(stories);
    // a corpus of the model's own stories (sampled, seeded)
    const s = await model.createSession({ contextSize: 256 });
    const lines: string[] = [];
    for (let i = 0; i < 32; i++) {
      s.truncate(0);
      const r = await s.generate(STARTS[i % STARTS.length], { maxTokens: 160, temperature: 0.7, topK: 0, topP: 1, minP: 0, seed: 300 + i }).result();
      lines.push(JSON.stringify({ text: STARTS[i % STARTS.length] + r.text }));
    }
    await s.dispose();
    fs.writeFileSync(corpusFile, lines.join('\n') + '\n');
    report = await trainDrafter(model, {
      kind: 'lud', corpus: corpusFile, out: ludFile, tokens: 6000, threads: 1, learningRate: 3e-3, sequenceLength: 64,
      lud: { k: 3, alpha: 0.6, groups: 12 }, validationFraction: 0.15, seed: 7,
    });
    lud = await loadModel(ludFile);
  }, 120_000);

  afterAll(async () => {
    await lud?.dispose();
    await model?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('training lowers the held-out loss of the parallel positions; the file is a whole model with the lud keys', async () => {
    expect(report.kind).toBe('lud');
    expect(report.steps).toBeGreaterThan(10);
    expect(report.validationPositions).toBeGreaterThan(20);
    expect(report.validationLossAfter).toBeLessThan(report.validationLossBefore * 0.9);
    expect(report.headAccuracyAfter).toHaveLength(3);
    expect(sha(stories)).toBe(targetHash);  // the target's file is never written
    const f = await readGguf(ludFile);
    const g = await readGguf(stories);
    expect(f.metadata.get('general.architecture')).toBe('llama');
    expect(f.metadata.get('lud.k')).toBe(3);
    expect(f.metadata.get('lud.alpha')).toBeCloseTo(0.6, 6);
    expect(f.metadata.get('lud.placeholder')).toBe(model.info.vocabSize);
    expect(f.metadata.get('tokenizer.ggml.tokens')).toEqual(g.metadata.get('tokenizer.ggml.tokens'));
    const emb = f.tensors.find((t) => t.name === 'token_embd.weight')!;
    const out = f.tensors.find((t) => t.name === 'output.weight')!;
    expect(emb.dims.map(Number)).toEqual([model.info.embeddingLength, model.info.vocabSize + 1]);  // the placeholder's own row
    expect(out.dims.map(Number)).toEqual([model.info.embeddingLength, model.info.vocabSize]);      // the head is unchanged in size
    expect(lud.info.vocabSize).toBe(model.info.vocabSize);
    expect(lud.tokenizer.tokenize('Once upon a time')).toEqual(model.tokenizer.tokenize('Once upon a time'));
  });

  it('verify mode is greedy-identical to autoregressive decoding and lossless', async () => {
    const s = await model.createSession({ contextSize: 256 });
    let accepted = 0;
    for (const p of STARTS.slice(0, 5)) {
      const ar = await s.generate(p, { maxTokens: 48 }).result();
      const v = await s.generate(p, { maxTokens: 48, method: 'lud', lud: { file: ludFile, verify: true, alpha: 0.3 } }).result();
      expect({ p, tokens: v.tokens }).toEqual({ p, tokens: ar.tokens });
      expect(v.stats.lossless).toBe(true);
      expect(ar.stats.lossless).toBe(true);
      accepted += v.stats.acceptedTokens;
      expect(s.tokens).toEqual(model.tokenize(p).concat(v.tokens));
    }
    expect(accepted).toBeGreaterThan(20);  // the drafts were used, so the verifier was exercised
    await s.dispose();
  });

  it('lossy mode with nothing confident (alpha 1.01) is the LUD model\'s own greedy decoding, one token per pass', async () => {
    const s = await model.createSession({ contextSize: 256 });
    const own = await lud.createSession({ contextSize: 256 });
    for (const p of STARTS.slice(0, 4)) {
      const l = await s.generate(p, { maxTokens: 40, method: 'lud', lud: { file: ludFile, alpha: 1.01 } }).result();
      own.truncate(0);
      const ref = await own.generate(p, { maxTokens: 40 }).result();
      expect({ p, tokens: l.tokens }).toEqual({ p, tokens: ref.tokens });
      expect(l.stats.lossless).toBe(false);
      expect(l.stats.forwardPasses).toBe(40);  // every pass emitted exactly one token (the last is emitted, not evaluated)
      expect(l.stats.acceptedTokens).toBe(0);
      expect(s.tokens.length).toBeLessThanOrEqual(model.tokenize(p).length);  // the target's cache is not extended
    }
    await own.dispose();
    await s.dispose();
  });

  it('small batch sizes: lossy and verify modes give the same output at batch sizes 1, 2 and 8', async () => {
    const want: Record<string, number[]> = {};
    const got: Record<string, number[]> = {};
    for (const batchSize of [512, 1, 2, 8]) {
      const s = await model.createSession({ contextSize: 256, batchSize });
      const l = await s.generate(STARTS[2], { maxTokens: 30, method: 'lud', lud: { file: ludFile, alpha: 1.01 } }).result();
      const v = await s.generate(STARTS[2], { maxTokens: 30, method: 'lud', lud: { file: ludFile, verify: true } }).result();
      const out = batchSize === 512 ? want : got;
      out[`lossy ${batchSize === 512 ? '' : batchSize}`.trim()] = l.tokens;
      out[`verify ${batchSize === 512 ? '' : batchSize}`.trim()] = v.tokens;
      await s.dispose();
    }
    for (const b of [1, 2, 8]) {
      expect({ b, tokens: got[`lossy ${b}`] }).toEqual({ b, tokens: want.lossy });
      expect({ b, tokens: got[`verify ${b}`] }).toEqual({ b, tokens: want.verify });
    }
  });

  it('lossy mode with a low alpha emits confident runs: fewer passes than tokens, deterministic, k honoured', async () => {
    const s = await model.createSession({ contextSize: 256 });
    const a = await s.generate(STARTS[0], { maxTokens: 60, method: 'lud', lud: { file: ludFile, alpha: 0.05 } }).result();
    expect(a.stats.forwardPasses).toBeLessThan(a.tokens.length);
    expect(a.stats.acceptedTokens).toBeGreaterThan(0);
    // each pass emits at most k + 1 tokens
    expect(a.tokens.length).toBeLessThanOrEqual(a.stats.forwardPasses * 4 + 1);
    const b = await s.generate(STARTS[0], { maxTokens: 60, method: 'lud', lud: { file: ludFile, alpha: 0.05 } }).result();
    expect(b.tokens).toEqual(a.tokens);
    const k1 = await s.generate(STARTS[0], { maxTokens: 60, method: 'lud', lud: { file: ludFile, alpha: 0.05, k: 1 } }).result();
    expect(k1.tokens.length).toBeLessThanOrEqual(k1.stats.forwardPasses * 2 + 1);
    expect(k1.stats.draftedTokens).toBeLessThanOrEqual(k1.stats.forwardPasses);
    // lossy output changes with alpha: it is not the target's (a low alpha takes unverified tokens)
    const ar = await s.generate(STARTS[0], { maxTokens: 60 }).result();
    expect(ar.stats.forwardPasses).toBeGreaterThan(a.stats.forwardPasses);
    await s.dispose();
  });

  it('verify mode at T = 0.8 follows the autoregressive distribution (chi-square, 1,500 samples each)', async () => {
    const N = 1500;
    const prompt = model.tokenize('Lily wanted to');
    const sample = async (seed0: number, o: object) => {
      const s = await model.createSession({ contextSize: 128 });
      const counts = new Map<string, number>();
      let accepted = 0;
      for (let i = 0; i < N; i++) {
        const r = await s.generate(prompt, { maxTokens: 3, temperature: 0.8, topK: 0, topP: 1, minP: 0, seed: seed0 + i, ...o }).result();
        counts.set(r.tokens.join(','), (counts.get(r.tokens.join(',')) ?? 0) + 1);
        accepted += r.stats.acceptedTokens;
      }
      await s.dispose();
      return { counts, accepted };
    };
    const ref = await sample(1_000_000, {});
    const got = await sample(2_000_000, { method: 'lud', lud: { file: ludFile, verify: true, alpha: 0.1 } });
    expect(got.accepted).toBeGreaterThan(100);
    const [stat, dof] = chiSquare(ref.counts, got.counts, N, N);
    expect(dof).toBeGreaterThan(5);
    expect(Math.round(stat)).toBeLessThanOrEqual(chiCritical(dof));
  }, 60_000);

  it('CLI: generate --method lud --lud F [--lud-alpha --lud-k --lud-verify] prints the API\'s tokens and stats.lossless', async () => {
    const run = promisify(execFile);
    const cli = path.join(__dirname, '..', 'dist', 'cli', 'index.js');
    const base = [cli, 'generate', '--model', stories, '--prompt', STARTS[3], '--max-tokens', '24', '--json', '--method', 'lud', '--lud', ludFile];
    const s = await model.createSession({ contextSize: 256 });
    for (const [extra, opts] of [
      [['--lud-alpha', '0.2', '--lud-k', '2'], { alpha: 0.2, k: 2 }],
      [['--lud-verify'], { verify: true }],
    ] as const) {
      const { stdout } = await run(process.execPath, [...base, ...extra]);
      const j = JSON.parse(stdout);
      s.truncate(0);
      const r = await s.generate(STARTS[3], { maxTokens: 24, method: 'lud', lud: { file: ludFile, ...opts } }).result();
      expect(j.tokens).toEqual(r.tokens);
      expect(j.stats.lossless).toBe(opts === undefined || 'verify' in opts);
    }
    await s.dispose();
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'x', '--lud', ludFile])).rejects.toMatchObject({ code: 2 });
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'x', '--method', 'lud'])).rejects.toMatchObject({ code: 2 });
  });

  it('bad options and files are typed errors', async () => {
    const s = await model.createSession({ contextSize: 128 });
    const gen = (o: object) => s.generate('Once upon a time', { maxTokens: 4, ...o }).result();
    expect(() => s.generate('x', { method: 'lud' })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'lud', lud: { file: '' } })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { lud: { file: ludFile } })).toThrow(/for method 'lud'/);
    expect(() => s.generate('x', { method: 'lud', lud: { file: ludFile, alpha: 0 } })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'lud', lud: { file: ludFile, alpha: -1 } })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'lud', lud: { file: ludFile, k: 0 } })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'lud', lud: { file: ludFile, k: 17 } })).toThrow(InvalidOptionError);
    expect(() => s.generate('x', { method: 'lud', lud: { file: ludFile, nope: 1 } as never })).toThrow(InvalidOptionError);
    await expect(gen({ method: 'lud', lud: { file: path.join(tmp, 'missing.gguf') } })).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
    const notGguf = path.join(tmp, 'not.gguf');
    fs.writeFileSync(notGguf, 'not a gguf file');
    await expect(gen({ method: 'lud', lud: { file: notGguf } })).rejects.toBeInstanceOf(ModelFileError);
    // a plain model (the target itself) is not a LUD model
    await expect(gen({ method: 'lud', lud: { file: stories } })).rejects.toThrow(/not a Lexical Unit Decoding model/);
    await expect(gen({ method: 'lud', lud: { file: stories, verify: true } })).rejects.toBeInstanceOf(InvalidOptionError);
    await s.dispose();
    // a LUD model of another target
    const other = await loadModel(path.join(dir, 'models', 'llama-2-tiny-random.gguf'));
    const os2 = await other.createSession({ contextSize: 64 });
    await expect(os2.generate([1, 2, 3], { maxTokens: 2, method: 'lud', lud: { file: ludFile } }).result()).rejects.toBeInstanceOf(VocabularyMismatchError);
    await os2.dispose();
    await other.dispose();
    // training options
    const base = { kind: 'lud' as const, corpus: corpusFile, out: path.join(tmp, 'x.gguf'), tokens: 100 };
    await expect(trainDrafter(model, { ...base, lud: { k: 0 } })).rejects.toThrow(InvalidOptionError);
    await expect(trainDrafter(model, { ...base, lud: { alpha: 1.5 } })).rejects.toThrow(InvalidOptionError);
    await expect(trainDrafter(model, { ...base, batchSize: 4 })).rejects.toThrow(InvalidOptionError);
    await expect(trainDrafter(model, { ...base, kind: 'medusa', lud: { k: 2 } })).rejects.toThrow(/for kind 'lud'/);
    await expect(trainDrafter(lud, { ...base })).rejects.toThrow(/already a Lexical Unit Decoding model/);
    expect(fs.existsSync(base.out)).toBe(false);
  });

  it('abort: a lossy generation stops with the signal\'s reason and the session goes on; an aborted training writes nothing', async () => {
    const s = await model.createSession({ contextSize: 256 });
    const ac = new AbortController();
    const reason = new Error('stop here');
    const run = s.generate(STARTS[1], { maxTokens: 200, ignoreEos: true, method: 'lud', lud: { file: ludFile, alpha: 1.01 }, signal: ac.signal });
    let n = 0;
    await expect((async () => {
      for await (const c of run) {
        n += c.tokens.length;
        if (n >= 5) ac.abort(reason);
      }
    })()).rejects.toBe(reason);
    expect(run.stats?.stopReason).toBe('abort');
    expect(run.tokens.length).toBeLessThan(200);
    const after = await s.generate(STARTS[1], { maxTokens: 10, method: 'lud', lud: { file: ludFile, alpha: 1.01 } }).result();
    expect(after.tokens).toHaveLength(10);
    await s.dispose();
    const out = path.join(tmp, 'aborted.gguf');
    const tc = new AbortController();
    const job = trainDrafter(model, { kind: 'lud', corpus: corpusFile, out, minutes: 5, threads: 1, signal: tc.signal, onProgress: (p) => { if (p.phase === 'train') tc.abort(reason); } });
    await expect(job).rejects.toBe(reason);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('aborted'))).toEqual([]);
  });
});
