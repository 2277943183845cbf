/**
 * Live performance of a window: ground truth sent as feedback, joined to the logged predictions, scored with the same
 * metric functions as the evaluator (models/evaluate.ts `computeMetrics`), so live and evaluation figures compare.
 * Pure.
 */
import { computeMetrics } from '../models/evaluate.js';
import type { LabelTask } from '../models/types.js';

/** A Float64Array that grows by doubling; `view()` is the filled part (no copy). */
export class GrowableFloat64 {
  #data: Float64Array;
  length = 0;

  constructor(capacity = 1024) {
    this.#data = new Float64Array(Math.max(1, capacity));
  }

  push(value: number): void {
    if (this.length === this.#data.length) {
      const next = new Float64Array(this.#data.length * 2);
      next.set(this.#data);
      this.#data = next;
    }
    this.#data[this.length++] = value;
  }

  view(): Float64Array {
    return this.#data.subarray(0, this.length);
  }
}

/**
 * Maps a label as feedback gives it (its text form: `yes`, `1`, `true`) to the index of the class it names, or
 * undefined for a label that is no class. Numbers match numerically (`1.0` is class `1`).
 */
export function classIndexer(classes: readonly (string | number | boolean)[]): (label: string) => number | undefined {
  const byText = new Map<string, number>();
  classes.forEach((c, i) => {
    if (!byText.has(String(c))) byText.set(String(c), i);
  });
  return (label) => {
    const exact = byText.get(label);
    if (exact !== undefined) return exact;
    const n = label.trim() === '' ? Number.NaN : Number(label);
    return Number.isFinite(n) ? byText.get(String(n)) : undefined;
  };
}

/** The labelled rows of a window, as the metric functions take them. */
export interface LabelledRows {
  readonly task: LabelTask;
  /** Class indexes (classification) or targets (regression). */
  readonly labels: Float64Array;
  /** Classification: probabilities row-major, rows × classCount; regression: the predictions. */
  readonly outputs: Float64Array;
  /** 2 for binary, K for multiclass, 1 for regression. */
  readonly classCount: number;
  /** Binary: rows with P(class 1) ≥ threshold are predicted positive. */
  readonly threshold: number;
}

/**
 * Metrics of the labelled rows: AUC, log loss, accuracy, precision, recall, F1 (macro for multiclass) and Brier for
 * classifiers; RMSE, MAE and R² for regression; as scikit-learn defines them. Empty without rows; a metric undefined
 * on these rows (AUC with one class present) is absent.
 *
 * @example liveMetrics({ task: 'regression', labels, outputs: predictions, classCount: 1, threshold: 0.5 }).rmse
 */
export function liveMetrics(rows: LabelledRows): Record<string, number> {
  if (rows.labels.length === 0) return {};
  if (rows.outputs.length !== rows.labels.length * rows.classCount) {
    throw new RangeError(`${rows.outputs.length} outputs for ${rows.labels.length} rows × ${rows.classCount}`);
  }
  return computeMetrics(rows);
}
