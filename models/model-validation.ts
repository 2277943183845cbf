/**
 * The blessing (TFX's Evaluator verdict): whether a candidate version may be deployed, from its metrics, absolute
 * thresholds, a comparison with the champion evaluated on the same data, and the infra validation. Pure: the
 * caller evaluates, this module judges.
 */
import { LOWER_IS_BETTER, type MetricName } from '../pipelines/definition.js';
import type { InfraValidationResult } from './infra-validation.js';

/** The candidate's `metric` must be at least `min` and at most `max` (both inclusive). */
export interface Threshold {
  metric: string;
  min?: number;
  max?: number;
}

/** How much better than the champion the candidate must be (see {@link judgeModel}). */
export interface ChampionComparison {
  metric: string;
  /** Default: 'lower' for LOWER_IS_BETTER metrics (log_loss, brier, rmse, mae), 'higher' otherwise. */
  direction?: 'higher' | 'lower';
  minImprovement: number;
}

/** One check's outcome; `detail` shows the numbers it compared. */
export interface ValidationCheck {
  readonly name: string;
  readonly passed: boolean;
  readonly detail: string;
}

/** The verdict: blessed iff every check passed. */
export interface ModelJudgement {
  readonly blessed: boolean;
  /** One sentence: that every check passed, or the failed checks and their details. */
  readonly reason: string;
  readonly checks: readonly ValidationCheck[];
}

/** Input of {@link judgeModel}. */
export interface JudgeModelInput {
  candidate: Record<string, number>;
  thresholds: readonly Threshold[];
  comparison?: ChampionComparison;
  /** The champion's metrics re-evaluated on this run's eval data; absent when there is no champion yet. */
  champion?: { version: number; metrics: Record<string, number> };
  /** Absent: no infra check. */
  infra?: InfraValidationResult;
}

/**
 * Improvements within this fraction of the champion's magnitude (at least of 1) count as none: the same model
 * evaluated twice may differ in the last bits, and that must not make it "better".
 */
export const COMPARISON_TOLERANCE = 1e-9;

/**
 * Judges a candidate. Checks, in order: each threshold (`min ≤ value ≤ max`); the champion comparison, when
 * configured; the infra validation, when given. A metric the candidate lacks (or that is not finite) fails its check.
 *
 * Champion comparison: improvement = candidate − champion when higher is better, champion − candidate when lower is
 * better. With `minImprovement` > 0 or < 0 the check passes iff improvement ≥ minImprovement (a negative value
 * allows that much regression). With `minImprovement` = 0 it passes only iff improvement > 0: **equal is not
 * better**, so retraining on unchanged data yields a version that is registered but not deployed over an identical
 * champion. Differences within {@link COMPARISON_TOLERANCE} are treated as equal. Without a champion (the first
 * model) the comparison passes ("no champion yet"); a champion that lacks the metric fails it, since nothing was
 * compared.
 */
export function judgeModel(input: JudgeModelInput): ModelJudgement {
  const checks: ValidationCheck[] = [];
  for (const threshold of input.thresholds) checks.push(thresholdCheck(input.candidate, threshold));
  if (input.comparison) checks.push(championCheck(input.candidate, input.comparison, input.champion));
  if (input.infra) checks.push(infraCheck(input.infra));
  const failed = checks.filter((c) => !c.passed);
  const blessed = failed.length === 0;
  const reason = blessed
    ? checks.length === 0
      ? 'No checks are configured, so the model is blessed.'
      : `All ${checks.length} checks passed: ${checks.map((c) => c.name).join(', ')}.`
    : `${failed.length} of ${checks.length} checks failed: ${failed.map((c) => `${c.name} (${c.detail})`).join('; ')}.`;
  return { blessed, reason, checks };
}

function metricValue(metrics: Record<string, number>, metric: string): number | undefined {
  const value = metrics[metric];
  return value !== undefined && Number.isFinite(value) ? value : undefined;
}

function thresholdCheck(candidate: Record<string, number>, threshold: Threshold): ValidationCheck {
  const { metric, min, max } = threshold;
  const bounds = [min === undefined ? '' : `≥ ${format(min)}`, max === undefined ? '' : `≤ ${format(max)}`]
    .filter(Boolean)
    .join(' and ');
  const name = `${metric} threshold`;
  const value = metricValue(candidate, metric);
  if (value === undefined) return { name, passed: false, detail: `${metric} was not reported; needs ${bounds}` };
  const passed = (min === undefined || value >= min) && (max === undefined || value <= max);
  return { name, passed, detail: `${metric} ${format(value)}, needs ${bounds || 'nothing'}` };
}

function championCheck(
  candidate: Record<string, number>,
  comparison: ChampionComparison,
  champion: JudgeModelInput['champion'],
): ValidationCheck {
  const { metric, minImprovement } = comparison;
  const name = `${metric} vs champion`;
  const direction = comparison.direction ?? (LOWER_IS_BETTER.has(metric as MetricName) ? 'lower' : 'higher');
  const needs = minImprovement === 0 ? '> 0 (equal is not better)' : `≥ ${signed(minImprovement)}`;
  const value = metricValue(candidate, metric);
  if (value === undefined) {
    return { name, passed: false, detail: `${metric} was not reported for the candidate` };
  }
  if (!champion) return { name, passed: true, detail: 'no champion yet' };
  const reference = metricValue(champion.metrics, metric);
  if (reference === undefined) {
    return { name, passed: false, detail: `champion v${champion.version} has no ${metric} on this eval data` };
  }
  const raw = direction === 'higher' ? value - reference : reference - value;
  const tolerance = COMPARISON_TOLERANCE * Math.max(1, Math.abs(reference));
  const improvement = Math.abs(raw) <= tolerance ? 0 : raw;
  const passed = minImprovement === 0 ? improvement > 0 : improvement >= minImprovement - tolerance;
  const better = direction === 'higher' ? 'higher is better' : 'lower is better';
  return {
    name,
    passed,
    detail: `${metric} ${format(value)} vs champion v${champion.version} ${format(reference)}: change ${signed(value - reference)} (${better}), needs ${needs}`,
  };
}

function infraCheck(infra: InfraValidationResult): ValidationCheck {
  const timing = `loaded in ${infra.loadMs.toFixed(1)} ms, ${infra.rows} rows answered in ${infra.latencyMs.toFixed(1)} ms (bound ${infra.maxLatencyMs} ms)`;
  return {
    name: 'infra validation',
    passed: infra.passed,
    detail: infra.passed ? timing : `${infra.error ?? 'failed'}; ${timing}`,
  };
}

/** Four decimals (metrics are compared at that scale); tiny non-zero values in scientific notation. */
function format(x: number): string {
  return x !== 0 && Math.abs(x) < 1e-4 ? x.toExponential(3) : x.toFixed(4);
}

function signed(x: number): string {
  return x >= 0 ? `+${format(Math.abs(x))}` : `-${format(-x)}`;
}
