/**
 * Binning: every feature value becomes a byte, once, before boosting; histograms are then built over bytes.
 *
 * Numeric features: up to `maxBins` quantile bins (scikit-learn's _BinMapper: midpoint percentiles of a subsample of
 * at most 200,000 training rows, or one bin per distinct value when there are few), missing values in bin
 * {@link MISSING_BIN}. Missing means NaN or ±Infinity, as in the transform (data/transform.ts), so bins and
 * thresholds are finite.
 * Unlike scikit-learn, every bin boundary is a float32 value `t` with `x < t` ⇔ `x` is in a lower bin, for every
 * float32 `x`: the trees store `t` as their threshold, and an ONNX TreeEnsemble (float32, BRANCH_LT) routes each row
 * exactly as training did. Boundaries lie strictly above the largest value of the lower bin and at most at the
 * smallest value of the upper bin, so a value equal to a threshold goes right.
 *
 * Categorical features: the code is the bin. Codes from `maxBins` upwards (the rarest values, since vocabularies are
 * ordered by training frequency) share the last bin, so a vocabulary may be of any size; a split that sends that
 * shared bin left lists all its codes in `leftCodes`.
 */
import type { TreeDataset } from '../../types.js';
import { sampleWithoutReplacement, type SeededRandom } from './random.js';

/** The bin of a missing numeric value (NaN). */
export const MISSING_BIN = 255;

/** Bins per feature in a histogram (a byte's range). */
export const BINS_PER_FEATURE = 256;

/** Rows sampled to place the quantile bins (scikit-learn's default `subsample`). */
export const BINNING_SUBSAMPLE = 200_000;

/** Largest finite float32. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/** Whether a feature value counts as missing: NaN or ±Infinity (x − x is NaN exactly for those). */
export function isMissing(x: number): boolean {
  return x - x !== 0;
}

export interface NumericBinning {
  readonly kind: 'numeric';
  /** Ascending float32-representable thresholds: value bin b holds thresholds[b - 1] ≤ x < thresholds[b]. */
  readonly thresholds: Float64Array;
  /** thresholds.length + 1. */
  readonly valueBins: number;
  /** Whether some training row is missing this feature (only then are "missing go left" splits scanned). */
  hasMissing: boolean;
}

export interface CategoricalBinning {
  readonly kind: 'categorical';
  readonly cardinality: number;
  /** Bins in use: min(cardinality, pooledFrom + 1). */
  readonly bins: number;
  /** Codes ≥ pooledFrom share bin `pooledFrom`. */
  readonly pooledFrom: number;
}

export type FeatureBinning = NumericBinning | CategoricalBinning;

/** Row-major bytes: row r, feature f at `r * features + f`; each row's bins share a cache line. */
export interface BinnedRows {
  readonly rows: number;
  readonly features: number;
  readonly bins: Uint8Array;
}

/**
 * Fits the bins of every feature on the training rows `rows` (ascending indexes into `data`).
 *
 * @throws RangeError when a categorical code lies outside [0, cardinality).
 */
export function fitBinning(
  data: TreeDataset,
  rows: Uint32Array,
  maxBins: number,
  random: SeededRandom,
): FeatureBinning[] {
  // One subsample for all numeric features, as scikit-learn draws one row subset.
  const needsSample = data.features.some((f) => f.kind === 'numeric');
  const sample =
    needsSample && rows.length > BINNING_SUBSAMPLE
      ? gather(rows, sampleWithoutReplacement(rows.length, BINNING_SUBSAMPLE, random))
      : rows;
  return data.features.map((feature): FeatureBinning => {
    if (feature.kind === 'categorical') {
      const pooledFrom = maxBins;
      return {
        kind: 'categorical',
        cardinality: feature.cardinality,
        bins: Math.min(feature.cardinality, pooledFrom + 1),
        pooledFrom,
      };
    }
    const values = new Float32Array(sample.length);
    let m = 0;
    for (let i = 0; i < sample.length; i++) {
      const v = feature.values[sample[i]!]!;
      if (!isMissing(v)) values[m++] = v;
    }
    const thresholds = quantileThresholds(values.subarray(0, m).sort(), maxBins);
    return { kind: 'numeric', thresholds, valueBins: thresholds.length + 1, hasMissing: false };
  });
}

function gather(rows: Uint32Array, positions: Uint32Array): Uint32Array {
  const out = new Uint32Array(positions.length);
  for (let i = 0; i < positions.length; i++) out[i] = rows[positions[i]!]!;
  return out;
}

