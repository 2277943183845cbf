import { describe, expect, it } from 'vitest';
import { classIndexer, GrowableFloat64, liveMetrics } from '../../../monitoring/live-metrics.js';

describe('liveMetrics', () => {
  it('binary: equals the metrics computed by hand on four rows', () => {
    const p = [0.9, 0.4, 0.3, 0.2];
    const metrics = liveMetrics({
      task: 'binary',
      labels: Float64Array.of(1, 0, 1, 0),
      outputs: Float64Array.from(p.flatMap((x) => [1 - x, x])),
      classCount: 2,
      threshold: 0.5,
    });
    // Predicted 1, 0, 0, 0: one true positive, one false negative, two true negatives.
    expect(metrics.accuracy).toBeCloseTo(0.75, 12);
    expect(metrics.precision).toBeCloseTo(1, 12);
    expect(metrics.recall).toBeCloseTo(0.5, 12);
    expect(metrics.f1).toBeCloseTo(2 / 3, 12);
    // Positive/negative pairs ranked right: (0.9, 0.4), (0.9, 0.2), (0.3, 0.2) of four.
    expect(metrics.auc).toBeCloseTo(0.75, 12);
    expect(metrics.log_loss).toBeCloseTo(-(Math.log(0.9) + Math.log(0.6) + Math.log(0.3) + Math.log(0.8)) / 4, 12);
  });

  it('multiclass: accuracy and macro F1 by hand', () => {
    const metrics = liveMetrics({
      task: 'multiclass',
      labels: Float64Array.of(0, 1, 2, 1),
      outputs: Float64Array.of(0.7, 0.2, 0.1, 0.1, 0.6, 0.3, 0.2, 0.5, 0.3, 0.3, 0.3, 0.4),
      classCount: 3,
      threshold: 0.5,
    });
    // Predicted 0, 1, 1, 2. Class 0: F1 1; class 1: precision ½, recall ½; class 2: 0.
    expect(metrics.accuracy).toBeCloseTo(0.5, 12);
    expect(metrics.f1).toBeCloseTo(0.5, 12);
  });

  it('regression: RMSE and MAE by hand; nothing without rows', () => {
    const metrics = liveMetrics({
      task: 'regression',
      labels: Float64Array.of(1, 2, 3),
      outputs: Float64Array.of(1.5, 2, 2),
      classCount: 1,
      threshold: 0.5,
    });
    expect(metrics.rmse).toBeCloseTo(Math.sqrt(1.25 / 3), 12);
    expect(metrics.mae).toBeCloseTo(0.5, 12);
    expect(
      liveMetrics({
        task: 'binary',
        labels: new Float64Array(),
        outputs: new Float64Array(),
        classCount: 2,
        threshold: 0.5,
      }),
    ).toEqual({});
  });
});

describe('classIndexer', () => {
  it('maps feedback labels to class indexes, numbers numerically', () => {
    const named = classIndexer(['no', 'yes']);
    expect([named('yes'), named('no'), named('maybe')]).toEqual([1, 0, undefined]);
    const numbered = classIndexer([0, 1]);
    expect([numbered('1'), numbered('1.0'), numbered('0'), numbered(''), numbered('2')]).toEqual([
      1,
      1,
      0,
      undefined,
      undefined,
    ]);
    expect(classIndexer([false, true])('true')).toBe(1);
  });
});

describe('GrowableFloat64', () => {
  it('grows and keeps every value', () => {
    const g = new GrowableFloat64(2);
    for (let i = 0; i < 100; i++) g.push(i);
    expect(Array.from(g.view())).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });
});
