/**
 * Performance before labels arrive: confidence-based performance estimation (NannyML's CBPE). Assuming the
 * probabilities are calibrated, a row predicted positive with P(class 1) = p is a true positive with probability p
 * and a false positive with probability 1 − p (a row predicted negative is a false negative with probability p and
 * a true negative with 1 − p); summing these gives the expected confusion matrix, and the metrics follow from it.
 * AUC is the ROC area over fractional labels: each row is a positive of weight p and a negative of weight 1 − p.
 *
 * Every estimate takes the model's own scores apart from the probabilities it trusts: `scores` decide (threshold,
 * argmax) and rank (AUC) as the model does, `p` is the chance that a row is positive. With logged probabilities only,
 * both are the same array (the default); after calibration (monitoring/calibration.ts) `p` is the calibrated one,
 * whose isotonic steps tie rows the model ranked apart. Pure.
 */

/** Expected confusion counts of a binary classifier at a threshold. */
export interface ExpectedConfusion {
  readonly truePositives: number;
  readonly falsePositives: number;
  readonly trueNegatives: number;
  readonly falseNegatives: number;
}

/**
 * Expected confusion counts from P(class 1) per row, rows whose score is ≥ threshold predicted positive.
 *
 * @param scores the model's P(class 1) as it decided (default `p`); as long as `p`.
 */
export function expectedConfusion(
  p: ArrayLike<number>,
  threshold = 0.5,
  scores: ArrayLike<number> = p,
): ExpectedConfusion {
  sameLength(p, scores);
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i]!;
    if (scores[i]! >= threshold) {
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
 * ROC AUC where every row is a positive of weight p and a negative of weight 1 − p, both at the row's score (ties
 * count one half, a row against itself included); undefined when every p is 0 or every p is 1. O(n log n).
 *
 * @param scores what the model ranks rows by (default `p`); as long as `p`.
 */
