/**
 * Binning and routing of the gradient-boosted trees: float32 thresholds between bins, bins that agree with them, and
 * trees that route every row the same way in bin space (training) and on float32 values (prediction, ONNX).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { predictGradientBoostedTrees, rawScoresGradientBoostedTrees } from '../../../models/predict/gbt.js';
import { binRows, fitBinning, MISSING_BIN, quantileThresholds } from '../../../models/trainers/gbt/binning.js';
import { SerialExecutor, allocateArrays } from '../../../models/trainers/gbt/executor.js';
import { TreeGrower, addBinnedTree } from '../../../models/trainers/gbt/grow-tree.js';
import { lossFor } from '../../../models/trainers/gbt/losses.js';
import { trainGradientBoostedTrees } from '../../../models/trainers/gbt/index.js';
import { SeededRandom } from '../../../models/trainers/gbt/random.js';
import type { GradientBoostedTreesModel, TreeDataset } from '../../../models/types.js';
import { categorical, dataset, numeric } from './gbt-fixtures.js';

/** The next float32 above a float32 value. */
function nextFloat32(x: number): number {
  const f = new Float32Array([x]);
  const i = new Int32Array(f.buffer);
  i[0] = x >= 0 ? i[0]! + 1 : i[0]! - 1;
  return f[0]!;
}

const allRows = (n: number) => Uint32Array.from({ length: n }, (_, i) => i);

