/**
 * Calibration of a classifier's probabilities on its evaluation split, so that the confidence-based estimate
 * (performance-estimate.ts) may take them at face value: isotonic regression by pool-adjacent-violators, one map of
 * P(class 1) for a binary model; for a multiclass one, a one-vs-rest map per class, the mapped row renormalised to sum
 * to 1 (as NannyML's CBPE calibrates). A fitted map is plain data (breakpoints and values), stored as JSON. Pure.
 */

/**
 * A non-decreasing piecewise-linear map: `y[i]` at `x[i]` (x strictly increasing), linear in between, `y[0]` below
 * `x[0]` and the last value above the last breakpoint. Each isotonic block gives its first and last score.
 */
export interface IsotonicMap {
  readonly x: readonly number[];
  readonly y: readonly number[];
}

/** A fitted calibration: one map of P(class 1) (binary) or one map per class (multiclass, one-vs-rest). */
export interface Calibration {
  readonly method: 'isotonic';
  readonly classCount: number;
  readonly maps: readonly IsotonicMap[];
}

/** Options of {@link calibrationError}. */
export interface CalibrationErrorOptions {
  /** Equal-width bins over [0, 1]. Default 15. */
  readonly bins?: number;
  /** The model's probabilities, as it decides (a multiclass row's predicted class); default the ones measured. */
  readonly scores?: ArrayLike<number>;
}

/** Fewer eval rows than this are too few to fit a map on: the estimate then reads the probabilities as logged. */
export const MIN_CALIBRATION_ROWS = 100;
/** At most this many isotonic steps per map (2 breakpoints each): a bounded artifact whatever the eval split's size. */
export const MAX_CALIBRATION_STEPS = 1000;
export const CALIBRATION_BINS = 15;

/**
 * Isotonic regression of `targets` on `scores` by pool-adjacent-violators: the non-decreasing step function of the
 * score closest to the targets in weighted squared error. Equal scores are pooled first. When it has more than
 * `maxSteps` steps, runs of adjacent steps are pooled (weighted means), which keeps it non-decreasing. At every
 * fitted score the map gives its step's weighted mean, so the weighted mean of the fitted values equals the targets'.
 *
 * @throws RangeError for no rows, arrays of different lengths, a non-finite score or target, or a negative weight.
 * @example fitIsotonic([0.1, 0.2, 0.3], [0, 1, 0]) // { x: [0.1, 0.2, 0.3], y: [0, 0.5, 0.5] }
 */
export function fitIsotonic(
  scores: ArrayLike<number>,
  targets: ArrayLike<number>,
  weights?: ArrayLike<number>,
  maxSteps = MAX_CALIBRATION_STEPS,
): IsotonicMap {
  const n = scores.length;
  if (n === 0) throw new RangeError('isotonic regression needs at least one row');
  if (targets.length !== n || (weights && weights.length !== n))
    throw new RangeError(`${n} scores, ${targets.length} targets, ${weights?.length ?? n} weights`);
  if (!(Number.isSafeInteger(maxSteps) && maxSteps >= 1)) throw new RangeError(`maxSteps: ${maxSteps}`);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(scores[i]!) || !Number.isFinite(targets[i]!) || !((weights?.[i] ?? 1) >= 0))
      throw new RangeError(`row ${i}: score ${scores[i]}, target ${targets[i]}, weight ${weights?.[i] ?? 1}`);
    order[i] = i;
  }
  order.sort((a, b) => scores[a]! - scores[b]!);

  // Blocks on a stack: weighted sum of targets, weight, first and last score.
  const sum: number[] = [];
  const weight: number[] = [];
  const low: number[] = [];
  const high: number[] = [];
  const mean = (b: number) => (weight[b]! > 0 ? sum[b]! / weight[b]! : 0);
  for (let i = 0; i < n;) {
    const score = scores[order[i]!]!;
    let s = 0;
    let w = 0;
    for (; i < n && scores[order[i]!] === score; i++) {
      const wi = weights?.[order[i]!] ?? 1;
      s += wi * targets[order[i]!]!;
      w += wi;
    }
    sum.push(s);
    weight.push(w);
    low.push(score);
    high.push(score);
    // A block of zero weight has no value of its own: pooled with its neighbour, it takes the neighbour's.
    for (let last = sum.length - 1; last > 0; last = sum.length - 1) {
      if (weight[last - 1]! > 0 && weight[last]! > 0 && mean(last - 1) < mean(last)) break;
      sum[last - 1]! += sum[last]!;
      weight[last - 1]! += weight[last]!;
      high[last - 1] = high[last]!;
      sum.pop();
      weight.pop();
      low.pop();
      high.pop();
    }
  }

  const blocks = sum.length;
  const per = Math.ceil(blocks / maxSteps);
  const x: number[] = [];
  const y: number[] = [];
  for (let b = 0; b < blocks; b += per) {
    const end = Math.min(blocks, b + per);
    let s = 0;
    let w = 0;
    for (let c = b; c < end; c++) {
      s += sum[c]!;
      w += weight[c]!;
    }
    const value = w > 0 ? s / w : mean(b);
    x.push(low[b]!);
    y.push(value);
    if (high[end - 1]! > low[b]!) {
      x.push(high[end - 1]!);
      y.push(value);
    }
  }
  return { x, y };
}

