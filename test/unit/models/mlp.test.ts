// The MLP trainer's tests in one file (about 730 lines): scikit-learn reference values, gradients, checkpoints and the
// property tests share the fixtures at the top; split by concern, each file would repeat them.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mlpOutputCount, predictMlp } from '../../../models/predict/mlp.js';
import {
  mlpObjective,
  mlpValidationSplit,
  parseMlpParams,
  trainMlp,
  type MlpCheckpoint,
  type MlpParams,
} from '../../../models/trainers/mlp/index.js';
import {
  TrainingParameterError,
  type EncodedDataset,
  type LabelTask,
  type MlpLayer,
  type MlpModel,
  type TrainingProgress,
} from '../../../models/types.js';

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/** A seeded generator for test data (independent of the trainer's). */
function testRng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Rows shaped like the encoded input: `numeric` standardized-looking columns, then one-hot blocks of the given
 * cardinalities (one 1 per block and row).
 */
function encodedRows(rows: number, numeric: number, blocks: readonly number[], seed: number) {
  const rand = testRng(seed);
  const cols = numeric + blocks.reduce((a, b) => a + b, 0);
  const data = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < numeric; j++) data[r * cols + j] = 2 * rand() - 1;
    let offset = numeric;
    for (const size of blocks) {
      data[r * cols + offset + Math.floor(rand() * size)] = 1;
      offset += size;
    }
  }
  return { rows, cols, data };
}

function labels(task: LabelTask, rows: number, seed: number, classes = 3): Float64Array {
  const rand = testRng(seed);
  return Float64Array.from({ length: rows }, () =>
    task === 'binary' ? (rand() < 0.4 ? 1 : 0) : task === 'multiclass' ? Math.floor(rand() * classes) : 3 * rand() - 1,
  );
}

function randomModel(task: LabelTask, sizes: readonly number[], activation: 'relu' | 'tanh', seed: number): MlpModel {
  const rand = testRng(seed);
  const layers: MlpLayer[] = [];
  for (let l = 0; l + 1 < sizes.length; l++) {
    const weights = Array.from({ length: sizes[l + 1]! }, () =>
      Array.from({ length: sizes[l]! }, () => 2 * rand() - 1),
    );
    const biases = Array.from({ length: sizes[l + 1]! }, () => 0.5 * rand() - 0.25);
    layers.push({ weights, biases, activation: l + 2 === sizes.length ? 'identity' : activation });
  }
  return { kind: 'mlp', task, layers };
}

/** A copy of `model` with one parameter (`weights[o][i]`, or the bias when `i` is -1) moved by `delta`. */
function nudged(model: MlpModel, layer: number, o: number, i: number, delta: number): MlpModel {
  return {
    ...model,
    layers: model.layers.map((l, index) => {
      if (index !== layer) return l;
      if (i < 0) return { ...l, biases: l.biases.map((b, k) => (k === o ? b + delta : b)) };
      return {
        ...l,
        weights: l.weights.map((row, k) => (k === o ? row.map((w, j) => (j === i ? w + delta : w)) : row)),
      };
    }),
  };
}

