import { describe, expect, it } from 'vitest';
import {
  alignLabels,
  countsDivergence,
  judgeCanary,
  type CanaryMeasurements,
  type CanaryThresholds,
  type VersionTraffic,
} from '../../../serving/canary-comparison.js';

const thresholds: CanaryThresholds = {
  maxErrorRateIncrease: 0.01,
  maxLatencyP99Ratio: 1.5,
  maxPredictionDivergence: 0.1,
};

function traffic(overrides: Partial<VersionTraffic> = {}): VersionTraffic {
  return {
    versionId: 'v',
    requests: 1000,
    rows: 1000,
    errors: 0,
    latencyP50Ms: 1,
    latencyP99Ms: 4,
    ...overrides,
  };
}

function measured(overrides: Partial<CanaryMeasurements> = {}): CanaryMeasurements {
  return {
    champion: traffic({ versionId: 'champion' }),
    challenger: traffic({ versionId: 'challenger' }),
    labels: { values: ['no', 'yes'], champion: [700, 300], challenger: [690, 310] },
    scores: { edges: [0, 0.5, 1], champion: [600, 400], challenger: [610, 390] },
    ...overrides,
  };
}

describe('judgeCanary', () => {
  it('passes a challenger as good as the champion, and says why', () => {
    const verdict = judgeCanary(measured(), thresholds, 100);
    expect(verdict.verdict).toBe('pass');
    expect(verdict.errorRateIncrease).toBe(0);
    expect(verdict.latencyP99Ratio).toBe(1);
    expect(verdict.predictionDivergence).toBeGreaterThan(0);
    expect(verdict.predictionDivergence).toBeLessThan(0.001);
    expect(verdict.checks.every((c) => c.passed)).toBe(true);
    expect(verdict.summary).toMatch(/^pass: /);
    expect(verdict.summary).toContain('p99 4.00 ms vs 4.00 ms');
  });

  it('fails on more errors, slower p99 or different predictions, naming each failed check', () => {
    const errors = judgeCanary(measured({ challenger: traffic({ errors: 30 }) }), thresholds, 100);
    expect(errors.verdict).toBe('fail');
    expect(errors.errorRateIncrease).toBeCloseTo(0.03, 10);
    expect(errors.checks.find((c) => c.name === 'error_rate')?.passed).toBe(false);
    expect(errors.summary).toContain('error rate 3.00% vs 0.00%');

    const slow = judgeCanary(measured({ challenger: traffic({ latencyP99Ms: 8 }) }), thresholds, 100);
    expect(slow.verdict).toBe('fail');
    expect(slow.latencyP99Ratio).toBe(2);
    expect(slow.summary).toContain('ratio 2');
    expect(slow.summary).not.toContain('error rate');

    const different = judgeCanary(
      measured({ labels: { values: ['no', 'yes'], champion: [900, 100], challenger: [100, 900] } }),
      thresholds,
      100,
    );
    expect(different.verdict).toBe('fail');
    expect(different.labelDivergence).toBeGreaterThan(0.5);
    expect(different.predictionDivergence).toBe(different.labelDivergence);
  });

  it('has insufficient data while either side has fewer than minRequests requests', () => {
    const few = judgeCanary(measured({ challenger: traffic({ requests: 20, errors: 20 }) }), thresholds, 100);
    expect(few.verdict).toBe('insufficient_data');
    expect(few.summary).toContain('20 challenger and 1000 champion requests');
    expect(judgeCanary(measured({ champion: traffic({ requests: 5 }) }), thresholds, 100).verdict).toBe(
      'insufficient_data',
    );
    expect(judgeCanary(measured(), thresholds, 1000).verdict).toBe('pass');
  });

  it('skips what cannot be measured: no predictions, no latencies; guards a 0 ms champion', () => {
    const bare = judgeCanary(
      measured({
        labels: undefined,
        scores: undefined,
        champion: traffic({ latencyP99Ms: null }),
      }),
      thresholds,
      100,
    );
    expect(bare.verdict).toBe('pass');
    expect(bare.predictionDivergence).toBeNull();
    expect(bare.latencyP99Ratio).toBeNull();
    expect(bare.summary).toContain('no predictions to compare');

    const zero = judgeCanary(
      measured({ champion: traffic({ latencyP99Ms: 0 }), challenger: traffic({ latencyP99Ms: 0.01 }) }),
      thresholds,
      100,
    );
    expect(zero.latencyP99Ratio).toBeCloseTo(10, 10);
    expect(zero.verdict).toBe('fail');
  });

  it('a challenger that fails every request has no predictions, and fails on its error rate', () => {
    const verdict = judgeCanary(
      measured({
        challenger: traffic({ errors: 1000 }),
        labels: { values: ['no', 'yes'], champion: [700, 300], challenger: [0, 0] },
      }),
      thresholds,
      100,
    );
    expect(verdict.verdict).toBe('fail');
    expect(verdict.labelDivergence).toBeNull();
    expect(verdict.errorRateIncrease).toBe(1);
  });
});

describe('divergence helpers', () => {
  it('aligns labels over their union', () => {
    expect(alignLabels({ b: 1, a: 3 }, { c: 2, a: 1 })).toEqual({
      values: ['a', 'b', 'c'],
      champion: [3, 1, 0],
      challenger: [1, 0, 2],
    });
  });

  it('is the Jensen-Shannon divergence in bits: 0 for equal shapes, 1 for disjoint ones, null without mass', () => {
    expect(countsDivergence({ champion: [1, 2, 3], challenger: [10, 20, 30] })).toBeCloseTo(0, 12);
    expect(countsDivergence({ champion: [1, 0], challenger: [0, 5] })).toBe(1);
    expect(countsDivergence({ champion: [0, 0], challenger: [1, 1] })).toBeNull();
    expect(countsDivergence(undefined)).toBeNull();
    // JS(P, Q) with P = (1/2, 1/2), Q = (1, 0): M = (3/4, 1/4).
    const expected = (0.5 * Math.log2(0.5 / 0.75) + 0.5 * Math.log2(0.5 / 0.25) + Math.log2(1 / 0.75)) / 2;
    expect(countsDivergence({ champion: [1, 1], challenger: [1, 0] })).toBeCloseTo(expected, 12);
  });
});
