// Runs specdec greedy decoding on token prompts (the counterpart of reference.ts's llama.cpp runner).
import { loadModel, type LoadModelOptions, type Model } from '../../lib';

export async function withModel<T>(path: string, fn: (m: Model) => Promise<T>, options: LoadModelOptions = {}): Promise<T> {
  const model = await loadModel(path, { backend: process.env.SPECDEC_TEST_BACKEND as 'cpu' | 'cuda' | undefined ?? 'cpu', ...options });
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

export async function specdecGreedy(
  model: Model,
  prompts: number[][],
  nTokens: number,
  opts: { threads?: number; contextSize?: number } = {},
): Promise<number[][]> {
  const session = await model.createSession({ threads: opts.threads ?? 2, contextSize: opts.contextSize ?? Math.min(model.info.contextLength, 4096) });
  try {
    const out: number[][] = [];
    for (const p of prompts) {
      session.truncate(0);
      const { tokens } = await session.generate(p, { maxTokens: nTokens, temperature: 0 }).result();
      out.push(tokens);
    }
    return out;
  } finally {
    await session.dispose();
  }
}

/** Index of the first difference of two token lists, or -1. */
export function firstDiff(a: number[], b: number[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * Logit gap, in specdec's logits (evaluate(): prompt and tokens as one batch-invariant pass), between
 * the token specdec chose and the one the reference chose at their first difference. A near-tie
 * has a gap close to 0, of either sign (generate() prefilled the prompt with other kernels).
 */
export async function gapAt(m: Model, prompt: number[], ours: number[], theirs: number[], at: number, threads = 2): Promise<number> {
  const s = await m.createSession({ threads, contextSize: Math.min(m.info.contextLength, 4096) });
  try {
    const logits = await s.evaluate([...prompt, ...ours.slice(0, at)]);
    return logits[ours[at]] - logits[theirs[at]];
  } finally {
    await s.dispose();
  }
}