describe('quantileThresholds', () => {
  it('puts one float32 boundary between consecutive distinct values when there are few', () => {
    const values = Float32Array.from([1, 1, 2, 2, 2, 3.5, 10]).sort();
    const thresholds = Array.from(quantileThresholds(values, 255));
    expect(thresholds).toEqual([1.5, 2.75, 6.75]);
  });

  it('separates adjacent float32 values with the upper one (the float32 midpoint rounds onto one of them)', () => {
    const a = Math.fround(0.1);
    const b = nextFloat32(a);
    const thresholds = quantileThresholds(Float32Array.from([a, a, b]), 255);
    expect(Array.from(thresholds)).toEqual([b]);
  });

  it('with many distinct values: at most maxBins − 1 ascending float32 thresholds, quantile-spaced', () => {
    const values = Float32Array.from({ length: 10_000 }, (_, i) => i).sort();
    const thresholds = quantileThresholds(values, 10);
    expect(thresholds).toHaveLength(9);
    for (const [i, t] of thresholds.entries()) {
      expect(Math.fround(t)).toBe(t);
      if (i > 0) expect(t).toBeGreaterThan(thresholds[i - 1]!);
      // Deciles: about 1000 values per bin.
      expect(Math.abs(t - 1000 * (i + 1))).toBeLessThanOrEqual(2);
    }
  });

  it('property: every threshold t lies above the largest value below it and at most at the next value', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 400 }),
        fc.integer({ min: 2, max: 255 }),
        (raw, maxBins) => {
          const values = Float32Array.from(raw).sort();
          const thresholds = quantileThresholds(values, maxBins);
          expect(thresholds.length).toBeLessThanOrEqual(maxBins - 1);
          for (const t of thresholds) {
            expect(Math.fround(t)).toBe(t);
            // Some value is below t and some at or above: t separates the data.
            expect(values.some((v) => v < t)).toBe(true);
            expect(values.some((v) => v >= t)).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('binRows', () => {
  it('bins a value to the number of thresholds ≤ it, NaN to the missing bin, codes to themselves', () => {
    const data = dataset(
      [numeric('x', [0, 1, 1.5, 1.6, 2, 100, NaN]), categorical('c', [0, 1, 2, 3, 4, 5, 6], 7)],
      [0, 0, 0, 0, 0, 0, 0],
    );
    const binning = fitBinning(data, allRows(7), 255, new SeededRandom(0));
    const binned = binRows(data, binning, null, true);
    const spec = binning[0]!;
    expect(spec.kind === 'numeric' && Array.from(spec.thresholds)).toEqual([
      0.5,
      1.25,
      Math.fround(1.55),
      Math.fround(1.8),
      51,
    ]);
    expect(spec.kind === 'numeric' && spec.hasMissing).toBe(true);
    const column = (f: number) => Array.from({ length: 7 }, (_, r) => binned.bins[r * 2 + f]);
    expect(column(0)).toEqual([0, 1, 2, 3, 4, 5, MISSING_BIN]);
    expect(column(1)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('refuses categorical codes outside [0, cardinality)', () => {
    const data = dataset([categorical('c', [0, 3], 3)], [0, 1]);
    const binning = fitBinning(data, allRows(2), 255, new SeededRandom(0));
    expect(() => binRows(data, binning, null, false)).toThrow(/code 3/);
  });
});

describe('float32 routing', () => {
  it('a value equal to the threshold goes right, the float just below left; NaN and ±Infinity follow missingLeft', () => {
    const t = Math.fround(0.1);
    const below = new Float32Array([t]);
    new Int32Array(below.buffer)[0]! -= 1;
    const model: GradientBoostedTreesModel = {
      kind: 'gbt',
      task: 'regression',
      baseScores: [0],
      trees: [
        {
          output: 0,
          nodes: [
            { kind: 'numeric', feature: 0, threshold: t, missingLeft: true, left: 1, right: 2 },
            { kind: 'leaf', value: -1 },
            { kind: 'leaf', value: 1 },
          ],
        },
      ],
    };
    const x = [t, below[0]!, NaN, Infinity, -Infinity];
    const p = predictGradientBoostedTrees(model, { rows: x.length, features: [numeric('x', x)] });
    expect(Array.from(p)).toEqual([1, -1, -1, -1, -1]);
  });

  it('training separates adjacent float32 values, and prediction routes them as training did', async () => {
    const a = Math.fround(0.3);
    const b = nextFloat32(a);
    const x = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? a : b));
    const y = x.map((v) => (v === a ? 0 : 1));
    const data = dataset([numeric('x', x)], y);
    const model = await trainGradientBoostedTrees(data, { task: 'binary', maxIterations: 50, minSamplesLeaf: 1 });
    const root = model.trees[0]!.nodes[0]!;
    expect(root).toMatchObject({ kind: 'numeric', threshold: b });
    const p = predictGradientBoostedTrees(model, data);
    expect(y.every((label, i) => (p[i]! > 0.5 ? 1 : 0) === label)).toBe(true);
  });

  it('property: trees route every row the same in bin space and on float32 values (NaN, pooled codes included)', () => {
    const row = fc.record({
      x: fc.oneof(
        fc.float(),
        fc.constantFrom(Number.NaN, Infinity, -Infinity, 3.4028234663852886e38, -3.4028234663852886e38),
        fc.integer({ min: -3, max: 3 }),
      ),
      z: fc.float({ min: -1, max: 1, noNaN: true }),
      c: fc.integer({ min: 0, max: 11 }),
      g: fc.float({ min: -1, max: 1, noNaN: true }),
    });
    fc.assert(
      fc.property(
        fc.array(row, { minLength: 40, maxLength: 300 }),
        fc.integer({ min: 2, max: 16 }),
        (rows, maxBins) => {
          const data: TreeDataset = dataset(
            [
              numeric(
                'x',
                rows.map((r) => r.x),
              ),
              numeric(
                'z',
                rows.map((r) => r.z),
              ),
              categorical(
                'c',
                rows.map((r) => r.c),
                12,
              ),
            ],
            rows.map(() => 0),
          );
          const n = rows.length;
          const binning = fitBinning(data, allRows(n), maxBins, new SeededRandom(1));
          const binned = binRows(data, binning, null, true);
          const arrays = allocateArrays(data, allRows(n), binned.bins, 1, false);
          arrays.gradient.set(rows.map((r) => r.g));
          arrays.hessian.fill(1);
          const grower = new TreeGrower(new SerialExecutor(arrays, lossFor('regression', 1)), binning, {
            maxLeafNodes: 16,
            maxDepth: null,
            minSamplesLeaf: 2,
            l2Regularization: 0,
            learningRate: 1,
          });
          const grown = grower.grow(0);
          const inBinSpace = new Float64Array(n);
          addBinnedTree(grown.binned, binned, inBinSpace, 0);
          const fromLeaves = new Float64Array(n);
          for (const leaf of grown.leaves) {
            for (let i = leaf.start; i < leaf.end; i++) fromLeaves[arrays.indices[i]!]! += leaf.value;
          }
          const model: GradientBoostedTreesModel = {
            kind: 'gbt',
            task: 'regression',
            baseScores: [0],
            trees: [grown.tree],
          };
          const onValues = rawScoresGradientBoostedTrees(model, data);
          expect(Array.from(onValues)).toEqual(Array.from(inBinSpace));
          expect(Array.from(onValues)).toEqual(Array.from(fromLeaves));
          for (const node of grown.tree.nodes)
            if (node.kind === 'numeric') expect(Math.fround(node.threshold)).toBe(node.threshold);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('predictGradientBoostedTrees', () => {
  it('refuses a model whose split needs a feature the input lacks or has with another kind', () => {
    const model: GradientBoostedTreesModel = {
      kind: 'gbt',
      task: 'binary',
      baseScores: [0],
      trees: [
        {
          output: 0,
          nodes: [
            { kind: 'categorical', feature: 0, leftCodes: [1], left: 1, right: 2 },
            { kind: 'leaf', value: 1 },
            { kind: 'leaf', value: -1 },
          ],
        },
      ],
    };
    expect(() => predictGradientBoostedTrees(model, { rows: 1, features: [numeric('x', [1])] })).toThrow(TypeError);
    expect(() => predictGradientBoostedTrees(model, { rows: 1, features: [] })).toThrow(TypeError);
    const p = predictGradientBoostedTrees(model, { rows: 2, features: [categorical('c', [1, 0], 3)] });
    expect(p[0]).toBeCloseTo(1 / (1 + Math.exp(-1)), 15);
    expect(p[1]).toBeCloseTo(1 / (1 + Math.exp(1)), 15);
  });
});
