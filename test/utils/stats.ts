// Statistics for the distribution tests of speculative sampling.
import type { GenerateOptions, Model } from '../../lib';

// Pearson chi-square of a 2 x K contingency table (rare categories pooled); returns [stat, dof].
export function chiSquare(a: Map<string, number>, b: Map<string, number>, na: number, nb: number): [number, number] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  const cells: [number, number][] = [];
  let restA = 0;
  let restB = 0;
  for (const k of keys) {
    const x = a.get(k) ?? 0;
    const y = b.get(k) ?? 0;
    if ((x + y) * Math.min(na, nb) / (na + nb) < 5) {
      restA += x;
      restB += y;
    } else cells.push([x, y]);
  }
  if (restA + restB > 0) cells.push([restA, restB]);
  let stat = 0;
  for (const [x, y] of cells) {
    const tot = x + y;
    const ea = (tot * na) / (na + nb);
    const eb = (tot * nb) / (na + nb);
    stat += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb;
  }
  return [stat, cells.length - 1];
}

// chi-square upper quantile for p = 0.001 (Wilson-Hilferty)
export function chiCritical(dof: number): number {
  const z = 3.090;
  return dof * (1 - 2 / (9 * dof) + z * Math.sqrt(2 / (9 * dof))) ** 3;
}

/**
 * `n` samples of the 3 tokens after `prompt` at T = 0.8 without truncation (seeds seed0 .. seed0 + n - 1,
 * rejection verification), counted by continuation, with the drafts accepted over all of them.
 */
export async function sampleContinuations(model: Model, prompt: number[], n: number, seed0: number, o: GenerateOptions):
  Promise<{ counts: Map<string, number>; accepted: number }> {
  const s = await model.createSession({ contextSize: 256 });
  const counts = new Map<string, number>();
  let accepted = 0;
  for (let i = 0; i < n; i++) {
    const r = await s.generate(prompt, { maxTokens: 3, temperature: 0.8, topK: 0, topP: 1, minP: 0, seed: seed0 + i, verify: 'rejection', ...o }).result();
    const key = r.tokens.join(',');
    counts.set(key, (counts.get(key) ?? 0) + 1);
    accepted += r.stats.acceptedTokens;
  }
  await s.dispose();
  return { counts, accepted };
}
