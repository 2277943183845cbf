/**
 * Performance before labels arrive: confidence-based performance estimation (NannyML's CBPE). Assuming the logged
 * probabilities are calibrated, a row predicted positive with P(class 1) = p is a true positive with probability p
 * and a false positive with probability 1 − p (a row predicted negative is a false negative with probability p and
 * a true negative with 1 − p); summing these gives the expected confusion matrix, and the metrics follow from it.
 * AUC is the ROC area over fractional labels: each row is a positive of weight p and a negative of weight 1 − p at
 * score p. Pure; no calibration here (the probabilities are taken as they were logged).
 */

/** Expected confusion counts of a binary classifier at a threshold. */
export interface ExpectedConfusion {
  readonly truePositives: number;
  readonly falsePositives: number;
  readonly trueNegatives: number;
  readonly falseNegatives: number;
}

/** Expected confusion counts from P(class 1) per row, rows with p ≥ threshold predicted positive. */
export function expectedConfusion(p: ArrayLike<number>, threshold = 0.5): ExpectedConfusion {
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i]!;
    if (pi >= threshold) {
      tp += pi;
      fp += 1 - pi;
    } else {
      fn += pi;
      tn += 1 - pi;
    }
  }
  return { truePositives: tp, falsePositives: fp, trueNegatives: tn, falseNegatives: fn };
}

/**
 * ROC AUC where every row is a positive of weight p and a negative of weight 1 − p, both at score p (ties count one
 * half, a row against itself included); undefined when every p is 0 or every p is 1. Sorts a copy: O(n log n).
 */
export function expectedAuc(p: ArrayLike<number>): number | undefined {
  const sorted = Float64Array.from(p).sort();
  let negativesBelow = 0;
  let sum = 0;
  let positives = 0;
  for (let i = 0; i < sorted.length;) {
    const value = sorted[i]!;
    let pos = 0;
    let neg = 0;
    while (i < sorted.length && sorted[i] === value) {
      pos += value;
      neg += 1 - value;
      i++;
    }
    sum += pos * (negativesBelow + 0.5 * neg);
    negativesBelow += neg;
    positives += pos;
  }
  const denominator = positives * negativesBelow;
  return denominator > 0 ? sum / denominator : undefined;
}

/**
 * Estimated accuracy, precision, recall, F1 and AUC of a binary classifier from P(class 1) alone. Empty for no rows.
 *
 * @example estimateBinaryPerformance(Float64Array.of(0.9, 0.2), 0.5).accuracy // (0.9 + 0.8) / 2
 */
export function estimateBinaryPerformance(p: ArrayLike<number>, threshold = 0.5): Record<string, number> {
  if (p.length === 0) return {};
  const m = expectedConfusion(p, threshold);
  const predictedPositive = m.truePositives + m.falsePositives;
  const positives = m.truePositives + m.falseNegatives;
  const precision = predictedPositive > 0 ? m.truePositives / predictedPositive : 0;
  const recall = positives > 0 ? m.truePositives / positives : 0;
  const auc = expectedAuc(p);
  return {
    ...(auc !== undefined ? { auc } : {}),
    accuracy: (m.truePositives + m.trueNegatives) / p.length,
    precision,
    recall,
    f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0,
  };
}

/**
 * Estimated accuracy (the mean of each row's largest probability), macro precision, recall and F1 (per class k: rows
 * predicted k add pₖ to its expected true positives and 1 − pₖ to its false positives; every other row adds pₖ to its
 * false negatives) and one-vs-rest AUC (mean over classes, as the evaluator's) of a multiclass classifier, from
 * probabilities row-major (rows × classCount). Empty for no rows.
 */
export function estimateMulticlassPerformance(
  probabilities: ArrayLike<number>,
  classCount: number,
): Record<string, number> {
  const rows = probabilities.length / classCount;
  if (!Number.isInteger(rows)) throw new RangeError(`${probabilities.length} probabilities for ${classCount} classes`);
  if (rows === 0) return {};
  const tp = new Float64Array(classCount);
  const fp = new Float64Array(classCount);
  const fn = new Float64Array(classCount);
  let correct = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * classCount;
    let best = 0;
    for (let k = 1; k < classCount; k++) if (probabilities[base + k]! > probabilities[base + best]!) best = k;
    const pBest = probabilities[base + best]!;
    correct += pBest;
    tp[best]! += pBest;
    fp[best]! += 1 - pBest;
    for (let k = 0; k < classCount; k++) if (k !== best) fn[k]! += probabilities[base + k]!;
  }
  let precision = 0;
  let recall = 0;
  let f1 = 0;
  let aucSum = 0;
  let aucClasses = 0;
  const column = new Float64Array(rows);
  for (let k = 0; k < classCount; k++) {
    const p = tp[k]! + fp[k]! > 0 ? tp[k]! / (tp[k]! + fp[k]!) : 0;
    const r = tp[k]! + fn[k]! > 0 ? tp[k]! / (tp[k]! + fn[k]!) : 0;
    precision += p;
    recall += r;
    f1 += p + r > 0 ? (2 * p * r) / (p + r) : 0;
    for (let i = 0; i < rows; i++) column[i] = probabilities[i * classCount + k]!;
    const auc = expectedAuc(column);
    if (auc !== undefined) {
      aucSum += auc;
      aucClasses++;
    }
  }
  return {
    ...(aucClasses > 0 ? { auc: aucSum / aucClasses } : {}),
    accuracy: correct / rows,
    precision: precision / classCount,
    recall: recall / classCount,
    f1: f1 / classCount,
  };
}
