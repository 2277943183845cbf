import { applyTransform, type FittedTransform } from '../data/transform.js';
import { predictGradientBoostedTrees } from './predict/gbt.js';
import { predictLinear } from './predict/linear.js';
import { predictMlp } from './predict/mlp.js';
import type { TrainedModel, TreeFeature } from './types.js';

/**
 * The in-memory model's output for raw feature rows (as serving receives them), in the layout the ONNX graph
 * produces: classification the probabilities row-major (rows × K; binary as [1 − p, p]), regression the
 * predictions. What the exported graph is verified against, and what evaluation of the in-memory model uses.
 */
export function predictRows(
  model: TrainedModel,
  transform: FittedTransform,
  rows: readonly Readonly<Record<string, unknown>>[],
): Float64Array {
  const out =
    model.kind === 'gbt'
      ? predictGradientBoostedTrees(model, { rows: rows.length, features: treeFeatures(transform, rows) })
      : model.kind === 'linear'
        ? predictLinear(model, matrix(transform, rows))
        : predictMlp(model, matrix(transform, rows));
  if (model.task !== 'binary') return out;
  const both = new Float64Array(out.length * 2);
  for (let i = 0; i < out.length; i++) {
    both[2 * i] = 1 - out[i]!;
    both[2 * i + 1] = out[i]!;
  }
  return both;
}

function matrix(transform: FittedTransform, rows: readonly Readonly<Record<string, unknown>>[]) {
  const encoded = applyTransform(transform, rows);
  return { rows: encoded.rows, cols: encoded.columns, data: encoded.data };
}

/** Raw rows as the trees see them: float32 numbers (NaN when missing), vocabulary indexes (unknown last). */
function treeFeatures(transform: FittedTransform, rows: readonly Readonly<Record<string, unknown>>[]): TreeFeature[] {
  return transform.features.map((feature): TreeFeature => {
    if (feature.kind === 'numeric') {
      const values = new Float32Array(rows.length);
      rows.forEach((row, i) => {
        const v = row[feature.name];
        values[i] = typeof v === 'number' && Number.isFinite(v) ? v : Number.NaN;
      });
      return { kind: 'numeric', name: feature.name, values };
    }
    const { vocabulary, unknownIndex } = feature.categorical;
    const index = new Map(vocabulary.map((value, i) => [value, i]));
    const codes = new Int32Array(rows.length);
    rows.forEach((row, i) => {
      const v = row[feature.name];
      codes[i] = v === null || v === undefined ? unknownIndex : (index.get(String(v)) ?? unknownIndex);
    });
    return { kind: 'categorical', name: feature.name, codes, cardinality: vocabulary.length + 1 };
  });
}
