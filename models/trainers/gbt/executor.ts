/**
 * Where the row-parallel work of boosting runs: gradients, histograms and partitions, split into fixed chunks.
 *
 * {@link SerialExecutor} runs the chunks one after the other; {@link ParallelExecutor} lets helper threads claim
 * them as well (shared memory, Atomics, no messages per task). Chunk boundaries and the order in which chunk results
 * are combined do not depend on the number of threads, so both give the same model bit for bit.
 */
import type { TreeDataset } from '../../types.js';
import type { GbtLoss } from './losses.js';
import {
  buildChunk,
  buildHistogramDirect,
  chunkBounds,
  COPIES,
  HISTOGRAM_CHUNKS,
  histogramSize,
  MIN_ROWS_FOR_CHUNKS,
  reduceChunks,
} from './histogram.js';
import { partitionChunk, partitionInPlace } from './partition.js';

/** Row chunks of the gradient pass (fixed: the loss is summed per chunk, then in chunk order). */
export const GRADIENT_CHUNKS = 8;

/** Row chunks of a partition done by several threads (any number gives the same, stable, result). */
export const PARTITION_CHUNKS = 4;

/** Nodes with fewer rows are partitioned by one thread: waking helpers would cost more than it saves. */
export const MIN_ROWS_FOR_PARALLEL_PARTITION = 65_536;

/** The arrays every thread reads or writes (SharedArrayBuffer-backed when there are helper threads). */
export interface SharedArrays {
  /** Training rows. */
  readonly rows: number;
  readonly features: number;
  readonly outputs: number;
  /** Row-major bins of the training rows. */
  readonly bins: Uint8Array;
  /** Row indexes partitioned by the tree being grown. */
  readonly indices: Uint32Array;
  /** Scratch of the partitions (the left side when parallel). */
  readonly left: Uint32Array;
  readonly right: Uint32Array;
  /** Output-major, `outputs × rows`. */
  readonly gradient: Float32Array;
  readonly hessian: Float32Array;
  readonly raw: Float64Array;
  readonly y: Float64Array;
  readonly weights: Float64Array | undefined;
  /** One buffer per histogram chunk (COPIES × histogram size each). */
  readonly wides: readonly Float64Array[];
}

/**
 * The training rows' arrays the executor works on; in SharedArrayBuffers when helper threads will share them. The
 * histogram chunk buffers are allocated here once (COPIES interleaved histograms per chunk).
 */
