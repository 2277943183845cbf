/**
 * Inference for {@link MlpModel}: the reference the ONNX export is checked against, and what evaluation uses.
 * The model's nested arrays are copied once into flat input-major Float64Arrays; rows are then processed one at a
 * time through two reused buffers, skipping zero inputs (the encoded input is mostly one-hot).
 */
import type { DenseMatrix, MlpLayer, MlpModel } from '../types.js';

/** Logistic function, written to stay accurate for large |z| (no exp overflow). */
export function sigmoid(z: number): number {
  if (z >= 0) return 1 / (1 + Math.exp(-z));
  const e = Math.exp(z);
  return e / (1 + e);
}

/**
 * Softmax of `values[offset, offset + count)` written into `out[outOffset, outOffset + count)`, shifted by the
 * maximum so that exp never overflows.
 *
 * @returns log Σ exp(values) (the log-partition), which the cross-entropy needs.
 */
export function softmaxInto(
  values: Float64Array,
  offset: number,
  count: number,
  out: Float64Array,
  outOffset: number,
): number {
  let max = -Infinity;
  for (let k = 0; k < count; k++) max = Math.max(max, values[offset + k]!);
  let sum = 0;
  for (let k = 0; k < count; k++) {
    const e = Math.exp(values[offset + k]! - max);
    out[outOffset + k] = e;
    sum += e;
  }
  for (let k = 0; k < count; k++) out[outOffset + k] = out[outOffset + k]! / sum;
  return max + Math.log(sum);
}

/** Number of outputs of the model's last layer (1 for binary and regression, K for multiclass). */
export function mlpOutputCount(model: MlpModel): number {
  const last = model.layers.at(-1);
  if (!last) throw new RangeError('MLP model has no layers');
  return last.biases.length;
}

interface FlatLayer {
  readonly inputs: number;
  readonly outputs: number;
  /** w[i * outputs + o]: input-major, so a non-zero input adds one contiguous row. */
  readonly w: Float64Array;
  readonly b: Float64Array;
  readonly activation: MlpLayer['activation'];
}

function flatten(model: MlpModel, inputs: number): FlatLayer[] {
  const layers: FlatLayer[] = [];
  let width = inputs;
  for (const [index, layer] of model.layers.entries()) {
    const outputs = layer.biases.length;
    if (layer.weights.length !== outputs) {
      throw new RangeError(`MLP layer ${index}: ${layer.weights.length} weight rows for ${outputs} biases`);
    }
    const w = new Float64Array(width * outputs);
    for (let o = 0; o < outputs; o++) {
      const row = layer.weights[o]!;
      if (row.length !== width) {
        throw new RangeError(`MLP layer ${index}: expected ${width} inputs, the weights have ${row.length}`);
      }
      for (let i = 0; i < width; i++) w[i * outputs + o] = row[i]!;
    }
    layers.push({ inputs: width, outputs, w, b: Float64Array.from(layer.biases), activation: layer.activation });
    width = outputs;
  }
  return layers;
}

/**
 * Predicts with an MLP.
 *
 * @param model - A trained model (see `trainMlp`).
 * @param x - Rows encoded exactly as in training (`applyTransform`).
 * @returns Binary: P(class 1) per row; multiclass: row-major class probabilities (`rows × K`, each row sums to 1);
 *   regression: the predicted value per row.
 * @throws RangeError when `x` has a different width than the model's first layer, or the model is malformed.
 */
export function predictMlp(model: MlpModel, x: DenseMatrix): Float64Array {
  if (x.data.length !== x.rows * x.cols) {
    throw new RangeError(`matrix data holds ${x.data.length} values, expected ${x.rows} × ${x.cols}`);
  }
  const layers = flatten(model, x.cols);
  const outputs = mlpOutputCount(model);
  const widest = Math.max(...layers.map((l) => l.outputs));
  let current = new Float64Array(widest);
  let next = new Float64Array(widest);
  const result = new Float64Array(x.rows * outputs);
  for (let r = 0; r < x.rows; r++) {
    let input: Float64Array = x.data;
    let inputOffset = r * x.cols;
    for (const layer of layers) {
      const { inputs, outputs: n, w, b } = layer;
      next.set(b);
      for (let i = 0; i < inputs; i++) {
        const a = input[inputOffset + i]!;
        if (a === 0) continue;
        const wi = i * n;
        for (let o = 0; o < n; o++) next[o] = next[o]! + a * w[wi + o]!;
      }
      if (layer.activation === 'relu') {
        for (let o = 0; o < n; o++) if (next[o]! < 0) next[o] = 0;
      } else if (layer.activation === 'tanh') {
        for (let o = 0; o < n; o++) next[o] = Math.tanh(next[o]!);
      }
      [current, next] = [next, current];
      input = current;
      inputOffset = 0;
    }
    if (model.task === 'multiclass') softmaxInto(current, 0, outputs, result, r * outputs);
    else if (model.task === 'binary') result[r] = sigmoid(current[0]!);
    else result[r] = current[0]!;
  }
  return result;
}
