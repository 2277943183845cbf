/**
 * Shared fixtures of the ONNX export tests: hand-made transforms, seeded random raw rows (missing values, ±Infinity,
 * unseen categories, "" and numbers for categorical features included), random models, and plain TypeScript
 * reference implementations of every model kind to compare onnxruntime with.
 */
import * as ort from 'onnxruntime-node';
import { applyTransform, columnNames, type FittedFeature, type FittedTransform } from '../../../data/transform.js';
import type {
  GradientBoostedTreesModel,
  LabelTask,
  LinearModel,
  MlpModel,
  TrainedModel,
  Tree,
  TreeNode,
} from '../../../models/types.js';
import type { ModelSignature } from '../../../schema/registry.js';
import { toOnnxFeeds } from '../../../models/onnx/runtime.js';

export type Row = Record<string, unknown>;

/** mulberry32: small, seeded, reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function numericFeature(name: string, imputeValue: number, mean: number, std: number): FittedFeature {
  return {
    name,
    kind: 'numeric',
    expression: name,
    sql: name,
    sourceType: 'DOUBLE',
    numeric: { imputeValue, mean, std },
  };
}

function categoricalFeature(name: string, vocabulary: string[]): FittedFeature {
  return {
    name,
    kind: 'categorical',
    expression: name,
    sql: name,
    sourceType: 'VARCHAR',
    categorical: { vocabulary, unknownIndex: vocabulary.length },
  };
}

/**
 * A flights-like transform: numeric and categorical features interleaved (so the column order matters), one
 * categorical with an empty vocabulary (a single, always-set unknown column) and, with scaling 'none', mean 0 / std 1.
 */
export function makeTransform(task: LabelTask, scaling: 'standard' | 'none' = 'standard'): FittedTransform {
  const s = scaling === 'standard';
  const classes = task === 'binary' ? [false, true] : task === 'multiclass' ? ['early', 'late', 'on-time'] : undefined;
  return {
    version: 1,
    scaling,
    features: [
      numericFeature('hour', 12.25, s ? 12.25 : 0, s ? 6.1 : 1),
      categoricalFeature('origin', ['ORD', 'ATL', 'DFW', '7']),
      numericFeature('distance', 812.5, s ? 812.5 : 0, s ? 498.75 : 1),
      categoricalFeature('carrier', []),
      numericFeature('day_of_week', 3.9, s ? 3.9 : 0, s ? 1.95 : 1),
      categoricalFeature('dest', ['LAX', 'SFO']),
    ],
    label: {
      name: 'delayed',
      expression: 'delay > 15',
      sql: 'delay > 15',
      task,
      ...(classes ? { classes } : {}),
    },
  };
}

/** Values a numeric feature takes; trees also get these as thresholds so that rows sit exactly on split points. */
export const NUMERIC_POINTS: Readonly<Record<string, readonly number[]>> = {
  hour: [0, 5, 6.5, 12, 17.25, 23],
  distance: [31, 250.5, 700, 1234.567, 2500],
  day_of_week: [1, 2, 3, 4, 5, 6, 7],
};

/**
 * `count` raw rows for `transform`: numeric values around the feature's scale, exact split points, null, absent
 * keys, NaN and ±Infinity; categorical vocabulary values, unseen values, "", null, absent keys and numbers (7 matches
 * the vocabulary entry '7' through String()).
 */
export function randomRows(transform: FittedTransform, count: number, seed: number): Row[] {
  const random = rng(seed);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)]!;
  const rows: Row[] = [];
  for (let r = 0; r < count; r++) {
    const row: Row = {};
    for (const f of transform.features) {
      const u = random();
      if (f.kind === 'numeric') {
        const points = NUMERIC_POINTS[f.name] ?? [0, 1];
        if (u < 0.08) row[f.name] = null;
        else if (u < 0.12)
          continue; // absent
        else if (u < 0.16) row[f.name] = Number.NaN;
        else if (u < 0.18) row[f.name] = Infinity;
        else if (u < 0.2) row[f.name] = -Infinity;
        else if (u < 0.4) row[f.name] = pick(points);
        else {
          const lo = Math.min(...points);
          const hi = Math.max(...points);
          row[f.name] = lo - 1 + random() * (hi - lo + 2);
        }
      } else {
        const vocabulary = f.categorical.vocabulary;
        if (u < 0.08) row[f.name] = null;
        else if (u < 0.12) continue;
        else if (u < 0.18) row[f.name] = '';
        else if (u < 0.28) row[f.name] = pick(['unseen', 'ord', 'Z', ' ORD']);
        else if (u < 0.33) row[f.name] = 7;
        else if (vocabulary.length > 0) row[f.name] = pick(vocabulary);
        else row[f.name] = 'anything';
      }
    }
    rows.push(row);
  }
  return rows;
}

