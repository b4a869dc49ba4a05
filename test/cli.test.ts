// The command line (dist/cli/index.js, built by `npm install`): the --json contract, the method
// flags, usage errors, file errors, Ctrl-C and a reader that leaves early.
import { expect, it } from '@jest/globals';
import { execFile, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { loadModel } from '../lib';
import { cachedRandomModel } from './utils/random-model';
import { describeShared } from './utils/shared';

const run = promisify(execFile);
const cli = path.join(__dirname, '..', 'dist', 'cli', 'index.js');

describeShared('CLI', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');

  it('generate --json prints one JSON object whose tokens are the API greedy tokens, for several methods', async () => {
    const m = await loadModel(stories);
    const s = await m.createSession();
    const api = await s.generate('Once upon a time', { maxTokens: 24 }).result();
    await m.dispose();
    const corpus = path.join(os.tmpdir(), `specdec-cli-corpus-${process.pid}.txt`);
    fs.writeFileSync(corpus, `Once upon a time${api.text}`);
    try {
      for (const extra of [[], ['--method', 'lookup'], ['--method', 'token-recycling', '--draft-max', '16'], ['--method', 'rasd', '--corpus-file', corpus], ['--method', 'auto']]) {
        const { stdout } = await run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'Once upon a time', '--max-tokens', '24', '--json', ...extra]);
        const out = JSON.parse(stdout) as { tokens: number[]; text: string; stats: { method: string } };
        expect({ extra, tokens: out.tokens }).toEqual({ extra, tokens: api.tokens });
        expect(out.stats.method).toBe(extra[0] === '--method' ? extra[1] : 'autoregressive');
      }
    } finally {
      fs.rmSync(corpus, { force: true });
    }
  });

  it('--cpu-kernels reaches the model: on a Q8_0 model, where the two kernel sets round differently, each flag gives its kernel set\'s API output', async () => {
    // stories260K's F32 weights run on ggml's kernels either way, so they cannot tell the flag apart; a
    // Q8_0 model whose logits are all near-ties (std 0.02) turns the kernels' last-bit differences into other tokens
    const f = await cachedRandomModel({ arch: 'llama', vocabFrom: stories, type: 'q8_0', outScale: 0.02, seed: 5 });
    const api: Record<string, number[]> = {};
    for (const k of ['specdec', 'ggml'] as const) {
      const m = await loadModel(f, { cpuKernels: k });
      expect(m.info.cpuKernels.startsWith(k)).toBe(true);
      const s = await m.createSession();
      api[k] = (await s.generate('Once upon a time', { maxTokens: 48 }).result()).tokens;
      await m.dispose();
    }
    expect(api.specdec).not.toEqual(api.ggml);  // else a CLI that ignored the flag would pass
    for (const k of ['specdec', 'ggml']) {
      const { stdout } = await run(process.execPath, [cli, 'generate', '--model', f, '--prompt', 'Once upon a time', '--max-tokens', '48', '--json', '--cpu-kernels', k]);
      expect({ k, tokens: (JSON.parse(stdout) as { tokens: number[] }).tokens }).toEqual({ k, tokens: api[k] });
    }
  });

  it('generate without --model runs the embedded assets/stories260K.gguf and says so on stderr', async () => {
    const { stdout, stderr } = await run(process.execPath, [cli, 'generate', '--prompt', 'Once upon a time', '--max-tokens', '16', '--json']);
    expect(stderr).toMatch(/no --model given: using the embedded model .*assets\/stories260K\.gguf/);
    const ref = (JSON.parse(fs.readFileSync(path.join(dir, 'models', 'reference', 'stories260K-greedy.json'), 'utf8')) as
      { prompt: string; generated_tokens: number[] }[]).find((r) => r.prompt === 'Once upon a time')!;
    expect((JSON.parse(stdout) as { tokens: number[] }).tokens).toEqual(ref.generated_tokens.slice(0, 16));
    // the embedded file is the shared one, byte for byte
    expect(fs.readFileSync(path.join(__dirname, '..', 'assets', 'stories260K.gguf')).equals(fs.readFileSync(stories))).toBe(true);
  });

  it('usage errors exit non-zero with a message', async () => {
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'x', '--draft-model', stories, '--method', 'lookup'])).rejects.toMatchObject({ stderr: expect.stringMatching(/--draft-model goes with/) });
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'x', '--method', 'nope'])).rejects.toMatchObject({ stderr: expect.stringMatching(/method must be one of/) });
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'x', '--cpu-kernels', 'fast'])).rejects.toMatchObject({ stderr: expect.stringMatching(/--cpu-kernels must be one of specdec, ggml/) });
  });

  it('info --json describes the model', async () => {
    const { stdout } = await run(process.execPath, [cli, 'info', stories, '--json']);
    const info = JSON.parse(stdout) as { tensorCount: number; metadata: Record<string, unknown> };
    expect(info.metadata['general.architecture']).toBe('llama');
    expect(info.tensorCount).toBe(48);
  });

  /** Runs the CLI to its end: exit code (or signal), stdout, stderr. `onSpawn` sees the child first. */
  const runCli = (args: string[], onSpawn?: (c: ReturnType<typeof spawn>) => void) =>
    new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) => {
      const c = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
      c.stdout!.on('error', () => undefined);
      c.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      c.on('close', (code, signal) => resolve({ code: code ?? String(signal), stdout, stderr }));
      onSpawn?.(c);
    });

  // a random model with a long context whose greedy text from this prompt meets no end-of-generation
  // token for thousands of tokens: a generation that lasts many seconds unless interrupted
  const longModel = async () => {
    const f = await cachedRandomModel({ arch: 'llama', vocabFrom: path.join(dir, 'models', 'vocab', 'ggml-vocab-llama-spm.gguf'), type: 'f16', nCtx: 32768 });
    const m = await loadModel(f);
    const r = await (await m.createSession({ contextSize: 4096 })).generate('Once upon a time', { maxTokens: 2000 }).result();
    await m.dispose();
    expect(r.stats.stopReason).toBe('maxTokens');
    return f;
  };

  it('Ctrl-C stops at the next step: the partial text, the stats with stop: abort, exit code 130', async () => {
    const f = await longModel();
    const started = Date.now();
    const r = await runCli(['generate', '--model', f, '--prompt', 'Once upon a time', '--max-tokens', '16000', '--context-size', '16384'], (c) => {
      c.stdout!.once('data', () => c.kill('SIGINT'));
    });
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/^\[(\d+) tokens, .* stop: abort\]\n$/);
    const n = Number(/^\[(\d+) tokens/.exec(r.stderr)![1]);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(16000);
    expect(r.stdout.length).toBeGreaterThan(1);
    expect(Date.now() - started).toBeLessThan(60000);
    // --json: the partial result as the one JSON object
    const j = await runCli(['generate', '--model', f, '--prompt', 'Once upon a time', '--max-tokens', '16000', '--context-size', '16384', '--json'], (c) => {
      setTimeout(() => c.kill('SIGINT'), 3000);  // after loading, long before 16000 tokens
    });
    expect(j.code).toBe(130);
    const out = JSON.parse(j.stdout) as { tokens: number[]; stats: { stopReason: string; generatedTokens: number } };
    expect(out.stats.stopReason).toBe('abort');
    expect(out.tokens.length).toBe(out.stats.generatedTokens);
  });

  it('a reader that closes stdout early: a quiet exit, no EPIPE stack trace (generate and info)', async () => {
    for (const args of [
      ['generate', '--model', stories, '--prompt', 'Once upon a time', '--max-tokens', '200'],
      ['generate', '--model', stories, '--prompt', 'Once upon a time', '--max-tokens', '200', '--json'],
      ['info', stories],
      ['info', stories, '--json'],
      ['--help'],
    ]) {
      // the reading end is gone before the child writes anything: its first write fails with EPIPE
      const r = await runCli(args, (c) => c.stdout!.destroy());
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
    }
  });

  it('missing or unreadable files: one line on stderr, exit code 1, before any model loads', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-cli-files-'));
    const nope = path.join(tmp, 'nope');
    const cases: Array<[string[], RegExp]> = [
      [['generate', '--model', nope, '--prompt', 'x'], /^specdec: --model .*nope: no such file\n$/],
      [['generate', '--model', stories, '--prompt-file', nope], /^specdec: --prompt-file .*nope: no such file\n$/],
      [['generate', '--model', stories, '--prompt-file', tmp], /^specdec: --prompt-file .*: is a directory, not a file\n$/],
      [['generate', '--model', stories, '--prompt', 'x', '--method', 'rasd', '--corpus-file', nope], /^specdec: --corpus-file .*nope: no such file\n$/],
      [['generate', '--model', stories, '--prompt', 'x', '--method', 'draft', '--draft-model', nope], /^specdec: --draft-model .*nope: no such file\n$/],
    ];
    for (const [args, re] of cases) {
      const r = await runCli(args);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 1, stderr: expect.stringMatching(re) });
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('errors speak the flags: flag errors before the model loads, API names mapped to flags', async () => {
    // not a model file: a flag error must be found before loading it would fail
    const notModel = path.join(os.tmpdir(), `specdec-cli-not-a-model-${process.pid}.txt`);
    fs.writeFileSync(notModel, 'not a model');
    try {
      for (const [flags, re] of [
        [['--draft-max', '0'], /^specdec: --draft-max must be at least 1/],
        [['--temperature', '-1'], /^specdec: --temperature must be at least 0/],
        [['--repeat-penalty', '0'], /^specdec: --repeat-penalty must be greater than 0/],
        [['--max-tokens', '1.5'], /^specdec: --max-tokens must be an integer/],
        [['--method', 'draft'], /^specdec: --method draft needs --draft-model PATH/],
        [['--rsd-tree', 'beam-search'], /^specdec: --rsd-tree goes with --method rsd/],
        [['--backend', 'tpu'], /^specdec: --backend must be one of/],
        [['--verify', 'exact'], /^specdec: --verify must be one of match, rejection/],
      ] as Array<[string[], RegExp]>) {
        const r = await runCli(['generate', '--model', notModel, '--prompt', 'x', ...flags]);
        expect({ flags, code: r.code, stderr: r.stderr }).toEqual({ flags, code: 2, stderr: expect.stringMatching(re) });
      }
    } finally {
      fs.rmSync(notModel, { force: true });
    }
    // an error only the API can find (the model's training context) comes back in flag names
    const r = await runCli(['generate', '--model', stories, '--prompt', 'x', '--context-size', '100000']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^specdec: ERR_INVALID_OPTION: --context-size 100000 is larger than the model's training context/);
    expect(r.stderr).not.toMatch(/contextSize/);
  });

  it('stray arguments are usage errors', async () => {
    for (const [args, re] of [
      [['generate', '--model', stories, '--prompt', 'x', '-n', '10'], /unknown option -n/],
      [['generate', '--model', stories, '--prompt', 'x', 'more', 'words'], /unexpected argument 'more'/],
      [['info', stories, 'extra'], /unexpected argument 'extra'/],
      [['info', stories, '--max-tokens', '3'], /unknown option --max-tokens for info/],
      [['generate', '--model', stories, '--prompt', 'x', '--nope'], /unknown option --nope/],
    ] as Array<[string[], RegExp]>) {
      const r = await runCli(args);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 2, stderr: expect.stringMatching(re) });
      expect(r.stdout).toBe('');
    }
  });

  it('--help, -h and --version print and exit 0', async () => {
    for (const args of [['--help'], ['-h'], ['generate', '--help'], ['generate', '-h'], ['info', '--help'], ['info', '-h']]) {
      const r = await runCli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 0 });
      expect(r.stdout).toMatch(/^usage:\n  specdec generate \[--model PATH\]/);
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(await runCli(['--version'])).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });
});
