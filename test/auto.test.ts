// 'auto' decides per step whether and with which drafter to speculate. With a draft model that cannot
// pay (random weights: its proposals are all rejected), it falls back to plain decoding: its stats
// show that most steps drafted nothing and that the draft model was dropped after being tried, and
// the greedy output stays the autoregressive one. The assertions are on its decisions, not on timings.
import { expect, it } from '@jest/globals';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { InvalidOptionError, loadModel } from '../lib';
import { cachedRandomModel } from './utils/random-model';
import { describeShared } from './utils/shared';

const run = promisify(execFile);
const cli = path.join(__dirname, '..', 'dist', 'cli', 'index.js');

describeShared("'auto' with a drafter that cannot pay", (dir) => {
  const target = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const randomDraft = () => cachedRandomModel({ arch: 'llama', vocabFrom: target, type: 'f32', nEmbd: 64, nLayer: 1, nHead: 2, nHeadKv: 1, nFf: 128, nCtx: 1024, seed: 3 });

  it('falls back to plain decoding: most steps draft nothing, the draft model is dropped, the output is unchanged', async () => {
    const m = await loadModel(target);
    const d = await loadModel(await randomDraft());
    try {
      const s = await m.createSession({ contextSize: 1024, threads: 1 });
      // greedy decoding with a repetition penalty: the continuation repeats neither the prompt nor
      // itself (retrieval finds nothing that the target accepts)
      const prompt = 'def checksum(data: bytes) -> int:\n    """Return the Adler-32 checksum of data."""\n';
      const opts = { maxTokens: 96, ignoreEos: true, repeatPenalty: 1.5, penaltyLastN: 256 };
      const ar = await s.generate(prompt, opts).result();
      expect(ar.stats.generatedTokens).toBe(96);
      const au = await s.generate(prompt, { ...opts, method: 'auto', draft: { model: d } }).result();
      expect(au.tokens).toEqual(ar.tokens);
      const a = au.stats.auto!;
      const steps = a.plainSteps + Object.values(a.steps).reduce((x, y) => x + y, 0);
      expect(Object.keys(a.steps).sort()).toEqual(['aded', 'draft', 'rasd']);
      expect(steps).toBeGreaterThan(20);
      expect(a.plainSteps / steps).toBeGreaterThan(0.5);
      expect(a.steps.draft).toBeGreaterThanOrEqual(1);  // tried (an optimistic prior) ...
      expect(a.steps.draft / steps).toBeLessThan(0.15);  // ... then dropped, but for exploration
      // a second generation in the session starts from what the first learnt (GenerationStats.auto)
      const again = await s.generate(prompt, { ...opts, method: 'auto', draft: { model: d } }).result();
      expect(again.tokens).toEqual(ar.tokens);
      expect(again.stats.auto!.steps.draft / steps).toBeLessThan(0.15);
    } finally {
      await d.dispose();
      await m.dispose();
    }
  });
});

