/**
 * Inference for {@link LinearModel}: the reference the ONNX export is checked against, and what evaluation uses.
 * Reads dense or CSR input (models/dataset.ts), touching only non-zeros.
 */
import type { SparseMatrix } from '../dataset.js';
import type { DenseMatrix, LinearModel } from '../types.js';

/**
 * Predictions of a linear model, row by row:
 * - binary: P(class 1) = sigmoid(b + w·x), one value per row;
 * - multiclass: softmax over the K outputs, row-major (`rows × K` values, each row summing to 1);
 * - regression: b + w·x, one value per row.
 *
 * Pure and deterministic; accurate for large |logits| (no exp overflow).
 *
 * @throws RangeError when the matrix's column count differs from the model's input width.
 */
export function predictLinear(model: LinearModel, x: DenseMatrix | SparseMatrix): Float64Array {
  const outputs = model.weights.length;
  const cols = model.weights[0]?.length ?? 0;
  if (x.cols !== cols) throw new RangeError(`the model takes ${cols} columns; the matrix has ${x.cols}`);
  // Feature-major copy: a non-zero input touches K contiguous weights.
  const w = new Float64Array(cols * outputs);
  for (let k = 0; k < outputs; k++) {
    const row = model.weights[k]!;
    for (let j = 0; j < cols; j++) w[j * outputs + k] = row[j]!;
  }
  const z = new Float64Array(outputs);
  const out = new Float64Array(x.rows * (model.task === 'multiclass' ? outputs : 1));
  for (let r = 0; r < x.rows; r++) {
    for (let k = 0; k < outputs; k++) z[k] = model.intercepts[k]!;
    if ('data' in x) {
      const base = r * cols;
      for (let j = 0; j < cols; j++) {
        const v = x.data[base + j]!;
        if (v === 0) continue;
        for (let k = 0; k < outputs; k++) z[k] = z[k]! + v * w[j * outputs + k]!;
      }
    } else {
      for (let p = x.indptr[r]!; p < x.indptr[r + 1]!; p++) {
        const v = x.values[p]!;
        const base = x.indices[p]! * outputs;
        for (let k = 0; k < outputs; k++) z[k] = z[k]! + v * w[base + k]!;
      }
    }
    if (model.task === 'regression') out[r] = z[0]!;
    else if (model.task === 'binary') out[r] = logistic(z[0]!);
    else {
      let max = -Infinity;
      for (let k = 0; k < outputs; k++) if (z[k]! > max) max = z[k]!;
      let sum = 0;
      for (let k = 0; k < outputs; k++) {
        const e = Math.exp(z[k]! - max);
        z[k] = e;
        sum += e;
      }
      const base = r * outputs;
      for (let k = 0; k < outputs; k++) out[base + k] = z[k]! / sum;
    }
  }
  return out;
}

/** The logistic function 1 / (1 + e^−z), without overflow. */
export function logistic(z: number): number {
  if (z >= 0) return 1 / (1 + Math.exp(-z));
  const e = Math.exp(z);
  return e / (1 + e);
}
