/**
 * Judging a canary from live traffic, as pure functions: the challenger against the champion on error rate, p99
 * latency and the distribution of their predictions (Jensen-Shannon divergence of predicted labels, and of a binned
 * score: the positive class's probability for binary classifiers, the predicted value for regressors). The numbers
 * come from prediction_logs (activities/deployment.ts); the verdict is made here so it can be tested without a
 * database.
 */
import { jensenShannonDivergence } from '../data/drift.js';

/** Limits a challenger must stay within to be promoted. */
export interface CanaryThresholds {
  /** Largest accepted challenger error rate minus champion error rate (0.01 = one percentage point). */
  readonly maxErrorRateIncrease: number;
  /** Largest accepted challenger p99 latency / champion p99 latency. */
  readonly maxLatencyP99Ratio: number;
  /** Largest accepted Jensen-Shannon divergence (bits, 0 to 1) between the two versions' predictions. */
  readonly maxPredictionDivergence: number;
}

/** One version's live traffic in the comparison window. */
export interface VersionTraffic {
  readonly versionId: string;
  /** Answered requests (a request's instances share its outcome and latency). */
  readonly requests: number;
  /** Instances (prediction_logs rows). */
  readonly rows: number;
  /** Requests with an error. */
  readonly errors: number;
  /** Median request latency in ms; null without requests. */
  readonly latencyP50Ms: number | null;
  readonly latencyP99Ms: number | null;
}

/** Aligned counts of one distribution for the champion and the challenger. */
export interface PairedCounts {
  readonly champion: readonly number[];
  readonly challenger: readonly number[];
}

export interface CanaryMeasurements {
  readonly champion: VersionTraffic;
  readonly challenger: VersionTraffic;
  /** Predicted labels (classifiers), aligned over the union of labels; absent for regressors. */
  readonly labels?: PairedCounts & { readonly values: readonly string[] };
  /** Score histogram on common edges (binary positive-class probability or regression value). */
  readonly scores?: PairedCounts & { readonly edges: readonly number[] };
}

export type CanaryVerdictKind = 'pass' | 'fail' | 'insufficient_data';

export interface CanaryCheck {
  readonly name: 'requests' | 'error_rate' | 'latency_p99' | 'prediction_divergence';
  /** False when the check failed; a check without data to judge (no predictions, no latency) passes, and says so. */
  readonly passed: boolean;
  /** The measured value (requests of the smaller side, error rate increase, p99 ratio, divergence); null when none. */
  readonly value: number | null;
  readonly limit: number;
  readonly detail: string;
}

export interface CanaryVerdict {
  readonly verdict: CanaryVerdictKind;
  readonly errorRateIncrease: number | null;
  readonly latencyP99Ratio: number | null;
  /** The larger of the label and score divergences; null when neither side has predictions to compare. */
  readonly predictionDivergence: number | null;
  readonly labelDivergence: number | null;
  readonly scoreDivergence: number | null;
  readonly checks: readonly CanaryCheck[];
  /** One line for people: the verdict and each measured value against its limit. */
  readonly summary: string;
}

/** A p99 below this (ms) counts as this when dividing: a ratio to a 0 ms champion would be infinite. */
export const MIN_LATENCY_MS = 0.001;

export function errorRate(traffic: VersionTraffic): number | null {
  return traffic.requests > 0 ? traffic.errors / traffic.requests : null;
}

/** Jensen-Shannon divergence of two aligned count vectors; null when either side has no mass. */
export function countsDivergence(counts: PairedCounts | undefined): number | null {
  if (counts === undefined || counts.champion.length === 0) return null;
  const total = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
  if (!(total(counts.champion) > 0) || !(total(counts.challenger) > 0)) return null;
  return jensenShannonDivergence(counts.champion, counts.challenger);
}

/**
 * Aligns two label → count maps over the union of their labels (sorted), for {@link countsDivergence}.
 *
 * @example alignLabels({ a: 3 }, { b: 1 }) // { values: ['a', 'b'], champion: [3, 0], challenger: [0, 1] }
 */
