/**
 * What the linear trainers read, checked once, and how they read it. The input is mostly one-hot, so by default it is
 * read as compressed sparse rows (given as such, or built once from the dense matrix): a row costs its non-zeros, not
 * its width. The dense path skips zeros in the same order, so both give bit-identical models.
 */
import { z } from 'zod';
import type { SparseEncodedDataset, SparseMatrix } from '../../dataset.js';
import { TrainingParameterError, type EncodedDataset } from '../../types.js';

/** What the linear trainers read: the contract's dense dataset, or the same matrix as CSR (models/dataset.ts). */
export type LinearTrainingData = EncodedDataset | SparseEncodedDataset;

/** Both trainers' `inputLayout`: `auto` reads CSR when at most a quarter of a dense matrix is non-zero. */
export const inputLayoutSchema = z.enum(['auto', 'dense', 'sparse']).default('auto');

/** Checks what both trainers need: matching lengths, finite values, well-formed CSR, finite non-negative weights. */
export function checkLengths(data: LinearTrainingData): void {
  const { rows, cols } = data.x;
  if (data.y.length !== rows) throw new TrainingParameterError('y', `${data.y.length} labels for ${rows} rows`);
  if (data.weights && data.weights.length !== rows) {
    throw new TrainingParameterError('weights', `${data.weights.length} weights for ${rows} rows`);
  }
  if (rows === 0) throw new TrainingParameterError('x', 'no rows');
  const values = 'data' in data.x ? data.x.data : data.x.values;
  if ('data' in data.x && values.length !== rows * cols) {
    throw new TrainingParameterError('x', `${values.length} values for ${rows} × ${cols}`);
  }
  for (let k = 0; k < values.length; k++) {
    if (!Number.isFinite(values[k]!)) throw new TrainingParameterError('x', `value ${k} is ${values[k]}`);
  }
  if (!('data' in data.x)) {
    const { indptr, indices } = data.x;
    if (indptr.length !== rows + 1 || indptr[0] !== 0 || indptr[rows] !== indices.length) {
      throw new TrainingParameterError('x', 'malformed CSR offsets');
    }
    for (let r = 0; r < rows; r++) {
      let previous = -1;
      for (let k = indptr[r]!; k < indptr[r + 1]!; k++) {
        const j = indices[k]!;
        if (j <= previous || j >= cols) throw new TrainingParameterError('x', `bad column index in row ${r}`);
        previous = j;
      }
    }
  }
  if (data.weights) {
    for (let i = 0; i < rows; i++) {
      const w = data.weights[i]!;
      if (!(w >= 0 && Number.isFinite(w))) throw new TrainingParameterError('weights', `weight ${i} is ${w}`);
    }
  }
}

/** The matrix as a trainer reads it. */
export type Design =
  | { readonly kind: 'dense'; readonly rows: number; readonly cols: number; readonly data: Float64Array }
  | {
      readonly kind: 'sparse';
      readonly rows: number;
      readonly cols: number;
      readonly indptr: Int32Array;
      readonly indices: Int32Array;
      readonly values: Float64Array;
    };

/** The matrix in the layout `layout` asks for (see {@link inputLayoutSchema}). */
export function toDesign(x: EncodedDataset['x'] | SparseMatrix, layout: 'auto' | 'dense' | 'sparse'): Design {
  if (!('data' in x)) {
    if (layout === 'dense') throw new TrainingParameterError('inputLayout', 'the input is sparse');
    return { kind: 'sparse', ...x };
  }
  if (layout === 'dense') return { kind: 'dense', rows: x.rows, cols: x.cols, data: x.data };
  let nonZeros = 0;
  for (let k = 0; k < x.data.length; k++) if (x.data[k] !== 0) nonZeros++;
  if (layout === 'auto' && nonZeros > 0.25 * x.data.length) {
    return { kind: 'dense', rows: x.rows, cols: x.cols, data: x.data };
  }
  if (nonZeros >= 2 ** 31) throw new TrainingParameterError('inputLayout', 'too many non-zeros for sparse');
  const indptr = new Int32Array(x.rows + 1);
  const indices = new Int32Array(nonZeros);
  const values = new Float64Array(nonZeros);
  let p = 0;
  for (let r = 0; r < x.rows; r++) {
    const base = r * x.cols;
    for (let j = 0; j < x.cols; j++) {
      const v = x.data[base + j]!;
      if (v !== 0) {
        indices[p] = j;
        values[p++] = v;
      }
    }
    indptr[r + 1] = p;
  }
  return { kind: 'sparse', rows: x.rows, cols: x.cols, indptr, indices, values };
}

/** Visits the non-zeros of row r (both layouts, ascending columns). */
export function forEachNonZero(design: Design, r: number, visit: (j: number, v: number) => void): void {
  if (design.kind === 'sparse') {
    for (let k = design.indptr[r]!; k < design.indptr[r + 1]!; k++) visit(design.indices[k]!, design.values[k]!);
  } else {
    const base = r * design.cols;
    for (let j = 0; j < design.cols; j++) {
      const v = design.data[base + j]!;
      if (v !== 0) visit(j, v);
    }
  }
}
