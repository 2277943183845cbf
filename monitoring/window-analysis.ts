/**
 * From a window's counts to what the monitor reports per feature: skew against the training baseline, drift against
 * the previous window's counts (read from its report), missing rates, unseen categories, the most shifted bins or
 * values, and which distances break their thresholds. Pure.
 */
import type { ColumnStatistics } from '../data/types.js';
import {
  baselineCategoryCounts,
  baselineNumericCounts,
  binLabels,
  categoricalDistance,
  numericDistance,
  topShifted,
  unseenCategories,
  alignCategories,
  type Distance,
  type ShiftedBucket,
} from './distances.js';
import type { DistanceMeasure, FeatureMonitoring, MonitoringBreach } from './types.js';
import type { CategoricalAccumulator, NumericAccumulator } from './distances.js';

/** Values kept per categorical feature in a report (the most frequent); the rest are summed in `otherCount`. */
export const MAX_REPORT_CATEGORIES = 1000;

/** One feature (or the predictions) in a window's report: what the next window needs to measure drift, and more. */
export interface ReportFeature {
  readonly feature: string;
  readonly kind: 'numeric' | 'categorical';
  /** Rows with a value, and rows without one. */
  readonly present: number;
  readonly missing: number;
  readonly missingRate: number;
  readonly baselineMissingRate?: number;
  /** Numeric: the interior bin edges (see distances.ts), this window's counts and the baseline's mass per bin. */
  readonly edges?: readonly number[];
  readonly counts?: readonly number[];
  readonly baselineCounts?: readonly number[];
  /** Categorical: counts by value (at most {@link MAX_REPORT_CATEGORIES}), and the count of the other values. */
  readonly categories?: Readonly<Record<string, number>>;
  readonly otherCount?: number;
  readonly skew?: DistanceMeasure;
  readonly drift?: DistanceMeasure;
  readonly unseenCategories?: readonly string[];
  /** The bins or values whose share moved most, against the baseline and against the previous window. */
  readonly topShifted: { readonly skew: readonly ShiftedBucket[]; readonly drift: readonly ShiftedBucket[] };
}

export interface FeatureThresholds {
  readonly skew: number;
  readonly drift: number;
}

/** What one feature's analysis is given. */
export interface FeatureInput {
  readonly feature: string;
  readonly kind: 'numeric' | 'categorical';
  readonly numeric?: NumericAccumulator;
  readonly categorical?: CategoricalAccumulator;
  /** Rows where a numeric feature without bins was missing. */
  readonly missingOnly?: number;
  /** Rows of the window. */
  readonly rows: number;
  readonly baseline?: ColumnStatistics;
  readonly previous?: ReportFeature;
  readonly thresholds: FeatureThresholds;
  /** Below the window's minimum rows: measured, never breached. */
  readonly quiet: boolean;
}

function measure(distance: Distance | undefined, threshold: number, quiet: boolean): DistanceMeasure | undefined {
  if (!distance) return undefined;
  return { ...distance, threshold, breached: !quiet && distance.distance > threshold };
}

function recordOf(map: ReadonlyMap<string, number>): { categories: Record<string, number>; otherCount: number } {
  const sorted = [...map].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0));
  const kept = sorted.slice(0, MAX_REPORT_CATEGORIES);
  let otherCount = 0;
  for (let i = MAX_REPORT_CATEGORIES; i < sorted.length; i++) otherCount += sorted[i]![1];
  return { categories: Object.fromEntries(kept), otherCount };
}

