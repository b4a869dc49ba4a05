// The command line (dist/cli/index.js, built by `npm install`): the --json contract, the method
// flags, and usage errors.
import { expect, it } from '@jest/globals';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { loadModel } from '../lib';
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
      for (const extra of [[], ['--method', 'lookup'], ['--method', 'token-recycling', '--draft-max', '16'], ['--method', 'rasd', '--corpus-file', corpus], ['--method', 'auto'], ['--cpu-kernels', 'ggml']]) {
        const { stdout } = await run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'Once upon a time', '--max-tokens', '24', '--json', ...extra]);
        const out = JSON.parse(stdout) as { tokens: number[]; text: string; stats: { method: string } };
        expect({ extra, tokens: out.tokens }).toEqual({ extra, tokens: api.tokens });
        expect(out.stats.method).toBe(extra[0] === '--method' ? extra[1] : 'autoregressive');
      }
    } finally {
      fs.rmSync(corpus, { force: true });
    }
  });

  it('usage errors exit non-zero with a message', async () => {
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'x', '--draft-model', stories, '--method', 'lookup'])).rejects.toMatchObject({ stderr: expect.stringMatching(/--draft-model goes with/) });
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'x', '--method', 'nope'])).rejects.toMatchObject({ stderr: expect.stringMatching(/method must be one of/) });
    await expect(run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'x', '--cpu-kernels', 'fast'])).rejects.toMatchObject({ stderr: expect.stringMatching(/cpuKernels/) });
  });

  it('info --json describes the model', async () => {
    const { stdout } = await run(process.execPath, [cli, 'info', stories, '--json']);
    const info = JSON.parse(stdout) as { tensorCount: number; metadata: Record<string, unknown> };
    expect(info.metadata['general.architecture']).toBe('llama');
    expect(info.tensorCount).toBe(48);
  });
});
