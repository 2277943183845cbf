/**
 * Distinct rows. Encoded tabular data repeats itself (flights: 966k rows, 169k distinct), and the log loss of k equal
 * rows is a function of their summed label weights: the logistic objectives run over distinct rows, each with its
 * total weight and its weight per label. Same objective, fewer exp/log and fewer passes over memory. Equal rows are
 * merged once before training, when that removes at least a fifth of them.
 */
import type { Design } from './design.js';

/** The rows the objective iterates over: distinct feature rows, each with its label weights. */
export interface WeightedRows {
  readonly design: Design;
  /** Σ weights of the row's copies. */
  readonly total: Float64Array;
  /** The row's (label, weight) pairs are at [labelStart[u], labelStart[u + 1]), labels ascending. */
  readonly labelStart: Int32Array;
  readonly labels: Int32Array;
  readonly labelWeights: Float64Array;
}

/** Rows are merged only when this leaves at most this fraction of them (else merging costs more than it saves). */
const MERGE_BELOW = 0.8;

/**
 * Groups equal rows (same non-zero columns, same values) in order of first appearance; label weights are summed in
 * row order. Without enough repetition the rows stay as they are, one pair per row.
 */
export function weightedRows(design: Design, y: Float64Array, c: Float64Array, classCount: number): WeightedRows {
  const rows = design.rows;
  const { id, first } = distinctRows(design);
  const distinct = first.length;
  if (distinct > MERGE_BELOW * rows) {
    const labelStart = Int32Array.from({ length: rows + 1 }, (_, i) => i);
    return { design, total: c, labelStart, labels: Int32Array.from(y), labelWeights: c };
  }
  // Rows of each distinct row, in row order (counting sort by id).
  const start = new Int32Array(distinct + 1);
  for (let r = 0; r < rows; r++) start[id[r]! + 1]!++;
  for (let u = 0; u < distinct; u++) start[u + 1]! += start[u]!;
  const members = new Int32Array(rows);
  const fill = start.slice(0, distinct);
  for (let r = 0; r < rows; r++) members[fill[id[r]!]!++] = r;

  const total = new Float64Array(distinct);
  const labelStart = new Int32Array(distinct + 1);
  const labels: number[] = [];
  const labelWeights: number[] = [];
  const perLabel = new Float64Array(classCount);
  const seen = new Uint8Array(classCount);
  const touched: number[] = [];
  for (let u = 0; u < distinct; u++) {
    for (let m = start[u]!; m < start[u + 1]!; m++) {
      const r = members[m]!;
      const label = y[r]!;
      if (!seen[label]) {
        seen[label] = 1;
        touched.push(label);
      }
      perLabel[label] = perLabel[label]! + c[r]!;
      total[u] = total[u]! + c[r]!;
    }
    touched.sort((a, b) => a - b);
    for (const label of touched) {
      labels.push(label);
      labelWeights.push(perLabel[label]!);
      perLabel[label] = 0;
      seen[label] = 0;
    }
    touched.length = 0;
    labelStart[u + 1] = labels.length;
  }
  return {
    design: selectRows(design, first),
    total,
    labelStart,
    labels: Int32Array.from(labels),
    labelWeights: Float64Array.from(labelWeights),
  };
}

/** `id[r]`: the distinct row of row r (numbered by first appearance); `first[u]`: its first row. */
function distinctRows(design: Design): { id: Int32Array; first: Int32Array } {
  const rows = design.rows;
  let capacity = 1024;
  while (capacity < 2 * rows) capacity *= 2;
  const mask = capacity - 1;
  const table = new Int32Array(capacity).fill(-1);
  const id = new Int32Array(rows);
  const first: number[] = [];
  const bits = new Int32Array(2);
  const word = new Float64Array(bits.buffer);
  const mix = (h: number, v: number) => Math.imul(h ^ v, 0x01000193);
  const hashValue = (h: number, j: number, v: number) => {
    word[0] = v;
    return mix(mix(mix(h, j), bits[0]!), bits[1]!);
  };
  for (let r = 0; r < rows; r++) {
    let h = 0x811c9dc5 | 0;
    if (design.kind === 'sparse') {
      for (let k = design.indptr[r]!; k < design.indptr[r + 1]!; k++) {
        const v = design.values[k]!;
        if (v !== 0) h = hashValue(h, design.indices[k]!, v);
      }
    } else {
      const base = r * design.cols;
      for (let j = 0; j < design.cols; j++) {
        const v = design.data[base + j]!;
        if (v !== 0) h = hashValue(h, j, v);
      }
    }
    h ^= h >>> 16;
    let slot = h & mask;
    for (;;) {
      const u = table[slot]!;
      if (u === -1) {
        table[slot] = first.length;
        id[r] = first.length;
        first.push(r);
        break;
      }
      if (sameRow(design, first[u]!, r)) {
        id[r] = u;
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
  return { id, first: Int32Array.from(first) };
}

/** Whether rows a and b have the same non-zeros (explicit zeros ignored). */
function sameRow(design: Design, a: number, b: number): boolean {
  if (design.kind === 'dense') {
    const [ba, bb] = [a * design.cols, b * design.cols];
    for (let j = 0; j < design.cols; j++) if (design.data[ba + j] !== design.data[bb + j]) return false;
    return true;
  }
  const { indptr, indices, values } = design;
  let p = indptr[a]!;
  let q = indptr[b]!;
  const [endA, endB] = [indptr[a + 1]!, indptr[b + 1]!];
  for (;;) {
    while (p < endA && values[p] === 0) p++;
    while (q < endB && values[q] === 0) q++;
    if (p === endA || q === endB) return p === endA && q === endB;
    if (indices[p] !== indices[q] || values[p] !== values[q]) return false;
    p++;
    q++;
  }
}

/** The given rows, in that order, in the same layout (explicit zeros dropped). */
function selectRows(design: Design, rows: Int32Array): Design {
  if (design.kind === 'dense') {
    const data = new Float64Array(rows.length * design.cols);
    for (let u = 0; u < rows.length; u++) {
      data.set(design.data.subarray(rows[u]! * design.cols, (rows[u]! + 1) * design.cols), u * design.cols);
    }
    return { kind: 'dense', rows: rows.length, cols: design.cols, data };
  }
  let nonZeros = 0;
  for (const r of rows) {
    for (let k = design.indptr[r]!; k < design.indptr[r + 1]!; k++) if (design.values[k] !== 0) nonZeros++;
  }
  const indptr = new Int32Array(rows.length + 1);
  const indices = new Int32Array(nonZeros);
  const values = new Float64Array(nonZeros);
  let p = 0;
  for (let u = 0; u < rows.length; u++) {
    const r = rows[u]!;
    for (let k = design.indptr[r]!; k < design.indptr[r + 1]!; k++) {
      const v = design.values[k]!;
      if (v !== 0) {
        indices[p] = design.indices[k]!;
        values[p++] = v;
      }
    }
    indptr[u + 1] = p;
  }
  return { kind: 'sparse', rows: rows.length, cols: design.cols, indptr, indices, values };
}
