/**
 * Split finding on a node's histogram, as scikit-learn's HistGradientBoosting (splitting.pyx) does it, so that the
 * two grow the same trees from the same bins:
 * - gain = G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ) (XGBoost's eq. 7 without the ½), kept only when > 0;
 * - numeric: scan the bins left to right with missing values right, and, when the feature has missing values, right
 *   to left with missing values left (XGBoost's sparsity-aware scan); the last value bin is a valid split point only
 *   when there are missing values ("missing alone go right");
 * - categorical (Fisher's grouping, as LightGBM and scikit-learn): categories with enough support (hessian ×
 *   rows/H ≥ 10) are sorted by G/(H + 10) and scanned as if ordered, from both ends up to the middle; the chosen
 *   prefix goes left, everything else (low-support and unseen categories included) right;
 * - each child keeps min_samples_leaf rows and a hessian ≥ 1e-3; ties keep the first feature and the first bin.
 */
import { MISSING_BIN, type FeatureBinning } from './binning.js';
import { SLOTS_PER_BIN } from './histogram.js';

/** scikit-learn's `min_hessian_to_split`. */
export const MIN_HESSIAN_TO_SPLIT = 1e-3;

/** Smoothing and minimum support of a category (scikit-learn's MIN_CAT_SUPPORT, LightGBM's cat_smooth). */
export const MIN_CATEGORY_SUPPORT = 10;

export interface SplitConstraints {
  readonly minSamplesLeaf: number;
  readonly l2Regularization: number;
}

/** The best split of a node, with the sums of both children. */
export interface SplitCandidate {
  gain: number;
  feature: number;
  kind: 'numeric' | 'categorical';
  /** Numeric: value bins ≤ bin go left. */
  bin: number;
  /** Numeric: where missing values go. */
  missingLeft: boolean;
  /** Categorical: the bins that go left, ascending. */
  leftBins: number[];
  gradientLeft: number;
  hessianLeft: number;
  countLeft: number;
  gradientRight: number;
  hessianRight: number;
  countRight: number;
}

/** A leaf's value before shrinkage: the Newton step −G/(H+λ) (the 1e-15 guards an all-zero hessian). */
export function nodeValue(gradient: number, hessian: number, l2: number): number {
  return -gradient / (hessian + l2 + 1e-15);
}

function splitGain(gl: number, hl: number, gr: number, hr: number, nodeLoss: number, l2: number): number {
  // Written as scikit-learn writes it (loss of a leaf = G · value), so that gains round the same way.
  return nodeLoss - gl * nodeValue(gl, hl, l2) - gr * nodeValue(gr, hr, l2);
}

/** Per-call state of the categorical scan, allocated once per tree grower (no allocation per node). */
export class SplitFinder {
  private readonly order: Int32Array;
  private readonly ratios: Float64Array;

  constructor(
    private readonly binning: readonly FeatureBinning[],
    private readonly constraints: SplitConstraints,
  ) {
    this.order = new Int32Array(256);
    this.ratios = new Float64Array(256);
  }

  /**
   * The best split of a node over all features, or null when none satisfies the constraints with a positive gain.
   *
   * @param count rows of the node; `gradient` and `hessian` their sums.
   */
  find(histogram: Float64Array, count: number, gradient: number, hessian: number): SplitCandidate | null {
    const nodeLoss = gradient * nodeValue(gradient, hessian, this.constraints.l2Regularization);
    let best: SplitCandidate | null = null;
    for (let f = 0; f < this.binning.length; f++) {
      const spec = this.binning[f]!;
      const candidate =
        spec.kind === 'numeric'
          ? this.numeric(histogram, f, spec.valueBins, spec.hasMissing, count, gradient, hessian, nodeLoss)
          : this.categorical(histogram, f, spec.bins, count, gradient, hessian, nodeLoss);
      if (candidate && (best === null || candidate.gain > best.gain)) best = candidate;
    }
    return best;
  }

