// Statistics for the distribution tests of speculative sampling.

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
