/**
 * A window's labelled rows (predictions joined to their feedback): the live metrics computed from the labels, and
 * the estimate on those same rows (what the estimate would have said without them), so that the two can be compared.
 */
import type { LabelTask } from '../models/types.js';
import type { Calibration } from './calibration.js';
import { estimatePerformance } from './eval-calibration.js';
import { classIndexer, liveMetrics } from './live-metrics.js';
import type { WindowScan } from './window-scan.js';

/** Live metrics of the labelled rows, the estimate on those same rows, and how many labels matched no class. */
export function labelledMetrics(
  scan: WindowScan,
  task: LabelTask | undefined,
  classes: readonly string[],
  threshold: number,
  calibration: Calibration | undefined,
): {
  live?: Record<string, number>;
  estimatedOnLabelled?: Record<string, number>;
  labelled: number;
  unmatched: number;
} {
  const n = scan.feedbackLabels.length;
  if (n === 0) return { labelled: 0, unmatched: 0 };
  const outputs = scan.feedbackOutputs.view();
  if (scan.outputKind === 'prediction') {
    const labels: number[] = [];
    const predictions: number[] = [];
    scan.feedbackLabels.forEach((text, i) => {
      const y = text.trim() === '' ? Number.NaN : Number(text);
      if (Number.isFinite(y) && Number.isFinite(outputs[i]!)) {
        labels.push(y);
        predictions.push(outputs[i]!);
      }
    });
    const live = liveMetrics({
      task: 'regression',
      labels: Float64Array.from(labels),
      outputs: Float64Array.from(predictions),
      classCount: 1,
      threshold,
    });
    return { live, labelled: labels.length, unmatched: n - labels.length };
  }
  const k = scan.classCount;
  if (k < 2 || outputs.length !== n * k) return { labelled: 0, unmatched: n };
  const indexOf = classIndexer(classes);
  const labels: number[] = [];
  const rows: number[] = [];
  scan.feedbackLabels.forEach((text, i) => {
    const y = indexOf(text);
    if (y === undefined || y >= k) return;
    labels.push(y);
    for (let c = 0; c < k; c++) rows.push(outputs[i * k + c]!);
  });
  const binary = k === 2 && task !== 'multiclass';
  const probabilities = Float64Array.from(rows);
  const live = liveMetrics({
    task: binary ? 'binary' : 'multiclass',
    labels: Float64Array.from(labels),
    outputs: probabilities,
    classCount: k,
    threshold,
  });
  const scores = binary ? probabilities.filter((_, i) => i % 2 === 1) : probabilities;
  const estimatedOnLabelled =
    labels.length === 0 ? undefined : estimatePerformance(scores, k, binary, threshold, calibration);
  return {
    live,
    ...(estimatedOnLabelled ? { estimatedOnLabelled } : {}),
    labelled: labels.length,
    unmatched: n - labels.length,
  };
}
