/**
 * Inference for {@link GradientBoostedTreesModel}: the reference the ONNX TreeEnsemble export is checked against, and
 * what evaluation uses. Numeric comparisons are `value < threshold` on the float32 feature values against float32
 * thresholds, exactly what training's binning did and what ONNX (BRANCH_LT, float32) does, so every row takes the
 * same path in all three; a missing value (NaN or ±Infinity, as the transform defines missing) goes the node's
 * `missingLeft` way; a categorical code goes left only when listed.
 *
 * The model's nodes are copied once into flat typed arrays; trees are then applied one after the other to all rows,
 * adding to the raw scores in tree order (the order training added them, so the sums are identical bit for bit).
 */
import type { GradientBoostedTreesModel, TreeDataset } from '../types.js';

/** The feature columns of the rows to score: a TreeDataset without labels. */
export type TreeInput = Pick<TreeDataset, 'rows' | 'features'>;

const LEAF = 0;
const NUMERIC = 1;
const CATEGORICAL = 2;

interface FlatTree {
  readonly output: number;
  readonly kind: Uint8Array;
  readonly feature: Int32Array;
  readonly threshold: Float64Array;
  readonly missingLeft: Uint8Array;
  readonly left: Int32Array;
  readonly right: Int32Array;
  readonly value: Float64Array;
  /** Categorical: codes [0, codeCount) have a 0/1 entry at codeOffset + code in `codeTable`. */
  readonly codeOffset: Int32Array;
  readonly codeCount: Int32Array;
  readonly codeTable: Uint8Array;
}

function flatten(model: GradientBoostedTreesModel, input: TreeInput): FlatTree[] {
  const outputs = model.baseScores.length;
  return model.trees.map((tree, t) => {
    if (!(tree.output >= 0 && tree.output < outputs)) throw new RangeError(`tree ${t}: output ${tree.output} unknown`);
    const count = tree.nodes.length;
    const flat = {
      output: tree.output,
      kind: new Uint8Array(count),
      feature: new Int32Array(count),
      threshold: new Float64Array(count),
      missingLeft: new Uint8Array(count),
      left: new Int32Array(count),
      right: new Int32Array(count),
      value: new Float64Array(count),
      codeOffset: new Int32Array(count),
      codeCount: new Int32Array(count),
      codeTable: new Uint8Array(0),
    };
    let tableSize = 0;
    for (const node of tree.nodes) if (node.kind === 'categorical') tableSize += codeRange(node.leftCodes);
    flat.codeTable = new Uint8Array(tableSize);
    let offset = 0;
    for (const [i, node] of tree.nodes.entries()) {
      if (node.kind === 'leaf') {
        flat.value[i] = node.value;
        continue;
      }
      const feature = input.features[node.feature];
      if (feature?.kind !== node.kind) {
        throw new TypeError(`tree ${t} node ${i} splits ${node.kind} feature ${node.feature}; the input's differs`);
      }
      if (!(node.left > i && node.left < count && node.right > i && node.right < count)) {
        throw new RangeError(`tree ${t} node ${i}: children must come after their parent`);
      }
      flat.feature[i] = node.feature;
      flat.left[i] = node.left;
      flat.right[i] = node.right;
      if (node.kind === 'numeric') {
        flat.kind[i] = NUMERIC;
        flat.threshold[i] = node.threshold;
        flat.missingLeft[i] = node.missingLeft ? 1 : 0;
      } else {
        flat.kind[i] = CATEGORICAL;
        const size = codeRange(node.leftCodes);
        flat.codeOffset[i] = offset;
        flat.codeCount[i] = size;
        for (const code of node.leftCodes) if (code >= 0) flat.codeTable[offset + code] = 1;
        offset += size;
      }
    }
    return flat;
  });
}

/** Entries of a node's code table: one past the largest listed code (a pooled split may list thousands). */
function codeRange(codes: readonly number[]): number {
  let max = -1;
  for (const code of codes) if (code > max) max = code;
  return max + 1;
}

/**
 * Raw scores (before the link function), output-major: output k of row `rows[i]` (or row i when `rows` is absent) at
 * `k * n + i`. Training uses this to rebuild its scores from a checkpoint's trees.
 *
 * @throws TypeError when a split refers to a feature the input lacks or has with another kind.
 */
