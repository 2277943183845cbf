/**
 * The losses the trees fit, as scikit-learn's HistGradientBoosting defines them: log loss (binary), softmax
 * cross-entropy (multiclass, one tree per class per iteration) and squared error (regression).
 *
 * Raw scores and gradients are class-major (`k * rows + r`), so the tree for class k reads and updates one
 * contiguous block. One pass computes the gradients for the next iteration and the loss of the current scores, so
 * reporting the training loss costs no extra pass over the rows; passes work on row ranges, so that threads can
 * share them.
 */
import type { LabelTask } from '../../types.js';

/** Keeps baseline probabilities away from 0 and 1 (float64 epsilon, as scikit-learn clips). */
const EPSILON = 2.220446049250313e-16;

export interface GbtLoss {
  readonly task: LabelTask;
  /** Raw-score outputs: trees per iteration. */
  readonly outputs: number;
  /** The constant raw scores that minimise the loss (scikit-learn's `fit_intercept_only`). */
  baseline(y: Float64Array, weights: Float64Array | undefined): number[];
  /**
   * Writes gradients and hessians of the loss at `raw` for the rows [start, end) of `y.length` (weighted when
   * weights are given).
   *
   * @returns Σ weight × loss over those rows.
   */
  gradients(
    raw: Float64Array,
    y: Float64Array,
    weights: Float64Array | undefined,
    gradient: Float32Array,
    hessian: Float32Array,
    start: number,
    end: number,
  ): number;
  /** The (weighted) mean loss at `raw`. */
  loss(raw: Float64Array, y: Float64Array, weights: Float64Array | undefined): number;
}

/** The loss of a task; `numClasses` matters for multiclass only. */
export function lossFor(task: LabelTask, numClasses: number): GbtLoss {
  if (task === 'binary') return binaryLogLoss;
  if (task === 'regression') return squaredError;
  return softmaxCrossEntropy(numClasses);
}

/** Σ weights (the row count without weights): the denominator of a mean loss. */
export function totalWeight(n: number, weights: Float64Array | undefined): number {
  if (!weights) return n;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += weights[i]!;
  return sum;
}

function classShares(y: Float64Array, weights: Float64Array | undefined, classes: number): number[] {
  const shares = new Array<number>(classes).fill(0);
  for (let i = 0; i < y.length; i++) shares[y[i]!] = shares[y[i]!]! + (weights ? weights[i]! : 1);
  const total = totalWeight(y.length, weights);
  return shares.map((s) => Math.min(Math.max(s / total, EPSILON), 1 - EPSILON));
}

/**
 * log(1 + exp(z)) - y z, with p = sigmoid(z), g = p - y and h = p (1 - p); exp is taken of -|z| only, so nothing
 * overflows and one exp serves the loss, the probability and the hessian.
 */
const binaryLogLoss: GbtLoss = {
  task: 'binary',
  outputs: 1,
  baseline(y, weights) {
    const p = classShares(y, weights, 2)[1]!;
    return [Math.log(p / (1 - p))];
  },
  gradients(raw, y, weights, gradient, hessian, start, end) {
    // loss = log(1 + e) + max(z, 0) - y z with e = exp(-|z|), and log(1 + e) = -log q with q = 1 / (1 + e) in
    // [1/2, 1]. A log per row would cost as much as the exp; unweighted, the q are multiplied in blocks of 64 (the
    // product stays above 2^-64) and one log is taken per block.
    let linear = 0;
    let logs = 0;
    let product = 1;
    for (let r = start; r < end; r++) {
      const z = raw[r]!;
      const t = y[r]!;
      const negative = z < 0;
      const e = Math.exp(negative ? z : -z);
      const q = 1 / (1 + e);
      // p = sigmoid(z), and p(1 - p) = e / (1 + e)^2 for either sign of z.
      const p = negative ? e * q : q;
      if (weights) {
        const w = weights[r]!;
        gradient[r] = w * (p - t);
        hessian[r] = w * e * q * q;
        linear += w * ((negative ? 0 : z) - t * z);
        logs += w * Math.log(q);
      } else {
        gradient[r] = p - t;
        hessian[r] = e * q * q;
        linear += (negative ? 0 : z) - t * z;
        product *= q;
        if (((r - start) & 63) === 63) {
          logs += Math.log(product);
          product = 1;
        }
      }
    }
    logs += Math.log(product);
    return linear - logs;
  },
  loss(raw, y, weights) {
    let sum = 0;
    for (let r = 0; r < y.length; r++) {
      const z = raw[r]!;
      const l = Math.log1p(Math.exp(-Math.abs(z))) + Math.max(z, 0) - y[r]! * z;
      sum += weights ? weights[r]! * l : l;
    }
    return sum / totalWeight(y.length, weights);
  },
};

