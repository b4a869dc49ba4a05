/**
 * `specdec serve`: the OpenAI-compatible server (lib/server) on a port. Prints where it listens on
 * stderr once the model is loaded; Ctrl-C or SIGTERM closes it (running generations are aborted).
 *
 *   specdec serve --model T.gguf [--draft-model D.gguf] [--method auto] [--host 127.0.0.1] [--port 8080]
 *                 [--parallel N] [--api-key K] ...
 */
import { isIP } from 'node:net';
import { METHODS, type Method } from '../session';
import { createServer, type ServerDefaults, type ServerOptions } from '../server';

export const SERVE_USAGE = `  specdec serve --model PATH [options]          an OpenAI-compatible HTTP server (/v1/chat/completions, ...)
      --host H            address to bind (default 127.0.0.1; anything else is reachable from other machines)
      --port P            port (default 8080; 0 = any free port)
      --parallel N        requests served at once, one session (KV cache) each (default 1)
      --max-queue N       requests that may wait for a slot (default 16); more get 429
      --api-key K         require Authorization: Bearer K (also $SPECDEC_API_KEY)
      --method M          default method of requests that name none (default: auto with --draft-model or --heads, else autoregressive)
      --draft-model PATH  draft model for draft | rsd | rasd | auto
      --heads F           head file for medusa | eagle | chimera | hidden-transfer | auto
      --context-size N --batch-size N --threads N   per slot
      --chat-template-file F        a Jinja chat template instead of the model's
      --no-chat-template-fallback   refuse chat requests (400) for a model without a template (default: ChatML)
      --alias NAME        model id in /v1/models (default: the file name)
      --max-tokens N --temperature T --top-k K --top-p P --min-p P --repeat-penalty R --draft-max N
                          defaults for requests that leave them out
      --body-limit BYTES  largest request body (default 1048576)
      --backend B --cpu-kernels K
      --rpc HOST:PORT     the model's layers on this ggml RPC server (repeatable; see rpc-server) [--tensor-split A,B,..]
`;

type Flags = Map<string, string[]>;

