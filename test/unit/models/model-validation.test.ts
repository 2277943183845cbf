/**
 * The blessing: thresholds, champion comparison (direction, equal-is-not-better, negative minImprovement, float
 * noise), missing metrics, first model, infra validation, and the one-sentence reason.
 */
import { describe, expect, it } from 'vitest';
import type { InfraValidationResult } from '../../../models/infra-validation.js';
import { judgeModel } from '../../../models/model-validation.js';

const candidate = { auc: 0.6811, log_loss: 0.52, accuracy: 0.71 };
const champion = { version: 3, metrics: { auc: 0.6801, log_loss: 0.53, accuracy: 0.7 } };

const goodInfra: InfraValidationResult = { passed: true, loadMs: 12.3, latencyMs: 1.5, rows: 100, maxLatencyMs: 2000 };

describe('judgeModel: thresholds', () => {
  it('checks min and max, both inclusive', () => {
    const j = judgeModel({
      candidate,
      thresholds: [
        { metric: 'auc', min: 0.6811 },
        { metric: 'log_loss', max: 0.52 },
        { metric: 'accuracy', min: 0.5, max: 0.9 },
      ],
    });
    expect(j.blessed).toBe(true);
    expect(j.checks.map((c) => c.name)).toEqual(['auc threshold', 'log_loss threshold', 'accuracy threshold']);
    expect(j.checks[2]!.detail).toBe('accuracy 0.7100, needs ≥ 0.5000 and ≤ 0.9000');
    expect(j.reason).toBe('All 3 checks passed: auc threshold, log_loss threshold, accuracy threshold.');
  });

  it('fails below min or above max, naming the check and the numbers in the reason', () => {
    const j = judgeModel({
      candidate,
      thresholds: [
        { metric: 'auc', min: 0.7 },
        { metric: 'log_loss', max: 0.5 },
      ],
    });
    expect(j.blessed).toBe(false);
    expect(j.checks.map((c) => c.passed)).toEqual([false, false]);
    expect(j.reason).toBe(
      '2 of 2 checks failed: auc threshold (auc 0.6811, needs ≥ 0.7000); log_loss threshold (log_loss 0.5200, needs ≤ 0.5000).',
    );
  });

  it('fails a metric the candidate lacks (or that is not finite), naming it', () => {
    const j = judgeModel({
      candidate: { ...candidate, f1: Number.NaN },
      thresholds: [
        { metric: 'rmse', max: 3 },
        { metric: 'f1', min: 0 },
      ],
    });
    expect(j.blessed).toBe(false);
    expect(j.checks[0]).toEqual({
      name: 'rmse threshold',
      passed: false,
      detail: 'rmse was not reported; needs ≤ 3.0000',
    });
    expect(j.checks[1]!.passed).toBe(false);
  });

  it('blesses when nothing is configured', () => {
    const j = judgeModel({ candidate, thresholds: [] });
    expect(j).toEqual({ blessed: true, reason: 'No checks are configured, so the model is blessed.', checks: [] });
  });
});

