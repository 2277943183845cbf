import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  accuracy,
  argmaxRows,
  brierScore,
  logLoss,
  mae,
  multiclassLogLoss,
  r2,
  rmse,
  rocAuc,
  thresholdMetrics,
} from '../../../models/metrics.js';

/** AUC by its definition: over all positive/negative pairs, 1 when the positive scores higher, ½ on a tie. */
function pairwiseAuc(y: number[], s: number[], w: number[] = y.map(() => 1)): number {
  let sum = 0;
  let pairs = 0;
  for (let i = 0; i < y.length; i++) {
    if (y[i] !== 1) continue;
    for (let j = 0; j < y.length; j++) {
      if (y[j] !== 0) continue;
      const weight = w[i]! * w[j]!;
      pairs += weight;
      sum += weight * (s[i]! > s[j]! ? 1 : s[i] === s[j] ? 0.5 : 0);
    }
  }
  return sum / pairs;
}

describe('rocAuc', () => {
  it('matches hand-computed values', () => {
    // scikit-learn's documentation example.
    expect(rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])).toBe(0.75);
    // Pairs: 0.6 vs 0.2 → 1, 0.6 vs 0.6 → ½, 0.9 vs both → 2: 3.5 / 4.
    expect(rocAuc([0, 0, 1, 1], [0.2, 0.6, 0.6, 0.9])).toBe(0.875);
    expect(rocAuc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])).toBe(0.5);
    expect(rocAuc([1, 1, 0], [3, 2, 1])).toBe(1);
    expect(rocAuc([1, 1, 0], [-Infinity, 2, Infinity])).toBe(0);
  });

  it('equals the pairwise definition, ties included, weighted or not', () => {
    const rows = fc
      .array(fc.tuple(fc.constantFrom(0, 1), fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1, max: 4 })), {
        minLength: 2,
        maxLength: 60,
      })
      .filter((r) => r.some(([y]) => y === 1) && r.some(([y]) => y === 0));
    fc.assert(
      fc.property(rows, (r) => {
        const [y, s, w] = [r.map((x) => x[0]), r.map((x) => x[1] / 2), r.map((x) => x[2])];
        expect(rocAuc(y, s)).toBeCloseTo(pairwiseAuc(y, s), 12);
        expect(rocAuc(y, s, w)).toBeCloseTo(pairwiseAuc(y, s, w), 12);
        expect(
          rocAuc(
            y,
            s,
            y.map(() => 1),
          ),
        ).toBeCloseTo(rocAuc(y, s), 12);
      }),
    );
  });

  it('refuses one-class labels, non-binary labels and NaN scores', () => {
    expect(() => rocAuc([1, 1], [0.1, 0.2])).toThrow(RangeError);
    expect(() => rocAuc([0, 2], [0.1, 0.2])).toThrow(RangeError);
    expect(() => rocAuc([0, 1], [0.1, NaN])).toThrow(RangeError);
    expect(() => rocAuc([0, 1], [0.1])).toThrow(RangeError);
  });
});

describe('log loss', () => {
  it('is the mean negative log-likelihood, clipped at 1e-15', () => {
    expect(logLoss([1, 0], [0.8, 0.3])).toBeCloseTo(-(Math.log(0.8) + Math.log(0.7)) / 2, 15);
    expect(logLoss([1], [0])).toBeCloseTo(-Math.log(1e-15), 12);
    expect(logLoss([0], [1])).toBeCloseTo(-Math.log(1 - (1 - 1e-15)), 6);
    // Weighted: (2·−ln 0.8 + 1·−ln 0.7) / 3.
    expect(logLoss([1, 0], [0.8, 0.3], [2, 1])).toBeCloseTo(-(2 * Math.log(0.8) + Math.log(0.7)) / 3, 15);
  });

  it('multiclass: the true class probability of each row', () => {
    const probabilities = [0.7, 0.2, 0.1, 0.1, 0.3, 0.6];
    expect(multiclassLogLoss([0, 2], probabilities, 3)).toBeCloseTo(-(Math.log(0.7) + Math.log(0.6)) / 2, 15);
    expect(() => multiclassLogLoss([0], probabilities, 3)).toThrow(RangeError);
    expect(Array.from(argmaxRows(probabilities, 3))).toEqual([0, 2]);
  });
});

describe('threshold metrics', () => {
  it('counts the confusion matrix and its rates', () => {
    const y = [1, 1, 1, 0, 0, 0, 0, 1];
    const p = [0.9, 0.6, 0.4, 0.5, 0.2, 0.7, 0.1, 0.5];
    // Predicted positive (p ≥ 0.5): rows 0, 1, 3, 5, 7 → TP 3 (0, 1, 7), FP 2 (3, 5), FN 1 (2), TN 2.
    const m = thresholdMetrics(y, p);
    expect(m).toMatchObject({ truePositives: 3, falsePositives: 2, falseNegatives: 1, trueNegatives: 2 });
    expect(m.accuracy).toBe(5 / 8);
    expect(m.precision).toBe(3 / 5);
    expect(m.recall).toBe(3 / 4);
    expect(m.f1).toBeCloseTo((2 * 0.6 * 0.75) / 1.35, 15);
    const strict = thresholdMetrics(y, p, 0.95);
    expect(strict).toMatchObject({ truePositives: 0, falsePositives: 0, precision: 0, recall: 0, f1: 0 });
    expect(accuracy([0, 1, 2, 2], [0, 2, 2, 2])).toBe(0.75);
    expect(accuracy([0, 1], [0, 0], [3, 1])).toBe(0.75);
  });
});

describe('Brier score and regression metrics', () => {
  it('match hand-computed values', () => {
    expect(brierScore([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3])).toBeCloseTo(0.0375, 15);
    // scikit-learn's documentation example: MSE 0.375, MAE 0.5, R² 0.9486081370449679.
    const y = [3, -0.5, 2, 7];
    const predicted = [2.5, 0, 2, 8];
    expect(rmse(y, predicted)).toBeCloseTo(Math.sqrt(0.375), 15);
    expect(mae(y, predicted)).toBe(0.5);
    expect(r2(y, predicted)).toBeCloseTo(0.9486081370449679, 14);
    // Weighted: a weight of 2 equals a duplicated row.
    expect(rmse([1, 2], [0, 0], [2, 1])).toBeCloseTo(rmse([1, 1, 2], [0, 0, 0]), 15);
    expect(r2([1, 2, 4], [1, 3, 3], [1, 2, 1])).toBeCloseTo(r2([1, 2, 2, 4], [1, 3, 3, 3]), 15);
  });

  it('R² of a constant target: 1 when exact, else 0 (as scikit-learn)', () => {
    expect(r2([2, 2], [2, 2])).toBe(1);
    expect(r2([2, 2], [2, 3])).toBe(0);
  });
});
