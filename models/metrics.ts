/**
 * Evaluation metrics on typed arrays, defined as scikit-learn defines them (so that figures compare): ROC AUC (ties
 * count one half), log loss (probabilities clipped to [1e-15, 1 − 1e-15]), accuracy, precision/recall/F1 at a
 * threshold, Brier score; RMSE, MAE, R². Every function takes optional per-row weights (a weighted mean, or weighted
 * counts) and is pure and deterministic.
 */

/** Probabilities are clipped to [LOG_LOSS_EPSILON, 1 − LOG_LOSS_EPSILON] before the log (scikit-learn's eps). */
export const LOG_LOSS_EPSILON = 1e-15;

type Numbers = ArrayLike<number>;

/**
 * Area under the ROC curve of binary labels (0/1) and scores (any monotone score: probability or logit): the
 * probability that a random positive scores above a random negative, ties counting one half (the rank-based
 * Mann–Whitney form, equal to scikit-learn's `roc_auc_score`). O(n log n).
 *
 * @throws RangeError when only one class is present, a label is not 0/1, or a score is NaN.
 */
export function rocAuc(y: Numbers, scores: Numbers, weights?: Numbers): number {
  checkLengths(y, scores, weights);
  const n = y.length;
  let positives = 0;
  let negatives = 0;
  for (let i = 0; i < n; i++) {
    const label = y[i]!;
    if (label !== 0 && label !== 1) throw new RangeError(`label ${i} is ${label}, not 0 or 1`);
    if (Number.isNaN(scores[i]!)) throw new RangeError(`score ${i} is NaN`);
    const w = weights ? weights[i]! : 1;
    if (label === 1) positives += w;
    else negatives += w;
  }
  if (!(positives > 0 && negatives > 0)) throw new RangeError('AUC needs both classes');
  if (weights) return weightedAuc(y, scores, weights) / (positives * negatives);

  // Unweighted: sort each class's scores (native numeric sort), then merge counting negatives below each positive.
  const pos = new Float64Array(positives);
  const neg = new Float64Array(negatives);
  for (let i = 0, p = 0, q = 0; i < n; i++) {
    if (y[i] === 1) pos[p++] = scores[i]!;
    else neg[q++] = scores[i]!;
  }
  pos.sort();
  neg.sort();
  let below = 0;
  let sum = 0;
  for (let i = 0; i < pos.length;) {
    const value = pos[i]!;
    let group = 0;
    while (i < pos.length && pos[i] === value) {
      group++;
      i++;
    }
    while (below < neg.length && neg[below]! < value) below++;
    let equal = 0;
    while (below + equal < neg.length && neg[below + equal] === value) equal++;
    sum += group * (below + 0.5 * equal);
  }
  return sum / (positives * negatives);
}

/** Σ over tie groups of w⁺(group)·(w⁻ below + ½·w⁻(group)), rows sorted by score. */
function weightedAuc(y: Numbers, scores: Numbers, weights: Numbers): number {
  const order = Uint32Array.from({ length: y.length }, (_, i) => i);
  order.sort((a, b) => {
    const [sa, sb] = [scores[a]!, scores[b]!];
    return sa < sb ? -1 : sa > sb ? 1 : 0;
  });
  let negativesBelow = 0;
  let sum = 0;
  for (let i = 0; i < order.length;) {
    const value = scores[order[i]!]!;
    let pos = 0;
    let neg = 0;
    while (i < order.length && scores[order[i]!] === value) {
      const row = order[i++]!;
      if (y[row] === 1) pos += weights[row]!;
      else neg += weights[row]!;
    }
    sum += pos * (negativesBelow + 0.5 * neg);
    negativesBelow += neg;
  }
  return sum;
}

/**
 * Mean binary log loss (cross-entropy, natural log) of labels 0/1 and P(class 1), probabilities clipped to
 * [1e-15, 1 − 1e-15].
 */
export function logLoss(y: Numbers, probabilities: Numbers, weights?: Numbers): number {
  checkLengths(y, probabilities, weights);
  return weightedMean(y.length, weights, (i) => {
    const p = clip(probabilities[i]!);
    return y[i] === 1 ? -Math.log(p) : -Math.log(1 - p);
  });
}

/**
 * Mean multiclass log loss of class indexes and row-major probabilities (`rows × classCount`), the true class's
 * probability clipped to [1e-15, 1 − 1e-15] (rows are not renormalized).
 */
export function multiclassLogLoss(y: Numbers, probabilities: Numbers, classCount: number, weights?: Numbers): number {
  if (probabilities.length !== y.length * classCount) {
    throw new RangeError(`${probabilities.length} probabilities for ${y.length} rows × ${classCount} classes`);
  }
  if (weights && weights.length !== y.length) throw new RangeError('weights and labels differ in length');
  return weightedMean(y.length, weights, (i) => -Math.log(clip(probabilities[i * classCount + y[i]!]!)));
}

