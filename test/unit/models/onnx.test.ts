/**
 * The ONNX export of linear models and MLPs (the transform inside the graph), and the graph contract every model kind
 * shares: inputs, outputs, signature, metadata, determinism, typed export errors.
 */
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import type { FittedTransform } from '../../../data/transform.js';
import {
  exportOnnx,
  ONNX_IR_VERSION,
  ONNX_METADATA,
  ONNX_ML_OPSET,
  ONNX_OPSET,
  OnnxExportError,
  onnxSignature,
  sessionSignature,
  verifyOnnx,
} from '../../../models/onnx/index.js';
import type { LabelTask, LinearModel, MlpModel, TrainedModel } from '../../../models/types.js';
import {
  argmax,
  makeTransform,
  maxAbsDiff,
  randomLinear,
  randomMlp,
  randomRows,
  randomTrees,
  reference,
  runRows,
  toColumns,
} from './onnx-fixtures.js';

const TASKS: readonly LabelTask[] = ['binary', 'multiclass', 'regression'];
const ROWS = 250;

/** Exports, runs through the serving feeds and through verifyOnnx, and compares with the reference. */
async function checkParity(model: TrainedModel, transform: FittedTransform, seed: number): Promise<void> {
  const { bytes, signature } = exportOnnx(model, transform);
  const rows = randomRows(transform, ROWS, seed);
  const expected = reference(model, transform, rows);
  const out = await runRows(bytes, signature, rows);
  if (model.task === 'regression') {
    const prediction = out['prediction']!;
    expect(prediction.type).toBe('float64');
    expect(prediction.dims).toEqual([ROWS, 1]);
    expect(maxAbsDiff(expected, prediction.data as Float64Array)).toBeLessThanOrEqual(1e-9);
  } else {
    const k = model.task === 'binary' ? 2 : transform.label.classes!.length;
    const probabilities = out['probabilities']!;
    expect(probabilities.type).toBe('float32');
    expect(probabilities.dims).toEqual([ROWS, k]);
    expect(maxAbsDiff(expected, probabilities.data as Float32Array)).toBeLessThanOrEqual(1e-6);
    const label = out['label']!;
    expect(label.type).toBe('int64');
    expect(label.dims).toEqual([ROWS]);
    expect(Array.from(label.data as BigInt64Array, Number)).toEqual(argmax(expected, k));
  }
  // The same rows as columns, through the pre-registration check.
  const parity = await verifyOnnx(bytes, { inputs: toColumns(transform, rows), expected });
  expect(parity.rows).toBe(ROWS);
  expect(parity.maxAbsDiff).toBeLessThanOrEqual(1e-6);
}

describe('exportOnnx: linear models', () => {
  for (const task of TASKS) {
    for (const scaling of ['standard', 'none'] as const) {
      it(`${task}, scaling ${scaling}: onnxruntime matches applyTransform + the linear model`, async () => {
        const transform = makeTransform(task, scaling);
        await checkParity(randomLinear(task, transform, 11), transform, 101);
      });
    }
  }

  // The first layer is a Gemm over the numeric columns plus one Gather per categorical feature: both one-sided
  // cases build a different graph (no Gather; no Gemm, the bias broadcast instead).
  for (const only of ['numeric', 'categorical'] as const) {
    for (const task of TASKS) {
      it(`${task}, ${only} features only: onnxruntime matches the reference`, async () => {
        const full = makeTransform(task);
        const transform = { ...full, features: full.features.filter((f) => f.kind === only) };
        await checkParity(randomLinear(task, transform, 13), transform, 107);
        await checkParity(randomMlp(task, transform, 23), transform, 207);
      });
    }
  }

  it('agrees on hand-picked rows: impute, ±Infinity, unseen, "", null and a number for a categorical', async () => {
    const transform = makeTransform('binary');
    const model = randomLinear('binary', transform, 5);
    const rows = [
      { hour: 7, origin: 'ORD', distance: 100, carrier: 'AA', day_of_week: 1, dest: 'SFO' },
      { hour: null, origin: 'nowhere', distance: Infinity, day_of_week: Number.NaN, dest: '' },
      { hour: -Infinity, origin: 7, distance: 0, carrier: null, day_of_week: 7n, dest: null },
      { hour: true, origin: '', distance: -5.5, carrier: '', day_of_week: false, dest: 'LAX' },
      {},
    ];
    const expected = reference(model, transform, rows);
    const { bytes, signature } = exportOnnx(model, transform);
    const out = await runRows(bytes, signature, rows);
    expect(maxAbsDiff(expected, out['probabilities']!.data as Float32Array)).toBeLessThanOrEqual(1e-6);
  });
});

