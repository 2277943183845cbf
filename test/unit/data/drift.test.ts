import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  histogramDrift,
  jensenShannonDivergence,
  lInfinityDistance,
  lInfinityDistanceOfCounts,
  rebinHistogram,
} from '../../../data/drift.js';

/** Non-negative count vectors of one length with a positive total on each side. */
const pairOfCounts = fc.integer({ min: 1, max: 12 }).chain((n) => {
  const counts = fc
    .array(fc.integer({ min: 0, max: 1000 }), { minLength: n, maxLength: n })
    .filter((xs) => xs.some((x) => x > 0));
  return fc.tuple(counts, counts);
});
const counts = fc
  .array(fc.integer({ min: 0, max: 1000 }), { minLength: 1, maxLength: 12 })
  .filter((xs) => xs.some((x) => x > 0));
const frequencyRecord = fc
  .dictionary(fc.string({ maxLength: 3 }), fc.integer({ min: 0, max: 100 }), { maxKeys: 8 })
  .filter((r) => Object.values(r).some((x) => x > 0));

const normalize = (xs: readonly number[]) => {
  const total = xs.reduce((a, b) => a + b, 0);
  return xs.map((x) => x / total);
};

describe('jensenShannonDivergence', () => {
  it('has known values', () => {
    expect(jensenShannonDivergence([1, 2, 3], [1, 2, 3])).toBe(0);
    expect(jensenShannonDivergence([1, 0], [0, 1])).toBe(1);
    expect(jensenShannonDivergence([5, 5, 0, 0], [0, 0, 3, 1])).toBe(1);
    // P = (1, 0), Q = (1/2, 1/2), M = (3/4, 1/4):
    // JS = ½·KL(P‖M) + ½·KL(Q‖M) = ½·log2(4/3) + ½·(½·log2(2/3) + ½·log2(2)) ≈ 0.3113.
    const expected = 0.5 * Math.log2(1 / 0.75) + 0.5 * (0.5 * Math.log2(0.5 / 0.75) + 0.5 * Math.log2(0.5 / 0.25));
    expect(jensenShannonDivergence([1, 0], [1, 1])).toBeCloseTo(expected, 15);
    expect(expected).toBeCloseTo(0.31127812445913283, 15);
  });

  it('rejects mismatched lengths, negative or non-finite weights and empty distributions', () => {
    expect(() => jensenShannonDivergence([1], [1, 2])).toThrow(RangeError);
    expect(() => jensenShannonDivergence([1, -1], [1, 2])).toThrow(RangeError);
    expect(() => jensenShannonDivergence([1, NaN], [1, 2])).toThrow(RangeError);
    expect(() => jensenShannonDivergence([0, 0], [1, 2])).toThrow(RangeError);
  });

  it('is symmetric', () => {
    fc.assert(
      fc.property(pairOfCounts, ([p, q]) => {
        expect(jensenShannonDivergence(p, q)).toBeCloseTo(jensenShannonDivergence(q, p), 12);
      }),
    );
  });

  it('lies in [0, 1]', () => {
    fc.assert(
      fc.property(pairOfCounts, ([p, q]) => {
        const js = jensenShannonDivergence(p, q);
        expect(js).toBeGreaterThanOrEqual(0);
        expect(js).toBeLessThanOrEqual(1);
      }),
    );
  });

  it('is zero exactly for equal normalized distributions', () => {
    fc.assert(
      fc.property(counts, fc.integer({ min: 1, max: 50 }), (p, k) => {
        expect(jensenShannonDivergence(p, p)).toBe(0);
        expect(
          jensenShannonDivergence(
            p,
            p.map((x) => x * k),
          ),
        ).toBeCloseTo(0, 12);
      }),
    );
    fc.assert(
      fc.property(pairOfCounts, ([p, q]) => {
        const differ = normalize(p).some((x, i) => Math.abs(x - normalize(q)[i]!) > 1e-9);
        if (differ) expect(jensenShannonDivergence(p, q)).toBeGreaterThan(0);
      }),
    );
  });

  it('is 1 for disjoint supports', () => {
    fc.assert(
      fc.property(counts, counts, (a, b) => {
        const p = [...a, ...b.map(() => 0)];
        const q = [...a.map(() => 0), ...b];
        expect(jensenShannonDivergence(p, q)).toBeCloseTo(1, 12);
      }),
    );
  });

  it('is invariant to scaling either side', () => {
    fc.assert(
      fc.property(pairOfCounts, fc.double({ min: 0.001, max: 1000, noNaN: true }), ([p, q], k) => {
        expect(
          jensenShannonDivergence(
            p.map((x) => x * k),
            q,
          ),
        ).toBeCloseTo(jensenShannonDivergence(p, q), 10);
      }),
    );
  });
});