describe('judgeModel: champion comparison', () => {
  it('higher is better for auc: passes with enough improvement and shows the numbers', () => {
    const j = judgeModel({ candidate, thresholds: [], comparison: { metric: 'auc', minImprovement: 0.001 }, champion });
    expect(j.blessed).toBe(true);
    expect(j.checks[0]).toEqual({
      name: 'auc vs champion',
      passed: true,
      detail: 'auc 0.6811 vs champion v3 0.6801: change +0.0010 (higher is better), needs ≥ +0.0010',
    });
  });

  it('fails when the improvement is short of minImprovement', () => {
    const j = judgeModel({ candidate, thresholds: [], comparison: { metric: 'auc', minImprovement: 0.002 }, champion });
    expect(j.blessed).toBe(false);
    expect(j.reason).toContain('auc vs champion (auc 0.6811 vs champion v3 0.6801: change +0.0010');
  });

  it('lower is better for log_loss by default; an explicit direction overrides it', () => {
    const lower = judgeModel({
      candidate,
      thresholds: [],
      comparison: { metric: 'log_loss', minImprovement: 0.005 },
      champion,
    });
    expect(lower.blessed).toBe(true);
    expect(lower.checks[0]!.detail).toBe(
      'log_loss 0.5200 vs champion v3 0.5300: change -0.0100 (lower is better), needs ≥ +0.0050',
    );
    const higher = judgeModel({
      candidate,
      thresholds: [],
      comparison: { metric: 'log_loss', direction: 'higher', minImprovement: 0 },
      champion,
    });
    expect(higher.blessed).toBe(false);
  });

  it('equal is not better: the champion itself (identical metrics) is not blessed when minImprovement is 0', () => {
    const j = judgeModel({
      candidate: champion.metrics,
      thresholds: [],
      comparison: { metric: 'auc', minImprovement: 0 },
      champion,
    });
    expect(j.blessed).toBe(false);
    expect(j.checks[0]!.detail).toBe(
      'auc 0.6801 vs champion v3 0.6801: change +0.0000 (higher is better), needs > 0 (equal is not better)',
    );
    // Nor when re-evaluation differs in the last bits.
    const noisy = judgeModel({
      candidate: { auc: 0.6801 + 1e-15 },
      thresholds: [],
      comparison: { metric: 'auc', minImprovement: 0 },
      champion,
    });
    expect(noisy.blessed).toBe(false);
    // Any real improvement passes.
    const better = judgeModel({
      candidate: { auc: 0.68011 },
      thresholds: [],
      comparison: { metric: 'auc', minImprovement: 0 },
      champion,
    });
    expect(better.blessed).toBe(true);
  });

  it('a negative minImprovement allows that much regression, and no more', () => {
    const comparison = { metric: 'auc', minImprovement: -0.01 };
    expect(judgeModel({ candidate: { auc: 0.6701 }, thresholds: [], comparison, champion }).blessed).toBe(true);
    expect(judgeModel({ candidate: champion.metrics, thresholds: [], comparison, champion }).blessed).toBe(true);
    const worse = judgeModel({ candidate: { auc: 0.67 }, thresholds: [], comparison, champion });
    expect(worse.blessed).toBe(false);
    expect(worse.checks[0]!.detail).toContain('change -0.0101 (higher is better), needs ≥ -0.0100');
  });

  it('passes without a champion (the first model), but not without the candidate’s metric', () => {
    const first = judgeModel({ candidate, thresholds: [], comparison: { metric: 'auc', minImprovement: 0.1 } });
    expect(first.checks[0]).toEqual({ name: 'auc vs champion', passed: true, detail: 'no champion yet' });
    expect(first.blessed).toBe(true);
    const lacking = judgeModel({
      candidate,
      thresholds: [],
      comparison: { metric: 'rmse', minImprovement: 0 },
      champion,
    });
    expect(lacking.blessed).toBe(false);
    expect(lacking.checks[0]!.detail).toBe('rmse was not reported for the candidate');
  });

  it('fails when the champion has no value for the metric: nothing was compared', () => {
    const j = judgeModel({
      candidate,
      thresholds: [],
      comparison: { metric: 'auc', minImprovement: 0 },
      champion: { version: 2, metrics: { log_loss: 0.5 } },
    });
    expect(j.blessed).toBe(false);
    expect(j.checks[0]!.detail).toBe('champion v2 has no auc on this eval data');
  });
});

describe('judgeModel: infra validation', () => {
  it('passes a good infra result and fails a bad one with its error; absent means no check', () => {
    const good = judgeModel({ candidate, thresholds: [], infra: goodInfra });
    expect(good.blessed).toBe(true);
    expect(good.checks[0]).toEqual({
      name: 'infra validation',
      passed: true,
      detail: 'loaded in 12.3 ms, 100 rows answered in 1.5 ms (bound 2000 ms)',
    });
    const bad = judgeModel({
      candidate,
      thresholds: [{ metric: 'auc', min: 0.5 }],
      infra: {
        passed: false,
        loadMs: 0,
        latencyMs: 0,
        rows: 0,
        maxLatencyMs: 2000,
        error: 'Error: protobuf parsing failed',
      },
    });
    expect(bad.blessed).toBe(false);
    expect(bad.checks.map((c) => c.passed)).toEqual([true, false]);
    expect(bad.reason).toMatch(
      /^1 of 2 checks failed: infra validation \(Error: protobuf parsing failed; loaded in 0\.0 ms/,
    );
    expect(judgeModel({ candidate, thresholds: [] }).checks).toEqual([]);
  });

  it('orders checks thresholds, comparison, infra and blesses only when all pass', () => {
    const j = judgeModel({
      candidate,
      thresholds: [{ metric: 'auc', min: 0.6 }],
      comparison: { metric: 'auc', minImprovement: 0 },
      champion,
      infra: goodInfra,
    });
    expect(j.checks.map((c) => c.name)).toEqual(['auc threshold', 'auc vs champion', 'infra validation']);
    expect(j.blessed).toBe(true);
  });
});
