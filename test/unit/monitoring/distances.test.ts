import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ColumnStatistics } from '../../../data/types.js';
import {
  baselineEdges,
  baselineNumericCounts,
  binCount,
  binIndex,
  binLabels,
  CategoricalAccumulator,
  categoricalDistance,
  numericDistance,
  NumericAccumulator,
  populationStabilityIndex,
  PSI_EPSILON,
  topShifted,
  unseenCategories,
} from '../../../monitoring/distances.js';

const pairOfCounts = fc.integer({ min: 1, max: 12 }).chain((n) => {
  const counts = fc
    .array(fc.integer({ min: 0, max: 1000 }), { minLength: n, maxLength: n })
    .filter((xs) => xs.some((x) => x > 0));
  return fc.tuple(counts, counts);
});
const categoryMap = fc
  .dictionary(fc.string({ maxLength: 3 }), fc.integer({ min: 0, max: 100 }), { maxKeys: 8 })
  .filter((r) => Object.values(r).some((x) => x > 0))
  .map((r) => new Map(Object.entries(r)));

function numericColumn(values: readonly number[]): ColumnStatistics {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const min = sorted[0]!;
  const max = sorted[sorted.length - 1]!;
  const bins = 20;
  const edges = Array.from({ length: bins + 1 }, (_, i) => min + ((max - min) * i) / bins);
  const counts = new Array<number>(bins).fill(0);
  for (const v of sorted) counts[Math.min(bins - 1, Math.floor(((v - min) / (max - min)) * bins))]!++;
  return {
    name: 'x',
    type: 'DOUBLE',
    kind: 'numeric',
    count: values.length + 10,
    missing: 10,
    numeric: {
      min,
      max,
      mean: 0,
      std: 1,
      zeros: 0,
      quantiles: [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99].map((q) => ({ q, value: at(q) })),
      histogram: { edges, counts },
    },
  };
}

describe('bins', () => {
  it('put each value in its bin: underflow, [eᵢ, eᵢ₊₁) with the last closed, overflow', () => {
    const edges = [0, 1, 2, 4];
    expect(binCount(edges)).toBe(5);
    expect([-1, 0, 0.5, 1, 3.9, 4, 4.1].map((x) => binIndex(edges, x))).toEqual([0, 1, 1, 2, 3, 3, 4]);
    expect(binLabels(edges)).toEqual(['(-inf, 0)', '[0, 1)', '[1, 2)', '[2, 4]', '(4, inf)']);
    // One edge: a point bin between under- and overflow.
    expect([-1, 3, 5].map((x) => binIndex([3], x))).toEqual([0, 1, 2]);
  });

  it('agree with a linear scan for any sorted edges and value', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: -50, max: 50 }), { minLength: 1, maxLength: 10 }),
        fc.double({ min: -60, max: 60, noNaN: true }),
        (raw, x) => {
          const edges = [...raw].sort((a, b) => a - b);
          const last = edges.length - 1;
          let expected: number;
          if (x < edges[0]!) expected = 0;
          else if (x > edges[last]!) expected = binCount(edges) - 1;
          else {
            let i = 0;
            while (i < last - 1 && x >= edges[i + 1]!) i++;
            expected = 1 + i;
          }
          expect(binIndex(edges, x)).toBe(expected);
        },
      ),
    );
  });

  it('come from the baseline quantiles, deduplicated, with the histogram rebinned onto them', () => {
    const values = Array.from({ length: 1000 }, (_, i) => i % 100);
    const column = numericColumn(values);
    const edges = baselineEdges(column)!;
    expect(edges[0]).toBe(0);
    expect(edges[edges.length - 1]).toBe(99);
    expect(new Set(edges).size).toBe(edges.length);
    const counts = baselineNumericCounts(column, edges);
    expect(counts).toHaveLength(binCount(edges));
    expect(counts[0]).toBe(0);
    expect(counts[counts.length - 1]).toBe(0);
    expect(counts.reduce((a, b) => a + b, 0)).toBeCloseTo(1000, 9);
    const constant = numericColumn([5, 5, 5]);
    expect(baselineEdges(constant)).toEqual([5]);
  });

  it('count a window in one pass, missing apart', () => {
    const acc = new NumericAccumulator([0, 10]);
    for (const x of [-1, 0, 5, 10, 11, Number.NaN, Number.POSITIVE_INFINITY]) acc.add(x);
    expect(Array.from(acc.counts)).toEqual([1, 3, 1]);
    expect(acc.missing).toBe(2);
    const cat = new CategoricalAccumulator();
    for (const v of ['a', 'b', 'a', undefined]) cat.add(v);
    expect([...cat.counts]).toEqual([
      ['a', 2],
      ['b', 1],
    ]);
    expect(cat.missing).toBe(1);
  });
});