  private numeric(
    histogram: Float64Array,
    f: number,
    valueBins: number,
    hasMissing: boolean,
    count: number,
    gradient: number,
    hessian: number,
    nodeLoss: number,
  ): SplitCandidate | null {
    const { minSamplesLeaf, l2Regularization: l2 } = this.constraints;
    const base = (f << 8) * SLOTS_PER_BIN;
    let bestGain = -1;
    let bestBin = -1;
    let bestMissingLeft = false;
    let bestG = 0;
    let bestH = 0;
    let bestN = 0;

    // Left to right, missing values right.
    const end = valueBins - 1 + (hasMissing ? 1 : 0);
    let gl = 0;
    let hl = 0;
    let nl = 0;
    for (let b = 0; b < end; b++) {
      const k = base + b * SLOTS_PER_BIN;
      gl += histogram[k]!;
      hl += histogram[k + 1]!;
      nl += histogram[k + 2]!;
      const nr = count - nl;
      const hr = hessian - hl;
      if (nl < minSamplesLeaf) continue;
      if (nr < minSamplesLeaf) break;
      if (hl < MIN_HESSIAN_TO_SPLIT) continue;
      if (hr < MIN_HESSIAN_TO_SPLIT) break;
      const gain = splitGain(gl, hl, gradient - gl, hr, nodeLoss, l2);
      if (gain > bestGain && gain > 0) {
        bestGain = gain;
        bestBin = b;
        bestG = gl;
        bestH = hl;
        bestN = nl;
      }
    }

    // Right to left, missing values left: only worth it when there are missing values.
    if (hasMissing) {
      let gr = 0;
      let hr = 0;
      let nr = 0;
      for (let b = valueBins - 2; b >= 0; b--) {
        const k = base + (b + 1) * SLOTS_PER_BIN;
        gr += histogram[k]!;
        hr += histogram[k + 1]!;
        nr += histogram[k + 2]!;
        const nl = count - nr;
        const hl = hessian - hr;
        if (nr < minSamplesLeaf) continue;
        if (nl < minSamplesLeaf) break;
        if (hr < MIN_HESSIAN_TO_SPLIT) continue;
        if (hl < MIN_HESSIAN_TO_SPLIT) break;
        const gain = splitGain(gradient - gr, hl, gr, hr, nodeLoss, l2);
        if (gain > bestGain && gain > 0) {
          bestGain = gain;
          bestBin = b;
          bestMissingLeft = true;
          bestG = gradient - gr;
          bestH = hl;
          bestN = nl;
        }
      }
    }
    if (bestBin < 0) return null;
    return {
      gain: bestGain,
      feature: f,
      kind: 'numeric',
      bin: bestBin,
      missingLeft: bestMissingLeft,
      leftBins: [],
      gradientLeft: bestG,
      hessianLeft: bestH,
      countLeft: bestN,
      gradientRight: gradient - bestG,
      hessianRight: hessian - bestH,
      countRight: count - bestN,
    };
  }

  private categorical(
    histogram: Float64Array,
    f: number,
    bins: number,
    count: number,
    gradient: number,
    hessian: number,
    nodeLoss: number,
  ): SplitCandidate | null {
    const { minSamplesLeaf, l2Regularization: l2 } = this.constraints;
    const base = (f << 8) * SLOTS_PER_BIN;
    const order = this.order;
    const ratios = this.ratios;
    // Hessians scaled to row counts (1 when hessians are constant), so the support threshold means "rows".
    const supportFactor = count / hessian;
    let used = 0;
    for (let b = 0; b < bins; b++) {
      const k = base + b * SLOTS_PER_BIN;
      const h = histogram[k + 1]!;
      if (h * supportFactor >= MIN_CATEGORY_SUPPORT) {
        order[used] = b;
        ratios[b] = histogram[k]! / (h + MIN_CATEGORY_SUPPORT);
        used++;
      }
    }
    if (used <= 1) return null;
    // Ascending ratio, ties by bin: deterministic (scikit-learn's qsort leaves ties in no fixed order).
    order.subarray(0, used).sort((a, b) => ratios[a]! - ratios[b]! || a - b);

    let bestGain = -1;
    let bestEnd = -1;
    let bestForward = true;
    let bestG = 0;
    let bestH = 0;
    let bestN = 0;
    for (const forward of [true, false]) {
      const middle = forward ? (used + 1) >> 1 : ((used + 1) >> 1) - 1;
      let gl = 0;
      let hl = 0;
      let nl = 0;
      for (let i = 0; i < middle; i++) {
        const b = order[forward ? i : used - 1 - i]!;
        const k = base + b * SLOTS_PER_BIN;
        gl += histogram[k]!;
        hl += histogram[k + 1]!;
        nl += histogram[k + 2]!;
        const nr = count - nl;
        const hr = hessian - hl;
        if (nl < minSamplesLeaf || hl < MIN_HESSIAN_TO_SPLIT) continue;
        if (nr < minSamplesLeaf || hr < MIN_HESSIAN_TO_SPLIT) break;
        const gain = splitGain(gl, hl, gradient - gl, hr, nodeLoss, l2);
        if (gain > bestGain && gain > 0) {
          bestGain = gain;
          bestEnd = i;
          bestForward = forward;
          bestG = gl;
          bestH = hl;
          bestN = nl;
        }
      }
    }
    if (bestEnd < 0) return null;
    const leftBins: number[] = [];
    for (let i = 0; i <= bestEnd; i++) leftBins.push(order[bestForward ? i : used - 1 - i]!);
    leftBins.sort((a, b) => a - b);
    return {
      gain: bestGain,
      feature: f,
      kind: 'categorical',
      bin: 0,
      missingLeft: false,
      leftBins,
      gradientLeft: bestG,
      hessianLeft: bestH,
      countLeft: bestN,
      gradientRight: gradient - bestG,
      hessianRight: hessian - bestH,
      countRight: count - bestN,
    };
  }
}

/** The bins that go left under a split, as a 256-entry table (1: left), for partitioning and routing. */
export function leftTable(split: SplitCandidate, binning: FeatureBinning, into: Uint8Array): Uint8Array {
  into.fill(0);
  if (split.kind === 'categorical') {
    for (const b of split.leftBins) into[b] = 1;
  } else {
    into.fill(1, 0, split.bin + 1);
    if (binning.kind === 'numeric' && split.missingLeft) into[MISSING_BIN] = 1;
  }
  return into;
}
