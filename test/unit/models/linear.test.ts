import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { denseToSparse } from '../../../models/dataset.js';
import { predictLinear } from '../../../models/predict/linear.js';
import {
  logisticObjective,
  parseLogisticRegressionParams,
  trainLogisticRegression,
  trainRidge,
  trainSoftmaxRegression,
  type LinearTrainingData,
} from '../../../models/trainers/linear/index.js';
import { TrainingParameterError, type EncodedDataset, type LinearModel } from '../../../models/types.js';

// A tiny dataset. References: scikit-learn 1.2's objective (LogisticRegression / Ridge conventions) minimized to
// machine precision (scipy L-BFGS-B with ftol=0, gtol=1e-14; LogisticRegression(solver='newton-cg', tol=1e-14)
// agrees to 1e-9). LogisticRegression's default lbfgs stops at scipy's ftol, about 1e-6 away from these.
const X = [
  [0.5, -1.2, 1.0],
  [1.5, 0.3, 0.0],
  [-0.7, 2.1, 1.0],
  [2.2, -0.4, 0.0],
  [0.1, 0.9, 1.0],
  [-1.3, -0.8, 0.0],
  [0.9, 1.7, 1.0],
  [-0.2, -2.0, 0.0],
  [1.1, 0.5, 1.0],
  [-1.8, 1.1, 0.0],
  [0.4, -0.1, 1.0],
  [-0.6, 0.6, 0.0],
];
const Y_BINARY = [1, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1];
/** 8 positives, 4 negatives: 'balanced' weighs them 0.75 and 1.5. */
const Y_IMBALANCED = [1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1];
const Y_MULTI = [0, 2, 1, 2, 1, 0, 2, 0, 2, 1, 0, 1];
const Y_REGRESSION = [1.5, 2.0, -0.5, 3.1, 0.2, -1.0, 2.4, -0.3, 1.9, -1.6, 0.8, 0.1];
const SAMPLE_WEIGHTS = [1, 2, 1, 0.5, 1, 1, 3, 1, 1, 1, 2, 1];

const SKLEARN = {
  // LogisticRegression(C=1).fit(X, Y_BINARY)
  binary: {
    coef: [[1.1876937477969753, 0.1453868806222346, -0.27551697348722065]],
    intercept: [-0.07406521023203347],
  },
  // LogisticRegression(C=0.5, class_weight='balanced').fit(X, Y_IMBALANCED, sample_weight=SAMPLE_WEIGHTS)
  balancedWeighted: {
    coef: [[0.7664380423428045, 0.22566739410024453, -0.08309147339433126]],
    intercept: [0.28232367357824784],
  },
  // LogisticRegression(C=1).fit(X, Y_MULTI): multinomial
  multinomial: {
    coef: [
      [-0.37820170837159334, -1.098176700761411, 0.22737270477699228],
      [-0.7767667807710094, 0.6921535012254895, -0.09200856524768998],
      [1.1549684891426024, 0.406023199535921, -0.13536413952930246],
    ],
    intercept: [0.3061919824968982, 0.04803039910207264, -0.35422238159897085],
  },
  // LogisticRegression(C=2, fit_intercept=False).fit(X, Y_MULTI)
  multinomialNoIntercept: {
    coef: [
      [-0.44235847405892065, -1.442206008873436, 0.5882541561555631],
      [-0.921850027837408, 0.928024881077744, -0.10515569881276282],
      [1.3642085018963295, 0.5141811277956925, -0.4830984573427998],
    ],
    intercept: [0, 0, 0],
  },
  // Ridge(alpha=0.5).fit(X, Y_REGRESSION, sample_weight=SAMPLE_WEIGHTS)
  ridgeWeighted: {
    coef: [[1.1887268631871981, 0.15606914570143618, 0.1763347316040018]],
    intercept: [0.41687236848547193],
  },
  // Ridge(alpha=2, fit_intercept=False).fit(X, Y_REGRESSION)
  ridgeNoIntercept: { coef: [[1.0787308767538875, 0.05182223499275959, 0.45210153337428693]], intercept: [0] },
};

function dataset(rows: number[][], y: number[], weights?: number[]): EncodedDataset {
  return {
    x: { rows: rows.length, cols: rows[0]!.length, data: Float64Array.from(rows.flat()) },
    y: Float64Array.from(y),
    ...(weights ? { weights: Float64Array.from(weights) } : {}),
  };
}