export async function serveCommand(
  flags: Flags, usageError: (msg: string) => Error, checkFile: (flag: string, path: string) => void,
  readText: (flag: string, path: string) => string,
): Promise<number> {
  const one = (n: string) => flags.get(n)?.at(-1);
  const int = (n: string, min: number, max: number): number | undefined => {
    const v = one(n);
    if (v === undefined) return undefined;
    const x = Number(v);
    if (v.trim() === '' || !Number.isInteger(x)) throw usageError(`--${n} must be an integer, got '${v}'`);
    if (x < min || x > max) throw usageError(`--${n} must be at least ${min} and at most ${max}, got ${x}`);
    return x;
  };
  const real = (n: string, min: number, max: number, strict = false): number | undefined => {
    const v = one(n);
    if (v === undefined) return undefined;
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x)) throw usageError(`--${n} must be a number, got '${v}'`);
    if (x < min || x > max || (strict && x === min)) throw usageError(`--${n} must be ${strict ? `greater than ${min}` : `at least ${min}`} and at most ${max}, got ${x}`);
    return x;
  };
  const modelPath = one('model');
  if (!modelPath) throw usageError('--model PATH is required');
  const method = one('method');
  if (method !== undefined && !(METHODS as readonly string[]).includes(method)) throw usageError(`--method must be one of ${METHODS.join(', ')}, got '${method}'`);
  const host = one('host') ?? '127.0.0.1';
  if (host.length === 0) throw usageError('--host must not be empty');
  const port = int('port', 0, 65535) ?? 8080;
  const backend = one('backend');
  if (backend !== undefined && !['auto', 'cpu', 'cuda', 'metal'].includes(backend)) throw usageError(`--backend must be one of auto, cpu, cuda, metal, got '${backend}'`);
  const cpuKernels = one('cpu-kernels');
  if (cpuKernels !== undefined && !['specdec', 'ggml'].includes(cpuKernels)) throw usageError(`--cpu-kernels must be one of specdec, ggml, got '${cpuKernels}'`);
  const ts = one('tensor-split');
  if (ts !== undefined && !flags.get('rpc')) throw usageError('--tensor-split goes with --rpc');
  const tensorSplit = ts?.split(',').map(Number);
  if (tensorSplit && (tensorSplit.some((x) => !Number.isFinite(x) || x < 0) || ts!.split(',').some((x) => x.trim() === '') || !tensorSplit.some((x) => x > 0))) {
    throw usageError(`--tensor-split must be non-negative numbers separated by commas, not all 0, got '${ts}'`);
  }
  const draftPath = one('draft-model');
  const heads = one('heads');
  if ((method === 'draft' || method === 'rsd') && !draftPath) throw usageError(`--method ${method} needs --draft-model PATH`);
  if (method !== undefined && ['medusa', 'eagle', 'chimera', 'hidden-transfer'].includes(method) && !heads) throw usageError(`--method ${method} needs --heads FILE`);
  const apiKey = one('api-key') ?? process.env.SPECDEC_API_KEY;
  if (apiKey !== undefined && apiKey.length === 0) throw usageError('--api-key must not be empty');
  const defaults: ServerDefaults = {
    maxTokens: int('max-tokens', 0, 1 << 30), temperature: real('temperature', 0, 100), topK: int('top-k', 0, 1 << 30),
    topP: real('top-p', 0, 1), minP: real('min-p', 0, 1), repeatPenalty: real('repeat-penalty', 0, 100, true), draftMax: int('draft-max', 1, 255),
  };
  for (const k of Object.keys(defaults) as (keyof ServerDefaults)[]) if (defaults[k] === undefined) delete defaults[k];
  const options: ServerOptions = {
    model: modelPath,
    ...(draftPath ? { draftModel: draftPath } : {}),
    ...(heads ? { heads } : {}),
    ...(method ? { method: method as Method } : {}),
    parallel: int('parallel', 1, 256) ?? 1,
    ...(int('max-queue', 0, 1 << 20) !== undefined ? { maxQueue: int('max-queue', 0, 1 << 20) } : {}),
    ...(int('body-limit', 1, 1 << 30) !== undefined ? { bodyLimit: int('body-limit', 1, 1 << 30) } : {}),
    ...(int('context-size', 1, 1 << 20) !== undefined ? { contextSize: int('context-size', 1, 1 << 20) } : {}),
    ...(int('batch-size', 1, 8192) !== undefined ? { batchSize: int('batch-size', 1, 8192) } : {}),
    ...(int('threads', 1, 512) !== undefined ? { threads: int('threads', 1, 512) } : {}),
    ...(backend ? { backend: backend as ServerOptions['backend'] } : {}),
    ...(cpuKernels ? { cpuKernels: cpuKernels as 'specdec' | 'ggml' } : {}),
    ...(flags.get('rpc') ? { rpc: flags.get('rpc') } : {}),
    ...(tensorSplit ? { tensorSplit } : {}),
    ...(apiKey !== undefined ? { apiKey } : {}),
    ...(one('alias') ? { modelAlias: one('alias') } : {}),
    defaults,
  };
  // files before anything loads
  checkFile('--model', modelPath);
  if (draftPath) checkFile('--draft-model', draftPath);
  if (heads) checkFile('--heads', heads);
  const templateFile = one('chat-template-file');
  if (templateFile) options.chatTemplate = readText('--chat-template-file', templateFile);
  else if (one('no-chat-template-fallback') === 'true') options.chatTemplate = false;

  const server = createServer(options);
  let signalled: string | undefined;
  const stop = (sig: string) => {
    signalled = sig;
    void server.dispose();
  };
  const onInt = () => stop('SIGINT');
  const onTerm = () => stop('SIGTERM');
  process.once('SIGINT', onInt);
  process.once('SIGTERM', onTerm);
  try {
    const listenError = await new Promise<Error | undefined>((resolve) => {
      server.once('error', resolve);
      server.listen(port, host, () => {
        server.off('error', resolve);
        resolve(undefined);
      });
    });
    if (listenError) {
      await server.dispose();
      process.stderr.write(`specdec: cannot listen on ${host}:${port}: ${listenError.message}\n`);
      return 1;
    }
    const addr = server.address();
    const where = typeof addr === 'object' && addr ? `http://${isIP(addr.address) === 6 ? `[${addr.address}]` : addr.address}:${addr.port}` : String(addr);
    process.stderr.write(`specdec serve: loading ${modelPath}${draftPath ? ` (draft ${draftPath})` : ''}; ${where}/health answers 503 until ready\n`);
    if (!['127.0.0.1', '::1', 'localhost'].includes(host)) {
      process.stderr.write(`specdec serve: WARNING: bound to ${host}, reachable from other machines${apiKey ? '' : ' and without --api-key'}; there is no TLS\n`);
    }
    await server.ready;
    process.stderr.write(`specdec serve: listening on ${where} (${options.parallel} slot${options.parallel === 1 ? '' : 's'}, method ${server.defaultMethod})\n`);
    await new Promise<void>((resolve) => server.once('close', () => resolve()));
    await server.dispose();
    if (signalled) process.stderr.write(`specdec serve: ${signalled}, stopped\n`);
    return signalled === 'SIGINT' ? 130 : 0;
  } catch (err) {
    await server.dispose();
    if (signalled) {
      process.stderr.write(`specdec serve: ${signalled}, stopped\n`);
      return signalled === 'SIGINT' ? 130 : 0;
    }
    throw err;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}