export function expectedAuc(p: ArrayLike<number>, scores: ArrayLike<number> = p): number | undefined {
  sameLength(p, scores);
  const sorted = sortByScore(p, scores);
  let negativesBelow = 0;
  let sum = 0;
  let positives = 0;
  for (let i = 0; i < sorted.scores.length;) {
    const score = sorted.scores[i]!;
    let pos = 0;
    let neg = 0;
    do {
      const pi = sorted.p[i]!;
      pos += pi;
      neg += 1 - pi;
      i++;
    } while (i < sorted.scores.length && sorted.scores[i] === score);
    sum += pos * (negativesBelow + 0.5 * neg);
    negativesBelow += neg;
    positives += pos;
  }
  const denominator = positives * negativesBelow;
  return denominator > 0 ? sum / denominator : undefined;
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * Copies of `scores` in ascending order (NaN last) and of `p` in the same order. One array: a native sort. Two: an
 * LSD radix sort of the scores' IEEE-754 bits, 16 bits a pass, carrying both along; a window may hold a million
 * rows, and sorting row indexes with a comparator took three times as long there.
 */
function sortByScore(p: ArrayLike<number>, scores: ArrayLike<number>): { scores: Float64Array; p: Float64Array } {
  if (p === scores) {
    const sorted = Float64Array.from(scores).sort();
    return { scores: sorted, p: sorted };
  }
  const n = scores.length;
  const float = new Float64Array(1);
  const words = new Uint32Array(float.buffer);
  const [low, high] = LITTLE_ENDIAN ? [0, 1] : [1, 0];
  let keyLow = new Uint32Array(n);
  let keyHigh = new Uint32Array(n);
  let byScore = Float64Array.from(scores);
  let byP = Float64Array.from(p);
  for (let i = 0; i < n; i++) {
    float[0] = byScore[i]! + 0; // −0 as 0
    // Bits that order as the numbers do: negatives flipped whole, non-negatives above them.
    const negative = words[high]! >>> 31 === 1;
    keyLow[i] = negative ? ~words[low]! >>> 0 : words[low]!;
    keyHigh[i] = negative ? ~words[high]! >>> 0 : (words[high]! | 0x80000000) >>> 0;
  }
  let nextLow = new Uint32Array(n);
  let nextHigh = new Uint32Array(n);
  let nextScore = new Float64Array(n);
  let nextP = new Float64Array(n);
  const counts = new Uint32Array(1 << 16);
  for (const pass of [0, 1, 2, 3]) {
    const keys = pass < 2 ? keyLow : keyHigh;
    const shift = pass % 2 === 0 ? 0 : 16;
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[(keys[i]! >>> shift) & 0xffff]!++;
    if (n === 0 || counts[(keys[0]! >>> shift) & 0xffff] === n) continue;
    let start = 0;
    for (let d = 0; d < counts.length; d++) {
      const c = counts[d]!;
      counts[d] = start;
      start += c;
    }
    for (let i = 0; i < n; i++) {
      const at = counts[(keys[i]! >>> shift) & 0xffff]!++;
      nextLow[at] = keyLow[i]!;
      nextHigh[at] = keyHigh[i]!;
      nextScore[at] = byScore[i]!;
      nextP[at] = byP[i]!;
    }
    [keyLow, nextLow] = [nextLow, keyLow];
    [keyHigh, nextHigh] = [nextHigh, keyHigh];
    [byScore, nextScore] = [nextScore, byScore];
    [byP, nextP] = [nextP, byP];
  }
  return { scores: byScore, p: byP };
}

/**
 * Estimated accuracy, precision, recall, F1 and AUC of a binary classifier from P(class 1) alone. Empty for no rows.
 *
 * @param scores the model's P(class 1), which decides at `threshold` and ranks for AUC (default `p`).
 * @example estimateBinaryPerformance(Float64Array.of(0.9, 0.2), 0.5).accuracy // (0.9 + 0.8) / 2
 * @example estimateBinaryPerformance(calibrated, 0.5, logged) // logged decides, calibrated is the chance it is right
 */
export function estimateBinaryPerformance(
  p: ArrayLike<number>,
  threshold = 0.5,
  scores: ArrayLike<number> = p,
): Record<string, number> {
  if (p.length === 0) return {};
  const m = expectedConfusion(p, threshold, scores);
  const predictedPositive = m.truePositives + m.falsePositives;
  const positives = m.truePositives + m.falseNegatives;
  const precision = predictedPositive > 0 ? m.truePositives / predictedPositive : 0;
  const recall = positives > 0 ? m.truePositives / positives : 0;
  const auc = expectedAuc(p, scores);
  return {
    ...(auc !== undefined ? { auc } : {}),
    accuracy: (m.truePositives + m.trueNegatives) / p.length,
    precision,
    recall,
    f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0,
  };
}

/**
 * Estimated accuracy (the mean of each row's probability of its predicted class), macro precision, recall and F1 (per
 * class k: rows predicted k add pₖ to its expected true positives and 1 − pₖ to its false positives; every other row
 * adds pₖ to its false negatives) and one-vs-rest AUC (mean over classes, as the evaluator's) of a multiclass
 * classifier, from probabilities row-major (rows × classCount). Empty for no rows.
 *
 * @param scores the model's probabilities, same layout: a row's predicted class is their argmax (first on ties) and
 *   each class's AUC ranks by its column (default `probabilities`).
 */
export function estimateMulticlassPerformance(
  probabilities: ArrayLike<number>,
  classCount: number,
  scores: ArrayLike<number> = probabilities,
): Record<string, number> {
  sameLength(probabilities, scores);
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
    for (let k = 1; k < classCount; k++) if (scores[base + k]! > scores[base + best]!) best = k;
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
  const scoreColumn = scores === probabilities ? column : new Float64Array(rows);
  for (let k = 0; k < classCount; k++) {
    const p = tp[k]! + fp[k]! > 0 ? tp[k]! / (tp[k]! + fp[k]!) : 0;
    const r = tp[k]! + fn[k]! > 0 ? tp[k]! / (tp[k]! + fn[k]!) : 0;
    precision += p;
    recall += r;
    f1 += p + r > 0 ? (2 * p * r) / (p + r) : 0;
    for (let i = 0; i < rows; i++) {
      column[i] = probabilities[i * classCount + k]!;
      scoreColumn[i] = scores[i * classCount + k]!;
    }
    const auc = expectedAuc(column, scoreColumn);
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

function sameLength(p: ArrayLike<number>, scores: ArrayLike<number>): void {
  if (p.length !== scores.length) throw new RangeError(`${p.length} probabilities for ${scores.length} scores`);
}
