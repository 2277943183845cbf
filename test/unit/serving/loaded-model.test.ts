/** LoadedModel's hand-written response JSON is exactly what JSON.stringify writes for the same predictions. */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { ModelSignature } from '../../../schema/registry.js';
import { LoadedModel, type ClassLabel, type RunOutputs } from '../../../serving/loaded-model.js';
import { ServingMetrics } from '../../../serving/metrics.js';
import { compileSignature } from '../../../serving/signature.js';
import { FakeSession, SIGNATURE } from './fixtures.js';

const metrics = new ServingMetrics({ defaultMetrics: false });
const REGRESSION: ModelSignature = {
  inputs: SIGNATURE.inputs,
  outputs: [{ name: 'prediction', type: 'double', shape: [null, 1] }],
};

function model(signature: ModelSignature, classes: readonly ClassLabel[] | undefined): LoadedModel {
  const identity = { name: 'm', version: 1, versionId: '00000000-0000-4000-8000-000000000001', sha256: 'x' };
  return new LoadedModel(
    identity,
    compileSignature(signature),
    new FakeSession(1),
    metrics.forModel('m', '1'),
    classes,
  );
}

/** Awkward values on purpose: NaN and ±Infinity (null in JSON), -0, tiny and huge magnitudes, float32 rounding. */
const VALUES = [0.1, -0, Number.NaN, 1e-45, 3.4e38, Number.POSITIVE_INFINITY, 0.5, 1 / 3, -2.5, 7];

describe('LoadedModel.predictionJsonParts', () => {
  const cases: [string, readonly ClassLabel[] | undefined, number][] = [
    ['string classes', ['no', 'yes "quoted"'], 2],
    ['boolean classes', [false, true], 2],
    ['numeric classes, three of them', [3, 1, 2], 3],
    ['no recorded classes (indices)', undefined, 2],
  ];
  for (const [name, classes, k] of cases) {
    it(`classification, ${name}: equals JSON.stringify(predictions(slice))`, () => {
      const m = model(
        { ...SIGNATURE, outputs: [SIGNATURE.outputs[0]!, { ...SIGNATURE.outputs[1]!, shape: [null, k] }] },
        classes,
      );
      const rows = 5;
      const result: RunOutputs = {
        label: new ort.Tensor(
          'int64',
          BigInt64Array.from({ length: rows }, (_, i) => BigInt(i % k)),
          [rows],
        ),
        probabilities: new ort.Tensor(
          'float32',
          Float32Array.from({ length: rows * k }, (_, i) => VALUES[i % VALUES.length]!),
          [rows, k],
        ),
      };
      for (const [offset, count] of [
        [0, rows],
        [2, 2],
        [4, 1],
      ] as const) {
        const slice = { result, offset, rows: count };
        expect(`[${m.predictionJsonParts(slice).join(',')}]`).toBe(JSON.stringify(m.predictions(slice)));
      }
    });
  }

  it('regression: equals JSON.stringify(predictions(slice)), non-finite values as null', () => {
    const m = model(REGRESSION, undefined);
    const data = Float64Array.from(VALUES);
    const slice = { result: { prediction: new ort.Tensor('float64', data, [data.length, 1]) }, offset: 1, rows: 8 };
    expect(`[${m.predictionJsonParts(slice).join(',')}]`).toBe(JSON.stringify(m.predictions(slice)));
  });

  it('begins every response with the model summary and, for classifiers, the classes', () => {
    const m = model(SIGNATURE, ['no', 'yes']);
    expect(JSON.parse(`${m.responseHead}${m.responseClasses}"predictions":[]}`)).toEqual({
      model: m.summary,
      classes: ['no', 'yes'],
      predictions: [],
    });
    expect(model(REGRESSION, undefined).responseClasses).toBe('');
  });
});