/** Mean squared error (scikit-learn minimises half of it; the gradients below are that half's). */
const squaredError: GbtLoss = {
  task: 'regression',
  outputs: 1,
  baseline(y, weights) {
    let sum = 0;
    for (let i = 0; i < y.length; i++) sum += weights ? weights[i]! * y[i]! : y[i]!;
    return [sum / totalWeight(y.length, weights)];
  },
  gradients(raw, y, weights, gradient, hessian, start, end) {
    let sum = 0;
    for (let r = start; r < end; r++) {
      const d = raw[r]! - y[r]!;
      const w = weights ? weights[r]! : 1;
      gradient[r] = w * d;
      hessian[r] = w;
      sum += w * d * d;
    }
    return sum;
  },
  loss(raw, y, weights) {
    let sum = 0;
    for (let r = 0; r < y.length; r++) {
      const d = raw[r]! - y[r]!;
      sum += weights ? weights[r]! * d * d : d * d;
    }
    return sum / totalWeight(y.length, weights);
  },
};

function softmaxCrossEntropy(classes: number): GbtLoss {
  // One row's exp(z_k - max); each thread has its own loss object, so this scratch is never shared.
  const exps = new Float64Array(classes);
  /** log Σ_k exp(z_k) of row r, shifted by the maximum so that exp never overflows. */
  const logPartition = (raw: Float64Array, n: number, r: number): number => {
    let max = -Infinity;
    for (let k = 0; k < classes; k++) max = Math.max(max, raw[k * n + r]!);
    let sum = 0;
    for (let k = 0; k < classes; k++) sum += Math.exp(raw[k * n + r]! - max);
    return max + Math.log(sum);
  };
  return {
    task: 'multiclass',
    outputs: classes,
    baseline(y, weights) {
      // log p_k centred on their mean: scikit-learn's symmetric multinomial link.
      const logs = classShares(y, weights, classes).map((p) => Math.log(p));
      const mean = logs.reduce((a, b) => a + b, 0) / classes;
      return logs.map((l) => l - mean);
    },
    gradients(raw, y, weights, gradient, hessian, start, end) {
      const n = y.length;
      let sum = 0;
      for (let r = start; r < end; r++) {
        // One exp per class (shifted by the maximum so that none overflows), then p_k = e_k / Σ e.
        let max = -Infinity;
        for (let k = 0; k < classes; k++) max = Math.max(max, raw[k * n + r]!);
        let total = 0;
        for (let k = 0; k < classes; k++) {
          const e = Math.exp(raw[k * n + r]! - max);
          exps[k] = e;
          total += e;
        }
        const t = y[r]!;
        const w = weights ? weights[r]! : 1;
        for (let k = 0; k < classes; k++) {
          const p = exps[k]! / total;
          gradient[k * n + r] = w * (p - (k === t ? 1 : 0));
          hessian[k * n + r] = w * p * (1 - p);
        }
        sum += w * (max + Math.log(total) - raw[t * n + r]!);
      }
      return sum;
    },
    loss(raw, y, weights) {
      const n = y.length;
      let sum = 0;
      for (let r = 0; r < n; r++) {
        const l = logPartition(raw, n, r) - raw[y[r]! * n + r]!;
        sum += weights ? weights[r]! * l : l;
      }
      return sum / totalWeight(n, weights);
    },
  };
}