/** Class index of each row's largest probability (first one on ties), for row-major `rows × classCount` input. */
export function argmaxRows(probabilities: Numbers, classCount: number): Float64Array {
  const rows = probabilities.length / classCount;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let k = 1; k < classCount; k++) {
      if (probabilities[r * classCount + k]! > probabilities[r * classCount + best]!) best = k;
    }
    out[r] = best;
  }
  return out;
}

/** Fraction (weighted) of rows whose predicted label equals the true one. */
export function accuracy(y: Numbers, predicted: Numbers, weights?: Numbers): number {
  checkLengths(y, predicted, weights);
  return weightedMean(y.length, weights, (i) => (y[i] === predicted[i] ? 1 : 0));
}

/** Binary classification at a threshold: counts (weighted) and the rates scikit-learn reports. */
export interface ThresholdMetrics {
  readonly threshold: number;
  readonly truePositives: number;
  readonly falsePositives: number;
  readonly trueNegatives: number;
  readonly falseNegatives: number;
  readonly accuracy: number;
  /** TP / (TP + FP); 0 when nothing is predicted positive (scikit-learn's zero_division default). */
  readonly precision: number;
  /** TP / (TP + FN); 0 when there are no positives. */
  readonly recall: number;
  /** Harmonic mean of precision and recall; 0 when both are 0. */
  readonly f1: number;
}

/**
 * Confusion counts, accuracy, precision, recall and F1 of labels 0/1 when rows with probability ≥ `threshold` are
 * predicted positive.
 */
export function thresholdMetrics(
  y: Numbers,
  probabilities: Numbers,
  threshold = 0.5,
  weights?: Numbers,
): ThresholdMetrics {
  checkLengths(y, probabilities, weights);
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < y.length; i++) {
    const w = weights ? weights[i]! : 1;
    const positive = probabilities[i]! >= threshold;
    if (y[i] === 1) {
      if (positive) tp += w;
      else fn += w;
    } else if (positive) fp += w;
    else tn += w;
  }
  const total = tp + fp + tn + fn;
  const precision = tp + fp > 0 ? tp / (tp + fp) : 0;
  const recall = tp + fn > 0 ? tp / (tp + fn) : 0;
  const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return {
    threshold,
    truePositives: tp,
    falsePositives: fp,
    trueNegatives: tn,
    falseNegatives: fn,
    accuracy: total > 0 ? (tp + tn) / total : 0,
    precision,
    recall,
    f1,
  };
}

/** Mean squared difference between P(class 1) and the 0/1 label. */
export function brierScore(y: Numbers, probabilities: Numbers, weights?: Numbers): number {
  checkLengths(y, probabilities, weights);
  return weightedMean(y.length, weights, (i) => (probabilities[i]! - y[i]!) ** 2);
}

/** Root of the (weighted) mean squared error, in the target's unit. */
export function rmse(y: Numbers, predicted: Numbers, weights?: Numbers): number {
  checkLengths(y, predicted, weights);
  return Math.sqrt(weightedMean(y.length, weights, (i) => (predicted[i]! - y[i]!) ** 2));
}

/** (Weighted) mean absolute error, in the target's unit. */
export function mae(y: Numbers, predicted: Numbers, weights?: Numbers): number {
  checkLengths(y, predicted, weights);
  return weightedMean(y.length, weights, (i) => Math.abs(predicted[i]! - y[i]!));
}

/**
 * Coefficient of determination 1 − SS_res / SS_tot (weighted). As scikit-learn: a constant target gives 1 when the
 * predictions are perfect and 0 otherwise.
 */
export function r2(y: Numbers, predicted: Numbers, weights?: Numbers): number {
  checkLengths(y, predicted, weights);
  const mean = weightedMean(y.length, weights, (i) => y[i]!);
  let residual = 0;
  let totalSquares = 0;
  for (let i = 0; i < y.length; i++) {
    const w = weights ? weights[i]! : 1;
    residual += w * (y[i]! - predicted[i]!) ** 2;
    totalSquares += w * (y[i]! - mean) ** 2;
  }
  if (totalSquares === 0) return residual === 0 ? 1 : 0;
  return 1 - residual / totalSquares;
}

function clip(p: number): number {
  return Math.min(Math.max(p, LOG_LOSS_EPSILON), 1 - LOG_LOSS_EPSILON);
}

function weightedMean(n: number, weights: Numbers | undefined, value: (i: number) => number): number {
  if (n === 0) throw new RangeError('no rows');
  let sum = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const w = weights ? weights[i]! : 1;
    sum += w * value(i);
    total += w;
  }
  if (!(total > 0)) throw new RangeError('the weights sum to zero');
  return sum / total;
}

function checkLengths(y: Numbers, other: Numbers, weights?: Numbers): void {
  if (other.length !== y.length) throw new RangeError(`${other.length} predictions for ${y.length} labels`);
  if (weights && weights.length !== y.length) throw new RangeError(`${weights.length} weights for ${y.length} labels`);
}
