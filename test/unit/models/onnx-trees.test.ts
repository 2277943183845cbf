/**
 * The ONNX export of gradient-boosted trees: ai.onnx.ml tree ensembles fed raw float32 values and vocabulary codes,
 * checked against a TypeScript walk of the same trees with float32 comparisons.
 */
import { describe, expect, it } from 'vitest';
import type { FittedTransform } from '../../../data/transform.js';
import { exportOnnx, OnnxExportError, verifyOnnx } from '../../../models/onnx/index.js';
import type { GradientBoostedTreesModel, LabelTask, TreeNode } from '../../../models/types.js';
import {
  argmax,
  makeTransform,
  maxAbsDiff,
  randomRows,
  randomTrees,
  referenceTrees,
  runRows,
  toColumns,
  type Row,
} from './onnx-fixtures.js';

const ROWS = 300;

async function outputs(model: GradientBoostedTreesModel, transform: FittedTransform, rows: readonly Row[]) {
  const { bytes, signature } = exportOnnx(model, transform);
  const out = await runRows(bytes, signature, rows);
  const expected = referenceTrees(model, transform, rows);
  return { bytes, out, expected };
}

async function checkClassifier(model: GradientBoostedTreesModel, transform: FittedTransform, rows: readonly Row[]) {
  const { bytes, out, expected } = await outputs(model, transform, rows);
  const k = model.task === 'binary' ? 2 : model.baseScores.length;
  const probabilities = out['probabilities']!;
  expect(probabilities.dims).toEqual([rows.length, k]);
  expect(maxAbsDiff(expected, probabilities.data as Float32Array)).toBeLessThanOrEqual(1e-5);
  // label is the argmax of the output probabilities (float32): compare where the reference is not within rounding of
  // a tie.
  const labels = Array.from(out['label']!.data as BigInt64Array, Number);
  const want = argmax(expected, k);
  const got = argmax(probabilities.data as Float32Array, k);
  expect(labels).toEqual(got);
  for (let r = 0; r < rows.length; r++) {
    const sorted = Array.from(expected.subarray(r * k, (r + 1) * k)).sort((a, b) => b - a);
    if (sorted[0]! - sorted[1]! > 1e-6) expect(labels[r]).toBe(want[r]);
  }
  const parity = await verifyOnnx(bytes, { inputs: toColumns(transform, rows), expected });
  expect(parity.maxAbsDiff).toBeLessThanOrEqual(1e-5);
}

