import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rocAuc } from '../../../models/metrics.js';
import { liveMetrics } from '../../../monitoring/live-metrics.js';
import {
  estimateBinaryPerformance,
  estimateMulticlassPerformance,
  expectedAuc,
  expectedConfusion,
} from '../../../monitoring/performance-estimate.js';
import { random } from '../../support/random.js';

describe('confidence-based performance estimation', () => {
  it('builds the expected confusion matrix row by row', () => {
    const m = expectedConfusion([0.9, 0.6, 0.2], 0.5);
    expect(m.truePositives).toBeCloseTo(1.5, 12);
    expect(m.falsePositives).toBeCloseTo(0.5, 12);
    expect(m.falseNegatives).toBeCloseTo(0.2, 12);
    expect(m.trueNegatives).toBeCloseTo(0.8, 12);
    expect(estimateBinaryPerformance(Float64Array.of(0.9, 0.2)).accuracy).toBeCloseTo(0.85, 12);
    expect(estimateBinaryPerformance(new Float64Array())).toEqual({});
  });

  it('computes AUC over fractional labels, as a weighted ROC AUC of duplicated rows', () => {
    const next = random(3);
    const p = Array.from({ length: 500 }, () => Math.round(next() * 50) / 50);
    const y = [...p.map(() => 1), ...p.map(() => 0)];
    const weights = [...p, ...p.map((x) => 1 - x)];
    expect(expectedAuc(p)).toBeCloseTo(rocAuc(y, [...p, ...p], weights), 12);
    expect(expectedAuc([1, 1])).toBeUndefined();
  });

  it('ranks by the scores and weighs by the probabilities when given both', () => {
    const next = random(4);
    // Scores of any sign, −0 among them, and many ties; probabilities in another order (a multiclass row's calibrated
    // probability, renormalised, need not follow its score).
    const scores = Array.from({ length: 2000 }, (_, i) => (i % 97 === 0 ? -0 : Math.round((next() - 0.3) * 80) / 8));
    const p = scores.map((s) => Math.min(1, Math.max(0, 0.5 + s / 10 + (next() - 0.5) / 2)));
    const y = [...p.map(() => 1), ...p.map(() => 0)];
    const weights = [...p, ...p.map((x) => 1 - x)];
    expect(expectedAuc(p, scores)).toBeCloseTo(rocAuc(y, [...scores, ...scores], weights), 12);
    expect(expectedAuc(p, scores)).not.toBeCloseTo(expectedAuc(p)!, 3);
    expect(() => expectedAuc([0.5], [0.5, 0.6])).toThrow(RangeError);
  });

  it('orders any finite scores as a comparison sort does', () => {
    const score = fc.oneof(
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.constantFrom(0, -0, 1, 1 + 2 ** -52),
    );
    const rows = fc.array(fc.tuple(score, fc.double({ min: 0, max: 1, noNaN: true })), { minLength: 2, maxLength: 60 });
    fc.assert(
      fc.property(rows, (pairs) => {
        const scores = pairs.map(([s]) => s);
        const p = pairs.map(([, x]) => x);
        const y = [...p.map(() => 1), ...p.map(() => 0)];
        const weights = [...p, ...p.map((x) => 1 - x)];
        const expected =
          p.some((x) => x > 0) && p.some((x) => x < 1) ? rocAuc(y, [...scores, ...scores], weights) : undefined;
        const auc = expectedAuc(p, scores);
        if (expected === undefined || Number.isNaN(expected)) return;
        expect(auc).toBeCloseTo(expected, 9);
      }),
      { numRuns: 300 },
    );
  });

  it('lets the scores decide and the probabilities say how likely the decision is right', () => {
    // Predicted positive (0.6 ≥ 0.5), right with 0.9; predicted negative (0.4), right with 1 − 0.3.
    const m = expectedConfusion([0.9, 0.3], 0.5, [0.6, 0.4]);
    const expected = { truePositives: 0.9, falsePositives: 0.1, trueNegatives: 0.7, falseNegatives: 0.3 };
    for (const [count, value] of Object.entries(expected))
      expect(m[count as keyof typeof m], count).toBeCloseTo(value, 12);
    expect(estimateBinaryPerformance([0.9, 0.3], 0.5, [0.6, 0.4]).accuracy).toBeCloseTo(0.8, 12);
    // The second row's argmax is class 2 by its scores though its probabilities peak at class 0.
    const estimated = estimateMulticlassPerformance([0.7, 0.2, 0.1, 0.5, 0.1, 0.4], 3, [0.8, 0.1, 0.1, 0.3, 0.2, 0.5]);
    expect(estimated.accuracy).toBeCloseTo((0.7 + 0.4) / 2, 12);
  });

  it('lands within 0.02 of the realized metrics on 20,000 calibrated rows (binary)', () => {
    const next = random(7);
    const n = 20_000;
    const p = new Float64Array(n);
    const labels = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      // A skewed score distribution, labels drawn from it: calibrated by construction.
      p[i] = next() ** 2;
      labels[i] = next() < p[i]! ? 1 : 0;
    }
    const estimated = estimateBinaryPerformance(p, 0.5);
    const realized = liveMetrics({
      task: 'binary',
      labels,
      outputs: Float64Array.from(Array.from(p).flatMap((x) => [1 - x, x])),
      classCount: 2,
      threshold: 0.5,
    });
    for (const metric of ['accuracy', 'f1', 'auc', 'precision', 'recall']) {
      expect(Math.abs(estimated[metric]! - realized[metric]!), metric).toBeLessThan(0.02);
    }
  });

  it('lands within 0.02 of the realized accuracy and F1 on 20,000 calibrated rows (multiclass)', () => {
    const next = random(11);
    const n = 20_000;
    const k = 3;
    const probabilities = new Float64Array(n * k);
    const labels = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const raw = [next() ** 2, next(), next() ** 3];
      const sum = raw[0]! + raw[1]! + raw[2]!;
      let u = next();
      labels[i] = k - 1;
      for (let c = 0; c < k; c++) {
        probabilities[i * k + c] = raw[c]! / sum;
      }
      for (let c = 0; c < k; c++) {
        u -= probabilities[i * k + c]!;
        if (u < 0) {
          labels[i] = c;
          break;
        }
      }
    }
    const estimated = estimateMulticlassPerformance(probabilities, k);
    const realized = liveMetrics({ task: 'multiclass', labels, outputs: probabilities, classCount: k, threshold: 0.5 });
    for (const metric of ['accuracy', 'f1', 'auc']) {
      expect(Math.abs(estimated[metric]! - realized[metric]!), metric).toBeLessThan(0.02);
    }
  });
});