export function alignLabels(
  champion: Readonly<Record<string, number>>,
  challenger: Readonly<Record<string, number>>,
): PairedCounts & { values: string[] } {
  const values = [...new Set([...Object.keys(champion), ...Object.keys(challenger)])].sort();
  return {
    values,
    champion: values.map((v) => champion[v] ?? 0),
    challenger: values.map((v) => challenger[v] ?? 0),
  };
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const ms = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(2)} ms`);
const num = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(4));

/**
 * The verdict: `insufficient_data` while either side has fewer than `minRequests` requests; else `fail` when any
 * check fails (error rate increase, p99 ratio or prediction divergence above its limit), else `pass`.
 */
export function judgeCanary(
  measured: CanaryMeasurements,
  thresholds: CanaryThresholds,
  minRequests: number,
): CanaryVerdict {
  const { champion, challenger } = measured;
  const checks: CanaryCheck[] = [];

  const fewest = Math.min(champion.requests, challenger.requests);
  checks.push({
    name: 'requests',
    passed: fewest >= minRequests,
    value: fewest,
    limit: minRequests,
    detail: `${challenger.requests} challenger and ${champion.requests} champion requests (at least ${minRequests} each)`,
  });

  const championRate = errorRate(champion);
  const challengerRate = errorRate(challenger);
  const errorRateIncrease = championRate === null || challengerRate === null ? null : challengerRate - championRate;
  checks.push({
    name: 'error_rate',
    passed: errorRateIncrease === null || errorRateIncrease <= thresholds.maxErrorRateIncrease,
    value: errorRateIncrease,
    limit: thresholds.maxErrorRateIncrease,
    detail:
      errorRateIncrease === null
        ? 'no requests to compare error rates'
        : `error rate ${pct(challengerRate!)} vs ${pct(championRate!)} (increase ${pct(errorRateIncrease)}, at most ${pct(thresholds.maxErrorRateIncrease)})`,
  });

  const latencyP99Ratio =
    champion.latencyP99Ms === null || challenger.latencyP99Ms === null
      ? null
      : Math.max(challenger.latencyP99Ms, 0) / Math.max(champion.latencyP99Ms, MIN_LATENCY_MS);
  checks.push({
    name: 'latency_p99',
    passed: latencyP99Ratio === null || latencyP99Ratio <= thresholds.maxLatencyP99Ratio,
    value: latencyP99Ratio,
    limit: thresholds.maxLatencyP99Ratio,
    detail:
      latencyP99Ratio === null
        ? 'no latencies to compare'
        : `p99 ${ms(challenger.latencyP99Ms)} vs ${ms(champion.latencyP99Ms)} (ratio ${num(latencyP99Ratio)}, at most ${num(thresholds.maxLatencyP99Ratio)})`,
  });

  const labelDivergence = countsDivergence(measured.labels);
  const scoreDivergence = countsDivergence(measured.scores);
  const divergences = [labelDivergence, scoreDivergence].filter((d): d is number => d !== null);
  const predictionDivergence = divergences.length > 0 ? Math.max(...divergences) : null;
  checks.push({
    name: 'prediction_divergence',
    passed: predictionDivergence === null || predictionDivergence <= thresholds.maxPredictionDivergence,
    value: predictionDivergence,
    limit: thresholds.maxPredictionDivergence,
    detail:
      predictionDivergence === null
        ? 'no predictions to compare'
        : `prediction divergence ${num(predictionDivergence)} (labels ${labelDivergence === null ? 'n/a' : num(labelDivergence)}, scores ${scoreDivergence === null ? 'n/a' : num(scoreDivergence)}; at most ${num(thresholds.maxPredictionDivergence)})`,
  });

  const enough = checks[0]!.passed;
  const verdict: CanaryVerdictKind = !enough ? 'insufficient_data' : checks.every((c) => c.passed) ? 'pass' : 'fail';
  const failed = checks.filter((c) => !c.passed && c.name !== 'requests');
  const summary =
    verdict === 'insufficient_data'
      ? `insufficient data: ${checks[0]!.detail}`
      : verdict === 'fail'
        ? `fail: ${failed.map((c) => c.detail).join('; ')}`
        : `pass: ${checks.map((c) => c.detail).join('; ')}`;
  return {
    verdict,
    errorRateIncrease,
    latencyP99Ratio,
    predictionDivergence,
    labelDivergence,
    scoreDivergence,
    checks,
    summary,
  };
}
