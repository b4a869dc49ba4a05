// Entropy Adaptive Decoding ('ead', lossy): the two ends of the threshold give exactly one model's
// own output, switching happens both ways in between with every token the argmax of the model that
// produced it (so each catch-up batch left that model's cache right), sampling is reproducible, abort
// stops it, bad options are typed errors, and stats.lossless tells lossy from lossless methods.
import { afterAll, beforeAll, expect } from '@jest/globals';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { promisify } from 'util';
import { InvalidOptionError, loadModel, VocabularyMismatchError, type Model, type Session } from '../lib';
import { cachedRandomModel } from './utils/random-model';
import { describeShared, itWith } from './utils/shared';

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

describeShared('entropy adaptive decoding (ead)', (dir) => {
  const code = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const codeDraft = path.join(dir, 'models', 'code', 'code-draft-f16.gguf');
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const test = itWith(code, codeDraft, stories);
  const N = 48;
  let target: Model, draft: Model, ts: Session, ds: Session;
  let prompt: number[];

  beforeAll(async () => {
    if (!fs.existsSync(code) || !fs.existsSync(codeDraft)) return;
    target = await loadModel(code);
    draft = await loadModel(codeDraft);
    ts = await target.createSession({ contextSize: 512, threads: 1 });
    ds = await draft.createSession({ contextSize: 512, threads: 1 });
    const prompts = JSON.parse(fs.readFileSync(path.join(dir, 'eval', 'code-prompts.json'), 'utf8')).prompts as { prompt: string }[];
    prompt = target.tokenize(prompts[5].prompt).slice(-96);
  });
  afterAll(async () => {
    await ts?.dispose();
    await ds?.dispose();
    await draft?.dispose();
    await target?.dispose();
  });

  const ead = (ead: { threshold?: number; window?: number; minDwell?: number }, extra: Record<string, unknown> = {}) => {
    ts.truncate(0);
    return ts.generate(prompt, { maxTokens: N, method: 'ead', draft: { model: draft }, ead, ...extra }).result();
  };

  test('a threshold never reached gives the small model\'s own output; a negative one the target\'s', async () => {
    ds.truncate(0);
    const small = await ds.generate(prompt, { maxTokens: N }).result();
    ts.truncate(0);
    const large = await ts.generate(prompt, { maxTokens: N }).result();
    expect(small.tokens).not.toEqual(large.tokens);  // the two models disagree on this prompt

    const never = await ead({ threshold: 1000 });
    expect(never.tokens).toEqual(small.tokens);
    expect(never.stats.ead!.switches).toBe(0);
    expect(never.stats.ead!.largeTokens).toBe(0);
    expect(never.stats.ead!.largeEvaluated).toBe(0);
    expect(never.stats.ead!.sources).toBe('S'.repeat(N));
    expect(never.stats.lossless).toBe(false);
    // the small model is 8x smaller: most of the decoding compute is saved
    expect(never.stats.ead!.computeSaved).toBeGreaterThan(0.8);

    const always = await ead({ threshold: -1, minDwell: 1 });
    expect(always.tokens).toEqual(large.tokens);
    expect(always.stats.ead!.switches).toBe(1);  // to the target at the first token, never back
    expect(always.stats.ead!.largeShare).toBe(1);
    expect(always.stats.ead!.largeEvaluated).toBe(N - 1);
    expect(always.stats.forwardPasses).toBe(1 + N - 1);  // the prompt's pass, then one per token as autoregressive decoding
    expect(never.stats.forwardPasses).toBe(1);            // the prompt's only
    expect(always.stats.ead!.computeSaved).toBeCloseTo(0, 6);
  });

  test('in between, both models take turns and each token is the argmax of the model that produced it (catch-up batches checked against evaluate())', async () => {
    const r = await ead({ threshold: 1.0, window: 2, minDwell: 2 });
    const e = r.stats.ead!;
    expect(r.tokens.length).toBe(N);
    expect(e.sources).toMatch(/SL/);
    expect(e.sources).toMatch(/LS/);
    // every hand-over shows in the sources, but a last one after the last token
    const handovers = (e.sources.match(/(?=SL|LS)/g) ?? []).length + (e.sources[0] === 'L' ? 1 : 0);
    expect(e.switches).toBeGreaterThanOrEqual(handovers);
    expect(e.switches).toBeLessThanOrEqual(handovers + 1);
    expect(e.largeTokens).toBe((e.sources.match(/L/g) ?? []).length);
    expect(e.largeTokens).toBeGreaterThan(0);
    expect(e.largeTokens).toBeLessThan(N);
    // the large model evaluated every token before the last one it produced (its own, and on each
    // take-over the small model's since it last ran), and nothing after it
    expect(e.largeEvaluated).toBe(e.sources.lastIndexOf('L'));
    expect(e.computeSaved).toBeGreaterThan(0);
    expect(e.computeSaved).toBeLessThan(1);
    // every row: the logits after prompt + tokens[0..i); the producer's argmax must be token i. The
    // prompt is read as EAD's prefill reads it (one generated token, batched prefill), then the rows
    // come from evaluate(): each equals one-token decoding, as EAD's catch-up rows must, bit for bit
    const rows = async (s: Session) => {
      s.truncate(0);
      await s.generate(prompt, { maxTokens: 1 }).result();
      s.truncate(prompt.length - 1);
      return s.evaluate([prompt[prompt.length - 1], ...r.tokens.slice(0, N - 1)], { allLogits: true });
    };
    const lt = await rows(ts);
    const ld = await rows(ds);
    const V = target.info.vocabSize;
    const wrong: string[] = [];
    for (let i = 0; i < N; i++) {
      const at = i * V;
      const row = (e.sources[i] === 'L' ? lt : ld).subarray(at, at + V);
      const best = argmax(row);
      // exact, but for row 0: EAD took the first token from the prefill's batched last row
      const slack = i === 0 ? 0.05 : 0;
      if (best !== r.tokens[i] && row[best] - row[r.tokens[i]] > slack) wrong.push(`${i}${e.sources[i]}: ${r.tokens[i]} vs ${best} (${row[best] - row[r.tokens[i]]})`);
    }
    expect(wrong).toEqual([]);
  });

  test('sampling: reproducible with a seed, from both models', async () => {
    const a = await ead({ threshold: 1.0, window: 2, minDwell: 2 }, { temperature: 0.8, seed: 7 });
    const b = await ead({ threshold: 1.0, window: 2, minDwell: 2 }, { temperature: 0.8, seed: 7 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.stats.ead!.sources).toBe(b.stats.ead!.sources);
    expect(a.stats.ead!.sources).toMatch(/S/);
    expect(a.stats.ead!.sources).toMatch(/L/);
  });

  test('abort stops it and leaves the session usable', async () => {
    const ac = new AbortController();
    ts.truncate(0);
    const run = ts.generate(prompt, { maxTokens: 400, method: 'ead', draft: { model: draft }, ead: { threshold: 1.0, window: 2, minDwell: 2 }, signal: ac.signal });
    const reason = new Error('stop');
    let n = 0;
    await expect((async () => {
      for await (const c of run) {
        n += c.tokens.length;
        if (n > 0) ac.abort(reason);
      }
    })()).rejects.toBe(reason);
    expect(run.stats!.stopReason).toBe('abort');
    expect(run.tokens.length).toBeLessThan(400);
    const again = await ead({ threshold: 1000 });
    expect(again.tokens.length).toBe(N);
  });

  test('abort reaches the small model: in its prompt prefill and while it decodes, seen within 250 ms', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession({ contextSize: 1024, batchSize: 128, threads: 1 });
    // ~65 M parameters in F32 with stories260K's vocabulary: its prompt prefill takes about a second
    const d = await loadModel(await cachedRandomModel({ arch: 'llama', vocabFrom: stories, type: 'f32', nEmbd: 1024, nLayer: 4, nHead: 8, nHeadKv: 8, nFf: 4096, nCtx: 2048, seed: 21 }));
    const longPrompt = Array.from({ length: 400 }, (_, i) => 3 + ((i * 7919) % 509));
    const opts = { method: 'ead' as const, draft: { model: d }, ead: { threshold: 1000 }, ignoreEos: true };
    // the prompt's processing time when warm (the first run also pays first touches), which the aborts
    // below aim inside
    await s.generate(longPrompt, { ...opts, maxTokens: 8 }).result();
    s.truncate(0);
    const t = performance.now();
    const full = await s.generate(longPrompt, { ...opts, maxTokens: 8 }).result();
    const total = performance.now() - t;
    expect(full.stats.prefillMs).toBeGreaterThan(150);
    const seen: { at: number; ms: number; reason: string; tokens: number }[] = [];
    for (const at of [0.2 * full.stats.prefillMs, 0.5 * full.stats.prefillMs, total + 100]) {
      s.truncate(0);
      const ac = new AbortController();
      const run = s.generate(longPrompt, { ...opts, maxTokens: 1 << 20, signal: ac.signal });
      let t0 = 0;
      const timer = setTimeout(() => { t0 = performance.now(); ac.abort(new Error('aborted')); }, at);
      await expect(run.result()).rejects.toThrow('aborted');
      seen.push({ at: Math.round(at), ms: Math.round(performance.now() - t0), reason: run.stats!.stopReason, tokens: run.tokens.length });
      clearTimeout(timer);
    }
    expect(seen.every((x) => x.reason === 'abort' && x.ms < 250)).toBe(true);
    expect(seen[0].tokens + seen[1].tokens).toBe(0);  // aborted inside prompt processing
    expect(seen[2].tokens).toBeGreaterThan(0);         // aborted while decoding
    await d.dispose();
    await s.dispose();
    await m.dispose();
  });

  test('CLI: --method ead with its flags; the run says it is lossy', async () => {
    const cli = path.join(__dirname, '..', 'dist', 'cli', 'index.js');
    const run = promisify(execFile);
    const base = [cli, 'generate', '--model', code, '--prompt', 'def add(a, b):', '--max-tokens', '16', '--threads', '1'];
    const { stdout } = await run(process.execPath, [...base, '--json', '--method', 'ead', '--draft-model', codeDraft, '--ead-threshold', '1000', '--ead-window', '3', '--ead-min-dwell', '2']);
    const out = JSON.parse(stdout) as { tokens: number[]; stats: { lossless: boolean; ead: { sources: string } } };
    ds.truncate(0);
    expect(out.tokens).toEqual((await ds.generate('def add(a, b):', { maxTokens: 16 }).result()).tokens);
    expect(out.stats.lossless).toBe(false);
    expect(out.stats.ead.sources).toBe('S'.repeat(16));
    const { stderr } = await run(process.execPath, [...base, '--method', 'ead', '--draft-model', codeDraft]);
    expect(stderr).toMatch(/\[lossy \(ead\): \d+% of tokens from the target, \d+ switches/);
    await expect(run(process.execPath, [...base, '--ead-threshold', '1'])).rejects.toMatchObject({ stderr: expect.stringMatching(/--ead-threshold goes with --method ead/) });
    await expect(run(process.execPath, [...base, '--method', 'ead'])).rejects.toMatchObject({ stderr: expect.stringMatching(/--method ead needs --draft-model PATH/) });
    await expect(run(process.execPath, [...base, '--method', 'ead', '--draft-model', codeDraft, '--ead-window', '0'])).rejects.toMatchObject({ stderr: expect.stringMatching(/--ead-window must be at least 1/) });
  });

  test('typed errors for bad options; stats.lossless', async () => {
    const g = (o: Record<string, unknown>) => () => ts.generate(prompt, { maxTokens: 2, ...o });
    expect(g({ method: 'ead' })).toThrow(InvalidOptionError);
    expect(g({ method: 'ead' })).toThrow(/needs `draft: \{ model \}`/);
    const withDraft = { method: 'ead', draft: { model: draft } };
    for (const [ead, re] of [
      [{ threshold: Number.NaN }, /ead\.threshold.*finite/],
      [{ threshold: '1' }, /ead\.threshold.*finite/],
      [{ threshold: 1e6 }, /ead\.threshold.*between/],
      [{ window: 0 }, /ead\.window.*between/],
      [{ window: 2.5 }, /ead\.window.*integer/],
      [{ minDwell: 0 }, /ead\.minDwell.*between/],
      [{ thresh: 1 }, /unknown ead option 'thresh'/],
    ] as [Record<string, unknown>, RegExp][]) {
      expect(g({ ...withDraft, ead })).toThrow(InvalidOptionError);
      expect(g({ ...withDraft, ead })).toThrow(re);
    }
    expect(g({ method: 'draft', draft: { model: draft }, ead: { threshold: 1 } })).toThrow(/option 'ead' is for method 'ead'/);
    const other = await loadModel(stories);
    expect(g({ method: 'ead', draft: { model: other } })).toThrow(VocabularyMismatchError);
    await other.dispose();

    ts.truncate(0);
    expect((await ts.generate(prompt, { maxTokens: 2 }).result()).stats.lossless).toBe(true);
    expect((await ts.generate(prompt, { maxTokens: 2, method: 'draft', draft: { model: draft } }).result()).stats.lossless).toBe(true);
    expect((await ts.generate(prompt, { maxTokens: 2, method: 'lookup' }).result()).stats.lossless).toBe(true);
    const lossy = (await ts.generate(prompt, { maxTokens: 2, ...withDraft } as Record<string, unknown>).result()).stats;
    expect(lossy.lossless).toBe(false);
    expect(lossy.ead).toBeDefined();
  });
});