function sparse(data: EncodedDataset): LinearTrainingData {
  return { ...data, x: denseToSparse(data.x) };
}

/** A one-hot heavy dataset with repeated rows (exercises the merging of equal rows). */
function oneHotDataset(rows: number, classes: number, seed: number): EncodedDataset {
  let state = seed >>> 0;
  const random = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const cols = 1 + 4 + 3;
  const data = new Float64Array(rows * cols);
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const a = Math.floor(random() * 4);
    const b = Math.floor(random() * 3);
    const numeric = Math.round(random() * 4) / 2 - 1;
    data[r * cols] = numeric;
    data[r * cols + 1 + a] = 1;
    data[r * cols + 5 + b] = 1;
    const logit = numeric + a - b + (random() - 0.5) * 3;
    y[r] = classes === 2 ? (logit > 0.5 ? 1 : 0) : Math.min(classes - 1, Math.max(0, Math.floor(logit + 1)));
  }
  return { x: { rows, cols, data }, y };
}

function expectModel(model: LinearModel, reference: { coef: number[][]; intercept: number[] }, digits: number) {
  expect(model.weights.length).toBe(reference.coef.length);
  model.weights.forEach((row, k) => row.forEach((w, j) => expect(w).toBeCloseTo(reference.coef[k]![j]!, digits)));
  model.intercepts.forEach((b, k) => expect(b).toBeCloseTo(reference.intercept[k]!, digits));
}

/** Largest relative difference between the analytic gradient and central differences, at random points. */
function gradientError(data: LinearTrainingData, params: Parameters<typeof logisticObjective>[1]): number {
  const { objective, size } = logisticObjective(data, params);
  let worst = 0;
  for (let trial = 0; trial < 3; trial++) {
    const theta = Float64Array.from({ length: size }, (_, i) => Math.sin(i * 12.9898 + trial * 78.233) * 0.8);
    const grad = new Float64Array(size);
    objective(theta, grad);
    const scratch = new Float64Array(size);
    for (let i = 0; i < size; i++) {
      const h = 1e-6;
      const original = theta[i]!;
      theta[i] = original + h;
      const up = objective(theta, scratch);
      theta[i] = original - h;
      const down = objective(theta, scratch);
      theta[i] = original;
      const numeric = (up - down) / (2 * h);
      worst = Math.max(worst, Math.abs(numeric - grad[i]!) / Math.max(1e-3, Math.abs(numeric)));
    }
  }
  return worst;
}

const TIGHT = { tol: 1e-10, lossTol: 0, maxIterations: 2000 };

describe('logistic objective gradients (central differences)', () => {
  it('binary, with and without intercept, weights and class weights, dense and sparse', () => {
    const data = dataset(X, Y_BINARY, SAMPLE_WEIGHTS);
    expect(gradientError(data, {})).toBeLessThan(1e-6);
    expect(gradientError(sparse(data), { C: 0.3, fitIntercept: false })).toBeLessThan(1e-6);
    expect(gradientError(data, { classWeight: 'balanced' })).toBeLessThan(1e-6);
    expect(gradientError(oneHotDataset(300, 2, 1), { C: 0.05 })).toBeLessThan(1e-6);
  });

  it('multinomial', () => {
    expect(gradientError(dataset(X, Y_MULTI, SAMPLE_WEIGHTS), { task: 'multiclass' })).toBeLessThan(1e-6);
    expect(gradientError(oneHotDataset(300, 4, 2), { task: 'multiclass', classWeight: { '3': 2.5 } })).toBeLessThan(
      1e-6,
    );
    expect(gradientError(dataset(X, Y_MULTI), { task: 'multiclass', classCount: 5, fitIntercept: false })).toBeLessThan(
      1e-6,
    );
  });
});

