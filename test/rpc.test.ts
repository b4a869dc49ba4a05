// Multi-host through ggml RPC: two `specdec rpc-server` processes on loopback hold a model's layers;
// the greedy tokens are the local CPU's, with the layers split by free memory and by tensorSplit,
// under the speculative methods too; unreachable servers and protocol mismatches are typed errors.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { execFile, spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { promisify } from 'util';
import { loadModel, RpcError, InvalidOptionError } from '../lib';
import { describeShared, itWith } from './utils/shared';

const run = promisify(execFile);
const cli = path.join(__dirname, '..', 'dist', 'cli', 'index.js');

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** `specdec rpc-server` on 127.0.0.1, resolved once its stdout says it listens. */
async function startServer(): Promise<{ proc: ChildProcess; endpoint: string; out: () => string }> {
  const port = await freePort();
  const proc = spawn(process.execPath, [cli, 'rpc-server', '--host', '127.0.0.1', '--port', String(port), '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 30000;
  // ggml prints its banner, then listens: wait for a connection to be accepted by the kernel
  while (!/transport/.test(out)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`rpc-server did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 200));
  return { proc, endpoint: `127.0.0.1:${port}`, out: () => out };
}

async function greedy(file: string, prompt: string, n: number, opts: Parameters<typeof loadModel>[1] = {}, gen: Record<string, unknown> = {}) {
  const m = await loadModel(file, opts);
  try {
    const s = await m.createSession({ contextSize: 512 });
    const r = await s.generate(prompt, { maxTokens: n, ...gen }).result();
    await s.dispose();
    return { tokens: r.tokens, stats: r.stats, info: m.info };
  } finally {
    await m.dispose();
  }
}

describeShared('multi-host through ggml RPC', (dir) => {
  const stories = path.join(dir, 'models', 'stories260K.gguf');
  const code = path.join(dir, 'models', 'code', 'code-target-q8_0.gguf');
  const codeDraft = path.join(dir, 'models', 'code', 'code-draft-f16.gguf');
  let a: Awaited<ReturnType<typeof startServer>>;
  let b: Awaited<ReturnType<typeof startServer>>;
  const ref = () => (JSON.parse(fs.readFileSync(path.join(dir, 'models', 'reference', 'stories260K-greedy.json'), 'utf8')) as
    { prompt: string; generated_tokens: number[] }[]).find((r) => r.prompt === 'Once upon a time')!.generated_tokens;

  beforeAll(async () => {
    [a, b] = await Promise.all([startServer(), startServer()]);
  }, 60000);
  afterAll(() => {
    a?.proc.kill();
    b?.proc.kill();
  });

  // first: a server serves one client at a time, and this jest process keeps its connections while its
  // models on the servers are alive
  let cliText = '';
  // each client that reaches a server (the endpoint check, then ggml-rpc's connection) is logged by it
  const accepted = (s: typeof a) => (s.out().match(/Accepted client connection/g) ?? []).length;
  it('the CLI: generate --rpc A --rpc B gives the local greedy tokens', async () => {
    const before = [accepted(a), accepted(b)];
    const { stdout } = await run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'Once upon a time', '--max-tokens', '32',
      '--json', '--rpc', a.endpoint, '--rpc', b.endpoint]);
    const out = JSON.parse(stdout) as { tokens: number[]; text: string };
    expect(out.tokens).toEqual(ref().slice(0, 32));
    cliText = out.text;
    expect(accepted(a)).toBeGreaterThan(before[0]);  // --rpc reached both servers
    expect(accepted(b)).toBeGreaterThan(before[1]);
  });

  it('the CLI: serve --rpc A --rpc B --tensor-split 2,3 answers with the same greedy text', async () => {
    expect(cliText.length).toBeGreaterThan(0);
    const before = [accepted(a), accepted(b)];
    const c = spawn(process.execPath, [cli, 'serve', '--model', stories, '--port', '0', '--rpc', a.endpoint, '--rpc', b.endpoint, '--tensor-split', '2,3'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let stderr = '';
      const url = await new Promise<string>((resolve, reject) => {
        c.stderr!.on('data', (d) => {
          stderr += d;
          const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
          if (m) resolve(m[1]);
        });
        c.on('close', () => reject(new Error(`exited: ${stderr}`)));
      });
      const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 32, temperature: 0 }) });
      expect(r.status).toBe(200);
      expect(((await r.json()) as { choices: { text: string }[] }).choices[0].text).toBe(cliText);
      expect(accepted(a)).toBeGreaterThan(before[0]);
      expect(accepted(b)).toBeGreaterThan(before[1]);
    } finally {
      await new Promise<void>((resolve) => {
        c.on('close', () => resolve());
        c.kill('SIGTERM');
      });
    }
  });

  it('stories260K split across two servers (by their free memory, and by tensorSplit) gives the local CPU\'s greedy tokens', async () => {
    const local = await greedy(stories, 'Once upon a time', 64, { backend: 'cpu' });
    expect(local.tokens).toEqual(ref());
    const layersOf = (device: string) => [...device.matchAll(/\((\d+) layers\)/g)].map((m) => Number(m[1]));
    const split = await greedy(stories, 'Once upon a time', 64, { rpc: [a.endpoint, b.endpoint] });
    expect(split.info.backend).toBe('rpc');
    expect(split.info.device).toContain(a.endpoint);
    expect(split.info.device).toContain(b.endpoint);
    expect(layersOf(split.info.device).reduce((x, y) => x + y, 0)).toBe(5);
    expect(layersOf(split.info.device).every((n) => n > 0)).toBe(true);  // both hold layers
    expect(split.tokens).toEqual(local.tokens);
    for (const [tensorSplit, layers] of [[[1, 4], [1, 4]], [[3, 2], [3, 2]], [[0, 1], [0, 5]]] as const) {
      const r = await greedy(stories, 'Once upon a time', 64, { rpc: [a.endpoint, b.endpoint], tensorSplit: [...tensorSplit] });
      expect({ tensorSplit, layers: layersOf(r.info.device) }).toEqual({ tensorSplit, layers });
      expect({ tensorSplit, tokens: r.tokens }).toEqual({ tensorSplit, tokens: local.tokens });
    }
  });

  it('the speculative methods run unchanged on top: lookup and token-recycling equal autoregressive', async () => {
    const prompt = 'Once upon a time, there was a little girl. Once upon a time, there was a little';
    const ar = await greedy(stories, prompt, 48, { backend: 'cpu' });
    for (const method of ['lookup', 'token-recycling']) {
      const r = await greedy(stories, prompt, 48, { rpc: [a.endpoint, b.endpoint] }, { method, draftMax: 8 });
      expect({ method, tokens: r.tokens }).toEqual({ method, tokens: ar.tokens });
      expect(r.stats.verifyPasses).toBeGreaterThan(0);
      expect(r.stats.draftedTokens).toBeGreaterThan(0);
    }
  });

  itWith(code, codeDraft)('the code target (Q8_0, 12 layers) split across two servers: its greedy tokens, and with its draft model', async () => {
    const prompt = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n';
    // the servers run ggml's CPU kernels: the local reference is ggml's kernels too
    const local = await greedy(code, prompt, 48, { backend: 'cpu', cpuKernels: 'ggml' });
    const split = await greedy(code, prompt, 48, { rpc: [a.endpoint, b.endpoint], tensorSplit: [5, 7] });
    expect(split.info.device).toMatch(/\(5 layers\).*\(7 layers\)/);
    expect(split.tokens).toEqual(local.tokens);
    const draft = await loadModel(codeDraft, { backend: 'cpu' });
    try {
      const r = await greedy(code, prompt, 48, { rpc: [a.endpoint, b.endpoint] }, { method: 'draft', draft: { model: draft } });
      expect(r.tokens).toEqual(local.tokens);
      expect(r.stats.acceptedTokens).toBeGreaterThan(0);
    } finally {
      await draft.dispose();
    }
  });

  it('unreachable servers, protocol mismatches and bad options are typed errors, never an abort', async () => {
    const closed = await freePort();
    await expect(loadModel(stories, { rpc: [`127.0.0.1:${closed}`] })).rejects.toMatchObject({ name: 'RpcError', code: 'ERR_RPC_UNREACHABLE' });
    await expect(loadModel(stories, { rpc: [a.endpoint, `127.0.0.1:${closed}`] })).rejects.toBeInstanceOf(RpcError);
    await expect(loadModel(stories, { rpc: ['no-such-host.invalid:50052'] })).rejects.toMatchObject({ code: 'ERR_RPC_UNREACHABLE' });
    // servers that are not ggml RPC servers of this protocol version
    const fakes: net.Server[] = [];
    const fake = async (answer: (c: net.Socket) => void) => {
      const s = net.createServer((c) => {
        c.on('error', () => undefined);
        c.once('data', () => answer(c));
      });
      fakes.push(s);
      await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
      return `127.0.0.1:${(s.address() as net.AddressInfo).port}`;
    };
    const older = await fake((c) => {
      const r = Buffer.alloc(8 + 28);
      r.writeBigUInt64LE(28n, 0);
      r[8] = 3;  // protocol 3.0.0
      c.write(r);
    });
    const http = await fake((c) => c.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    const closer = await fake((c) => c.destroy());
    try {
      await expect(loadModel(stories, { rpc: [older] })).rejects.toMatchObject({ name: 'RpcError', code: 'ERR_RPC_PROTOCOL', message: expect.stringMatching(/protocol 3\.0\.0/) });
      await expect(loadModel(stories, { rpc: [http] })).rejects.toMatchObject({ code: 'ERR_RPC_PROTOCOL' });
      await expect(loadModel(stories, { rpc: [closer] })).rejects.toMatchObject({ code: 'ERR_RPC_PROTOCOL' });
    } finally {
      for (const s of fakes) s.close();
    }
    await expect(loadModel(stories, { rpc: ['127.0.0.1'] })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(loadModel(stories, { rpc: [a.endpoint, a.endpoint] })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(loadModel(stories, { rpc: [a.endpoint], tensorSplit: [1, 1] })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringMatching(/2 shares for 1 RPC devices/) });
    await expect(loadModel(stories, { tensorSplit: [1] })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(loadModel(stories, { rpc: [a.endpoint], backend: 'cuda' })).rejects.toBeInstanceOf(InvalidOptionError);
    // and the servers still serve: the process was not taken down
    expect((await greedy(stories, 'Once upon a time', 8, { rpc: [a.endpoint, b.endpoint] })).tokens).toEqual(ref().slice(0, 8));
  });

  it('rpc-server: usage errors, a taken port, and ggml\'s warning when bound to anything but loopback', async () => {
    const fail = (args: string[]) => run(process.execPath, [cli, 'rpc-server', ...args]).then(() => { throw new Error(`exit 0 for ${args}`); }, (e: { code: number; stderr: string }) => e);
    expect(await fail(['--port', 'x'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--port must be an integer/) });
    expect(await fail(['--host', 'example.com'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--host must be an IPv4 address/) });
    expect(await fail(['--threads', '0'])).toMatchObject({ code: 2 });
    const taken = Number(a.endpoint.split(':')[1]);
    const busy = await fail(['--port', String(taken)]);
    expect(busy).toMatchObject({ code: 1, stderr: expect.stringMatching(/ERR_RPC_SERVER: 127\.0\.0\.1:\d+ is already in use/) });
    expect(busy.stderr).not.toMatch(/WARNING/);
    // 0.0.0.0 on a port taken on every interface: the warning, then the refusal; nothing listens
    const all = net.createServer();
    await new Promise<void>((resolve) => all.listen(0, '0.0.0.0', resolve));
    try {
      const r = await fail(['--host', '0.0.0.0', '--port', String((all.address() as net.AddressInfo).port)]);
      expect(r.stderr).toMatch(/WARNING: the RPC server binds 0\.0\.0\.0.*\n.*no authentication/);
      expect(r.code).toBe(1);
    } finally {
      all.close();
    }
    expect(a.out()).toMatch(/Starting RPC server v\d+\.\d+\.\d+/);
  });

  it('two models on the same servers at once; once this process has freed them, another process uses the servers', async () => {
    const m1 = await loadModel(stories, { rpc: [a.endpoint, b.endpoint] });
    const m2 = await loadModel(stories, { rpc: [b.endpoint, a.endpoint] });  // the live connections, not a new check
    const gen = async (m: typeof m1) => {
      const s = await m.createSession();
      const r = await s.generate('Once upon a time', { maxTokens: 16 }).result();
      await s.dispose();
      return r.tokens;
    };
    expect(await gen(m1)).toEqual(ref().slice(0, 16));
    expect(await gen(m2)).toEqual(ref().slice(0, 16));
    await m1.dispose();
    await m2.dispose();
    // the weights' buffers were the connections' last users: the servers are free for another client
    const { stdout } = await run(process.execPath, [cli, 'generate', '--model', stories, '--prompt', 'Once upon a time', '--max-tokens', '16',
      '--json', '--rpc', a.endpoint, '--rpc', b.endpoint]);
    expect((JSON.parse(stdout) as { tokens: number[] }).tokens).toEqual(ref().slice(0, 16));
  });

  it('a server that went away after this process used it is checked again: a typed error, not ggml-rpc\'s abort', async () => {
    const c = await startServer();
    try {
      const m = await loadModel(stories, { rpc: [c.endpoint] });
      await m.dispose();
    } finally {
      await new Promise<void>((resolve) => {
        c.proc.on('close', () => resolve());
        c.proc.kill();
      });
    }
    await expect(loadModel(stories, { rpc: [c.endpoint] })).rejects.toMatchObject({ name: 'RpcError', code: 'ERR_RPC_UNREACHABLE' });
  });
});