/** `rows` as raw columns, one per feature. */
export function toColumns(transform: FittedTransform, rows: readonly Row[]): Record<string, unknown[]> {
  return Object.fromEntries(transform.features.map((f) => [f.name, rows.map((row) => row[f.name])]));
}

function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

function softmax(z: readonly number[]): number[] {
  const max = Math.max(...z);
  const e = z.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** Raw scores → what the graph outputs as `probabilities` (row-major) or `prediction`. */
function finish(task: LabelTask, scores: readonly number[][]): Float64Array {
  const out: number[] = [];
  for (const z of scores) {
    if (task === 'regression') out.push(z[0]!);
    else if (task === 'binary') {
      const p = sigmoid(z[0]!);
      out.push(1 - p, p);
    } else out.push(...softmax(z));
  }
  return Float64Array.from(out);
}

function denseForward(
  x: readonly number[],
  weights: readonly (readonly number[])[],
  biases: readonly number[],
): number[] {
  return weights.map((row, k) => row.reduce((sum, w, j) => sum + w * x[j]!, biases[k]!));
}

/** The reference for linear models and MLPs: `applyTransform`, then the math in float64. */
export function referenceDense(
  model: LinearModel | MlpModel,
  transform: FittedTransform,
  rows: readonly Row[],
): Float64Array {
  const m = applyTransform(transform, rows);
  const scores: number[][] = [];
  for (let r = 0; r < m.rows; r++) {
    let h = Array.from(m.data.subarray(r * m.columns, (r + 1) * m.columns));
    if (model.kind === 'linear') h = denseForward(h, model.weights, model.intercepts);
    else {
      for (const layer of model.layers) {
        h = denseForward(h, layer.weights, layer.biases);
        if (layer.activation === 'relu') h = h.map((v) => Math.max(0, v));
        else if (layer.activation === 'tanh') h = h.map(Math.tanh);
      }
    }
    scores.push(h);
  }
  return finish(model.task, scores);
}

/**
 * What the trees see of a row: raw numbers as float32 (missing = NaN: null, absent, NaN, ±Infinity) and vocabulary
 * codes (unknown = vocabulary length).
 */
export function treeInputs(transform: FittedTransform, row: Row): number[] {
  return transform.features.map((f) => {
    const raw = row[f.name];
    if (f.kind === 'numeric') {
      const v = typeof raw === 'number' ? raw : Number.NaN;
      return Number.isFinite(v) ? Math.fround(v) : Number.NaN;
    }
    const key = raw === null || raw === undefined ? null : String(raw);
    const index = key === null ? -1 : f.categorical.vocabulary.indexOf(key);
    return index >= 0 ? index : f.categorical.unknownIndex;
  });
}

/** Walks a tree the way the trainer defines it: float32 value < threshold (float64) → left; NaN per missingLeft. */
export function leafValue(tree: Tree, x: readonly number[]): number {
  let node: TreeNode = tree.nodes[0]!;
  for (;;) {
    if (node.kind === 'leaf') return node.value;
    const v = x[node.feature]!;
    const left =
      node.kind === 'numeric' ? (Number.isNaN(v) ? node.missingLeft : v < node.threshold) : node.leftCodes.includes(v);
    node = tree.nodes[left ? node.left : node.right]!;
  }
}

/** The reference for gradient-boosted trees. */
export function referenceTrees(
  model: GradientBoostedTreesModel,
  transform: FittedTransform,
  rows: readonly Row[],
): Float64Array {
  const scores = rows.map((row) => {
    const x = treeInputs(transform, row);
    const z = [...model.baseScores];
    for (const tree of model.trees) z[tree.output]! += leafValue(tree, x);
    return z;
  });
  return finish(model.task, scores);
}

export function reference(model: TrainedModel, transform: FittedTransform, rows: readonly Row[]): Float64Array {
  return model.kind === 'gbt' ? referenceTrees(model, transform, rows) : referenceDense(model, transform, rows);
}

function outputs(task: LabelTask, classes: number): number {
  return task === 'multiclass' ? classes : 1;
}

function randomMatrix(random: () => number, rows: number, cols: number, scale: number): number[][] {
  return Array.from({ length: rows }, () => Array.from({ length: cols }, () => (random() * 2 - 1) * scale));
}

export function randomLinear(task: LabelTask, transform: FittedTransform, seed: number): LinearModel {
  const random = rng(seed);
  const k = outputs(task, transform.label.classes?.length ?? 1);
  const d = columnNames(transform).length;
  const scale = task === 'regression' ? 40 : 1.5;
  return {
    kind: 'linear',
    task,
    weights: randomMatrix(random, k, d, scale),
    intercepts: Array.from({ length: k }, () => (random() * 2 - 1) * scale),
  };
}

export function randomMlp(task: LabelTask, transform: FittedTransform, seed: number): MlpModel {
  const random = rng(seed);
  const k = outputs(task, transform.label.classes?.length ?? 1);
  const sizes = [columnNames(transform).length, 16, 8, k];
  const activations = ['relu', 'tanh', 'identity'] as const;
  return {
    kind: 'mlp',
    task,
    layers: activations.map((activation, l) => ({
      weights: randomMatrix(random, sizes[l + 1]!, sizes[l]!, 1 / Math.sqrt(sizes[l]!)),
      biases: Array.from({ length: sizes[l + 1]! }, () => random() * 0.2 - 0.1),
      activation,
    })),
  };
}

/**
 * A random ensemble over `transform`'s features: numeric splits at the values rows take (float32 or, with
 * `float64Thresholds`, just above or below them), categorical splits on random code sets (empty sets and the
 * unknown code included), random missing directions, leaves in [-1, 1].
 */
export function randomTrees(
  task: LabelTask,
  transform: FittedTransform,
  seed: number,
  options: { trees?: number; depth?: number; float64Thresholds?: boolean } = {},
): GradientBoostedTreesModel {
  const random = rng(seed);
  const k = outputs(task, transform.label.classes?.length ?? 1);
  const count = options.trees ?? 12;
  const maxDepth = options.depth ?? 4;
  const leafScale = task === 'regression' ? 25 : 1;
  const trees: Tree[] = [];
  for (let t = 0; t < count; t++) {
    const nodes: TreeNode[] = [];
    const grow = (depth: number): number => {
      const index = nodes.length;
      nodes.push({ kind: 'leaf', value: 0 }); // placeholder, replaced below (children come after their parent)
      if (depth >= maxDepth || (depth > 0 && random() < 0.2)) {
        nodes[index] = { kind: 'leaf', value: (random() * 2 - 1) * leafScale };
        return index;
      }
      const feature = Math.floor(random() * transform.features.length);
      const f = transform.features[feature]!;
      const left = grow(depth + 1);
      const right = grow(depth + 1);
      if (f.kind === 'numeric') {
        const points = NUMERIC_POINTS[f.name] ?? [0];
        const point = points[Math.floor(random() * points.length)]!;
        const nudge = options.float64Thresholds ? (random() < 0.5 ? 1 : -1) * Math.abs(point) * 1e-9 : 0;
        const threshold = options.float64Thresholds ? point + nudge : Math.fround(point);
        nodes[index] = { kind: 'numeric', feature, threshold, missingLeft: random() < 0.5, left, right };
      } else {
        const cardinality = f.categorical.unknownIndex + 1;
        const leftCodes = Array.from({ length: cardinality }, (_, c) => c).filter(() => random() < 0.4);
        nodes[index] = { kind: 'categorical', feature, leftCodes, left, right };
      }
      return index;
    };
    grow(0);
    trees.push({ output: t % k, nodes });
  }
  return {
    kind: 'gbt',
    task,
    baseScores: Array.from({ length: k }, () => (random() * 2 - 1) * (task === 'regression' ? 100 : 0.5)),
    trees,
  };
}

/** Runs `bytes` on `rows` through the serving path ({@link toOnnxFeeds}); returns every output's data. */
export async function runRows(
  bytes: Uint8Array,
  signature: ModelSignature,
  rows: readonly Row[],
): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    return await session.run(toOnnxFeeds(signature, rows));
  } finally {
    await session.release();
  }
}

export function maxAbsDiff(expected: ArrayLike<number>, actual: ArrayLike<number>): number {
  if (expected.length !== actual.length) throw new Error(`${actual.length} values, ${expected.length} expected`);
  let max = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(expected[i]! - actual[i]!);
    max = Number.isNaN(d) ? Infinity : Math.max(max, d);
  }
  return max;
}

/** Row-wise argmax (first on ties) of a row-major [rows, k] array. */
export function argmax(values: ArrayLike<number>, k: number): number[] {
  const labels: number[] = [];
  for (let r = 0; r < values.length / k; r++) {
    let best = 0;
    for (let c = 1; c < k; c++) if (values[r * k + c]! > values[r * k + best]!) best = c;
    labels.push(best);
  }
  return labels;
}