describe('trainLogisticRegression', () => {
  it("matches scikit-learn's solution (binary)", async () => {
    expectModel(await trainLogisticRegression(dataset(X, Y_BINARY), TIGHT), SKLEARN.binary, 7);
  });

  it("matches scikit-learn's solution with sample weights, class_weight='balanced' and C = 0.5", async () => {
    const model = await trainLogisticRegression(dataset(X, Y_IMBALANCED, SAMPLE_WEIGHTS), {
      ...TIGHT,
      C: 0.5,
      classWeight: 'balanced',
    });
    expectModel(model, SKLEARN.balancedWeighted, 7);
  });

  it("matches scikit-learn's multinomial solution, with and without intercept", async () => {
    const data = dataset(X, Y_MULTI);
    expectModel(await trainSoftmaxRegression(data, TIGHT), SKLEARN.multinomial, 7);
    const noIntercept = await trainLogisticRegression(data, {
      ...TIGHT,
      task: 'multiclass',
      C: 2,
      fitIntercept: false,
    });
    expectModel(noIntercept, SKLEARN.multinomialNoIntercept, 7);
  });

  it('is deterministic, and dense and sparse inputs give the same model bit for bit', async () => {
    for (const [data, task] of [
      [oneHotDataset(2000, 2, 3), 'binary'],
      [oneHotDataset(2000, 3, 4), 'multiclass'],
      [dataset(X, Y_BINARY, SAMPLE_WEIGHTS), 'binary'],
    ] as const) {
      const first = await trainLogisticRegression(data, { task });
      expect(await trainLogisticRegression(data, { task })).toEqual(first);
      expect(await trainLogisticRegression(sparse(data), { task })).toEqual(first);
      expect(await trainLogisticRegression(data, { task, inputLayout: 'dense' })).toEqual(first);
    }
  });

  it('merging equal rows does not change the optimum', async () => {
    // Duplicated rows (merged) versus the same rows weighted by their multiplicity (nothing to merge).
    const base = dataset(X, Y_BINARY);
    const copies = [3, 1, 2, 4, 1, 1, 2, 1, 5, 1, 1, 2];
    const duplicated = dataset(
      X.flatMap((row, i) => Array.from({ length: copies[i]! }, () => row)),
      Y_BINARY.flatMap((y, i) => Array.from({ length: copies[i]! }, () => y)),
    );
    const weighted = { ...base, weights: Float64Array.from(copies) };
    expectModel(
      await trainLogisticRegression(duplicated, TIGHT),
      toReference(await trainLogisticRegression(weighted, TIGHT)),
      8,
    );
  });

  it('class weights act as sample weights on their class', async () => {
    const data = oneHotDataset(500, 2, 5);
    const byClass = await trainLogisticRegression(data, { ...TIGHT, classWeight: { '1': 3 } });
    const bySample = await trainLogisticRegression({ ...data, weights: data.y.map((y) => (y === 1 ? 3 : 1)) }, TIGHT);
    expectModel(byClass, toReference(bySample), 8);
    // Up-weighting the positives raises every predicted probability.
    const plain = await trainLogisticRegression(data, TIGHT);
    const [pPlain, pWeighted] = [predictLinear(plain, data.x), predictLinear(byClass, data.x)];
    pPlain.forEach((p, i) => expect(pWeighted[i]!).toBeGreaterThan(p));
  });

  it('reports every iteration and checkpoints every checkpointEvery iterations', async () => {
    const iterations: number[] = [];
    const checkpoints: number[] = [];
    await trainLogisticRegression(
      oneHotDataset(500, 3, 6),
      { task: 'multiclass', ...TIGHT, maxIterations: 25 },
      {
        onProgress: (p) => {
          iterations.push(p.iteration);
          expect(p.loss).toBeGreaterThan(0);
          expect(p.rowsPerSecond).toBeGreaterThan(0);
        },
        checkpointEvery: 10,
        onCheckpoint: (state) =>
          void checkpoints.push((state as { optimizer: { iteration: number } }).optimizer.iteration),
      },
    );
    expect(iterations).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(checkpoints).toEqual([10, 20]);
  });

  it('resumed from a checkpoint, gives the same model as an uninterrupted run', async () => {
    for (const [data, task] of [
      [oneHotDataset(1500, 2, 7), 'binary'],
      [oneHotDataset(1500, 4, 8), 'multiclass'],
    ] as const) {
      const params = { task, C: 10, tol: 1e-8 };
      const states: unknown[] = [];
      const full = await trainLogisticRegression(data, params, {
        checkpointEvery: 4,
        onCheckpoint: async (state) => void states.push(JSON.parse(JSON.stringify(state))),
      });
      expect(states.length).toBeGreaterThan(2);
      for (const state of [states[0], states[2]]) {
        expect(await trainLogisticRegression(data, params, { resumeFrom: state })).toEqual(full);
      }
      await expect(trainLogisticRegression(data, { ...params, C: 1 }, { resumeFrom: states[0] })).rejects.toMatchObject(
        {
          parameter: 'resumeFrom',
        },
      );
    }
    await expect(trainLogisticRegression(dataset(X, Y_BINARY), {}, { resumeFrom: { nope: 1 } })).rejects.toThrow(
      TrainingParameterError,
    );
  });

  it('stops with an AbortError when the signal fires', async () => {
    const controller = new AbortController();
    const run = trainLogisticRegression(oneHotDataset(500, 2, 9), TIGHT, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.iteration === 2) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('validates parameters, naming the culprit', async () => {
    const data = dataset(X, Y_BINARY);
    const cases: [Record<string, unknown>, string][] = [
      [{ C: -1 }, 'C'],
      [{ C: 0 }, 'C'],
      [{ C: Infinity }, 'C'],
      [{ tol: -1 }, 'tol'],
      [{ maxIterations: 1.5 }, 'maxIterations'],
      [{ task: 'regression' }, 'task'],
      [{ classWeight: 'heavy' }, 'classWeight'],
      [{ classWeight: { positive: 2 } }, 'classWeight'],
      [{ classWeight: { '1': -2 } }, 'classWeight.1'],
      [{ classWeight: { '7': 2 } }, 'classWeight'],
      [{ inputLayout: 'columnar' }, 'inputLayout'],
      [{ surprise: true }, 'surprise'],
    ];
    for (const [params, parameter] of cases) {
      await expect(trainLogisticRegression(data, params as never), JSON.stringify(params)).rejects.toMatchObject({
        name: 'TrainingParameterError',
        parameter,
      });
    }
    expect(() => parseLogisticRegressionParams({ memory: 0 })).toThrow(TrainingParameterError);
    await expect(trainLogisticRegression(dataset(X, Y_MULTI))).rejects.toMatchObject({ parameter: 'y' });
    await expect(
      trainLogisticRegression(dataset(X, Y_MULTI), { task: 'multiclass', classCount: 2 }),
    ).rejects.toMatchObject({ parameter: 'y' });
    await expect(
      trainLogisticRegression(
        dataset(
          X,
          Y_BINARY.map((y) => y + 0.5),
        ),
      ),
    ).rejects.toMatchObject({
      parameter: 'y',
    });
    const badX = dataset(X, Y_BINARY);
    badX.x.data[4] = NaN;
    await expect(trainLogisticRegression(badX)).rejects.toMatchObject({ parameter: 'x' });
    await expect(
      trainLogisticRegression(
        dataset(
          X,
          Y_BINARY,
          X.map(() => -1),
        ),
      ),
    ).rejects.toMatchObject({
      parameter: 'weights',
    });
  });
});

describe('predictLinear', () => {
  it('gives softmax probabilities that sum to 1, and sigmoid / identity for the other tasks', async () => {
    const data = oneHotDataset(300, 4, 10);
    const model = await trainSoftmaxRegression(data);
    const probabilities = predictLinear(model, data.x);
    expect(probabilities.length).toBe(300 * 4);
    for (let r = 0; r < 300; r++) {
      const row = probabilities.subarray(r * 4, r * 4 + 4);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 14);
      for (const p of row) expect(p).toBeGreaterThan(0);
    }
    expect(Array.from(predictLinear(model, denseToSparse(data.x)))).toEqual(Array.from(probabilities));
    const manual: LinearModel = { kind: 'linear', task: 'binary', weights: [[2, -1]], intercepts: [0.5] };
    const x = { rows: 2, cols: 2, data: Float64Array.of(1, 1, 1000, 0) };
    expect(Array.from(predictLinear(manual, x))).toEqual([1 / (1 + Math.exp(-1.5)), 1]);
    expect(Array.from(predictLinear({ ...manual, task: 'regression' }, x))).toEqual([1.5, 2000.5]);
    expect(() => predictLinear(manual, { rows: 1, cols: 3, data: new Float64Array(3) })).toThrow(RangeError);
  });
});

describe('trainRidge', () => {
  it("matches scikit-learn's Ridge with sample weights (Cholesky and CG)", async () => {
    const data = dataset(X, Y_REGRESSION, SAMPLE_WEIGHTS);
    expectModel(await trainRidge(data, { alpha: 0.5 }), SKLEARN.ridgeWeighted, 10);
    expectModel(await trainRidge(sparse(data), { alpha: 0.5, solver: 'cg', tol: 1e-14 }), SKLEARN.ridgeWeighted, 10);
    const noIntercept = dataset(X, Y_REGRESSION);
    expectModel(await trainRidge(noIntercept, { alpha: 2, fitIntercept: false }), SKLEARN.ridgeNoIntercept, 10);
  });

  it('sits where the finite-difference gradient of its objective vanishes', async () => {
    const data = oneHotDataset(400, 2, 11);
    data.y.forEach((_, i) => (data.y[i] = Math.sin(i) * 3 + data.x.data[i * data.x.cols]!));
    const weights = Float64Array.from({ length: 400 }, (_, i) => 1 + (i % 3));
    const alpha = 0.7;
    const model = await trainRidge({ ...data, weights }, { alpha });
    const { rows, cols } = data.x;
    const objective = (w: number[], b: number) => {
      let sum = 0;
      for (let r = 0; r < rows; r++) {
        let prediction = b;
        for (let j = 0; j < cols; j++) prediction += data.x.data[r * cols + j]! * w[j]!;
        sum += weights[r]! * (data.y[r]! - prediction) ** 2;
      }
      return sum + alpha * w.reduce((s, v) => s + v * v, 0);
    };
    const w = [...model.weights[0]!];
    const b = model.intercepts[0]!;
    const h = 1e-5;
    const scale = objective(w, b);
    for (let j = 0; j <= cols; j++) {
      const shifted = (delta: number) =>
        j === cols
          ? objective(w, b + delta)
          : objective(
              w.map((v, i) => (i === j ? v + delta : v)),
              b,
            );
      const derivative = (shifted(h) - shifted(-h)) / (2 * h);
      expect(Math.abs(derivative) / scale).toBeLessThan(1e-8);
    }
  });

  it('equals the closed form on random problems; rank-deficient one-hot needs alpha > 0', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1000 }),
        fc.double({ min: 0.01, max: 10, noNaN: true }),
        async (seed, alpha) => {
          const data = oneHotDataset(60, 2, seed);
          data.y.forEach((_, i) => (data.y[i] = Math.cos(i * seed)));
          const cholesky = await trainRidge(data, { alpha });
          const cg = await trainRidge(data, { alpha, solver: 'cg', tol: 1e-13 });
          cholesky.weights[0]!.forEach((w, j) => expect(cg.weights[0]![j]!).toBeCloseTo(w, 9));
          expect(cg.intercepts[0]!).toBeCloseTo(cholesky.intercepts[0]!, 9);
        },
      ),
      { numRuns: 20 },
    );
    // One-hot columns sum to 1, which the intercept absorbs: singular without a penalty.
    await expect(trainRidge(oneHotDataset(60, 2, 1), { alpha: 0 })).rejects.toMatchObject({ parameter: 'alpha' });
    await expect(trainRidge(dataset(X, Y_REGRESSION), { alpha: -1 })).rejects.toMatchObject({ parameter: 'alpha' });
    await expect(trainRidge(dataset(X, Y_REGRESSION), { solver: 'qr' } as never)).rejects.toMatchObject({
      parameter: 'solver',
    });
  });

  it('reports its loss and is deterministic', async () => {
    const data = dataset(X, Y_REGRESSION, SAMPLE_WEIGHTS);
    const losses: number[] = [];
    const model = await trainRidge(data, { alpha: 0.5 }, { onProgress: (p) => void losses.push(p.loss) });
    expect(losses).toHaveLength(1);
    // loss = (Σ c·residual² + alpha·‖w‖²) / Σc
    const predictions = predictLinear(model, data.x);
    const total = SAMPLE_WEIGHTS.reduce((a, b) => a + b, 0);
    const expected =
      (SAMPLE_WEIGHTS.reduce((s, c, i) => s + c * (Y_REGRESSION[i]! - predictions[i]!) ** 2, 0) +
        0.5 * model.weights[0]!.reduce((s, w) => s + w * w, 0)) /
      total;
    expect(losses[0]).toBeCloseTo(expected, 12);
    expect(await trainRidge(data, { alpha: 0.5 })).toEqual(model);
    expect(await trainRidge(sparse(data), { alpha: 0.5 })).toEqual(model);
  });
});

function toReference(model: LinearModel): { coef: number[][]; intercept: number[] } {
  return { coef: model.weights.map((row) => [...row]), intercept: [...model.intercepts] };
}