/**
 * Float32 thresholds from sorted, non-missing float32 values: at each distinct value when there are at most
 * `maxBins` of them, else at scikit-learn's midpoint percentiles (linspace(0, 100, maxBins + 1), inner points).
 * A percentile `v` becomes the boundary just above the largest value ≤ v, which is the partition of the data that
 * scikit-learn's `x <= v` makes.
 */
export function quantileThresholds(sorted: Float32Array, maxBins: number): Float64Array {
  const n = sorted.length;
  if (n === 0) return new Float64Array(0);
  // Position in `sorted` of the last copy of each distinct value.
  const lastOfDistinct: number[] = [];
  for (let i = 0; i < n; i++) if (i === n - 1 || sorted[i + 1] !== sorted[i]) lastOfDistinct.push(i);
  // Boundaries, as positions in `sorted` after which a new bin starts (the value there is the lower bin's largest).
  const cuts: number[] = [];
  if (lastOfDistinct.length <= maxBins) {
    cuts.push(...lastOfDistinct.slice(0, -1));
  } else {
    let previous = -1;
    for (let j = 1; j < maxBins; j++) {
      const index = ((j * 100) / maxBins / 100) * (n - 1);
      // numpy's 'midpoint': halfway between the neighbours; a boundary right after the lower neighbour's last copy.
      const lower = sorted[Math.floor(index)]!;
      const cut = lastIndexOfValue(sorted, lower, Math.floor(index));
      if (cut < n - 1 && cut > previous) {
        cuts.push(cut);
        previous = cut;
      }
    }
  }
  const thresholds = new Float64Array(cuts.length);
  for (const [i, cut] of cuts.entries()) {
    const below = sorted[cut]!;
    const above = sorted[cut + 1]!;
    const middle = Math.fround((below + above) / 2);
    // Rounding to float32 may land on `below` when the two are adjacent floats: `above` itself then separates them.
    thresholds[i] = middle > below ? middle : above;
  }
  return thresholds;
}

function lastIndexOfValue(sorted: Float32Array, value: number, from: number): number {
  // Binary search for the last position holding `value` (runs of equal values can be long).
  let lo = from;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (sorted[mid]! <= value) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Bins the rows `rows` of `data` (all rows when null). When `trackMissing` is set, marks numeric features that have a
 * missing value among them (`hasMissing`), as scikit-learn does on the training rows. `shared`: in a
 * SharedArrayBuffer, for helper threads.
 */
export function binRows(
  data: TreeDataset,
  binning: readonly FeatureBinning[],
  rows: Uint32Array | null,
  trackMissing: boolean,
  shared = false,
): BinnedRows {
  const n = rows === null ? data.rows : rows.length;
  const width = data.features.length;
  const bins = new Uint8Array(shared ? new SharedArrayBuffer(n * width) : new ArrayBuffer(n * width));
  for (const [f, feature] of data.features.entries()) {
    const spec = binning[f]!;
    if (feature.kind === 'numeric' && spec.kind === 'numeric') {
      const missing = binNumeric(feature.values, spec.thresholds, rows, n, bins, width, f);
      if (trackMissing && missing) spec.hasMissing = true;
    } else if (feature.kind === 'categorical' && spec.kind === 'categorical') {
      const { codes, cardinality } = feature;
      const pooledFrom = spec.pooledFrom;
      for (let i = 0; i < n; i++) {
        const code = codes[rows === null ? i : rows[i]!]!;
        if (!(code >= 0 && code < cardinality)) {
          throw new RangeError(`feature ${feature.name}: code ${code} is outside [0, ${cardinality})`);
        }
        bins[i * width + f] = code < pooledFrom ? code : pooledFrom;
      }
    } else {
      throw new TypeError(`feature ${feature.name} is ${feature.kind}; the binning expects ${spec.kind}`);
    }
  }
  return { rows: n, features: width, bins };
}

function binNumeric(
  values: Float32Array,
  thresholds: Float64Array,
  rows: Uint32Array | null,
  n: number,
  out: Uint8Array,
  width: number,
  f: number,
): boolean {
  let missing = false;
  const t = thresholds.length;
  for (let i = 0; i < n; i++) {
    const x = values[rows === null ? i : rows[i]!]!;
    let bin: number;
    if (isMissing(x)) {
      bin = MISSING_BIN;
      missing = true;
    } else {
      // Number of thresholds ≤ x: the same comparison (x < threshold goes left) the trees make.
      let lo = 0;
      let hi = t;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (x < thresholds[mid]!) hi = mid;
        else lo = mid + 1;
      }
      bin = lo;
    }
    out[i * width + f] = bin;
  }
  return missing;
}
