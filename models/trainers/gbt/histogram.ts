/**
 * Gradient histograms: per feature and bin, the sums of gradients and hessians and the row count of a node.
 *
 * Layout: one Float64Array per node, `((feature << 8) | bin) * 3` + 0 (Σ gradient), 1 (Σ hessian), 2 (count): the
 * three sums of a bin share a cache line, and float64 sums keep long float32 sums exact enough (as scikit-learn's).
 * Only the smaller child of a split is built from its rows; the larger one is the parent minus it, in the parent's
 * buffer ({@link subtractHistogram}), so buffers come from a small pool and nothing is allocated per row or per node.
 *
 * Large nodes are built in {@link HISTOGRAM_CHUNKS} fixed row chunks, each into its own buffer, then summed in chunk
 * order: the chunks can run on several threads, and the sums (hence the model) do not depend on how many there are.
 */
import { BINS_PER_FEATURE } from './binning.js';

/** Float64 slots per bin: Σ gradient, Σ hessian, count. */
export const SLOTS_PER_BIN = 3;

/**
 * Interleaved partial sums inside a chunk buffer. Consecutive rows often fall in the same bin (rows come in time
 * order, and few-valued or skewed features repeat), and each update then waits for the previous one to the same
 * slot; four copies, one per row modulo 4, break that chain (about 25% faster on the flights data).
 */
export const COPIES = 4;

/** Row chunks of a large node's histogram (fixed, so that results do not depend on the thread count). */
export const HISTOGRAM_CHUNKS = 4;

/** Nodes with fewer rows are built in one plain pass: chunk buffers and their reduction would cost more. */
export const MIN_ROWS_FOR_CHUNKS = 16_384;

/** Float64 slots of one histogram. */
export function histogramSize(features: number): number {
  return features * BINS_PER_FEATURE * SLOTS_PER_BIN;
}

/** Rows [from, to) of chunk `chunk` of the node rows [start, end): multiples of four, the last chunk takes the rest. */
export function chunkBounds(start: number, end: number, chunk: number, chunks: number): [number, number] {
  const size = Math.floor((end - start) / chunks / COPIES) * COPIES;
  const from = start + chunk * size;
  return [from, chunk === chunks - 1 ? end : from + size];
}

/** Histograms of one tree's nodes, reused across nodes and trees. */
export class HistogramPool {
  private readonly free: Float64Array[] = [];

  constructor(readonly size: number) {}

  /** A buffer with unspecified contents (the builders overwrite it). */
  acquire(): Float64Array {
    return this.free.pop() ?? new Float64Array(this.size);
  }

  release(histogram: Float64Array): void {
    this.free.push(histogram);
  }
}

/** Overwrites `histogram` with the histogram of the rows `indices[start, end)` (a small node: one pass). */
export function buildHistogramDirect(
  histogram: Float64Array,
  bins: Uint8Array,
  features: number,
  indices: Uint32Array,
  start: number,
  end: number,
  gradient: Float32Array,
  hessian: Float32Array,
  offset: number,
): void {
  histogram.fill(0);
  for (let i = start; i < end; i++) {
    const r = indices[i]!;
    const g = gradient[offset + r]!;
    const h = hessian[offset + r]!;
    const o = r * features;
    for (let f = 0; f < features; f++) {
      const k = ((f << 8) | bins[o + f]!) * SLOTS_PER_BIN;
      histogram[k] = histogram[k]! + g;
      histogram[k + 1] = histogram[k + 1]! + h;
      histogram[k + 2] = histogram[k + 2]! + 1;
    }
  }
}

/**
 * Overwrites the chunk buffer `wide` (COPIES × histogram size, slot `((f << 8) | bin) * 12 + 3 j` for copy j) with
 * the sums of the rows `indices[start, end)`: row i of each four into copy i mod 4, a ragged tail into copy 0.
 */
export function buildChunk(
  wide: Float64Array,
  bins: Uint8Array,
  features: number,
  indices: Uint32Array,
  start: number,
  end: number,
  gradient: Float32Array,
  hessian: Float32Array,
  offset: number,
): void {
  wide.fill(0);
  const stride = SLOTS_PER_BIN * COPIES;
  const aligned = end - ((end - start) % COPIES);
  for (let i = start; i < aligned; i += COPIES) {
    const r0 = indices[i]!;
    const r1 = indices[i + 1]!;
    const r2 = indices[i + 2]!;
    const r3 = indices[i + 3]!;
    const g0 = gradient[offset + r0]!;
    const g1 = gradient[offset + r1]!;
    const g2 = gradient[offset + r2]!;
    const g3 = gradient[offset + r3]!;
    const h0 = hessian[offset + r0]!;
    const h1 = hessian[offset + r1]!;
    const h2 = hessian[offset + r2]!;
    const h3 = hessian[offset + r3]!;
    const o0 = r0 * features;
    const o1 = r1 * features;
    const o2 = r2 * features;
    const o3 = r3 * features;
    for (let f = 0; f < features; f++) {
      const fb = f << 8;
      let k = (fb | bins[o0 + f]!) * stride;
      wide[k] = wide[k]! + g0;
      wide[k + 1] = wide[k + 1]! + h0;
      wide[k + 2] = wide[k + 2]! + 1;
      k = (fb | bins[o1 + f]!) * stride + 3;
      wide[k] = wide[k]! + g1;
      wide[k + 1] = wide[k + 1]! + h1;
      wide[k + 2] = wide[k + 2]! + 1;
      k = (fb | bins[o2 + f]!) * stride + 6;
      wide[k] = wide[k]! + g2;
      wide[k + 1] = wide[k + 1]! + h2;
      wide[k + 2] = wide[k + 2]! + 1;
      k = (fb | bins[o3 + f]!) * stride + 9;
      wide[k] = wide[k]! + g3;
      wide[k + 1] = wide[k + 1]! + h3;
      wide[k + 2] = wide[k + 2]! + 1;
    }
  }
  for (let i = aligned; i < end; i++) {
    const r = indices[i]!;
    const g = gradient[offset + r]!;
    const h = hessian[offset + r]!;
    const o = r * features;
    for (let f = 0; f < features; f++) {
      const k = ((f << 8) | bins[o + f]!) * stride;
      wide[k] = wide[k]! + g;
      wide[k + 1] = wide[k + 1]! + h;
      wide[k + 2] = wide[k + 2]! + 1;
    }
  }
}

/** histogram ← Σ over chunks (in order) of Σ over copies: the fixed summation order that makes results reproducible. */
export function reduceChunks(histogram: Float64Array, wides: readonly Float64Array[]): void {
  histogram.fill(0);
  for (const wide of wides) {
    for (let i = 0, j = 0; i < histogram.length; i += SLOTS_PER_BIN, j += SLOTS_PER_BIN * COPIES) {
      histogram[i] = histogram[i]! + (wide[j]! + wide[j + 3]! + wide[j + 6]! + wide[j + 9]!);
      histogram[i + 1] = histogram[i + 1]! + (wide[j + 1]! + wide[j + 4]! + wide[j + 7]! + wide[j + 10]!);
      histogram[i + 2] = histogram[i + 2]! + (wide[j + 2]! + wide[j + 5]! + wide[j + 8]! + wide[j + 11]!);
    }
  }
}

/** parent ← parent − child: the sibling's histogram, without a pass over its rows. */
export function subtractHistogram(parent: Float64Array, child: Float64Array): void {
  for (let i = 0; i < parent.length; i++) parent[i] = parent[i]! - child[i]!;
}