/** The map's value at `score` (NaN for NaN). O(log steps). */
export function applyIsotonic(map: IsotonicMap, score: number): number {
  const { x, y } = map;
  const last = x.length - 1;
  if (Number.isNaN(score)) return Number.NaN;
  if (score <= x[0]!) return y[0]!;
  if (score >= x[last]!) return y[last]!;
  let lo = 0;
  let hi = last;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (x[mid]! <= score) lo = mid;
    else hi = mid;
  }
  const t = (score - x[lo]!) / (x[hi]! - x[lo]!);
  return y[lo]! + t * (y[hi]! - y[lo]!);
}

/**
 * Fits a calibration on labelled rows: `probabilities` row-major (rows × classCount, binary [1 − p, p]), `labels`
 * class indexes. Binary: one map of P(class 1); multiclass: one map per class of its column against "label is this
 * class". See {@link MIN_CALIBRATION_ROWS} for when fitting one is worth it; this fits whatever it is given.
 *
 * @throws RangeError when the arrays do not match, or a label is not a class index.
 */
export function fitCalibration(
  probabilities: ArrayLike<number>,
  labels: ArrayLike<number>,
  classCount: number,
  binary: boolean,
  maxSteps = MAX_CALIBRATION_STEPS,
): Calibration {
  const rows = checkShape(probabilities, labels, classCount, binary);
  const column = new Float64Array(rows);
  const isClass = new Float64Array(rows);
  const maps: IsotonicMap[] = [];
  for (const k of binary ? [1] : Array.from({ length: classCount }, (_, c) => c)) {
    for (let i = 0; i < rows; i++) {
      column[i] = probabilities[i * classCount + k]!;
      isClass[i] = labels[i] === k ? 1 : 0;
    }
    maps.push(fitIsotonic(column, isClass, undefined, maxSteps));
  }
  return { method: 'isotonic', classCount, maps };
}

/**
 * The calibrated probabilities of rows laid out as `probabilities` (rows × classCount). Binary: [1 − m(p), m(p)].
 * Multiclass: each class's map of its column, the row then divided by its sum; a row that every map sends to 0 keeps
 * its probabilities (nothing on the eval split resembles it, so there is nothing better to say).
 */
export function applyCalibration(calibration: Calibration, probabilities: ArrayLike<number>): Float64Array {
  const k = calibration.classCount;
  if (probabilities.length % k !== 0) throw new RangeError(`${probabilities.length} probabilities for ${k} classes`);
  const rows = probabilities.length / k;
  const out = new Float64Array(probabilities.length);
  if (calibration.maps.length === 1) {
    const map = calibration.maps[0]!;
    for (let i = 0; i < rows; i++) {
      const p = applyIsotonic(map, probabilities[i * k + 1]!);
      out[i * k] = 1 - p;
      out[i * k + 1] = p;
    }
    return out;
  }
  for (let i = 0; i < rows; i++) {
    let total = 0;
    for (let c = 0; c < k; c++) {
      out[i * k + c] = applyIsotonic(calibration.maps[c]!, probabilities[i * k + c]!);
      total += out[i * k + c]!;
    }
    for (let c = 0; c < k; c++) out[i * k + c] = total > 0 ? out[i * k + c]! / total : probabilities[i * k + c]!;
  }
  return out;
}

/**
 * Expected calibration error, in [0, 1]: rows binned by probability into equal-width bins, the rows' share times |mean
 * probability − observed frequency|, summed. Binary: of P(class 1) against the label; multiclass: of the probability
 * of the predicted class (argmax of `scores`, first on ties) against its being right — the probability the
 * estimate's accuracy reads.
 */