describe('exportOnnx: MLP', () => {
  for (const task of TASKS) {
    it(`${task}: relu, tanh and identity layers match the float64 forward pass`, async () => {
      const transform = makeTransform(task);
      await checkParity(randomMlp(task, transform, 21), transform, 202);
    });
  }

  it('runs a single-layer MLP (logits straight from the input)', async () => {
    const transform = makeTransform('multiclass');
    const linear = randomLinear('multiclass', transform, 3);
    const model: MlpModel = {
      kind: 'mlp',
      task: 'multiclass',
      layers: [{ weights: linear.weights, biases: linear.intercepts, activation: 'identity' }],
    };
    await checkParity(model, transform, 303);
  });
});

describe('the graph contract', () => {
  const transform = makeTransform('multiclass');

  it('has one [N, 1] input per feature, named by the feature, double or string, and the signature says so', async () => {
    for (const model of [randomLinear('multiclass', transform, 1), randomTrees('multiclass', transform, 1)]) {
      const { bytes, signature } = exportOnnx(model, transform);
      expect(signature).toEqual({
        inputs: [
          { name: 'hour', type: 'double', shape: [null, 1] },
          { name: 'origin', type: 'string', shape: [null, 1] },
          { name: 'distance', type: 'double', shape: [null, 1] },
          { name: 'carrier', type: 'string', shape: [null, 1] },
          { name: 'day_of_week', type: 'double', shape: [null, 1] },
          { name: 'dest', type: 'string', shape: [null, 1] },
        ],
        outputs: [
          { name: 'label', type: 'int64', shape: [null] },
          { name: 'probabilities', type: 'float', shape: [null, 3] },
        ],
      });
      expect(signature).toEqual(onnxSignature(model, transform));
      // What onnxruntime reads from the bytes is what the signature promises.
      const session = await ort.InferenceSession.create(bytes);
      expect(sessionSignature(session)).toEqual(signature);
      await session.release();
    }
  });

  it('names the outputs label/probabilities (binary K = 2) and prediction (regression)', () => {
    expect(onnxSignature(randomLinear('binary', makeTransform('binary'), 1), makeTransform('binary')).outputs).toEqual([
      { name: 'label', type: 'int64', shape: [null] },
      { name: 'probabilities', type: 'float', shape: [null, 2] },
    ]);
    const regression = makeTransform('regression');
    expect(onnxSignature(randomMlp('regression', regression, 1), regression).outputs).toEqual([
      { name: 'prediction', type: 'double', shape: [null, 1] },
    ]);
  });

  it('is deterministic: the same model and transform give the same bytes', () => {
    for (const task of TASKS) {
      const t = makeTransform(task);
      for (const make of [randomLinear, randomMlp, randomTrees]) {
        const a = exportOnnx(make(task, t, 9), t).bytes;
        const b = exportOnnx(make(task, t, 9), t).bytes;
        expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
      }
    }
    const t = makeTransform('binary');
    const model = randomLinear('binary', t, 9);
    const other = exportOnnx(model, t, { modelName: 'flights-delay' }).bytes;
    expect(Buffer.from(other).equals(Buffer.from(exportOnnx(model, t).bytes))).toBe(false);
  });

  it('declares IR 8, opset 17, ai.onnx.ml 3, the producer and the label metadata', () => {
    const { bytes } = exportOnnx(randomLinear('multiclass', transform, 1), transform, {
      modelName: 'flights',
      producerVersion: '0.1.0',
    });
    const model = onnxProto.onnx.ModelProto.decode(bytes);
    expect(Number(model.irVersion)).toBe(ONNX_IR_VERSION);
    expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([
      ['', ONNX_OPSET],
      ['ai.onnx.ml', ONNX_ML_OPSET],
    ]);
    expect(model.producerName).toBe('temporal-mlops');
    expect(model.producerVersion).toBe('0.1.0');
    expect(model.graph?.name).toBe('flights');
    const metadata = Object.fromEntries(model.metadataProps.map((p) => [p.key, p.value]));
    expect(metadata).toEqual({
      [ONNX_METADATA.classes]: '["early","late","on-time"]',
      [ONNX_METADATA.format]: '1',
      [ONNX_METADATA.label]: 'delayed',
      [ONNX_METADATA.modelKind]: 'linear',
      [ONNX_METADATA.task]: 'multiclass',
    });
  });

  it('loads in fresh sessions and gives the same outputs for a single row', async () => {
    const model = randomMlp('multiclass', transform, 4);
    const { bytes, signature } = exportOnnx(model, transform);
    const rows = randomRows(transform, 1, 8);
    const first = await runRows(bytes, signature, rows);
    const second = await runRows(Uint8Array.from(bytes), signature, rows);
    expect(first['probabilities']!.dims).toEqual([1, 3]);
    expect(Array.from(second['probabilities']!.data as Float32Array)).toEqual(
      Array.from(first['probabilities']!.data as Float32Array),
    );
  });

  describe('rejects what it cannot express, with OnnxExportError', () => {
    const binary = makeTransform('binary');
    const linear = randomLinear('binary', binary, 1);
    const withFeatures = (t: FittedTransform, features: FittedTransform['features']): FittedTransform => ({
      ...t,
      features,
    });
    const cases: [string, () => unknown][] = [
      ['a task mismatch', () => exportOnnx(linear, makeTransform('regression'))],
      ['too few weights per row', () => exportOnnx({ ...linear, weights: [linear.weights[0]!.slice(1)] }, binary)],
      [
        'a binary model with two outputs',
        () =>
          exportOnnx(randomLinear('multiclass', makeTransform('multiclass'), 1), {
            ...binary,
            label: { ...binary.label, task: 'multiclass' },
          }),
      ],
      [
        'a class count that differs from the label',
        () => exportOnnx({ ...randomLinear('multiclass', transform, 1), weights: [[0], [0]] }, transform),
      ],
      ['a non-finite weight', () => exportOnnx({ ...linear, intercepts: [Number.NaN] } satisfies LinearModel, binary)],
      [
        'an MLP layer of the wrong width',
        () => {
          const mlp = randomMlp('binary', binary, 1);
          return exportOnnx({ ...mlp, layers: [mlp.layers[0]!, mlp.layers[2]!] }, binary);
        },
      ],
      [
        'a feature named like an output',
        () =>
          exportOnnx(
            linear,
            withFeatures(
              binary,
              binary.features.map((f, i) => (i === 0 ? { ...f, name: 'label' } : f)),
            ),
          ),
      ],
      [
        'two features with one name',
        () =>
          exportOnnx(
            linear,
            withFeatures(
              binary,
              binary.features.map((f, i) => (i === 1 ? { ...f, name: 'hour' } : f)),
            ),
          ),
      ],
      [
        'a vocabulary holding "" (the missing marker)',
        () =>
          exportOnnx(
            linear,
            withFeatures(
              binary,
              binary.features.map((f) =>
                f.kind === 'categorical' && f.name === 'dest'
                  ? { ...f, categorical: { vocabulary: ['LAX', ''], unknownIndex: 2 } }
                  : f,
              ),
            ),
          ),
      ],
      ['no features', () => exportOnnx({ ...linear, weights: [[]] }, withFeatures(binary, []))],
    ];
    for (const [name, run] of cases) {
      it(name, () => {
        expect(run).toThrow(OnnxExportError);
      });
    }

    it('says why an empty-string category cannot be exported, and how to fix the data', () => {
      const t = withFeatures(
        binary,
        binary.features.map((f) =>
          f.name === 'dest' && f.kind === 'categorical'
            ? { ...f, categorical: { vocabulary: ['LAX', ''], unknownIndex: 2 } }
            : f,
        ),
      );
      expect(() => exportOnnx(randomLinear('binary', t, 1), t)).toThrow(/feature dest: .*empty string.*NULLIF/);
    });
  });
});