describe('lInfinityDistance', () => {
  it('has known values over the union of keys', () => {
    expect(lInfinityDistance({ a: 3, b: 1 }, { a: 1, b: 1 })).toBe(0.25);
    expect(lInfinityDistance({ a: 1 }, { b: 1 })).toBe(1);
    expect(lInfinityDistance({ a: 2, b: 2 }, { a: 10, b: 10 })).toBe(0);
    // 'c' exists only on the right: p(c) = 0, q(c) = 0.5.
    expect(lInfinityDistance({ a: 1, b: 1 }, { a: 1, c: 1 })).toBe(0.5);
    // Keys that look like Object.prototype members are plain keys.
    expect(lInfinityDistance({ constructor: 1 }, { toString: 1 })).toBe(1);
  });

  it('is symmetric, within [0, 1], zero on itself and invariant to scaling', () => {
    fc.assert(
      fc.property(frequencyRecord, frequencyRecord, fc.integer({ min: 1, max: 100 }), (p, q, k) => {
        const d = lInfinityDistance(p, q);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(1);
        expect(lInfinityDistance(q, p)).toBe(d);
        expect(lInfinityDistance(p, p)).toBe(0);
        const scaled = Object.fromEntries(Object.entries(p).map(([key, v]) => [key, v * k]));
        expect(lInfinityDistance(scaled, q)).toBeCloseTo(d, 12);
      }),
    );
  });

  it('equals the largest normalized frequency for disjoint supports (1 when that is a single value)', () => {
    fc.assert(
      fc.property(counts, counts, (a, b) => {
        const p = [...a, ...b.map(() => 0)];
        const q = [...a.map(() => 0), ...b];
        const d = lInfinityDistanceOfCounts(p, q);
        expect(d).toBeLessThanOrEqual(1);
        expect(d).toBeCloseTo(Math.max(...normalize(a), ...normalize(b)), 12);
      }),
    );
    expect(lInfinityDistanceOfCounts([3, 0], [0, 7])).toBe(1);
  });
});

describe('rebinHistogram', () => {
  it('keeps counts on identical edges and splits bins in proportion to overlap', () => {
    const h = { edges: [0, 10, 20], counts: [4, 6] };
    expect(rebinHistogram(h, [0, 10, 20])).toEqual([4, 6]);
    expect(rebinHistogram(h, [0, 5, 10, 15, 20])).toEqual([2, 2, 3, 3]);
    expect(rebinHistogram(h, [0, 20])).toEqual([10]);
    expect(rebinHistogram(h, [0, 15, 20])).toEqual([7, 3]);
  });

  it('folds mass outside the new edges into the outer bins and keeps a degenerate bin whole', () => {
    expect(rebinHistogram({ edges: [-10, 0, 10, 30], counts: [1, 2, 4] }, [0, 10, 20])).toEqual([3, 4]);
    expect(rebinHistogram({ edges: [5, 5], counts: [9] }, [0, 4, 8])).toEqual([0, 9]);
  });

  it('preserves the total', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 100 }), { minLength: 1, maxLength: 10 }),
        fc.integer({ min: 1, max: 10 }),
        fc.double({ min: -50, max: 50, noNaN: true }),
        fc.double({ min: 1, max: 100, noNaN: true }),
        (bins, newBins, lo, width) => {
          const edges = bins.map((_, i) => i * 10).concat(bins.length * 10);
          const newEdges = Array.from({ length: newBins + 1 }, (_, i) => lo + (width * i) / newBins);
          const out = rebinHistogram({ edges, counts: bins }, newEdges);
          expect(out.reduce((a, b) => a + b, 0)).toBeCloseTo(
            bins.reduce((a, b) => a + b, 0),
            6,
          );
        },
      ),
    );
  });
});

describe('histogramDrift', () => {
  it('is 0 for the same histogram and counts mass beyond the old edges fully as drift', () => {
    const reference = { edges: [0, 1, 2], counts: [10, 30] };
    expect(histogramDrift(reference, { underflow: 0, counts: [1, 3], overflow: 0 })).toBe(0);
    expect(histogramDrift(reference, { underflow: 5, counts: [0, 0], overflow: 5 })).toBe(1);
    // Half the new mass beyond the old maximum: P = (0, ¼, ¾, 0), Q = (0, ⅛, ⅜, ½).
    const expected = jensenShannonDivergence([0, 1, 3, 0], [0, 1, 3, 4]);
    expect(histogramDrift(reference, { underflow: 0, counts: [1, 3], overflow: 4 })).toBe(expected);
    expect(() => histogramDrift(reference, { underflow: 0, counts: [1], overflow: 0 })).toThrow(RangeError);
  });
});
