/**
 * What a monitoring window measures per feature, as pure functions: bins from the training baseline, one-pass
 * counters for a window's values, and the distances between two distributions on the same bins (Jensen-Shannon
 * divergence for numeric features, L-infinity distance for categorical ones, PSI beside both).
 *
 * Numeric bins: the interior edges are the baseline's min, its quantiles (1, 5, 25, 50, 75, 95, 99 %) and its max,
 * ascending and deduplicated; bin 0 is the underflow (x < min), then one bin per pair of edges ([eᵢ, eᵢ₊₁), the last
 * one closed at max; a single edge makes one point bin [min, max]), and the last bin is the overflow (x > max). The
 * baseline's mass per bin comes from rebinning its histogram onto those edges; it has none under or over.
 */
import { jensenShannonDivergence, lInfinityDistanceOfCounts, rebinHistogram } from '../data/drift.js';
import type { ColumnStatistics } from '../data/types.js';

/**
 * Floor of each proportion in PSI, so that an empty bin on one side gives a large but finite term instead of an
 * infinite one (the usual convention: 0.0001 is 0.01 %). Bins empty on both sides contribute 0.
 */
export const PSI_EPSILON = 1e-4;

/** Unseen categories reported per feature, the most frequent first. */
export const MAX_UNSEEN_CATEGORIES = 20;

/** Bins of a numeric feature: `edges` are the interior edges; there are `edges.length + 1` bins (see the file). */
export interface NumericBins {
  readonly edges: readonly number[];
}

/** How many bins `edges` make: underflow, the interior bins (at least one), overflow. */
export function binCount(edges: ArrayLike<number>): number {
  return Math.max(1, edges.length - 1) + 2;
}

/**
 * The bin of a finite value: 0 below the first edge, `binCount - 1` above the last, else 1 + the index of the
 * interior bin [eᵢ, eᵢ₊₁) that holds it (binary search; the last interior bin includes the last edge).
 */
export function binIndex(edges: ArrayLike<number>, x: number): number {
  const last = edges.length - 1;
  if (x < edges[0]!) return 0;
  if (x > edges[last]!) return Math.max(1, last) + 1;
  // Largest i with edges[i] <= x, capped at the last interior bin.
  let lo = 0;
  let hi = last;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (edges[mid]! <= x) lo = mid;
    else hi = mid - 1;
  }
  return 1 + Math.min(lo, Math.max(0, last - 1));
}

/**
 * The interior edges of a numeric column's baseline: min, quantile values, max; sorted and deduplicated. Undefined
 * when the column has no numeric statistics.
 */
export function baselineEdges(column: ColumnStatistics): number[] | undefined {
  const numeric = column.numeric;
  if (!numeric) return undefined;
  const values = [numeric.min, ...numeric.quantiles.map((q) => q.value), numeric.max].filter(Number.isFinite);
  if (values.length === 0) return undefined;
  values.sort((a, b) => a - b);
  return values.filter((v, i) => i === 0 || v !== values[i - 1]);
}

/** The baseline's mass per bin of `edges` (fractional counts; nothing under or over). */
export function baselineNumericCounts(column: ColumnStatistics, edges: readonly number[]): number[] {
  const numeric = column.numeric;
  const out = new Array<number>(binCount(edges)).fill(0);
  if (!numeric) return out;
  if (edges.length < 2) {
    out[1] = numeric.histogram.counts.reduce((sum, c) => sum + c, 0);
    return out;
  }
  rebinHistogram(numeric.histogram, edges).forEach((c, i) => (out[i + 1] = c));
  return out;
}

/**
 * A categorical column's baseline counts by value: exact when the statistics hold every value's frequency; otherwise
 * the top values only, `complete: false` (what lies outside them is unknown, so no value is called unseen).
 */
export function baselineCategoryCounts(column: ColumnStatistics): { counts: Map<string, number>; complete: boolean } {
  const categorical = column.categorical;
  const values = categorical?.frequencies ?? categorical?.topK ?? [];
  return {
    counts: new Map(values.map((v) => [v.value, v.count])),
    complete: categorical?.frequencies !== undefined,
  };
}

/** Counts a window's values of one numeric feature onto fixed bins, in one pass. */
export class NumericAccumulator {
  readonly edges: Float64Array;
  readonly counts: Float64Array;
  /** Values that were absent, null, or not a finite number. */
  missing = 0;

  constructor(edges: readonly number[]) {
    if (edges.length === 0) throw new RangeError('numeric bins need at least one edge');
    this.edges = Float64Array.from(edges);
    this.counts = new Float64Array(binCount(edges));
  }

  /** Counts `x` in its bin, or as missing when it is not a finite number. */
  add(x: number): void {
    if (Number.isFinite(x)) this.counts[binIndex(this.edges, x)]!++;
    else this.missing++;
  }
}

/** Counts a window's values of one categorical feature by value (their text form), in one pass. */
export class CategoricalAccumulator {
  readonly counts = new Map<string, number>();
  missing = 0;

  add(value: string | undefined): void {
    if (value === undefined) {
      this.missing++;
      return;
    }
    this.counts.set(value, (this.counts.get(value) ?? 0) + 1);
  }
}