describeShared("'auto' memory: saved, loaded, and the CLI's cache", (dir) => {
  const target = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const randomDraft = () => cachedRandomModel({ arch: 'llama', vocabFrom: target, type: 'f32', nEmbd: 64, nLayer: 1, nHead: 2, nHeadKv: 1, nFf: 128, nCtx: 1024, seed: 3 });
  const prompt = 'def checksum(data: bytes) -> int:\n    """Return the Adler-32 checksum of data."""\n';

  it('a loaded memory steers the first generation of a new session; the output stays exact; bad data is a typed error', async () => {
    const m = await loadModel(target);
    const d = await loadModel(await randomDraft());
    try {
      const s = await m.createSession({ contextSize: 1024, threads: 1 });
      const ar = await s.generate(prompt, { maxTokens: 64, ignoreEos: true }).result();
      const fresh = await s.generate(prompt, { maxTokens: 64, ignoreEos: true, method: 'auto', draft: { model: d } }).result();
      const saved = s.saveAutoMemory();
      expect(saved.version).toBe(2);
      expect(saved.threads).toBe(1);
      // the draft model's entry, and the retrieval drafters' per class of the depth they proposed
      expect(Object.keys(saved.drafters)).toContain('draft');
      for (const k of Object.keys(saved.drafters)) expect(k).toMatch(/^(draft|(rasd|aded)(@[0-4])?)$/);
      expect(saved.verifySeen[1]).toBeGreaterThan(0);  // one-token passes were measured
      // a round trip through JSON and another session gives the same data back
      const s2 = await m.createSession({ contextSize: 1024, threads: 1 });
      s2.loadAutoMemory(JSON.parse(JSON.stringify(saved)));
      expect(s2.saveAutoMemory()).toEqual(saved);
      // a memory claiming the (random) draft model is always right: the new session drafts with it from
      // its first step, and stays exact
      const believer = JSON.parse(JSON.stringify(saved)) as typeof saved;
      const always = Array.from({ length: 33 }, (_, k) => (k === 0 ? 0 : 1e6));
      believer.drafters.draft = {
        tried: always, accepted: always, msPerToken: 0.001, catchUpMsPerToken: 0.001, catchUpBatchMs: 0.001, fill: 1, depth: 1, n: 1000,
        predictedTokens: 0, realizedTokens: 0, predictedMs: 0, realizedMs: 0,
      };
      const s3 = await m.createSession({ contextSize: 1024, threads: 1 });
      s3.loadAutoMemory(believer);
      const led = await s3.generate(prompt, { maxTokens: 64, ignoreEos: true, method: 'auto', draft: { model: d } }).result();
      expect(led.tokens).toEqual(ar.tokens);
      const a = led.stats.auto!;
      // a fresh memory tries the random draft model once or twice; the believer drafts with it until its
      // calibration catches up (how long depends on the measured times: 17 to 55 steps of ~30 seen here)
      expect(fresh.stats.auto!.steps.draft).toBeLessThanOrEqual(3);
      expect(a.steps.draft).toBeGreaterThanOrEqual(10);
      for (const [bad, msg] of [
        [null, /must be an object/], [{ ...saved, version: 1 }, /version/], [{ ...saved, verifyMs: [1, 2] }, /verifyMs/],
        [{ ...saved, drafters: { nope: saved.drafters.draft } }, /unknown drafter 'nope'/],
        [{ ...saved, drafters: { 'rasd@7': saved.drafters.draft } }, /unknown drafter 'rasd@7'/],
        [{ ...saved, drafters: { draft: { ...saved.drafters.draft, accepted: saved.drafters.draft.tried.map((t) => t + 1) } } }, /must not exceed tried/],
        [{ ...saved, drafters: { draft: { ...saved.drafters.draft, fill: NaN } } }, /fill/],
      ] as const) {
        expect(() => s3.loadAutoMemory(bad as never)).toThrow(InvalidOptionError);
        expect(() => s3.loadAutoMemory(bad as never)).toThrow(msg);
      }
    } finally {
      await d.dispose();
      await m.dispose();
    }
  });

  it('generate --method auto keeps its memory in the cache folder; a corrupt cache file is ignored and rewritten', async () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-auto-cache-'));
    const draft = await randomDraft();
    const args = [cli, 'generate', '--model', target, '--draft-model', draft, '--prompt', prompt, '--max-tokens', '24', '--json', '--method', 'auto', '--threads', '1'];
    const env = { ...process.env, SPECDEC_CACHE_DIR: cache };
    try {
      const first = JSON.parse((await run(process.execPath, args, { env })).stdout) as { tokens: number[] };
      const files = fs.readdirSync(cache).filter((f) => f.startsWith('auto-') && f.endsWith('.json'));
      expect(files).toHaveLength(1);
      const file = path.join(cache, files[0]);
      expect(JSON.parse(fs.readFileSync(file, 'utf8')).version).toBe(2);
      fs.writeFileSync(file, '{ not json');
      const second = JSON.parse((await run(process.execPath, args, { env })).stdout) as { tokens: number[] };
      expect(second.tokens).toEqual(first.tokens);
      expect(JSON.parse(fs.readFileSync(file, 'utf8')).version).toBe(2);  // rewritten
      await run(process.execPath, [...args, '--no-auto-cache'], { env });
      expect(fs.readdirSync(cache).filter((f) => f.startsWith('auto-'))).toHaveLength(1);
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });
});
