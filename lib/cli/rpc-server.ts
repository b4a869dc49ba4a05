/**
 * `specdec rpc-server [--host 127.0.0.1] [--port 50052] [--threads N]`: ggml's RPC server, which offers
 * this machine's devices (the GPUs of a CUDA/Metal build, else the CPU) to a loadModel({ rpc }) or an
 * `--rpc` elsewhere. The native server blocks its thread while it serves, so the command is a process
 * of its own: stop it with Ctrl-C or a signal.
 */
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { binding } from '../binding';
import { fromNative } from '../errors';
import type { Flags } from './args';


function one(flags: Flags, name: string): string | undefined {
  const v = flags.get(name);
  return v ? v[v.length - 1] : undefined;
}

/** Is host:port free? Node's own listen, so that a taken port is one clear line, not ggml's. */
function checkListen(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE' ? `${host}:${port} is already in use` : `cannot listen on ${host}:${port}: ${err.message}`));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(undefined)));
  });
}

export async function rpcServerCommand(flags: Flags, usage: (m: string) => Error): Promise<number> {
  // ggml's server listens on an IPv4 address
  const hostFlag = one(flags, 'host') ?? '127.0.0.1';
  const host = hostFlag === 'localhost' ? '127.0.0.1' : hostFlag;
  const portText = one(flags, 'port') ?? '50052';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw usage(`--port must be an integer from 1 to 65535, got '${portText}'`);
  const threadsText = one(flags, 'threads');
  const threads = threadsText === undefined ? availableParallelism() : Number(threadsText);
  if (!Number.isInteger(threads) || threads < 1 || threads > 512) throw usage(`--threads must be an integer from 1 to 512, got '${threadsText}'`);
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.split('.').some((x) => Number(x) > 255)) {
    throw usage(`--host must be an IPv4 address of this machine (ggml's RPC server listens on IPv4), got '${hostFlag}'`);
  }

  if (!host.startsWith('127.')) {
    process.stderr.write(
      `WARNING: the RPC server binds ${host}, not 127.0.0.1: it is reachable from the network.\n` +
        '  ggml\'s RPC server has no authentication and no encryption: whoever can connect can use this machine\'s devices\n' +
        '  and read what they hold. Never expose it to an open network; this is an experimental feature and is not secure.\n',
    );
  }
  const busy = await checkListen(host, port);
  if (busy) {
    process.stderr.write(`specdec: ERR_RPC_SERVER: ${busy}\n`);
    return 1;
  }
  const endpoint = `${host}:${port}`;
  try {
    binding().rpcServe(endpoint, threads);  // returns only when the server could not start
  } catch (err) {
    const e = fromNative(err) as Error & { code?: string };
    process.stderr.write(`specdec: ${e.code ?? 'ERR_INTERNAL'}: ${e.message}\n`);
    return 1;
  }
  return 1;
}