/** The model's parameters in the checkpoint's flat layout (per layer: weights input-major, then biases). */
function flatParameters(model: MlpModel): number[] {
  const flat: number[] = [];
  for (const layer of model.layers) {
    const inputs = layer.weights[0]!.length;
    for (let i = 0; i < inputs; i++) for (const row of layer.weights) flat.push(row[i]!);
    flat.push(...layer.biases);
  }
  return flat;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

const jsonRoundTrip = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

// ---------------------------------------------------------------------------------------------------------------

describe('mlpObjective (the training kernels)', () => {
  const cases: { task: LabelTask; hidden: number[]; activation: 'relu' | 'tanh'; weighted: boolean }[] = [
    { task: 'binary', hidden: [5], activation: 'relu', weighted: false },
    { task: 'binary', hidden: [4, 3], activation: 'tanh', weighted: true },
    { task: 'multiclass', hidden: [5], activation: 'tanh', weighted: false },
    { task: 'multiclass', hidden: [4, 3], activation: 'relu', weighted: true },
    { task: 'regression', hidden: [5], activation: 'tanh', weighted: true },
    { task: 'regression', hidden: [4, 3], activation: 'relu', weighted: false },
  ];

  for (const { task, hidden, activation, weighted } of cases) {
    const name = `${task}, ${activation} ${hidden.join('×')}${weighted ? ', row weights' : ''}`;
    it(`has the finite-difference gradient (${name}, L2)`, () => {
      const x = encodedRows(12, 2, [3, 2], 7);
      const outputs = task === 'multiclass' ? 3 : 1;
      const data: EncodedDataset = {
        x,
        y: labels(task, x.rows, 11),
        ...(weighted ? { weights: Float64Array.from({ length: x.rows }, (_, r) => 0.5 + (r % 3)) } : {}),
      };
      const model = randomModel(task, [x.cols, ...hidden, outputs], activation, 3);
      const alpha = 0.05;
      const { gradient } = mlpObjective(model, data, alpha);
      const h = 1e-6;
      let checked = 0;
      for (const [l, layer] of model.layers.entries()) {
        for (let o = 0; o < layer.biases.length; o++) {
          for (let i = -1; i < layer.weights[o]!.length; i++) {
            const up = mlpObjective(nudged(model, l, o, i, h), data, alpha).loss;
            const down = mlpObjective(nudged(model, l, o, i, -h), data, alpha).loss;
            const numeric = (up - down) / (2 * h);
            const analytic = i < 0 ? gradient[l]!.biases[o]! : gradient[l]!.weights[o]![i]!;
            expect(Math.abs(analytic - numeric)).toBeLessThan(1e-7 + 1e-5 * Math.abs(numeric));
            checked++;
          }
        }
      }
      expect(checked).toBeGreaterThan(40);
    });
  }

  it('computes the same loss as the probabilities of predictMlp, plus the L2 term', () => {
    for (const task of ['binary', 'multiclass', 'regression'] as const) {
      const x = encodedRows(20, 3, [4], 5);
      const y = labels(task, x.rows, 6, 4);
      const K = task === 'multiclass' ? 4 : 1;
      const model = randomModel(task, [x.cols, 6, K], 'tanh', 9);
      const p = predictMlp(model, x);
      let expected = 0;
      for (let r = 0; r < x.rows; r++) {
        if (task === 'binary') expected -= Math.log(y[r] === 1 ? p[r]! : 1 - p[r]!);
        else if (task === 'multiclass') expected -= Math.log(p[r * K + y[r]!]!);
        else expected += 0.5 * (p[r]! - y[r]!) ** 2;
      }
      let squares = 0;
      for (const layer of model.layers) for (const row of layer.weights) for (const w of row) squares += w * w;
      const alpha = 0.3;
      expected = (expected + 0.5 * alpha * squares) / x.rows;
      expect(mlpObjective(model, { x, y }, alpha).loss).toBeCloseTo(expected, 12);
    }
  });

  it('gives bit-identical results with the dense and the sparse input layouts', () => {
    const x = encodedRows(30, 2, [5, 3, 4], 1);
    const y = labels('multiclass', x.rows, 2);
    const model = randomModel('multiclass', [x.cols, 6, 5, 3], 'relu', 4);
    expect(mlpObjective(model, { x, y }, 0.01, 'dense')).toEqual(mlpObjective(model, { x, y }, 0.01, 'sparse'));
  });

  // Reference: scikit-learn 1.2 (Debian, /usr/bin/python3): an MLPClassifier/MLPRegressor fitted for one iteration
  // on these X and y, its coefs_/intercepts_ replaced by the weights below, then `_backprop` (loss and gradients) and
  // `predict_proba[:, 1]`/`predict`. Pins the objective's definition (mean over rows, ½ in the squared loss,
  // alpha·‖W‖²/(2n), biases unpenalized) to scikit-learn's.
  const X = Array.from({ length: 5 }, (_, r) =>
    Array.from({ length: 3 }, (_, j) => Math.cos(0.9 * r + 1.7 * j) * (1 + 0.1 * j)),
  );
  const sklearnModel = (task: LabelTask, sizes: number[], activation: 'relu' | 'tanh'): MlpModel => ({
    kind: 'mlp',
    task,
    layers: sizes.slice(1).map((outputs, l) => ({
      weights: Array.from({ length: outputs }, (_, o) =>
        Array.from({ length: sizes[l]! }, (_, i) => 0.5 * Math.sin(1 + 3 * l + 0.7 * i + 1.3 * o)),
      ),
      biases: Array.from({ length: outputs }, (_, o) => 0.1 * Math.cos(2 + l + o)),
      activation: l === sizes.length - 2 ? 'identity' : activation,
    })),
  });
  const sklearnCases = [
    { task: 'binary', sizes: [3, 4, 1], activation: 'relu', y: [0, 1, 1, 0, 1] },
    { task: 'multiclass', sizes: [3, 4, 3, 3], activation: 'tanh', y: [0, 2, 1, 2, 0] },
    { task: 'regression', sizes: [3, 4, 3, 1], activation: 'relu', y: [0.5, -1, 2, 0.3, 1.1] },
  ] as const;
  for (const c of sklearnCases) {
    it(`agrees with scikit-learn's MLP objective and predictions (${c.task})`, () => {
      const ref = SKLEARN_REFERENCE[c.task];
      const model = sklearnModel(c.task, [...c.sizes], c.activation);
      const x = { rows: 5, cols: 3, data: Float64Array.from(X.flat()) };
      const { loss, gradient } = mlpObjective(model, { x, y: Float64Array.from(c.y) }, 0.01);
      expect(loss).toBeCloseTo(ref.loss, 13);
      for (const [l, layer] of gradient.entries()) {
        ref.interceptGrads[l]!.forEach((g, o) => expect(layer.biases[o]).toBeCloseTo(g, 13));
        // scikit-learn's coefs are input-major: coefGrads[l][i][o].
        ref.coefGrads[l]!.forEach((row, i) => row.forEach((g, o) => expect(layer.weights[o]![i]).toBeCloseTo(g, 13)));
      }
      const predicted = Array.from(predictMlp(model, x));
      ref.predict.flat().forEach((p, k) => expect(predicted[k]).toBeCloseTo(p, 13));
    });
  }
});

describe('predictMlp', () => {
  it('returns softmax probabilities that sum to 1 (also for extreme logits)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), fc.double({ min: 0.1, max: 500, noNaN: true }), (seed, scale) => {
        const x = encodedRows(8, 3, [4], seed);
        const model = randomModel('multiclass', [x.cols, 5, 4], 'relu', seed + 1);
        const big = {
          ...model,
          layers: model.layers.map((l) => ({ ...l, weights: l.weights.map((r) => r.map((w) => w * scale)) })),
        };
        const p = predictMlp(big, x);
        expect(p.length).toBe(8 * 4);
        for (let r = 0; r < 8; r++) {
          let sum = 0;
          for (let k = 0; k < 4; k++) {
            expect(p[r * 4 + k]).toBeGreaterThanOrEqual(0);
            sum += p[r * 4 + k]!;
          }
          expect(sum).toBeCloseTo(1, 12);
        }
      }),
      { numRuns: 50 },
    );
  });

  it('returns binary probabilities in [0, 1] even for huge logits', () => {
    const model: MlpModel = {
      kind: 'mlp',
      task: 'binary',
      layers: [
        { weights: [[1]], biases: [0], activation: 'relu' },
        { weights: [[1]], biases: [0], activation: 'identity' },
      ],
    };
    const p = predictMlp(model, { rows: 3, cols: 1, data: Float64Array.of(-1e6, 0, 1e6) });
    expect(Array.from(p)).toEqual([0.5, 0.5, 1]);
    expect(mlpOutputCount(model)).toBe(1);
  });

  it('rejects a matrix of the wrong width', () => {
    const model = randomModel('regression', [3, 2, 1], 'tanh', 1);
    expect(() => predictMlp(model, { rows: 1, cols: 4, data: new Float64Array(4) })).toThrow(RangeError);
  });
});