describe('exportOnnx: gradient-boosted trees', () => {
  for (const task of ['binary', 'multiclass'] as const) {
    for (const seed of [1, 2, 3]) {
      it(`${task} (seed ${seed}): numeric and categorical splits, NaN, unseen and "" match the tree walk`, async () => {
        const transform = makeTransform(task);
        const model = randomTrees(task, transform, seed, { trees: 30 });
        await checkClassifier(model, transform, randomRows(transform, ROWS, 100 + seed));
      });
    }
  }

  it('regression: base score + leaves within 1e-5, scores in the hundreds included', async () => {
    const transform = makeTransform('regression');
    const model = randomTrees('regression', transform, 4, { trees: 40 });
    const rows = randomRows(transform, ROWS, 7);
    const { bytes, out, expected } = await outputs(model, transform, rows);
    expect(Math.max(...expected.map(Math.abs))).toBeGreaterThan(100);
    const prediction = out['prediction']!;
    expect(prediction.dims).toEqual([ROWS, 1]);
    expect(prediction.type).toBe('float64');
    // The ensemble sums in double; only its float32 output is rounded (|y| * 2^-24 ≤ 1e-5 below 160).
    for (let r = 0; r < ROWS; r++) {
      const want = expected[r]!;
      expect(Math.abs((prediction.data as Float64Array)[r]! - want)).toBeLessThanOrEqual(Math.abs(want) * 2 ** -24);
    }
    await verifyOnnx(bytes, { inputs: toColumns(transform, rows), expected, relativeTolerance: 2 ** -24 });
  });

  it('compares float32 values with float64 thresholds exactly as the trainer does (rows on the split points)', async () => {
    for (const task of ['binary', 'multiclass'] as LabelTask[]) {
      const transform = makeTransform(task);
      // Thresholds 1e-9 (relative) above or below the values rows take: rounding them to float32 would move rows
      // that sit on a split point to the other side.
      const model = randomTrees(task, transform, 6, { trees: 20, float64Thresholds: true });
      await checkClassifier(model, transform, randomRows(transform, ROWS, 9));
    }
  });

  describe('binary: onnxruntime returns [1 - sigmoid(s), sigmoid(s)] with s = base + leaves', () => {
    const transform = makeTransform('binary');
    const stump = (left: number, right: number, base: number): GradientBoostedTreesModel => ({
      kind: 'gbt',
      task: 'binary',
      baseScores: [base],
      trees: [
        {
          output: 0,
          nodes: [
            { kind: 'numeric', feature: 0, threshold: 12, missingLeft: true, left: 1, right: 2 },
            { kind: 'leaf', value: left },
            { kind: 'leaf', value: right },
          ],
        },
      ],
    });
    const rows: Row[] = [{ hour: 3 }, { hour: 12 }, { hour: 20 }, { hour: null }, { hour: Infinity }];
    for (const [name, model] of [
      ['all leaves positive', stump(0.3, 0.7, 0.1)],
      ['all leaves negative', stump(-0.3, -2.5, -0.1)],
      ['mixed signs', stump(-0.4, 0.9, 0)],
      ['p exactly 0.5', stump(0.5, -0.5, -0.5)],
    ] as const) {
      it(name, async () => {
        const { out, expected } = await outputs(model, transform, rows);
        const p = Array.from(out['probabilities']!.data as Float32Array);
        expect(maxAbsDiff(expected, p)).toBeLessThanOrEqual(1e-6);
        // hour 3 → left, 12 (not < 12) → right, 20 → right, null and ±Infinity are missing → left.
        const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
        const left = sigmoid(model.baseScores[0]! + (model.trees[0]!.nodes[1] as { value: number }).value);
        expect(p[1]).toBeCloseTo(left, 6);
        expect(p[7]).toBeCloseTo(left, 6);
        expect(p[9]).toBeCloseTo(left, 6);
        // label 1 iff p > 0.5, whatever the sign of the leaves.
        expect(Array.from(out['label']!.data as BigInt64Array, Number)).toEqual(
          [0, 1, 2, 3, 4].map((r) => (p[2 * r + 1]! > 0.5 ? 1 : 0)),
        );
      });
    }
  });

  it('encodes a categorical set as a chain: listed codes left, the rest right, the unknown code when listed', async () => {
    const transform = makeTransform('multiclass');
    // origin: ORD 0, ATL 1, DFW 2, '7' 3, unknown 4. dest: LAX 0, SFO 1, unknown 2. carrier: unknown 0 only.
    const split = (feature: number, leftCodes: number[], a: number, b: number): TreeNode[] => [
      { kind: 'categorical', feature, leftCodes, left: 1, right: 2 },
      { kind: 'leaf', value: a },
      { kind: 'leaf', value: b },
    ];
    const model: GradientBoostedTreesModel = {
      kind: 'gbt',
      task: 'multiclass',
      baseScores: [0, 0.1, -0.1],
      trees: [
        { output: 0, nodes: split(1, [0, 2, 4], 1, -1) },
        { output: 1, nodes: split(5, [2], 2, 0) },
        { output: 2, nodes: split(1, [], 5, -5) },
        { output: 2, nodes: split(3, [0], 0.5, 0) },
        { output: 1, nodes: [{ kind: 'leaf', value: 0.25 }] },
      ],
    };
    const rows: Row[] = [
      { origin: 'ORD', dest: 'LAX', carrier: 'AA' },
      { origin: 'ATL', dest: 'SFO' },
      { origin: 'DFW', dest: '' },
      { origin: 7, dest: 'nowhere' },
      { origin: 'BOS', dest: null },
      { origin: '' },
      { origin: null },
      {},
    ];
    await checkClassifier(model, transform, rows);
    await checkClassifier(model, transform, randomRows(transform, ROWS, 10));
  });

  it('exports a model without trees (the base scores alone) and single-leaf trees', async () => {
    const transform = makeTransform('multiclass');
    const empty: GradientBoostedTreesModel = { kind: 'gbt', task: 'multiclass', baseScores: [0.2, -1, 0.5], trees: [] };
    await checkClassifier(empty, transform, randomRows(transform, 20, 11));
    const binary = makeTransform('binary');
    const leaves: GradientBoostedTreesModel = {
      kind: 'gbt',
      task: 'binary',
      baseScores: [0.3],
      trees: [{ output: 0, nodes: [{ kind: 'leaf', value: 0.2 }] }],
    };
    await checkClassifier(leaves, binary, randomRows(binary, 20, 12));
  });

  it('ignores nodes the root cannot reach', async () => {
    const transform = makeTransform('binary');
    const model: GradientBoostedTreesModel = {
      kind: 'gbt',
      task: 'binary',
      baseScores: [0],
      trees: [
        {
          output: 0,
          nodes: [
            { kind: 'numeric', feature: 2, threshold: 700, missingLeft: false, left: 1, right: 3 },
            { kind: 'leaf', value: 1 },
            { kind: 'leaf', value: 100 }, // orphan
            { kind: 'leaf', value: -1 },
          ],
        },
      ],
    };
    await checkClassifier(model, transform, randomRows(transform, 50, 13));
  });

  describe('rejects malformed trees with OnnxExportError', () => {
    const transform = makeTransform('binary');
    const one = (nodes: TreeNode[], output = 0): GradientBoostedTreesModel => ({
      kind: 'gbt',
      task: 'binary',
      baseScores: [0],
      trees: [{ output, nodes }],
    });
    const leaf: TreeNode = { kind: 'leaf', value: 0 };
    const cases: [string, GradientBoostedTreesModel][] = [
      [
        'a child out of range',
        one([{ kind: 'numeric', feature: 0, threshold: 1, missingLeft: true, left: 1, right: 5 }, leaf]),
      ],
      ['a cycle', one([{ kind: 'numeric', feature: 0, threshold: 1, missingLeft: true, left: 0, right: 1 }, leaf])],
      [
        'a numeric split on a categorical feature',
        one([{ kind: 'numeric', feature: 1, threshold: 1, missingLeft: true, left: 1, right: 2 }, leaf, leaf]),
      ],
      [
        'a category code past the unknown one',
        one([{ kind: 'categorical', feature: 1, leftCodes: [5], left: 1, right: 2 }, leaf, leaf]),
      ],
      [
        'a feature that does not exist',
        one([{ kind: 'numeric', feature: 6, threshold: 1, missingLeft: true, left: 1, right: 2 }, leaf, leaf]),
      ],
      ['a tree output past the model outputs', one([leaf], 1)],
      ['an empty tree', one([])],
      ['a non-finite leaf', one([{ kind: 'leaf', value: Infinity }])],
    ];
    for (const [name, model] of cases) {
      it(name, () => {
        expect(() => exportOnnx(model, transform)).toThrow(OnnxExportError);
      });
    }
  });
});
