/**
 * The first layer's view of the encoded input: the dense matrix as it is, or compressed sparse rows built once per
 * training (one-hot data is mostly zeros). Both give bit-identical models.
 */
import { TrainingParameterError, type EncodedDataset } from '../../types.js';
import type { ResolvedMlpParams } from './params.js';

export type Input =
  | { readonly kind: 'dense'; readonly data: Float64Array; readonly cols: number }
  | {
      readonly kind: 'sparse';
      /** Non-zeros of row r are at [rowStart[r], rowStart[r + 1]). */
      readonly rowStart: Int32Array;
      readonly colIndex: Int32Array;
      readonly values: Float64Array;
    };

/** Below this share of non-zeros, `auto` reads the input as sparse rows (one-hot data sits far below it). */
const SPARSE_DENSITY = 0.25;

/**
 * Checks the matrix (finite values) and builds the first layer's view of it, in one pass: the non-zeros are
 * collected into growing buffers while counting, and dropped if the matrix turns out too dense for `auto`.
 */
export function prepareInput(data: EncodedDataset, layout: ResolvedMlpParams['inputLayout']): Input {
  const { rows, cols, data: x } = data.x;
  const collect = layout !== 'dense';
  const limit = layout === 'auto' ? Math.floor(SPARSE_DENSITY * x.length) : 2 ** 31 - 2;
  const rowStart = collect ? new Int32Array(rows + 1) : undefined;
  let colIndex: Int32Array = new Int32Array(collect ? Math.min(limit, rows * 8) + 1 : 0);
  let values: Float64Array = new Float64Array(colIndex.length);
  let sparse = collect;
  let p = 0;
  for (let r = 0; r < rows; r++) {
    if (rowStart) rowStart[r] = p;
    const base = r * cols;
    for (let j = 0; j < cols; j++) {
      const v = x[base + j]!;
      if (v === 0) continue;
      // NaN and ±Infinity are the only values for which v - v is not 0.
      if (v - v !== 0) throw new TrainingParameterError('x', `value at row ${r}, column ${j} is ${v}`);
      if (!sparse) continue;
      if (p === colIndex.length) {
        if (p >= limit) {
          if (layout === 'sparse') throw new TrainingParameterError('inputLayout', 'too many non-zeros for sparse');
          // Too dense for `auto`: keep checking values, stop collecting.
          sparse = false;
          colIndex = new Int32Array(0);
          values = new Float64Array(0);
          continue;
        }
        const grown = Math.min(limit, 2 * p) + 1;
        colIndex = growInt32(colIndex, grown);
        values = growFloat64(values, grown);
      }
      colIndex[p] = j;
      values[p] = v;
      p++;
    }
  }
  if (!sparse || !rowStart) return { kind: 'dense', data: x, cols };
  rowStart[rows] = p;
  return { kind: 'sparse', rowStart, colIndex: colIndex.subarray(0, p), values: values.subarray(0, p) };
}

function growInt32(a: Int32Array, size: number): Int32Array {
  const b = new Int32Array(size);
  b.set(a);
  return b;
}

function growFloat64(a: Float64Array, size: number): Float64Array {
  const b = new Float64Array(size);
  b.set(a);
  return b;
}