describe('trainMlp', () => {
  const xor = () => {
    const rows = 200;
    const data = new Float64Array(rows * 2);
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      const a = r & 1;
      const b = (r >> 1) & 1;
      data[2 * r] = a;
      data[2 * r + 1] = b;
      y[r] = a ^ b;
    }
    return { x: { rows, cols: 2, data }, y };
  };
  const corners = { rows: 4, cols: 2, data: Float64Array.of(0, 0, 1, 0, 0, 1, 1, 1) };

  it('learns XOR', async () => {
    for (const activation of ['relu', 'tanh'] as const) {
      const model = await trainMlp(xor(), {
        task: 'binary',
        hiddenLayers: [8],
        activation,
        learningRate: 0.05,
        earlyStopping: false,
        maxEpochs: 400,
      });
      const p = Array.from(predictMlp(model, corners));
      expect(p[0]).toBeLessThan(0.1);
      expect(p[1]).toBeGreaterThan(0.9);
      expect(p[2]).toBeGreaterThan(0.9);
      expect(p[3]).toBeLessThan(0.1);
      expect(model.layers.map((l) => l.activation)).toEqual([activation, 'identity']);
    }
  });

  it('fits a noiseless smooth regression target to a low MSE', async () => {
    const rows = 1000;
    const rand = testRng(3);
    const data = new Float64Array(rows * 2);
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      const a = 4 * rand() - 2;
      const b = 4 * rand() - 2;
      data[2 * r] = a;
      data[2 * r + 1] = b;
      y[r] = Math.sin(a) + 0.5 * b * b;
    }
    const x = { rows, cols: 2, data };
    const model = await trainMlp(
      { x, y },
      { task: 'regression', hiddenLayers: [32], activation: 'tanh', learningRate: 0.01, batchSize: 50 },
    );
    const p = predictMlp(model, x);
    let mse = 0;
    for (let r = 0; r < rows; r++) mse += (p[r]! - y[r]!) ** 2 / rows;
    // The target's variance is about 1.
    expect(mse).toBeLessThan(0.01);
  });

  it('separates three classes with two hidden layers, probabilities summing to 1', async () => {
    const rows = 600;
    const rand = testRng(8);
    const data = new Float64Array(rows * 2);
    const y = new Float64Array(rows);
    const centers = [
      [0, 2],
      [2, -1],
      [-2, -1],
    ];
    for (let r = 0; r < rows; r++) {
      const c = r % 3;
      y[r] = c;
      data[2 * r] = centers[c]![0]! + 0.5 * (rand() - 0.5);
      data[2 * r + 1] = centers[c]![1]! + 0.5 * (rand() - 0.5);
    }
    const x = { rows, cols: 2, data };
    const model = await trainMlp({ x, y }, { task: 'multiclass', hiddenLayers: [16, 8], learningRate: 0.01 });
    expect(mlpOutputCount(model)).toBe(3);
    const p = predictMlp(model, x);
    let correct = 0;
    for (let r = 0; r < rows; r++) {
      const row = Array.from(p.subarray(r * 3, r * 3 + 3));
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      if (row.indexOf(Math.max(...row)) === y[r]) correct++;
    }
    expect(correct / rows).toBeGreaterThan(0.98);
  });

  const noisy = (rows = 400, seed = 1): EncodedDataset => {
    const x = encodedRows(rows, 2, [6, 5], seed);
    return { x, y: labels('binary', rows, seed + 100) };
  };

  it('is deterministic for a seed, and the seed matters', async () => {
    const params: MlpParams = { task: 'binary', hiddenLayers: [8, 4], maxEpochs: 5, seed: 42 };
    const a = await trainMlp(noisy(), params);
    const b = await trainMlp(noisy(), params);
    const c = await trainMlp(noisy(), { ...params, seed: 43 });
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it('trains the same model with the dense and the sparse input layouts', async () => {
    const params: MlpParams = { task: 'multiclass', hiddenLayers: [6], maxEpochs: 4 };
    const data = { x: encodedRows(300, 1, [7, 4], 2), y: labels('multiclass', 300, 3) };
    const dense = await trainMlp(data, { ...params, inputLayout: 'dense' });
    const sparse = await trainMlp(data, { ...params, inputLayout: 'sparse' });
    expect(sparse).toEqual(dense);
  });

  it('reports progress once per epoch', async () => {
    const seen: TrainingProgress[] = [];
    await trainMlp(noisy(), { task: 'binary', maxEpochs: 3, nIterNoChange: 50 }, { onProgress: (p) => seen.push(p) });
    expect(seen.map((p) => p.iteration)).toEqual([1, 2, 3]);
    for (const p of seen) {
      expect(p.loss).toBeGreaterThan(0);
      expect(p.validationLoss).toBeGreaterThan(0);
      expect(p.rowsPerSecond ?? 1).toBeGreaterThan(0);
    }
  });

  it('stops early on a rising validation loss and returns the best epoch', async () => {
    // Labels are noise: a wide network overfits and the validation loss soon rises.
    const data = noisy(300, 5);
    const seen: TrainingProgress[] = [];
    const checkpoints: MlpCheckpoint[] = [];
    const model = await trainMlp(
      data,
      { task: 'binary', hiddenLayers: [64], learningRate: 0.02, maxEpochs: 200, nIterNoChange: 5, tol: 0 },
      {
        onProgress: (p) => seen.push(p),
        onCheckpoint: (state) => void checkpoints.push(jsonRoundTrip(state as MlpCheckpoint)),
      },
    );
    expect(seen.length).toBeLessThan(200);
    const losses = seen.map((p) => p.validationLoss!);
    const best = losses.indexOf(Math.min(...losses));
    // scikit-learn's rule: more than nIterNoChange epochs without improvement.
    expect(seen.length).toBe(best + 1 + 6);
    expect(best + 1).toBeLessThan(seen.length);
    expect(flatParameters(model)).toEqual(checkpoints[best]!.parameters);
    expect(flatParameters(model)).not.toEqual(checkpoints.at(-1)!.parameters);
  });

  it('returns the last weights without early stopping and stops on a flat training loss', async () => {
    const seen: TrainingProgress[] = [];
    const checkpoints: MlpCheckpoint[] = [];
    const model = await trainMlp(
      xor(),
      { task: 'binary', hiddenLayers: [8], learningRate: 0.05, earlyStopping: false, maxEpochs: 1000 },
      { onProgress: (p) => seen.push(p), onCheckpoint: (s) => void checkpoints.push(s as MlpCheckpoint) },
    );
    expect(seen.length).toBeLessThan(1000);
    expect(seen.every((p) => p.validationLoss === undefined)).toBe(true);
    expect(flatParameters(model)).toEqual(checkpoints.at(-1)!.parameters);
  });

  it('holds out a stratified validation slice', () => {
    const rows = 1000;
    const y = Float64Array.from({ length: rows }, (_, r) => (r % 10 === 0 ? 1 : 0));
    const data = { x: { rows, cols: 1, data: new Float64Array(rows) }, y };
    const { train, validation } = mlpValidationSplit(data, { task: 'binary' });
    expect(validation.length).toBe(100);
    expect(train.length + validation.length).toBe(rows);
    expect(new Set([...train, ...validation]).size).toBe(rows);
    expect(validation.filter((r) => y[r] === 1).length).toBe(10);
    const { validation: again } = mlpValidationSplit(data, { task: 'binary' });
    expect(again).toEqual(validation);
    expect(mlpValidationSplit(data, { task: 'binary', earlyStopping: false }).validation.length).toBe(0);
  });

  describe('checkpoints', () => {
    for (const earlyStopping of [true, false]) {
      it(`resumes to exactly the uninterrupted model (earlyStopping ${earlyStopping})`, async () => {
        const data = { x: encodedRows(250, 2, [5, 4], 9), y: labels('multiclass', 250, 10) };
        const params: MlpParams = {
          task: 'multiclass',
          hiddenLayers: [8, 4],
          activation: 'tanh',
          maxEpochs: 12,
          batchSize: 32,
          earlyStopping,
          nIterNoChange: 100,
        };
        const states: unknown[] = [];
        const straightProgress: TrainingProgress[] = [];
        const straight = await trainMlp(data, params, {
          checkpointEvery: 4,
          onCheckpoint: async (s) => {
            await Promise.resolve();
            states.push(jsonRoundTrip(s));
          },
          onProgress: (p) => straightProgress.push(p),
        });
        expect(states.map((s) => (s as MlpCheckpoint).epoch)).toEqual([4, 8, 12]);
        for (const from of [states[0], states[1]]) {
          const resumedProgress: TrainingProgress[] = [];
          const resumed = await trainMlp(data, params, {
            resumeFrom: from,
            onProgress: (p) => resumedProgress.push(p),
          });
          expect(resumed).toEqual(straight);
          const epoch = (from as MlpCheckpoint).epoch;
          const rest = straightProgress.slice(epoch);
          expect(resumedProgress.map((p) => [p.iteration, p.loss, p.validationLoss])).toEqual(
            rest.map((p) => [p.iteration, p.loss, p.validationLoss]),
          );
        }
      });
    }

    it('resumes after a cancelled run', async () => {
      const data = noisy(300, 4);
      const params: MlpParams = { task: 'binary', hiddenLayers: [8], maxEpochs: 10, nIterNoChange: 100 };
      const straight = await trainMlp(data, params);
      const controller = new AbortController();
      let last: unknown;
      const error = await rejection(
        trainMlp(data, params, {
          checkpointEvery: 3,
          onCheckpoint: (s) => {
            last = jsonRoundTrip(s);
            if ((s as MlpCheckpoint).epoch === 6) controller.abort();
          },
          signal: controller.signal,
        }),
      );
      expect(error).toMatchObject({ name: 'AbortError' });
      expect((last as MlpCheckpoint).epoch).toBe(6);
      expect(await trainMlp(data, params, { resumeFrom: last })).toEqual(straight);
    });

    it('returns at once when resumed from a checkpoint that had already stopped', async () => {
      const data = noisy(300, 5);
      const params: MlpParams = { task: 'binary', hiddenLayers: [64], learningRate: 0.02, nIterNoChange: 3 };
      let last: unknown;
      const straight = await trainMlp(data, params, { onCheckpoint: (s) => void (last = jsonRoundTrip(s)) });
      const seen: TrainingProgress[] = [];
      expect(await trainMlp(data, params, { resumeFrom: last, onProgress: (p) => seen.push(p) })).toEqual(straight);
      expect(seen).toEqual([]);
    });

    it('rejects a checkpoint of other parameters, other data or another kind', async () => {
      const data = noisy(100, 1);
      let state: unknown;
      await trainMlp(data, { task: 'binary', maxEpochs: 1 }, { onCheckpoint: (s) => void (state = s) });
      const attempts: [EncodedDataset, MlpParams, unknown][] = [
        [data, { task: 'binary', maxEpochs: 1, seed: 1 }, state],
        [noisy(101, 1), { task: 'binary', maxEpochs: 1 }, state],
        [data, { task: 'binary', maxEpochs: 1 }, { format: 'something else' }],
        [data, { task: 'binary', maxEpochs: 1 }, { ...(state as MlpCheckpoint), parameters: [1, 2] }],
      ];
      for (const [d, p, resumeFrom] of attempts) {
        const error = await rejection(trainMlp(d, p, { resumeFrom }));
        expect(error).toBeInstanceOf(TrainingParameterError);
        expect(error).toMatchObject({ parameter: 'resumeFrom' });
      }
      // The input layout does not change the result, so it may differ.
      await expect(
        trainMlp(data, { task: 'binary', maxEpochs: 1, inputLayout: 'dense' }, { resumeFrom: state }),
      ).resolves.toMatchObject({ kind: 'mlp' });
    });
  });

  describe('cancellation', () => {
    it('rejects at once with an already aborted signal', async () => {
      const seen: TrainingProgress[] = [];
      const error = await rejection(
        trainMlp(noisy(), { task: 'binary' }, { signal: AbortSignal.abort(), onProgress: (p) => seen.push(p) }),
      );
      expect(error).toMatchObject({ name: 'AbortError' });
      expect(seen).toEqual([]);
    });

    it('stops before the next mini-batch when aborted during training', async () => {
      const controller = new AbortController();
      const seen: TrainingProgress[] = [];
      const error = await rejection(
        trainMlp(
          noisy(),
          { task: 'binary', maxEpochs: 50, nIterNoChange: 100 },
          {
            signal: controller.signal,
            onProgress: (p) => {
              seen.push(p);
              if (p.iteration === 2) controller.abort();
            },
          },
        ),
      );
      expect(error).toMatchObject({ name: 'AbortError' });
      expect(seen.length).toBe(2);
    });

    it('stops promptly when aborted from a timer (it yields to the event loop)', async () => {
      const controller = new AbortController();
      const data = { x: encodedRows(20_000, 4, [50, 40, 30], 3), y: labels('binary', 20_000, 4) };
      let abortedAt = 0;
      setTimeout(() => {
        abortedAt = performance.now();
        controller.abort();
      }, 50);
      const error = await rejection(
        trainMlp(
          data,
          { task: 'binary', maxEpochs: 10_000, tol: 0, nIterNoChange: 10_000 },
          { signal: controller.signal },
        ),
      );
      const latency = performance.now() - abortedAt;
      expect(error).toMatchObject({ name: 'AbortError' });
      expect(abortedAt).toBeGreaterThan(0);
      // Generous for loaded CI machines: the trainer yields every ~25 ms, a full run would take minutes.
      expect(latency).toBeLessThan(1000);
    });
  });

  describe('parameter validation', () => {
    const data = noisy(50);
    const bad: [Record<string, unknown>, string][] = [
      [{}, 'task'],
      [{ task: 'ranking' }, 'task'],
      [{ task: 'binary', hiddenLayers: [] }, 'hiddenLayers'],
      [{ task: 'binary', hiddenLayers: [8, 8, 8] }, 'hiddenLayers'],
      [{ task: 'binary', hiddenLayers: [0] }, 'hiddenLayers.0'],
      [{ task: 'binary', hiddenLayers: [2.5] }, 'hiddenLayers.0'],
      [{ task: 'binary', activation: 'sigmoid' }, 'activation'],
      [{ task: 'binary', learningRate: 0 }, 'learningRate'],
      [{ task: 'binary', learningRate: Number.NaN }, 'learningRate'],
      [{ task: 'binary', alpha: -1 }, 'alpha'],
      [{ task: 'binary', beta1: 1 }, 'beta1'],
      [{ task: 'binary', batchSize: 0 }, 'batchSize'],
      [{ task: 'binary', maxEpochs: 0 }, 'maxEpochs'],
      [{ task: 'binary', validationFraction: 1 }, 'validationFraction'],
      [{ task: 'binary', nIterNoChange: 0 }, 'nIterNoChange'],
      [{ task: 'binary', tol: -1 }, 'tol'],
      [{ task: 'binary', seed: -1 }, 'seed'],
      [{ task: 'binary', earlyStopping: 'yes' }, 'earlyStopping'],
      [{ task: 'binary', learning_rate: 0.1 }, 'learning_rate'],
      [{ task: 'binary', classCount: 3 }, 'classCount'],
    ];
    for (const [params, name] of bad) {
      it(`names ${name} in ${JSON.stringify(params)}`, async () => {
        const error = await rejection(trainMlp(data, params as MlpParams));
        expect(error).toBeInstanceOf(TrainingParameterError);
        expect(error).toMatchObject({ parameter: name });
      });
    }

    it('fills in scikit-learn-like defaults', () => {
      expect(parseMlpParams({ task: 'binary' })).toMatchObject({
        hiddenLayers: [32],
        activation: 'relu',
        learningRate: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        alpha: 1e-4,
        batchSize: 200,
        maxEpochs: 200,
        earlyStopping: true,
        validationFraction: 0.1,
        nIterNoChange: 10,
        tol: 1e-4,
      });
    });

    it('rejects bad data and hooks with the name of the culprit', async () => {
      const x = encodedRows(20, 2, [3], 1);
      const withNaN = { ...x, data: x.data.map((v, k) => (k === 7 ? Number.NaN : v)) };
      const cases: [EncodedDataset, MlpParams, object, string][] = [
        [{ x, y: labels('regression', 20, 1) }, { task: 'binary' }, {}, 'y'],
        [{ x, y: labels('binary', 19, 1) }, { task: 'binary' }, {}, 'y'],
        [{ x: withNaN, y: labels('binary', 20, 1) }, { task: 'binary' }, {}, 'x'],
        [{ x, y: labels('multiclass', 20, 1, 5) }, { task: 'multiclass', classCount: 3 }, {}, 'classCount'],
        [{ x, y: labels('binary', 20, 1), weights: new Float64Array(20).fill(-1) }, { task: 'binary' }, {}, 'weights'],
        [{ x, y: labels('binary', 20, 1) }, { task: 'binary' }, { checkpointEvery: 0 }, 'checkpointEvery'],
        [{ x: encodedRows(1, 2, [3], 1), y: Float64Array.of(1) }, { task: 'binary' }, {}, 'validationFraction'],
      ];
      for (const [d, params, hooks, name] of cases) {
        const error = await rejection(trainMlp(d, params, hooks));
        expect(error).toBeInstanceOf(TrainingParameterError);
        expect(error).toMatchObject({ parameter: name });
      }
    });
  });
});