/** Sum of a list of counts. */
export function total(counts: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < counts.length; i++) sum += counts[i]!;
  return sum;
}

/**
 * Population stability index, Σ (pᵢ − qᵢ) · ln(pᵢ / qᵢ) over normalized proportions, each proportion floored at
 * {@link PSI_EPSILON} (a bin empty on both sides adds 0). Symmetric; 0 for equal distributions; not bounded above.
 */
export function populationStabilityIndex(p: ArrayLike<number>, q: ArrayLike<number>): number {
  if (p.length !== q.length) throw new RangeError(`distributions have ${p.length} and ${q.length} bins`);
  const pTotal = total(p);
  const qTotal = total(q);
  if (!(pTotal > 0 && qTotal > 0)) throw new RangeError('a distribution needs a positive total weight');
  let psi = 0;
  for (let i = 0; i < p.length; i++) {
    const a = Math.max(p[i]! / pTotal, PSI_EPSILON);
    const b = Math.max(q[i]! / qTotal, PSI_EPSILON);
    psi += (a - b) * Math.log(a / b);
  }
  return psi;
}

/** A distance between two distributions on the same bins (or values), with PSI beside it. */
export interface Distance {
  readonly distance: number;
  readonly method: 'jensen_shannon' | 'l_infinity';
  readonly psi: number;
}

/**
 * Jensen-Shannon divergence (base 2, in [0, 1]) and PSI between two count vectors on the same numeric bins; undefined
 * when either side has no values.
 */
export function numericDistance(reference: ArrayLike<number>, current: ArrayLike<number>): Distance | undefined {
  if (!(total(reference) > 0 && total(current) > 0)) return undefined;
  return {
    distance: jensenShannonDivergence(Array.from(reference), Array.from(current)),
    method: 'jensen_shannon',
    psi: populationStabilityIndex(reference, current),
  };
}

/** The values of both sides, aligned: the union of their keys, in first-seen order (reference first). */
export function alignCategories(
  reference: ReadonlyMap<string, number>,
  current: ReadonlyMap<string, number>,
): { values: string[]; reference: Float64Array; current: Float64Array } {
  const values = [...new Set([...reference.keys(), ...current.keys()])];
  return {
    values,
    reference: Float64Array.from(values, (v) => reference.get(v) ?? 0),
    current: Float64Array.from(values, (v) => current.get(v) ?? 0),
  };
}

/**
 * L-infinity distance (in [0, 1]) and PSI between two categorical distributions over the union of their values;
 * undefined when either side has no values.
 */
export function categoricalDistance(
  reference: ReadonlyMap<string, number>,
  current: ReadonlyMap<string, number>,
): Distance | undefined {
  const aligned = alignCategories(reference, current);
  if (!(total(aligned.reference) > 0 && total(aligned.current) > 0)) return undefined;
  return {
    distance: lInfinityDistanceOfCounts(Array.from(aligned.reference), Array.from(aligned.current)),
    method: 'l_infinity',
    psi: populationStabilityIndex(aligned.reference, aligned.current),
  };
}

/** Values served that the baseline never had, the most frequent first (ties by value), at most `max`. */
export function unseenCategories(
  baseline: ReadonlyMap<string, number>,
  current: ReadonlyMap<string, number>,
  max = MAX_UNSEEN_CATEGORIES,
): string[] {
  return [...current]
    .filter(([value, count]) => count > 0 && !baseline.has(value))
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, max)
    .map(([value]) => value);
}

/** One bin or value whose share moved: both proportions, and the signed change (current − reference). */
export interface ShiftedBucket {
  /** A numeric bin as `[lo, hi)` (`(-inf, min)`, `(max, inf)` for under- and overflow), or a category. */
  readonly bucket: string;
  readonly reference: number;
  readonly current: number;
  readonly change: number;
}

/** Bins (or values) by how far their share moved, largest first, at most `max`; nothing when a side is empty. */
export function topShifted(
  labels: readonly string[],
  reference: ArrayLike<number>,
  current: ArrayLike<number>,
  max = 5,
): ShiftedBucket[] {
  const r = total(reference);
  const c = total(current);
  if (!(r > 0 && c > 0)) return [];
  return labels
    .map((bucket, i) => {
      const ref = reference[i]! / r;
      const cur = current[i]! / c;
      return { bucket, reference: ref, current: cur, change: cur - ref };
    })
    .filter((b) => b.change !== 0)
    .sort((a, b) => Math.abs(b.change) - Math.abs(a.change))
    .slice(0, max);
}

/** Readable names of the bins of `edges`, in bin order. */
export function binLabels(edges: readonly number[]): string[] {
  const first = edges[0]!;
  const last = edges[edges.length - 1]!;
  const interior =
    edges.length < 2
      ? [`[${first}, ${first}]`]
      : edges.slice(0, -1).map((lo, i) => `[${lo}, ${edges[i + 1]!}${i === edges.length - 2 ? ']' : ')'}`);
  return [`(-inf, ${first})`, ...interior, `(${last}, inf)`];
}