describe('numericDistance (Jensen-Shannon, base 2) and PSI', () => {
  it('is in [0, 1], symmetric, scale-invariant, and 0 for identical counts', () => {
    fc.assert(
      fc.property(pairOfCounts, fc.integer({ min: 1, max: 50 }), ([p, q], k) => {
        const d = numericDistance(p, q)!;
        expect(d.distance).toBeGreaterThanOrEqual(0);
        expect(d.distance).toBeLessThanOrEqual(1);
        expect(numericDistance(q, p)!.distance).toBeCloseTo(d.distance, 12);
        expect(
          numericDistance(
            p.map((x) => x * k),
            q,
          )!.distance,
        ).toBeCloseTo(d.distance, 12);
        expect(numericDistance(p, p)!.distance).toBeCloseTo(0, 12);
        expect(d.psi).toBeGreaterThanOrEqual(0);
        expect(numericDistance(q, p)!.psi).toBeCloseTo(d.psi, 9);
        expect(numericDistance(p, p)!.psi).toBeCloseTo(0, 12);
      }),
    );
  });

  it('is 1 for disjoint supports, with PSI finite thanks to its floor', () => {
    const d = numericDistance([5, 5, 0, 0], [0, 0, 3, 1])!;
    expect(d.distance).toBe(1);
    const e = PSI_EPSILON;
    const term = (share: number) => (share - e) * Math.log(share / e);
    expect(d.psi).toBeCloseTo(2 * term(0.5) + term(0.75) + term(0.25), 9);
    expect(Number.isFinite(d.psi)).toBe(true);
  });

  it('matches hand-computed values', () => {
    // p = (1/2, 1/2, 0), q = (0, 1/2, 1/2): m = (1/4, 1/2, 1/4); JS = ½(½·log2 2 + ½·log2 2) = ½.
    expect(numericDistance([1, 1, 0], [0, 1, 1])!.distance).toBeCloseTo(0.5, 12);
    // PSI of (0.6, 0.4) vs (0.5, 0.5).
    expect(populationStabilityIndex([6, 4], [5, 5])).toBeCloseTo(
      0.1 * Math.log(0.6 / 0.5) - 0.1 * Math.log(0.4 / 0.5),
      12,
    );
  });

  it('is undefined when a side has no values', () => {
    expect(numericDistance([0, 0], [1, 2])).toBeUndefined();
  });
});

describe('categoricalDistance (L-infinity over the union of values)', () => {
  it('is in [0, 1], symmetric, scale-invariant, 0 for identical maps, 1 for disjoint ones', () => {
    fc.assert(
      fc.property(categoryMap, categoryMap, fc.integer({ min: 1, max: 9 }), (p, q, k) => {
        const d = categoricalDistance(p, q)!;
        expect(d.distance).toBeGreaterThanOrEqual(0);
        expect(d.distance).toBeLessThanOrEqual(1);
        expect(categoricalDistance(q, p)!.distance).toBeCloseTo(d.distance, 12);
        const scaled = new Map([...p].map(([v, c]) => [v, c * k]));
        expect(categoricalDistance(scaled, q)!.distance).toBeCloseTo(d.distance, 12);
        expect(categoricalDistance(p, p)!.distance).toBe(0);
      }),
    );
    expect(categoricalDistance(new Map([['a', 3]]), new Map([['b', 1]]))!.distance).toBe(1);
    expect(
      categoricalDistance(
        new Map([
          ['a', 3],
          ['b', 1],
        ]),
        new Map([
          ['a', 1],
          ['b', 1],
        ]),
      )!.distance,
    ).toBeCloseTo(0.25, 12);
  });

  it('lists unseen values, most frequent first, at most 20', () => {
    const baseline = new Map([['a', 1]]);
    const current = new Map<string, number>([
      ['a', 9],
      ['z', 2],
      ['y', 5],
      ['x', 2],
      ...Array.from({ length: 30 }, (_, i) => [`n${String(i).padStart(2, '0')}`, 1] as [string, number]),
    ]);
    const unseen = unseenCategories(baseline, current);
    expect(unseen).toHaveLength(20);
    expect(unseen.slice(0, 4)).toEqual(['y', 'x', 'z', 'n00']);
  });

  it('names the most shifted buckets', () => {
    const top = topShifted(['a', 'b', 'c'], [5, 5, 0], [5, 0, 5], 2);
    expect(top.map((b) => [b.bucket, b.change])).toEqual([
      ['b', -0.5],
      ['c', 0.5],
    ]);
  });
});