const SKLEARN_REFERENCE: Record<
  LabelTask,
  { loss: number; coefGrads: number[][][]; interceptGrads: number[][]; predict: (number | number[])[] }
> = {
  binary: {
    loss: 0.7198775678879982,
    coefGrads: [
      [
        [-0.036413263997283736, 0.0001551373507283073, -0.010613922371963317, 0.0020779693574566327],
        [0.02632555123843903, -0.05041054148439692, -0.08403012361871284, -0.012247470677001564],
        [0.0382594030819247, 0.014389688770925904, 0.0346113598865002, -0.0003902002416741074],
      ],
      [[-0.021505743264690964], [0.018803521612823275], [-0.05090760335707588], [-0.03088878952479961]],
    ],
    interceptGrads: [
      [0.04154378069222369, 0.0218323937175136, 0.05963186919994314, 0.022460467556304306],
      [-0.17173946647102079],
    ],
    predict: [0.3742933781126846, 0.4073659287155296, 0.446671314464437, 0.46191025612017567, 0.4510617902320692],
  },
  multiclass: {
    loss: 1.1830060886978138,
    coefGrads: [
      [
        [0.013423496989047125, -0.008874398704627128, -0.03015863871583032, -0.0006708657754447774],
        [0.05253010712264907, -0.022064850543254636, -0.08263800591511995, -0.1150105657296838],
        [-0.02891121064961382, 0.01725672575058434, 0.057673673968553094, 0.03179667613083835],
      ],
      [
        [-0.02164526965261771, -0.061621538581349874, -0.06679262003210973],
        [-0.012325866924648127, -0.030966189761180547, -0.040080696630629506],
        [0.006766846999577361, 0.03523703284730003, 0.03860645967389347],
        [0.01838713896451381, 0.05594501772986761, 0.06714229659629697],
      ],
      [
        [0.030027756847556774, -0.008560141384295334, -0.02008278381200934],
        [0.09489990677442488, -0.03310052734451903, -0.06116677852055069],
        [0.0219086340821429, -0.014339018987285757, -0.007986767019730497],
      ],
    ],
    interceptGrads: [
      [-0.016473681185228163, -0.015971779230806726, -0.008329032725524493, -0.00606771964670022],
      [0.03906598660618338, 0.009101725794770432, -0.013614484702978514],
      [-0.07949089697614593, 0.1412785537027271, -0.06178765672658113],
    ],
    predict: [
      [0.3045129001649924, 0.29380324547398373, 0.40168385436102394],
      [0.3629616953706878, 0.31997692098913105, 0.31706138364018116],
      [0.3636945952294494, 0.35718994510314717, 0.2791154596674034],
      [0.3133237746597743, 0.3768040978917027, 0.309872127448523],
      [0.25805254969436636, 0.35861855905567086, 0.3833288912499627],
    ],
  },
  regression: {
    loss: 0.60445070844123,
    coefGrads: [
      [
        [0.013978238408551183, 0.002185204106808687, 0.051830349123857464, 0.11798404284299846],
        [-0.00794157210839733, -0.020960810140865732, 0.05673293916587344, 0.049246718093841804],
        [-0.0125773885063452, 0.003674839771782897, -0.07989241094114484, -0.1567644433064178],
      ],
      [
        [-0.0007568024953079282, -0.0008322674422239013, -0.01746182948708522],
        [-0.000999923257564101, 0.02049256579316556, 0.0003264849179256007],
        [-0.0007727644875559871, 0.015341307992025873, 0.003078358739505945],
        [-0.00018216250427209588, -0.09349328638476577, -0.10767904320513785],
      ],
      [[0.0006569865987187891], [-0.072293448472848], [-0.10151356946730858]],
    ],
    interceptGrads: [
      [-0.01464917104145506, 0.010693764045680728, -0.06402967003832716, -0.09971215801876833],
      [0.0, -0.093118582594626, -0.2069423932572647],
      [-0.48430296668688816],
    ],
    predict: [
      0.12125700540748847, 0.08535299245936666, 0.1436193723610541, 0.12869231815281584, -0.0004365218151654443,
    ],
  },
};
