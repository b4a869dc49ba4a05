// The `serve` and `info` commands of the CLI (dist/cli/index.js): serve listens on 127.0.0.1 by default,
// says where once the model is loaded, answers requests and stops on SIGTERM / Ctrl-C; its flag errors
// are usage errors before any model loads. info prints a summary first and names tensor types.
import { expect, it } from '@jest/globals';
import { spawn } from 'child_process';
import * as net from 'net';
import * as path from 'path';
import { describeShared } from './utils/shared';

const cli = path.join(__dirname, '..', 'dist', 'cli', 'index.js');

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describeShared('CLI: serve and info', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const target = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');

  it('serve: binds 127.0.0.1, serves, checks its key, stops on SIGTERM (exit 0) and on Ctrl-C (exit 130)', async () => {
    for (const [sig, exit] of [['SIGTERM', 0], ['SIGINT', 130]] as const) {
      const c = spawn(process.execPath, [cli, 'serve', '--model', stories, '--port', '0', '--parallel', '2', '--api-key', 'k1', '--max-tokens', '7'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      const url = await new Promise<string>((resolve, reject) => {
        c.stderr.on('data', (d) => {
          stderr += d;
          const m = /listening on (http:\/\/127\.0\.0\.1:\d+) \(2 slots, method autoregressive\)/.exec(stderr);
          if (m) resolve(m[1]);
        });
        c.on('close', () => reject(new Error(`exited: ${stderr}`)));
      });
      const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer k1' }, body: '{"prompt":"Once upon a time"}' });
      expect(r.status).toBe(200);
      // the server's default from --max-tokens
      expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(7);
      expect((await fetch(`${url}/v1/models`)).status).toBe(401);
      const code = await new Promise<number | null>((resolve) => {
        c.on('close', (k) => resolve(k));
        c.kill(sig);
      });
      expect({ sig, code }).toEqual({ sig, code: exit });
      expect(stderr).not.toMatch(/WARNING/);
    }
  });

  it('serve: flag errors exit 2 before loading; a port in use exits 1 with one line', async () => {
    for (const [args, re] of [
      [['serve'], /--model PATH is required/],
      [['serve', '--model', stories, '--port', '70000'], /--port must be at least 0 and at most 65535/],
      [['serve', '--model', stories, '--method', 'draft'], /--method draft needs --draft-model PATH/],
      [['serve', '--model', stories, '--parallel', '0'], /--parallel must be at least 1/],
      [['serve', '--model', stories, '--temperature', 'hot'], /--temperature must be a number/],
      [['serve', '--model', stories, '--nope'], /unknown option --nope for serve/],
      [['serve', '--model', stories, 'extra'], /unexpected argument 'extra'/],
    ] as Array<[string[], RegExp]>) {
      const r = await runCli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(re);
    }
    const r = await runCli(['serve', '--model', path.join(dir, 'nope.gguf')]);
    expect(r).toMatchObject({ code: 1, stderr: expect.stringMatching(/^specdec: --model .*nope\.gguf: no such file\n$/) });
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = String((taken.address() as net.AddressInfo).port);
      const t = await runCli(['serve', '--model', stories, '--port', port]);
      expect(t).toMatchObject({ code: 1, stderr: expect.stringMatching(new RegExp(`^specdec: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*\n$`)) });
    } finally {
      taken.close();
    }
  });

  it('info: a summary first (architecture, parameters, weight types by name, context, tokenizer, chat template); --json names the tensor types', async () => {
    const r = await runCli(['info', target]);
    expect(r.code).toBe(0);
    const head = r.stdout.split('\n').slice(0, 8).join('\n');
    expect(head).toBe([
      target,
      '  architecture  llama (pycode-target)',
      '  parameters    42.0 M (41955840), 12 layers, embedding 512',
      '  weight types  Q8_0 (85 tensors, 41.9 M), F32 (25 tensors, 12.8 K)',
      '  context       1024 tokens (training)',
      '  tokenizer     gpt2 (byte-level BPE), 8192 tokens, pre-tokenizer qwen2',
      '  chat template none',
      '  file          GGUF v3, 44884608 bytes, 110 tensors',
    ].join('\n'));
    expect(r.stdout).toMatch(/\nmetadata:\n {2}general\.architecture = "llama"\n/);
    const j = JSON.parse((await runCli(['info', stories, '--json'])).stdout);
    expect(j.tensorTypes).toEqual({ F32: expect.any(Number) });
    expect(j.summary).toMatchObject({ architecture: 'llama', chatTemplate: false, contextLength: 2048, tokenizer: { model: 'llama', vocabSize: 512 } });
    expect(j.summary.weightTypes[0]).toMatchObject({ type: 'F32', parameters: j.summary.parameters });
    // a file with a chat template
    const q = JSON.parse((await runCli(['info', path.join(dir, 'models', 'vocab', 'ggml-vocab-qwen2.gguf'), '--json'])).stdout);
    expect(q.summary.chatTemplate).toBe(true);
    expect((await runCli(['info', path.join(dir, 'models', 'vocab', 'ggml-vocab-qwen2.gguf')])).stdout).toMatch(/\n {2}chat template yes/);
  });
});