export function allocateArrays(
  data: TreeDataset,
  train: Uint32Array,
  bins: Uint8Array,
  outputs: number,
  shared: boolean,
): SharedArrays {
  const n = train.length;
  const features = data.features.length;
  const buffer = (bytes: number) => (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  const y = new Float64Array(buffer(n * 8));
  for (let i = 0; i < n; i++) y[i] = data.y[train[i]!]!;
  let weights: Float64Array | undefined;
  if (data.weights) {
    const w = data.weights;
    weights = new Float64Array(buffer(n * 8));
    for (let i = 0; i < n; i++) weights[i] = w[train[i]!]!;
  }
  return {
    rows: n,
    features,
    outputs,
    bins,
    indices: new Uint32Array(buffer(n * 4)),
    left: new Uint32Array(buffer(n * 4)),
    right: new Uint32Array(buffer(n * 4)),
    gradient: new Float32Array(buffer(n * outputs * 4)),
    hessian: new Float32Array(buffer(n * outputs * 4)),
    raw: new Float64Array(buffer(n * outputs * 8)),
    y,
    weights,
    wides: Array.from(
      { length: HISTOGRAM_CHUNKS },
      () => new Float64Array(buffer(histogramSize(features) * COPIES * 8)),
    ),
  };
}

/** Task state shared with helper threads. */
export interface Control {
  /** See the SLOT_* constants. */
  readonly ints: Int32Array;
  /** The bin table of the partition being run. */
  readonly table: Uint8Array;
  /** Per chunk: the loss sum of a gradient chunk. */
  readonly sums: Float64Array;
  /** Per chunk: the left count of a partition chunk. */
  readonly counts: Int32Array;
}

export const SLOT_GENERATION = 0;
/** (generation << 8) | next unclaimed chunk: a claim is only valid for the generation it names. */
export const SLOT_NEXT = 1;
export const SLOT_DONE = 2;
export const SLOT_TASK = 3;
export const SLOT_CHUNKS = 4;
export const SLOT_START = 5;
export const SLOT_END = 6;
export const SLOT_OFFSET = 7;
export const SLOT_FEATURE = 8;
/** Set by a helper whose chunk threw: the main thread fails the training instead of waiting forever. */
export const SLOT_FAILED = 9;
/** Helpers asleep in Atomics.wait: a task wakes them (a futex syscall) only when there are some. */
export const SLOT_HELPERS_ASLEEP = 10;
/** 1 while the main thread sleeps waiting for chunks: a finished chunk wakes it only then. */
export const SLOT_MAIN_ASLEEP = 11;
export const CONTROL_SLOTS = 16;

/**
 * Polls of a shared slot before a thread goes to sleep on it (tens of microseconds). Waking a sleeping thread costs a
 * syscall and often a reschedule, while the gaps between tasks of a tree (split finding) are short: spinning through
 * them makes a task cost a few loads instead.
 */
export const SPIN_POLLS = 20_000;

export const TASK_HISTOGRAM = 1;
export const TASK_PARTITION = 2;
export const TASK_GRADIENTS = 3;
export const TASK_EXIT = 4;

/** Runs chunk `chunk` of the task described in `control.ints`; both the main thread and helpers call this. */
export function runChunk(arrays: SharedArrays, loss: GbtLoss, control: Control, chunk: number): void {
  const ints = control.ints;
  const task = ints[SLOT_TASK]!;
  const chunks = ints[SLOT_CHUNKS]!;
  const start = ints[SLOT_START]!;
  const end = ints[SLOT_END]!;
  const [from, to] = chunkBounds(start, end, chunk, chunks);
  if (task === TASK_HISTOGRAM) {
    const { bins, features, indices, gradient, hessian } = arrays;
    buildChunk(arrays.wides[chunk]!, bins, features, indices, from, to, gradient, hessian, ints[SLOT_OFFSET]!);
  } else if (task === TASK_PARTITION) {
    const { bins, features, indices, left, right } = arrays;
    const feature = ints[SLOT_FEATURE]!;
    control.counts[chunk] = partitionChunk(indices, left, right, bins, features, feature, control.table, from, to);
  } else if (task === TASK_GRADIENTS) {
    // Each output's block of rows [from, to): the sum over outputs is per row, so only one chunk touches a row.
    const { raw, y, weights, gradient, hessian } = arrays;
    control.sums[chunk] = loss.gradients(raw, y, weights, gradient, hessian, from, to);
  }
}

/** Runs the boosting loop's row-parallel passes. */
export interface Executor {
  readonly arrays: SharedArrays;
  /** Overwrites `target` with the histogram of indices[start, end), gradients at `offset` (output × rows). */
  histogram(target: Float64Array, start: number, end: number, offset: number): void;
  /** Stable partition of indices[start, end) by the bin table of `feature`; returns where the right part starts. */
  partition(start: number, end: number, feature: number, table: Uint8Array): number;
  /** Gradients and hessians of every row at the current raw scores; returns Σ weight × loss. */
  gradients(): number;
  /** Stops helper threads; idempotent. */
  close(): Promise<void>;
}

/** The chunked passes on the calling thread only. */
export class SerialExecutor implements Executor {
  protected readonly control: Control;

  constructor(
    readonly arrays: SharedArrays,
    protected readonly loss: GbtLoss,
    control?: Control,
  ) {
    this.control = control ?? createControl(false);
  }

  histogram(target: Float64Array, start: number, end: number, offset: number): void {
    const { bins, features, indices, gradient, hessian, wides } = this.arrays;
    if (end - start < MIN_ROWS_FOR_CHUNKS) {
      buildHistogramDirect(target, bins, features, indices, start, end, gradient, hessian, offset);
      return;
    }
    this.run(TASK_HISTOGRAM, HISTOGRAM_CHUNKS, start, end, offset, 0);
    reduceChunks(target, wides);
  }

  partition(start: number, end: number, feature: number, table: Uint8Array): number {
    const { bins, features, indices, left } = this.arrays;
    if (end - start < MIN_ROWS_FOR_PARALLEL_PARTITION || !this.parallel()) {
      return partitionInPlace(indices, left, bins, features, feature, table, start, end);
    }
    this.control.table.set(table);
    this.run(TASK_PARTITION, PARTITION_CHUNKS, start, end, 0, feature);
    // Concatenate the chunks' left parts, then their right parts.
    const { right } = this.arrays;
    const counts = this.control.counts;
    let position = start;
    for (let c = 0; c < PARTITION_CHUNKS; c++) {
      const [from] = chunkBounds(start, end, c, PARTITION_CHUNKS);
      indices.set(left.subarray(from, from + counts[c]!), position);
      position += counts[c]!;
    }
    const middle = position;
    for (let c = 0; c < PARTITION_CHUNKS; c++) {
      const [from, to] = chunkBounds(start, end, c, PARTITION_CHUNKS);
      const count = to - from - counts[c]!;
      indices.set(right.subarray(from, from + count), position);
      position += count;
    }
    return middle;
  }

  gradients(): number {
    this.run(TASK_GRADIENTS, GRADIENT_CHUNKS, 0, this.arrays.rows, 0, 0);
    let sum = 0;
    for (let c = 0; c < GRADIENT_CHUNKS; c++) sum += this.control.sums[c]!;
    return sum;
  }

  async close(): Promise<void> {}

  /** Whether helpers share the chunks (partitions are chunked only then: in place is cheaper alone). */
  protected parallel(): boolean {
    return false;
  }

  /** Publishes a task and runs its chunks (here: all of them, in order). */
  protected run(task: number, chunks: number, start: number, end: number, offset: number, feature: number): void {
    const ints = this.control.ints;
    ints[SLOT_TASK] = task;
    ints[SLOT_CHUNKS] = chunks;
    ints[SLOT_START] = start;
    ints[SLOT_END] = end;
    ints[SLOT_OFFSET] = offset;
    ints[SLOT_FEATURE] = feature;
    for (let c = 0; c < chunks; c++) runChunk(this.arrays, this.loss, this.control, c);
  }
}

/** A control block, in shared memory when helpers will see it. */
export function createControl(shared: boolean): Control {
  const make = (bytes: number) => (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  return {
    ints: new Int32Array(make(CONTROL_SLOTS * 4)),
    table: new Uint8Array(make(256)),
    sums: new Float64Array(make(GRADIENT_CHUNKS * 8)),
    counts: new Int32Array(make(PARTITION_CHUNKS * 4)),
  };
}

/**
 * Claims chunks of the current generation until none is left; returns how many it ran. A claim is a compare-and-swap
 * on SLOT_NEXT that names the generation, so a thread that woke late for an earlier task cannot take a chunk of the
 * next one with the earlier task's view of it.
 */
export function claimChunks(arrays: SharedArrays, loss: GbtLoss, control: Control, generation: number): number {
  const ints = control.ints;
  const tag = (generation & 0x7fffff) << 8;
  let ran = 0;
  for (;;) {
    const next = Atomics.load(ints, SLOT_NEXT);
    if ((next & ~0xff) !== tag) return ran;
    const chunk = next & 0xff;
    if (chunk >= ints[SLOT_CHUNKS]!) return ran;
    if (Atomics.compareExchange(ints, SLOT_NEXT, next, next + 1) !== next) continue;
    runChunk(arrays, loss, control, chunk);
    ran++;
    Atomics.add(ints, SLOT_DONE, 1);
    if (Atomics.load(ints, SLOT_MAIN_ASLEEP) !== 0) Atomics.notify(ints, SLOT_DONE);
  }
}
