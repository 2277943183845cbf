/**
 * Isotonic calibration: pool-adjacent-violators is monotone and keeps the weighted mean at any size bound, leaves
 * calibrated probabilities about where they were, and turns a miscalibrated model's estimate (labels drawn from
 * sigmoid(2 · logit p), so the model is underconfident) into one close to the realized metrics.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { liveMetrics } from '../../../monitoring/live-metrics.js';
import {
  applyCalibration,
  applyIsotonic,
  calibrateOnEval,
  calibrationError,
  fitCalibration,
  fitIsotonic,
  MIN_CALIBRATION_ROWS,
} from '../../../monitoring/calibration.js';
import { estimatePerformance } from '../../../monitoring/eval-calibration.js';
import { random } from '../../support/random.js';

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
const logit = (p: number) => Math.log(p / (1 - p));

const pairs = fc.array(
  fc.record({
    // Few distinct scores, so that ties are common.
    score: fc.integer({ min: 0, max: 40 }).map((i) => i / 40),
    target: fc.double({ min: 0, max: 1, noNaN: true }),
    weight: fc.double({ min: 0.01, max: 5, noNaN: true }),
  }),
  { minLength: 1, maxLength: 200 },
);

describe('fitIsotonic', () => {
  it('pools violators into their weighted mean', () => {
    expect(fitIsotonic([0.1, 0.2, 0.3], [0, 1, 0])).toEqual({ x: [0.1, 0.2, 0.3], y: [0, 0.5, 0.5] });
    // Equal scores are one point: their mean, whatever the order they came in.
    expect(fitIsotonic([0.5, 0.5, 0.1], [1, 0, 0])).toEqual({ x: [0.1, 0.5], y: [0, 0.5] });
    expect(fitIsotonic([0.3, 0.1, 0.2], [3, 1, 2], [1, 1, 0])).toEqual({ x: [0.1, 0.2, 0.3], y: [1, 1, 3] });
    expect(() => fitIsotonic([], [])).toThrow(RangeError);
    expect(() => fitIsotonic([Number.NaN], [0])).toThrow(RangeError);
  });

  it('is non-decreasing and keeps the weighted mean, at any bound on its steps', () => {
    fc.assert(
      fc.property(pairs, fc.integer({ min: 1, max: 50 }), (rows, maxSteps) => {
        const scores = rows.map((r) => r.score);
        const targets = rows.map((r) => r.target);
        const weights = rows.map((r) => r.weight);
        for (const map of [fitIsotonic(scores, targets, weights), fitIsotonic(scores, targets, weights, maxSteps)]) {
          expect(map.x.length).toBe(map.y.length);
          for (let i = 1; i < map.x.length; i++) {
            expect(map.x[i]!).toBeGreaterThan(map.x[i - 1]!);
            expect(map.y[i]!).toBeGreaterThanOrEqual(map.y[i - 1]!);
          }
          const fitted = scores.map((s) => applyIsotonic(map, s));
          const sorted = scores.map((s, i) => [s, fitted[i]!] as const).sort((a, b) => a[0] - b[0]);
          for (let i = 1; i < sorted.length; i++)
            expect(sorted[i]![1]).toBeGreaterThanOrEqual(sorted[i - 1]![1] - 1e-12);
          const total = weights.reduce((a, b) => a + b, 0);
          const mean = (values: readonly number[]) => values.reduce((a, v, i) => a + v * weights[i]!, 0) / total;
          expect(mean(fitted)).toBeCloseTo(mean(targets), 9);
        }
        expect(fitIsotonic(scores, targets, weights, maxSteps).x.length).toBeLessThanOrEqual(2 * maxSteps);
      }),
      { numRuns: 200 },
    );
  });

  it('interpolates between breakpoints and holds its end values beyond them', () => {
    const map = { x: [0.2, 0.4, 0.8], y: [0.1, 0.3, 0.9] };
    expect(applyIsotonic(map, 0)).toBe(0.1);
    expect(applyIsotonic(map, 0.3)).toBeCloseTo(0.2, 12);
    expect(applyIsotonic(map, 0.6)).toBeCloseTo(0.6, 12);
    expect(applyIsotonic(map, 1)).toBe(0.9);
    expect(applyIsotonic(map, Number.NaN)).toBeNaN();
    expect(applyIsotonic({ x: [0.5], y: [0.7] }, 0.1)).toBe(0.7);
  });

  it('maps calibrated probabilities to about themselves', () => {
    const next = random(5);
    const n = 20_000;
    const scores = new Float64Array(n);
    const labels = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      scores[i] = next();
      labels[i] = next() < scores[i]! ? 1 : 0;
    }
    const map = fitIsotonic(scores, labels);
    const grid = Array.from({ length: 17 }, (_, i) => 0.1 + i * 0.05);
    const deviations = grid.map((s) => Math.abs(applyIsotonic(map, s) - s));
    expect(Math.max(...deviations)).toBeLessThan(0.05);
    expect(deviations.reduce((a, b) => a + b, 0) / grid.length).toBeLessThan(0.02);
  });
});

/** `n` rows of a model whose P(class 1) is `p`, labels drawn from sigmoid(2 · logit p). */
function underconfident(n: number, seed: number) {
  const next = random(seed);
  const p = new Float64Array(n);
  const rows = new Float64Array(2 * n);
  const labels = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    p[i] = 0.02 + 0.96 * next();
    rows[2 * i] = 1 - p[i]!;
    rows[2 * i + 1] = p[i]!;
    labels[i] = next() < sigmoid(2 * logit(p[i]!)) ? 1 : 0;
  }
  return { p, rows, labels };
}