function sameEdges(a: readonly number[] | undefined, b: ArrayLike<number>): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Skew, drift, missing rates and shifted buckets of one feature in one window. */
export function analyzeFeature(input: FeatureInput): { monitoring: FeatureMonitoring; report: ReportFeature } {
  const { feature, kind, baseline, previous, thresholds, quiet } = input;
  const baselineMissingRate = baseline && baseline.count > 0 ? baseline.missing / baseline.count : undefined;
  let missing: number;
  let skew: DistanceMeasure | undefined;
  let drift: DistanceMeasure | undefined;
  let unseen: string[] | undefined;
  let topSkew: ShiftedBucket[] = [];
  let topDrift: ShiftedBucket[] = [];
  let details: Partial<ReportFeature> = {};

  if (input.numeric) {
    const acc = input.numeric;
    const edges = Array.from(acc.edges);
    const counts = Array.from(acc.counts);
    missing = acc.missing;
    const labels = binLabels(edges);
    const baselineCounts = baseline ? baselineNumericCounts(baseline, edges) : undefined;
    if (baselineCounts) {
      skew = measure(numericDistance(baselineCounts, counts), thresholds.skew, quiet);
      topSkew = topShifted(labels, baselineCounts, counts);
    }
    if (previous?.counts && sameEdges(previous.edges, edges)) {
      drift = measure(numericDistance(previous.counts, counts), thresholds.drift, quiet);
      topDrift = topShifted(labels, previous.counts, counts);
    }
    details = { edges, counts, ...(baselineCounts ? { baselineCounts } : {}) };
  } else if (input.categorical) {
    const acc = input.categorical;
    missing = acc.missing;
    if (baseline) {
      const base = baselineCategoryCounts(baseline);
      skew = measure(categoricalDistance(base.counts, acc.counts), thresholds.skew, quiet);
      const aligned = alignCategories(base.counts, acc.counts);
      topSkew = topShifted(aligned.values, aligned.reference, aligned.current);
      if (base.complete) unseen = unseenCategories(base.counts, acc.counts);
    }
    if (previous?.categories) {
      const before = new Map(Object.entries(previous.categories));
      drift = measure(categoricalDistance(before, acc.counts), thresholds.drift, quiet);
      const aligned = alignCategories(before, acc.counts);
      topDrift = topShifted(aligned.values, aligned.reference, aligned.current);
    }
    details = recordOf(acc.counts);
  } else {
    missing = input.missingOnly ?? 0;
  }

  const missingRate = input.rows > 0 ? missing / input.rows : 0;
  const monitoring: FeatureMonitoring = {
    feature,
    kind,
    ...(skew ? { skew } : {}),
    ...(drift ? { drift } : {}),
    missingRate,
    ...(baselineMissingRate !== undefined ? { baselineMissingRate } : {}),
    ...(unseen ? { unseenCategories: unseen } : {}),
  };
  const report: ReportFeature = {
    feature,
    kind,
    present: input.rows - missing,
    missing,
    missingRate,
    ...(baselineMissingRate !== undefined ? { baselineMissingRate } : {}),
    ...details,
    ...(skew ? { skew } : {}),
    ...(drift ? { drift } : {}),
    ...(unseen ? { unseenCategories: unseen } : {}),
    topShifted: { skew: topSkew, drift: topDrift },
  };
  return { monitoring, report };
}

/** The breaches among a window's feature (and prediction) measures, skew first then drift, in feature order. */
export function distanceBreaches(features: readonly FeatureMonitoring[]): MonitoringBreach[] {
  const out: MonitoringBreach[] = [];
  for (const kind of ['skew', 'drift'] as const) {
    for (const f of features) {
      const m = f[kind];
      if (m?.breached) out.push({ kind, subject: f.feature, value: m.distance, threshold: m.threshold });
    }
  }
  return out;
}

/** A rollback rule of the definition: a floor (`min`) or ceiling (`max`) on a live metric. */
export interface PerformanceRule {
  readonly metric: string;
  readonly min?: number | undefined;
  readonly max?: number | undefined;
  readonly minLabelledRows: number;
}

/** A live metric past its floor or ceiling, once enough rows are labelled; nothing below the minimum rows. */
export function performanceBreaches(
  rule: PerformanceRule | undefined,
  live: Readonly<Record<string, number>> | undefined,
  labelledRows: number,
  quiet: boolean,
): MonitoringBreach[] {
  if (!rule || !live || quiet || labelledRows < rule.minLabelledRows) return [];
  const value = live[rule.metric];
  if (value === undefined) return [];
  const out: MonitoringBreach[] = [];
  if (rule.min !== undefined && value < rule.min)
    out.push({ kind: 'performance', subject: rule.metric, value, threshold: rule.min });
  if (rule.max !== undefined && value > rule.max)
    out.push({ kind: 'performance', subject: rule.metric, value, threshold: rule.max });
  return out;
}
