/**
 * The default thread count: one compute thread per available CPU (os.availableParallelism,
 * which honours CPU affinity) minus one, at least 1 and at most 8. The CPU left over is for
 * the Node.js event loop: ggml's threads synchronise with spinning barriers, and when any of
 * them loses its core (to the event loop or another process) every barrier waits for it and
 * decoding collapses (measured on this 2-core machine: both specdec and node-llama-cpp fall
 * to single-digit tok/s at 2 threads while another process runs). On an idle machine all CPUs
 * are faster (2-core machine, code model: ~750-830 tok/s on 1 thread, ~1,050-1,100 on 2): pass
 * `threads: N`, or `threads: 'auto'` to time 1..N threads at session creation.
 * The default is deterministic on purpose: at contexts of 512+ cells ggml's flash attention
 * splits the KV range across threads, so the thread count is part of the numerics (as in
 * llama.cpp), and a load-dependent choice would make outputs load-dependent.
 */
import { availableParallelism } from 'node:os';

export const MAX_DEFAULT_THREADS = 8;

export function availableCpus(): number {
  return Math.max(1, availableParallelism());
}

export function defaultThreads(): number {
  return Math.max(1, Math.min(availableCpus() - 1, MAX_DEFAULT_THREADS));
}

/** Thread counts `threads: 'auto'` tries (ascending): 1, 2, 4, ... up to every available CPU (at most 8). */
export function threadCandidates(): number[] {
  const top = Math.min(availableCpus(), MAX_DEFAULT_THREADS);
  const out: number[] = [];
  for (let n = 1; n < top; n *= 2) out.push(n);
  out.push(top);
  return out;
}