export function rawScoresGradientBoostedTrees(
  model: GradientBoostedTreesModel,
  input: TreeInput,
  rows?: Uint32Array,
): Float64Array {
  const n = rows ? rows.length : input.rows;
  const outputs = model.baseScores.length;
  for (const f of input.features) {
    const length = f.kind === 'numeric' ? f.values.length : f.codes.length;
    if (length < input.rows) throw new RangeError(`feature ${f.name} has ${length} values for ${input.rows} rows`);
  }
  const raw = new Float64Array(n * outputs);
  for (let k = 0; k < outputs; k++) raw.fill(model.baseScores[k]!, k * n, (k + 1) * n);
  const numeric = input.features.map((f) => (f.kind === 'numeric' ? f.values : new Float32Array(0)));
  const codes = input.features.map((f) => (f.kind === 'categorical' ? f.codes : new Int32Array(0)));
  // Rows are routed a node at a time, by partitioning their positions (as training does): a branch-free pass per
  // node instead of an unpredictable branch per row and level.
  const source = rows ?? Uint32Array.from({ length: n }, (_, i) => i);
  const order = new Uint32Array(n);
  const scratch = new Uint32Array(n);
  const stack: number[] = [];
  for (const tree of flatten(model, input)) {
    const { kind, feature, threshold, missingLeft, left, right, value, codeOffset, codeCount, codeTable } = tree;
    const base = tree.output * n;
    for (let i = 0; i < n; i++) order[i] = i;
    stack.push(0, 0, n);
    while (stack.length > 0) {
      const end = stack.pop()!;
      const start = stack.pop()!;
      const node = stack.pop()!;
      if (start === end) continue;
      const k = kind[node]!;
      if (k === LEAF) {
        const v = value[node]!;
        for (let j = start; j < end; j++) raw[base + order[j]!] = raw[base + order[j]!]! + v;
        continue;
      }
      const f = feature[node]!;
      let l = start;
      let q = 0;
      if (k === NUMERIC) {
        const column = numeric[f]!;
        const t = threshold[node]!;
        const ml = missingLeft[node]!;
        for (let j = start; j < end; j++) {
          const i = order[j]!;
          const x = column[source[i]!]!;
          // Missing (NaN, ±Infinity: x − x is NaN) takes the learned direction, as in training's bins.
          const missing = +(x - x !== 0);
          const goLeft = (+(x < t) & (missing ^ 1)) | (ml & missing);
          order[l] = i;
          scratch[q] = i;
          l += goLeft;
          q += goLeft ^ 1;
        }
      } else {
        const column = codes[f]!;
        const offset = codeOffset[node]!;
        const size = codeCount[node]!;
        for (let j = start; j < end; j++) {
          const i = order[j]!;
          const c = column[source[i]!]!;
          // Unsigned compare: negative codes and codes past the table go right with unlisted ones.
          const goLeft = c >>> 0 < size ? codeTable[offset + c]! : 0;
          order[l] = i;
          scratch[q] = i;
          l += goLeft;
          q += goLeft ^ 1;
        }
      }
      order.set(scratch.subarray(0, q), l);
      stack.push(right[node]!, l, end, left[node]!, start, l);
    }
  }
  return raw;
}

/**
 * Predictions of a gradient-boosted trees model: binary: P(class 1) per row; multiclass: class probabilities,
 * row-major (`rows × classes`, each row sums to 1); regression: the predicted value per row.
 *
 * @throws TypeError when a split refers to a feature the input lacks or has with another kind.
 */
export function predictGradientBoostedTrees(model: GradientBoostedTreesModel, input: TreeInput): Float64Array {
  const raw = rawScoresGradientBoostedTrees(model, input);
  const n = input.rows;
  if (model.task === 'regression') return raw;
  if (model.task === 'binary') {
    for (let i = 0; i < n; i++) {
      const z = raw[i]!;
      // Written so that exp never overflows.
      raw[i] = z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
    }
    return raw;
  }
  const classes = model.baseScores.length;
  const out = new Float64Array(n * classes);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let k = 0; k < classes; k++) max = Math.max(max, raw[k * n + i]!);
    let sum = 0;
    for (let k = 0; k < classes; k++) {
      const e = Math.exp(raw[k * n + i]! - max);
      out[i * classes + k] = e;
      sum += e;
    }
    for (let k = 0; k < classes; k++) out[i * classes + k] = out[i * classes + k]! / sum;
  }
  return out;
}
