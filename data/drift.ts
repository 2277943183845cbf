/**
 * Distances between distributions, as pure functions: Jensen-Shannon divergence for numeric features (over
 * histogram bins) and L-infinity distance for categorical features (over values). Inputs are counts or weights; each
 * side is normalized by its own total, so scaling a side changes nothing.
 */
import type { Histogram } from './types.js';

function checkWeights(weights: readonly number[], side: string): number {
  let total = 0;
  for (const w of weights) {
    if (!Number.isFinite(w) || w < 0)
      throw new RangeError(`${side}: weights must be finite and non-negative, got ${w}`);
    total += w;
  }
  if (!(total > 0)) throw new RangeError(`${side}: a distribution needs a positive total weight`);
  return total;
}

/**
 * Jensen-Shannon divergence in bits (base 2) between two distributions given as aligned counts or weights.
 *
 * Guarantees: symmetric; in [0, 1]; 0 exactly when the normalized distributions are equal (up to floating-point
 * rounding); 1 when their supports are disjoint; zero-weight bins are handled (0 · log 0 = 0); unchanged when either
 * side is scaled by a positive factor. Throws a RangeError for unequal lengths, negative or non-finite weights, or a
 * side whose total is 0.
 *
 * @example jensenShannonDivergence([1, 0], [0, 1]) // 1
 */
export function jensenShannonDivergence(p: readonly number[], q: readonly number[]): number {
  if (p.length !== q.length) throw new RangeError(`distributions have ${p.length} and ${q.length} bins`);
  const pTotal = checkWeights(p, 'p');
  const qTotal = checkWeights(q, 'q');
  let sum = 0;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i]! / pTotal;
    const qi = q[i]! / qTotal;
    const m = (pi + qi) / 2;
    // KL(P‖M) + KL(Q‖M), term by term; a zero weight contributes nothing, and m > 0 wherever a weight is positive.
    if (pi > 0) sum += pi * Math.log2(pi / m);
    if (qi > 0) sum += qi * Math.log2(qi / m);
  }
  // Rounding can push the sum a hair outside the theoretical bounds.
  return Math.min(1, Math.max(0, sum / 2));
}

/**
 * L-infinity distance between two aligned count vectors: the largest absolute difference of normalized
 * frequencies. In [0, 1]; symmetric; invariant to scaling either side. Throws like `jensenShannonDivergence`.
 */
export function lInfinityDistanceOfCounts(p: readonly number[], q: readonly number[]): number {
  if (p.length !== q.length) throw new RangeError(`distributions have ${p.length} and ${q.length} entries`);
  const pTotal = checkWeights(p, 'p');
  const qTotal = checkWeights(q, 'q');
  let max = 0;
  for (let i = 0; i < p.length; i++) max = Math.max(max, Math.abs(p[i]! / pTotal - q[i]! / qTotal));
  return Math.min(1, max);
}

/**
 * L-infinity distance between two categorical distributions keyed by value, over the union of their keys (a key
 * absent on one side has frequency 0 there): max over values of |p(v) - q(v)| after normalizing each side.
 *
 * @example lInfinityDistance({ a: 3, b: 1 }, { a: 1, b: 1 }) // 0.25
 */
export function lInfinityDistance(p: Readonly<Record<string, number>>, q: Readonly<Record<string, number>>): number {
  const keys = [...new Set([...Object.keys(p), ...Object.keys(q)])];
  return lInfinityDistanceOfCounts(
    keys.map((k) => (Object.hasOwn(p, k) ? p[k]! : 0)),
    keys.map((k) => (Object.hasOwn(q, k) ? q[k]! : 0)),
  );
}

/**
 * Redistributes a histogram's counts onto other edges, assuming values are spread uniformly inside each source bin
 * (a zero-width bin puts its whole count at its position). Mass outside the new edges goes to the first or last new
 * bin, so the total is preserved. Returns one count per new bin (fractional in general).
 */
export function rebinHistogram(histogram: Histogram, edges: readonly number[]): number[] {
  const bins = edges.length - 1;
  if (bins < 1) throw new RangeError('rebinning needs at least two edges');
  const lo = edges[0]!;
  const hi = edges[bins]!;
  const out = new Array<number>(bins).fill(0);
  const binOf = (x: number) => {
    if (x < lo) return 0;
    if (x >= hi) return bins - 1;
    let i = 0;
    while (i < bins - 1 && x >= edges[i + 1]!) i++;
    return i;
  };
  histogram.counts.forEach((count, i) => {
    const a = histogram.edges[i]!;
    const b = histogram.edges[i + 1]!;
    if (count === 0) return;
    if (!(b > a)) {
      out[binOf(a)]! += count;
      return;
    }
    // Clamped overlaps: the part of [a, b) below `lo` joins the first bin, above `hi` the last.
    for (let j = 0; j < bins; j++) {
      const from = j === 0 ? -Infinity : edges[j]!;
      const to = j === bins - 1 ? Infinity : edges[j + 1]!;
      const overlap = Math.min(b, to) - Math.max(a, from);
      if (overlap > 0) out[j]! += (count * overlap) / (b - a);
    }
  });
  return out;
}

/**
 * Jensen-Shannon divergence between a reference histogram and counts of new data on the reference's edges, with an
 * underflow bin (values below the first edge) and an overflow bin (above the last edge) on the new side. The
 * reference has no mass there by construction (its edges span its min and max), so values beyond the old range
 * count fully as drift rather than being folded into the outer bins.
 */
export function histogramDrift(
  reference: Histogram,
  current: { readonly underflow: number; readonly counts: readonly number[]; readonly overflow: number },
): number {
  if (current.counts.length !== reference.counts.length) {
    throw new RangeError(`reference has ${reference.counts.length} bins, current ${current.counts.length}`);
  }
  return jensenShannonDivergence([0, ...reference.counts, 0], [current.underflow, ...current.counts, current.overflow]);
}