/** `n` rows of a 3-class model: probabilities softmax(z), labels drawn from softmax(2z). */
function multiclassUnderconfident(n: number, seed: number) {
  const next = random(seed);
  const k = 3;
  const rows = new Float64Array(n * k);
  const labels = new Float64Array(n);
  const softmax = (z: number[]) => {
    const e = z.map(Math.exp);
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / sum);
  };
  for (let i = 0; i < n; i++) {
    const z = [next() * 2, next() * 2 - 0.5, next() * 1.5];
    const model = softmax(z);
    const truth = softmax(z.map((v) => 2 * v));
    for (let c = 0; c < k; c++) rows[i * k + c] = model[c]!;
    let u = next();
    labels[i] = k - 1;
    for (let c = 0; c < k; c++) {
      u -= truth[c]!;
      if (u < 0) {
        labels[i] = c;
        break;
      }
    }
  }
  return { rows, labels, k };
}

describe('calibration of an estimate', () => {
  it('brings a miscalibrated binary model’s estimate close to the realized accuracy, AUC and F1', () => {
    const evalSplit = underconfident(5_000, 1);
    const window = underconfident(20_000, 2);
    const fit = calibrateOnEval(evalSplit.rows, evalSplit.labels, 2, true);
    expect(fit.calibration?.maps).toHaveLength(1);
    expect(fit.ece!.after!).toBeLessThan(fit.ece!.before / 3);

    const realized = liveMetrics({
      task: 'binary',
      labels: window.labels,
      outputs: window.rows,
      classCount: 2,
      threshold: 0.5,
    });
    const before = estimatePerformance(window.p, 2, true, 0.5, undefined);
    const after = estimatePerformance(window.p, 2, true, 0.5, fit.calibration);
    for (const metric of ['accuracy', 'auc', 'f1']) {
      const gapBefore = Math.abs(before[metric]! - realized[metric]!);
      const gapAfter = Math.abs(after[metric]! - realized[metric]!);
      expect(gapAfter, metric).toBeLessThan(0.015);
      expect(gapAfter, metric).toBeLessThan(gapBefore / 3);
    }
    expect(Math.abs(before.accuracy! - realized.accuracy!)).toBeGreaterThan(0.05);
    expect(Math.abs(before.auc! - realized.auc!)).toBeGreaterThan(0.05);
  });

  it('calibrates a multiclass model one class against the rest, rows renormalised', () => {
    const evalSplit = multiclassUnderconfident(6_000, 3);
    const window = multiclassUnderconfident(20_000, 4);
    const fit = calibrateOnEval(evalSplit.rows, evalSplit.labels, 3, false);
    expect(fit.calibration?.maps).toHaveLength(3);
    expect(fit.ece!.after!).toBeLessThan(fit.ece!.before / 2);
    const calibrated = applyCalibration(fit.calibration!, window.rows);
    for (let i = 0; i < 20_000; i += 997) {
      expect(calibrated[3 * i]! + calibrated[3 * i + 1]! + calibrated[3 * i + 2]!).toBeCloseTo(1, 12);
    }

    const realized = liveMetrics({
      task: 'multiclass',
      labels: window.labels,
      outputs: window.rows,
      classCount: 3,
      threshold: 0.5,
    });
    const before = estimatePerformance(window.rows, 3, false, 0.5, undefined);
    const after = estimatePerformance(window.rows, 3, false, 0.5, fit.calibration);
    for (const metric of ['accuracy', 'auc']) {
      const gapAfter = Math.abs(after[metric]! - realized[metric]!);
      expect(gapAfter, metric).toBeLessThan(0.015);
      expect(gapAfter, metric).toBeLessThan(Math.abs(before[metric]! - realized[metric]!) / 2);
    }
  });

  it('keeps a row that every map sends to 0, and fits JSON-serialisable maps', () => {
    const calibration = fitCalibration([0.8, 0.1, 0.1, 0.1, 0.8, 0.1], [0, 1], 3, false);
    expect(JSON.parse(JSON.stringify(calibration))).toEqual(calibration);
    // Maps that are 0 everywhere say nothing about the row: it keeps its probabilities rather than divide by 0.
    const row = applyCalibration(
      { ...calibration, maps: calibration.maps.map((m) => ({ x: m.x, y: m.y.map(() => 0) })) },
      [0.2, 0.3, 0.5],
    );
    expect(Array.from(row)).toEqual([0.2, 0.3, 0.5]);
  });

  it('skips an eval split too small or of a single class, saying why', () => {
    const small = underconfident(MIN_CALIBRATION_ROWS - 1, 6);
    expect(calibrateOnEval(small.rows, small.labels, 2, true)).toMatchObject({
      rows: MIN_CALIBRATION_ROWS - 1,
      skipped: expect.stringContaining('fewer than'),
    });
    const big = underconfident(500, 7);
    const fit = calibrateOnEval(big.rows, new Float64Array(500), 2, true);
    expect(fit.calibration).toBeUndefined();
    expect(fit.skipped).toBe('the eval split has a single class');
    expect(fit.ece?.before).toBeGreaterThan(0);
  });

  it('measures expected calibration error per bin', () => {
    // Two bins' worth of rows: p = 0.25 with 1 of 4 positive (exact), p = 0.75 with 4 of 4 positive (0.25 off).
    const p = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75];
    const rows = p.flatMap((x) => [1 - x, x]);
    const labels = [1, 0, 0, 0, 1, 1, 1, 1];
    expect(calibrationError(rows, labels, 2, true, { bins: 10 })).toBeCloseTo(0.125, 12);
    // Multiclass: the predicted class's probability against its being right (0.7 right, 0.6 wrong).
    expect(calibrationError([0.7, 0.2, 0.1, 0.1, 0.6, 0.3], [0, 2], 3, false, { bins: 10 })).toBeCloseTo(0.45, 12);
  });
});