export function calibrationError(
  probabilities: ArrayLike<number>,
  labels: ArrayLike<number>,
  classCount: number,
  binary: boolean,
  options: CalibrationErrorOptions = {},
): number {
  const rows = checkShape(probabilities, labels, classCount, binary);
  const bins = options.bins ?? CALIBRATION_BINS;
  const scores = options.scores ?? probabilities;
  if (scores.length !== probabilities.length) throw new RangeError('scores and probabilities differ in length');
  const predicted = new Float64Array(bins);
  const observed = new Float64Array(bins);
  for (let i = 0; i < rows; i++) {
    let k = 1;
    if (!binary) {
      k = 0;
      for (let c = 1; c < classCount; c++) if (scores[i * classCount + c]! > scores[i * classCount + k]!) k = c;
    }
    const p = probabilities[i * classCount + k]!;
    const bin = Math.min(bins - 1, Math.max(0, Math.floor(p * bins)));
    predicted[bin]! += p;
    observed[bin]! += labels[i] === k ? 1 : 0;
  }
  let error = 0;
  // A bin's share of the rows times |its mean probability − its frequency| is |Σ p − Σ y| over all rows.
  for (let b = 0; b < bins; b++) error += Math.abs(predicted[b]! - observed[b]!) / Math.max(rows, 1);
  return error;
}

/** What calibrating on an eval split gave: the map, or why there is none, and the error it removed. */
export interface CalibrationFit {
  readonly rows: number;
  /** Absent when skipped (see `skipped`). */
  readonly calibration?: Calibration;
  readonly skipped?: string;
  /**
   * Expected calibration error on the eval split: `before` of the model's probabilities; `after` of calibrated ones,
   * out of fold (each half of the rows calibrated by the map fitted on the other half: a map measured on the rows it
   * was fitted on looks perfect).
   */
  readonly ece?: { readonly bins: number; readonly before: number; readonly after?: number };
}

/**
 * Fits the calibration of a classifier on its eval split's probabilities and labels (see {@link fitCalibration}) and
 * measures it; skipped, with the reason, for fewer than {@link MIN_CALIBRATION_ROWS} rows or a single class.
 */
export function calibrateOnEval(
  probabilities: ArrayLike<number>,
  labels: ArrayLike<number>,
  classCount: number,
  binary: boolean,
): CalibrationFit {
  const rows = checkShape(probabilities, labels, classCount, binary);
  const bins = CALIBRATION_BINS;
  const before = rows > 0 ? calibrationError(probabilities, labels, classCount, binary, { bins }) : undefined;
  const ece = before === undefined ? {} : { ece: { bins, before } };
  if (rows < MIN_CALIBRATION_ROWS)
    return { rows, skipped: `the eval split has ${rows} rows, fewer than ${MIN_CALIBRATION_ROWS}`, ...ece };
  if (new Set(Array.from(labels)).size < 2) return { rows, skipped: 'the eval split has a single class', ...ece };

  const calibration = fitCalibration(probabilities, labels, classCount, binary);
  const outOfFold = new Float64Array(probabilities.length);
  for (const fold of [0, 1]) {
    const fit = rowsWhere(probabilities, labels, classCount, (i) => i % 2 !== fold);
    const held = rowsWhere(probabilities, labels, classCount, (i) => i % 2 === fold);
    const calibrated = applyCalibration(
      fitCalibration(fit.probabilities, fit.labels, classCount, binary),
      held.probabilities,
    );
    for (let j = 0; j < held.labels.length; j++)
      for (let c = 0; c < classCount; c++) outOfFold[(2 * j + fold) * classCount + c] = calibrated[j * classCount + c]!;
  }
  const after = calibrationError(outOfFold, labels, classCount, binary, { bins, scores: probabilities });
  return { rows, calibration, ece: { bins, before: before!, after } };
}

function rowsWhere(
  probabilities: ArrayLike<number>,
  labels: ArrayLike<number>,
  k: number,
  keep: (row: number) => boolean,
): { probabilities: Float64Array; labels: Float64Array } {
  const kept: number[] = [];
  for (let i = 0; i < labels.length; i++) if (keep(i)) kept.push(i);
  const p = new Float64Array(kept.length * k);
  const y = new Float64Array(kept.length);
  kept.forEach((row, j) => {
    y[j] = labels[row]!;
    for (let c = 0; c < k; c++) p[j * k + c] = probabilities[row * k + c]!;
  });
  return { probabilities: p, labels: y };
}

function checkShape(probabilities: ArrayLike<number>, labels: ArrayLike<number>, k: number, binary: boolean): number {
  if (!(Number.isSafeInteger(k) && k >= 2) || (binary && k !== 2)) throw new RangeError(`class count ${k}`);
  if (probabilities.length !== labels.length * k)
    throw new RangeError(`${probabilities.length} probabilities for ${labels.length} rows of ${k} classes`);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!;
    if (!(Number.isInteger(y) && y >= 0 && y < k)) throw new RangeError(`row ${i}: label ${y} is not a class index`);
  }
  return labels.length;
}
