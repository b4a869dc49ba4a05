/**
 * The default thread count, from the model size and the CPUs this process may use
 * (os.availableParallelism, which honours CPU affinity):
 *  - models under 16 MB: 1 thread. Measured on a 2-core machine: stories260K decodes at
 *    ~7,800 tok/s on one thread; every extra thread only adds synchronisation (node-llama-cpp's
 *    default of 4 threads collapses to under 1 tok/s there);
 *  - larger models: one thread per available CPU, at most 8 (the code target model: ~490 tok/s
 *    on 1 thread, ~700 on 2, on an idle 2-core machine).
 * The default is deterministic on purpose: at contexts of 512+ cells ggml's flash attention
 * splits the KV range across threads, so the thread count is part of the numerics (llama.cpp
 * behaves the same way). `threads: 'auto'` instead times 1..N threads at session creation and
 * takes the fastest, which adapts to a loaded machine (spinning threads collapse when another
 * process holds their core) at the price of load-dependent numerics at long contexts.
 */
import { availableParallelism } from 'node:os';

/** Models below this size decode fastest on one thread. */
export const SMALL_MODEL_BYTES = 16 * 1024 * 1024;
export const MAX_DEFAULT_THREADS = 8;

export function availableCpus(): number {
  return Math.max(1, availableParallelism());
}

export function defaultThreads(modelBytes: number): number {
  if (modelBytes < SMALL_MODEL_BYTES) return 1;
  return Math.min(availableCpus(), MAX_DEFAULT_THREADS);
}

/** Thread counts `threads: 'auto'` tries (ascending). */
export function threadCandidates(modelBytes: number): number[] {
  const top = defaultThreads(modelBytes);
  const out: number[] = [];
  for (let n = 1; n < top; n *= 2) out.push(n);
  out.push(top);
  return out;
}
