/**
 * The default thread count. Measured on a 2-core machine (llama.cpp and specdec alike):
 * a model of a few MB decodes fastest on one thread (synchronising threads costs more
 * than the work), a 40 MB model gains ~40 % from a second core on an idle machine but
 * collapses when another process holds that core (spin barriers). So the default is:
 * one thread for small models; otherwise a short calibration at session creation over
 * 1..min(available CPUs, 8) threads picks the fastest, so a loaded machine gets fewer threads.
 */
import { availableParallelism } from 'node:os';

/** Models below this size decode fastest on one thread. */
export const SMALL_MODEL_BYTES = 16 * 1024 * 1024;

export function availableCpus(): number {
  return Math.max(1, availableParallelism());
}

/** Thread counts worth trying for a model of this size (ascending; one entry means no calibration). */
export function threadCandidates(modelBytes: number): number[] {
  const cpus = availableCpus();
  if (modelBytes < SMALL_MODEL_BYTES || cpus === 1) return [1];
  const out: number[] = [];
  for (let n = 1; n <= Math.min(cpus, 8); n *= 2) out.push(n);
  if (!out.includes(Math.min(cpus, 8))) out.push(Math.min(cpus, 8));
  return out;
}
