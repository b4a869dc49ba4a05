// The KV-cache coprocessor (trainCoprocessor, generate's `coprocessor`, Session.augment, Session.perplexity):
// training with a fixed seed and a small budget (stories260K on Python files, a domain it does not know)
// lowers the held-out ahead-token loss below the plain model's on the same tokens, and the negative control (latents in the cache but hidden from the ahead
// tokens) equals the plain model's; the file is specdec's own architecture; every speculative method
// on an augmented session gives autoregressive decoding's greedy output on that same cache; latent
// cells are not tokens, truncating below them drops them and a following generation is a fresh one's;
// perplexity with and without the coprocessor scores the same tokens; typed errors.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  CoprocessorMismatchError, InvalidOptionError, loadModel, ModelFileError, readGguf, trainCoprocessor, UnsupportedArchitectureError,
  type CoprocessorTrainReport, type Model,
} from '../lib';
import { promisify } from 'util';
import { describeShared } from './utils/shared';

const run = promisify(execFile);
const cli = path.join(__dirname, '..', 'dist', 'cli', 'index.js');

const NL = 4;

describeShared('KV-cache coprocessor', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const other = path.join(dir, 'models', 'llama-2-tiny-random.gguf');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-coproc-'));
  const corpusFile = path.join(tmp, 'stories.jsonl');
  const file = path.join(tmp, 'stories-coproc.gguf');
  let model: Model;
  let report: CoprocessorTrainReport;
  let heldOut = '';

  beforeAll(async () => {
    model = await loadModel(stories);
    // a corpus of another domain than the model's stories: Python files (the first documents of the shared
    // corpus, cut short); what the coprocessor can learn in a minute is the domain, which the plain model
    // misses and the latents can carry. The documents after them are held out.
    const fd = fs.openSync(path.join(dir, 'corpus', 'python-packages.jsonl'), 'r');
    const buf = Buffer.alloc(1 << 20);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    fs.closeSync(fd);
    const docs = buf.subarray(0, n).toString('utf8').split('\n').slice(0, -1)
      .map((l) => (JSON.parse(l) as { text: string }).text).filter((t) => t.length >= 800).map((t) => t.slice(0, 1500));
    fs.writeFileSync(corpusFile, docs.slice(0, 40).map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
    heldOut = docs.slice(40, 42).join('\n');
    report = await trainCoprocessor(model, {
      corpus: corpusFile, out: file, minutes: 0.5, latents: NL, ahead: 8, points: 4, sequenceLength: 64, threads: 1,
      learningRate: 5e-3, validationFraction: 0.2, seed: 7,
    });
  }, 150_000);

  afterAll(async () => {
    await model?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('training lowers the held-out ahead-token loss below the plain model\'s; the negative control equals the plain model\'s', async () => {
    expect(report.steps).toBeGreaterThan(20);
    expect(report.validationPositions).toBeGreaterThanOrEqual(32);
    // the control: latents in the cache, hidden from the ahead tokens by the mask: the plain model's loss
    expect(Math.abs(report.validationLossControl - report.validationLossBase)).toBeLessThan(2e-3 * report.validationLossBase);
    // trained, the latents lower the loss of the tokens after them (well beyond noise: the domain is new to the model)
    expect(report.validationLossAfter).toBeLessThan(report.validationLossBefore);
    expect(report.validationLossAfter).toBeLessThan(report.validationLossBase * 0.95);
    const f = await readGguf(file);
    expect(f.metadata.get('general.architecture')).toBe('specdec-coprocessor');
    expect(f.metadata.get('specdec-coprocessor.latents')).toBe(NL);
    expect(f.metadata.get('specdec-coprocessor.target.embedding_length')).toBe(model.info.embeddingLength);
    expect(f.tensors.find((t) => t.name === 'soft_tokens')!.dims.map(Number)).toEqual([model.info.embeddingLength, NL]);
  });

  it('perplexity: with and without the coprocessor the same tokens are scored; the trained one lowers it on held-out text', async () => {
    const s = await model.createSession({ contextSize: 256 });
    const plain = await s.perplexity(heldOut, { augmentEvery: 16, ahead: 8, context: 128 });
    const aug = await s.perplexity(heldOut, { augmentEvery: 16, ahead: 8, context: 128, coprocessor: { file } });
    expect(aug.tokens).toBe(plain.tokens);
    expect(plain.tokens).toBeGreaterThan(100);
    expect(aug.augmentations).toBe(plain.tokens / 8);
    expect(aug.nll).toBeLessThan(plain.nll);
    expect(aug.ppl).toBeCloseTo(Math.exp(aug.nll), 10);
    const all = await s.perplexity(heldOut, { context: 128 });
    expect(all.tokens).toBeGreaterThan(plain.tokens);
    expect(s.info.latentCells).toBe(0);
    await s.dispose();
  });

  it('every speculative method on an augmented session gives autoregressive decoding\'s greedy output on that cache', async () => {
    const s = await model.createSession({ contextSize: 256 });
    const draft = await loadModel(stories);
    const co = { file, latents: NL };
    let differs = 0;
    for (const prompt of ['Once upon a time, there was a', 'Tom and Sue went to the park. They']) {
      s.truncate(0);
      const ar = await s.generate(prompt, { maxTokens: 40, coprocessor: co }).result();
      expect(ar.stats.latentCells).toBe(NL);
      s.truncate(0);
      const plain = await s.generate(prompt, { maxTokens: 40 }).result();
      expect(plain.stats.latentCells).toBe(0);
      if (plain.text !== ar.text) differs++;
      const runs = [
        { method: 'lookup' as const },
        { method: 'draft' as const, draft: { model: draft } },
        { method: 'token-recycling' as const },
        { method: 'aded' as const },
      ];
      for (const r of runs) {
        s.truncate(0);
        const sp = await s.generate(prompt, { maxTokens: 40, coprocessor: co, ...r }).result();
        expect({ method: r.method, tokens: sp.tokens }).toEqual({ method: r.method, tokens: ar.tokens });
        expect(sp.stats.latentCells).toBe(NL);
      }
      // latents are not tokens
      expect(s.tokens.length).toBeLessThanOrEqual(model.tokenize(prompt).length + 40);
      expect(s.info.latentCells).toBe(NL);
    }
    expect(differs).toBeGreaterThan(0);  // the latents do change what the model writes
    await draft.dispose();
    await s.dispose();
  }, 60_000);

  it('truncating below the latents drops them, and the next generation is a fresh session\'s; augment() keeps them for a continued prompt', async () => {
    const prompt = 'Lily wanted to play with her ball. She';
    const s = await model.createSession({ contextSize: 256 });
    const fresh = await model.createSession({ contextSize: 256 });
    const a = await s.generate(prompt, { maxTokens: 20, coprocessor: { file } }).result();
    expect(s.info.latentCells).toBe(NL);
    const p = model.tokenize(prompt).length;
    expect(s.tokens.slice(0, p)).toEqual(model.tokenize(prompt));
    expect(a.tokens.length).toBe(20);
    s.truncate(p - 1);  // the latents sit before the prompt's last token: gone with it
    expect(s.info.latentCells).toBe(0);
    expect(s.tokens.length).toBe(p - 1);
    const b = await s.generate(prompt, { maxTokens: 20 }).result();
    const c = await fresh.generate(prompt, { maxTokens: 20 }).result();
    expect(b.tokens).toEqual(c.tokens);
    // a prompt that is not the augmented one drops the latents through prefix reuse
    await s.generate(prompt, { maxTokens: 4, coprocessor: { file } }).result();
    expect(s.info.latentCells).toBe(NL);
    const d = await s.generate('Tom and Sue', { maxTokens: 20 }).result();
    fresh.truncate(0);
    const e = await fresh.generate('Tom and Sue', { maxTokens: 20 }).result();
    expect(d.tokens).toEqual(e.tokens);
    expect(s.info.latentCells).toBe(0);
    // augment(): the latents before the last token; a prompt that goes on from the tokens keeps them
    s.truncate(0);
    await s.evaluate(model.tokenize(prompt));
    const r = await s.augment({ file, latents: 2 });
    expect(r.latentCells).toBe(2);
    expect(s.tokens).toEqual(model.tokenize(prompt));
    const g = await s.generate(model.tokenize(prompt), { maxTokens: 8 }).result();
    expect(g.stats.promptTokensReused).toBe(p);
    expect(s.info.latentCells).toBe(2);
    const h = await s.generate([...model.tokenize(prompt), ...g.tokens], { maxTokens: 8 }).result();
    expect(h.stats.promptTokensReused).toBeGreaterThan(p);
    expect(s.info.latentCells).toBe(2);
    await fresh.dispose();
    await s.dispose();
  }, 60_000);

  it('createSession\'s coprocessor is every generation\'s default; null turns it off for one', async () => {
    const prompt = 'One day, a big';
    const s = await model.createSession({ contextSize: 128, coprocessor: { file, latents: 2 } });
    const t = await model.createSession({ contextSize: 128 });
    const a = await s.generate(prompt, { maxTokens: 12 }).result();
    expect(a.stats.latentCells).toBe(2);
    const b = await t.generate(prompt, { maxTokens: 12, coprocessor: { file, latents: 2 } }).result();
    expect(a.tokens).toEqual(b.tokens);
    s.truncate(0);
    const c = await s.generate(prompt, { maxTokens: 12, coprocessor: null }).result();
    expect(c.stats.latentCells).toBe(0);
    t.truncate(0);
    expect(c.tokens).toEqual((await t.generate(prompt, { maxTokens: 12 }).result()).tokens);
    await expect(model.createSession({ coprocessor: { file: '' } })).rejects.toBeInstanceOf(InvalidOptionError);
    await s.dispose();
    await t.dispose();
  });

  it('CLI: perplexity --json with and without --coprocessor scores the same tokens; generate --coprocessor', async () => {
    const text = path.join(tmp, 'held-out.txt');
    fs.writeFileSync(text, heldOut);
    const args = ['perplexity', '--model', stories, '--file', text, '--augment-every', '16', '--ahead', '8', '--context', '128', '--threads', '1', '--json'];
    const plain = JSON.parse((await run(process.execPath, [cli, ...args])).stdout);
    const aug = JSON.parse((await run(process.execPath, [cli, ...args, '--coprocessor', file])).stdout);
    expect(Object.keys(plain).slice(0, 3)).toEqual(['tokens', 'nll', 'ppl']);
    expect(aug.tokens).toBe(plain.tokens);
    expect(aug.nll).toBeLessThan(plain.nll);
    const g = JSON.parse((await run(process.execPath, [cli, 'generate', '--model', stories, '--coprocessor', file, '--latents', '2',
      '--prompt', 'Once upon a time', '--max-tokens', '8', '--threads', '1', '--json'])).stdout);
    expect(g.stats.latentCells).toBe(2);
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--latents', '2', '--prompt', 'x'])).rejects.toMatchObject({ code: 2 });
  }, 60_000);

  it('typed errors: another model\'s coprocessor, corrupt or truncated files, latents out of range', async () => {
    const s = await model.createSession({ contextSize: 128 });
    const gen = async (co: { file: string; latents?: number }) => {
      s.truncate(0);
      return s.generate('Once upon a time', { maxTokens: 2, coprocessor: co }).result();
    };
    await expect(gen({ file, latents: 0 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(gen({ file, latents: NL + 1 })).rejects.toBeInstanceOf(InvalidOptionError);
    const bytes = fs.readFileSync(file);
    const truncated = path.join(tmp, 'truncated.gguf');
    fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.7)));
    await expect(gen({ file: truncated })).rejects.toMatchObject({ code: 'ERR_TRUNCATED_FILE' });
    await expect(gen({ file: truncated })).rejects.toBeInstanceOf(ModelFileError);
    const garbage = path.join(tmp, 'garbage.gguf');
    fs.writeFileSync(garbage, Buffer.from('not a gguf file at all'));
    await expect(gen({ file: garbage })).rejects.toMatchObject({ code: 'ERR_NOT_GGUF' });
    await expect(gen({ file: path.join(tmp, 'missing.gguf') })).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
    await expect(gen({ file: stories })).rejects.toBeInstanceOf(UnsupportedArchitectureError);  // a model, not a coprocessor
    await expect(s.augment({ file, latents: 99 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(s.perplexity('Once upon a time there was a dog.', { coprocessor: { file }, augmentEvery: 0 })).rejects.toBeInstanceOf(InvalidOptionError);
    expect(() => s.generate('x', { coprocessor: { file, at: 'anywhere' as 'prompt-end' } })).toThrow(InvalidOptionError);
    await s.dispose();
    // a coprocessor trained for another model
    const m2 = await loadModel(other);
    const s2 = await m2.createSession({ contextSize: 64 });
    await expect(s2.generate('Hello', { maxTokens: 2, coprocessor: { file } }).result()).rejects.toBeInstanceOf(CoprocessorMismatchError);
    await s2.dispose();
    await m2.dispose();
  }, 30_000);
});
