/**
 * A small multilayer perceptron trained with Adam on typed arrays, modelled on scikit-learn's
 * `MLPClassifier`/`MLPRegressor` (same defaults, same objective, same Adam form, same stopping rule) so that its
 * numbers can be checked against scikit-learn's.
 *
 * Objective of a mini-batch B (per-row weights wᵢ, all 1 without `data.weights`):
 *   (Σ_{i∈B} wᵢ·ℓᵢ + ½·alpha·‖W‖²) / Σ_{i∈B} wᵢ
 * with ℓ the binary cross-entropy of one logit, the softmax cross-entropy of K logits, or ½·(ŷ - y)² for regression
 * (scikit-learn's `squared_loss`, hence the ½), and W every weight but not the biases.
 *
 * Hot-path layout: every parameter lives in one Float64Array, each layer's weights input-major (`w[i·out + o]`), so
 * that a non-zero input contributes one contiguous row in the forward pass and its gradient is one contiguous row in
 * the backward pass. The encoded input is mostly one-hot, so by default the first layer reads it as compressed
 * sparse rows (built once per training) and touches only the non-zeros; the dense layout skips zeros too, so the two
 * compute bit-identical models. All batch buffers are allocated once per training.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { z } from 'zod';
import { parseTrainingParams } from '../params.js';
import { Adam, type AdamState } from '../optim/adam.js';
import { sigmoid, softmaxInto } from '../predict/mlp.js';
import {
  TrainingParameterError,
  type EncodedDataset,
  type LabelTask,
  type MlpLayer,
  type MlpModel,
  type TrainingHooks,
} from '../types.js';

/**
 * The MLP's training parameters. Defaults follow scikit-learn's MLP (Adam, lr 1e-3, alpha 1e-4, batch 200, 200
 * epochs, validation fraction 0.1, 10 epochs of patience, tol 1e-4) except `earlyStopping`, which is on: the
 * platform always wants the best-on-validation model.
 */
export const mlpParamsSchema = z.strictObject({
  /** Fixes the output layer and the loss. */
  task: z.enum(['binary', 'multiclass', 'regression']),
  /** Multiclass only: number of classes K; default max(y) + 1. Set it when a class may be absent from `y`. */
  classCount: z.number().int().min(2).max(100_000).optional(),
  /** Widths of the hidden layers: one or two layers. */
  hiddenLayers: z.array(z.number().int().min(1).max(4096)).min(1).max(2).default([32]),
  activation: z.enum(['relu', 'tanh']).default('relu'),
  learningRate: z.number().positive().max(10).default(1e-3),
  beta1: z.number().min(0).lt(1).default(0.9),
  beta2: z.number().min(0).lt(1).default(0.999),
  epsilon: z.number().positive().default(1e-8),
  /** L2 penalty on the weights (not the biases), scikit-learn's `alpha`. */
  alpha: z.number().min(0).max(1e6).default(1e-4),
  /** Rows per mini-batch; capped at the number of training rows. */
  batchSize: z.number().int().min(1).max(1_000_000).default(200),
  /** Maximum number of epochs (scikit-learn's `max_iter`). */
  maxEpochs: z.number().int().min(1).max(100_000).default(200),
  /**
   * Hold out `validationFraction` of the rows (stratified for classification), stop when the validation loss has
   * not improved by `tol` for more than `nIterNoChange` epochs, and return the weights of the best validation loss.
   * Off: train on every row, apply the same rule to the training loss, and return the last weights.
   */
  earlyStopping: z.boolean().default(true),
  validationFraction: z.number().gt(0).lt(1).default(0.1),
  nIterNoChange: z.number().int().min(1).max(100_000).default(10),
  tol: z.number().min(0).default(1e-4),
  /** Seeds the validation split, the initialization and the per-epoch shuffles. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .default(0),
  /**
   * How the first layer reads the input: `sparse` converts it once to compressed sparse rows, `dense` scans each
   * row skipping zeros, `auto` picks sparse when at most a quarter of the values are non-zero. Results are
   * identical; only speed and memory differ.
   */
  inputLayout: z.enum(['auto', 'dense', 'sparse']).default('auto'),
});

/** Parameters as a caller writes them (defaults may be omitted). */
export type MlpParams = z.input<typeof mlpParamsSchema>;
/** Parameters with every default filled in. */
export type ResolvedMlpParams = z.output<typeof mlpParamsSchema>;

/**
 * Validates MLP parameters and fills in the defaults.
 *
 * @throws TrainingParameterError naming the first offending parameter.
 */
export function parseMlpParams(params: unknown): ResolvedMlpParams {
  return parseTrainingParams(mlpParamsSchema, params);
}

/**
 * The state handed to `hooks.onCheckpoint` after every `checkpointEvery` epochs: plain JSON (numbers, arrays), from
 * which `hooks.resumeFrom` continues bit for bit. Float64 values survive JSON because `JSON.stringify` writes the
 * shortest decimal that parses back to the same double.
 */
export interface MlpCheckpoint {
  readonly format: 'mlp-checkpoint/1';
  /** The resolved parameters it was trained with (a resume must use the same ones; `inputLayout` may differ). */
  readonly params: ResolvedMlpParams;
  readonly rows: number;
  readonly cols: number;
  readonly outputs: number;
  /** Completed epochs. */
  readonly epoch: number;
  /** State of the shuffling PRNG after `epoch` epochs. */
  readonly rngState: number;
  /** Current parameters: per layer, its weights input-major (`w[i·outputs + o]`), then its biases. */
  readonly parameters: readonly number[];
  readonly adam: AdamState;
  readonly noImprovementCount: number;
  /** Best training loss so far (the stopping criterion without early stopping); null before the first epoch. */
  readonly bestLoss: number | null;
  /** Best validation loss so far and the parameters that reached it (early stopping only). */
  readonly bestValidationLoss: number | null;
  readonly bestParameters: readonly number[] | null;
}

const finiteNumber = z.number();
const checkpointSchema = z.object({
  format: z.literal('mlp-checkpoint/1'),
  params: z.record(z.string(), z.unknown()),
  rows: z.number().int(),
  cols: z.number().int(),
  outputs: z.number().int(),
  epoch: z.number().int().min(0),
  rngState: z.number().int(),
  parameters: z.array(finiteNumber),
  adam: z.object({ step: z.number().int().min(0), m: z.array(finiteNumber), v: z.array(finiteNumber) }),
  noImprovementCount: z.number().int().min(0),
  bestLoss: finiteNumber.nullable(),
  bestValidationLoss: finiteNumber.nullable(),
  bestParameters: z.array(finiteNumber).nullable(),
});

// ---------------------------------------------------------------------------------------------------------------
// Seeded PRNG

/**
 * mulberry32: a 32-bit-state generator, plenty for shuffling and initialization, and its whole state is one integer
 * that a checkpoint can hold.
 */
class Mulberry32 {
  constructor(public state: number) {
    this.state = state >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** Independent streams per use, so that resuming needs only the shuffle stream's state. */
const Stream = { Split: 1, Init: 2, Shuffle: 3 } as const;
type Stream = (typeof Stream)[keyof typeof Stream];

function streamRng(seed: number, stream: Stream): Mulberry32 {
  const rng = new Mulberry32((seed ^ Math.imul(stream, 0x9e3779b9)) >>> 0);
  // Nearby seeds start nearby; a few draws decorrelate the streams.
  for (let i = 0; i < 4; i++) rng.next();
  return rng;
}

function shuffleInPlace(values: Int32Array, rng: Mulberry32): void {
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const tmp = values[i]!;
    values[i] = values[j]!;
    values[j] = tmp;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Input

type Input =
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
function prepareInput(data: EncodedDataset, layout: ResolvedMlpParams['inputLayout']): Input {
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

// ---------------------------------------------------------------------------------------------------------------
// Network

interface LayerShape {
  readonly inputs: number;
  readonly outputs: number;
  /** Offset of the weights (input-major) in the parameter vector. */
  readonly w: number;
  /** Offset of the biases. */
  readonly b: number;
}

function layerShapes(inputs: number, hidden: readonly number[], outputs: number): LayerShape[] {
  const shapes: LayerShape[] = [];
  let offset = 0;
  let width = inputs;
  for (const size of [...hidden, outputs]) {
    shapes.push({ inputs: width, outputs: size, w: offset, b: offset + width * size });
    offset += width * size + size;
    width = size;
  }
  return shapes;
}

// The kernels below are free functions over typed arrays and integers: each stays monomorphic, so V8 compiles the
// inner loops tightly (no property loads or layout checks per element).

/** First layer, sparse input: bias plus one contiguous weight row per non-zero. */
function sparseForward(
  rowStart: Int32Array,
  colIndex: Int32Array,
  values: Float64Array,
  order: Int32Array,
  start: number,
  count: number,
  theta: Float64Array,
  shape: LayerShape,
  out: Float64Array,
): void {
  const h = shape.outputs;
  const w = shape.w;
  const b = shape.b;
  for (let n = 0; n < count; n++) {
    const r = order[start + n]!;
    const ob = n * h;
    for (let u = 0; u < h; u++) out[ob + u] = theta[b + u]!;
    const end = rowStart[r + 1]!;
    for (let p = rowStart[r]!; p < end; p++) {
      const v = values[p]!;
      const wj = w + colIndex[p]! * h;
      for (let u = 0; u < h; u++) out[ob + u]! += v * theta[wj + u]!;
    }
  }
}

/** First layer, dense input: the same arithmetic as {@link sparseForward}, finding the non-zeros by scanning. */
function denseForward(
  x: Float64Array,
  cols: number,
  order: Int32Array,
  start: number,
  count: number,
  theta: Float64Array,
  shape: LayerShape,
  out: Float64Array,
): void {
  const h = shape.outputs;
  const w = shape.w;
  const b = shape.b;
  for (let n = 0; n < count; n++) {
    const base = order[start + n]! * cols;
    const ob = n * h;
    for (let u = 0; u < h; u++) out[ob + u] = theta[b + u]!;
    for (let j = 0; j < cols; j++) {
      const v = x[base + j]!;
      if (v === 0) continue;
      const wj = w + j * h;
      for (let u = 0; u < h; u++) out[ob + u]! += v * theta[wj + u]!;
    }
  }
}

/** A later layer: `out = b + prev · W`, skipping zero activations (common after relu). */
function layerForward(
  prev: Float64Array,
  count: number,
  theta: Float64Array,
  shape: LayerShape,
  out: Float64Array,
): void {
  const nIn = shape.inputs;
  const nOut = shape.outputs;
  const w = shape.w;
  const b = shape.b;
  for (let n = 0; n < count; n++) {
    const ob = n * nOut;
    const ib = n * nIn;
    for (let o = 0; o < nOut; o++) out[ob + o] = theta[b + o]!;
    for (let i = 0; i < nIn; i++) {
      const a = prev[ib + i]!;
      if (a === 0) continue;
      const wi = w + i * nOut;
      for (let o = 0; o < nOut; o++) out[ob + o]! += a * theta[wi + o]!;
    }
  }
}

/**
 * A later layer's gradient (weights and biases) and the delta of the layer below, relu below: relu'(0) = 0 (as
 * scikit-learn), so a zero activation passes no gradient either way.
 */
function layerBackwardRelu(
  prev: Float64Array,
  delta: Float64Array,
  prevDelta: Float64Array,
  count: number,
  theta: Float64Array,
  grad: Float64Array,
  shape: LayerShape,
): void {
  const nIn = shape.inputs;
  const nOut = shape.outputs;
  const w = shape.w;
  const b = shape.b;
  for (let n = 0; n < count; n++) {
    const db = n * nOut;
    const ib = n * nIn;
    for (let o = 0; o < nOut; o++) grad[b + o]! += delta[db + o]!;
    for (let i = 0; i < nIn; i++) {
      const a = prev[ib + i]!;
      if (a === 0) {
        prevDelta[ib + i] = 0;
        continue;
      }
      const wi = w + i * nOut;
      let back = 0;
      for (let o = 0; o < nOut; o++) {
        const d = delta[db + o]!;
        grad[wi + o]! += a * d;
        back += d * theta[wi + o]!;
      }
      prevDelta[ib + i] = back;
    }
  }
}

/** As {@link layerBackwardRelu}, tanh below: tanh' = 1 - a². */
function layerBackwardTanh(
  prev: Float64Array,
  delta: Float64Array,
  prevDelta: Float64Array,
  count: number,
  theta: Float64Array,
  grad: Float64Array,
  shape: LayerShape,
): void {
  const nIn = shape.inputs;
  const nOut = shape.outputs;
  const w = shape.w;
  const b = shape.b;
  for (let n = 0; n < count; n++) {
    const db = n * nOut;
    const ib = n * nIn;
    for (let o = 0; o < nOut; o++) grad[b + o]! += delta[db + o]!;
    for (let i = 0; i < nIn; i++) {
      const a = prev[ib + i]!;
      const wi = w + i * nOut;
      let back = 0;
      for (let o = 0; o < nOut; o++) {
        const d = delta[db + o]!;
        grad[wi + o]! += a * d;
        back += d * theta[wi + o]!;
      }
      prevDelta[ib + i] = back * (1 - a * a);
    }
  }
}

/** First layer's gradient, sparse input: one contiguous gradient row per non-zero. */
function sparseBackward(
  rowStart: Int32Array,
  colIndex: Int32Array,
  values: Float64Array,
  order: Int32Array,
  start: number,
  count: number,
  grad: Float64Array,
  shape: LayerShape,
  delta: Float64Array,
): void {
  const h = shape.outputs;
  const w = shape.w;
  const b = shape.b;
  for (let n = 0; n < count; n++) {
    const r = order[start + n]!;
    const db = n * h;
    for (let u = 0; u < h; u++) grad[b + u]! += delta[db + u]!;
    const end = rowStart[r + 1]!;
    for (let p = rowStart[r]!; p < end; p++) {
      const v = values[p]!;
      const gj = w + colIndex[p]! * h;
      for (let u = 0; u < h; u++) grad[gj + u]! += v * delta[db + u]!;
    }
  }
}

/** First layer's gradient, dense input (same arithmetic as {@link sparseBackward}). */
function denseBackward(
  x: Float64Array,
  cols: number,
  order: Int32Array,
  start: number,
  count: number,
  grad: Float64Array,
  shape: LayerShape,
  delta: Float64Array,
): void {
  const h = shape.outputs;
  const w = shape.w;
  const b = shape.b;
  for (let n = 0; n < count; n++) {
    const base = order[start + n]! * cols;
    const db = n * h;
    for (let u = 0; u < h; u++) grad[b + u]! += delta[db + u]!;
    for (let j = 0; j < cols; j++) {
      const v = x[base + j]!;
      if (v === 0) continue;
      const gj = w + j * h;
      for (let u = 0; u < h; u++) grad[gj + u]! += v * delta[db + u]!;
    }
  }
}

/**
 * Parameters, gradient and per-batch buffers of one network, and the forward/backward passes over a batch of row
 * indexes. Nothing here allocates after construction.
 */
class Network {
  readonly shapes: LayerShape[];
  readonly size: number;
  readonly theta: Float64Array;
  readonly grad: Float64Array;
  /** Post-activation outputs of each layer per batch row (the last one: logits). */
  private readonly acts: Float64Array[];
  /** ∂objective/∂(pre-activation) of each layer per batch row. */
  private readonly deltas: Float64Array[];
  private readonly probs: Float64Array;
  private readonly relu: boolean;
  readonly outputs: number;

  constructor(
    inputs: number,
    hidden: readonly number[],
    outputs: number,
    activation: 'relu' | 'tanh',
    private readonly task: LabelTask,
    readonly capacity: number,
  ) {
    this.shapes = layerShapes(inputs, hidden, outputs);
    const last = this.shapes.at(-1)!;
    this.size = last.b + last.outputs;
    this.theta = new Float64Array(this.size);
    this.grad = new Float64Array(this.size);
    this.acts = this.shapes.map((s) => new Float64Array(capacity * s.outputs));
    this.deltas = this.shapes.map((s) => new Float64Array(capacity * s.outputs));
    this.probs = new Float64Array(capacity * outputs);
    this.relu = activation === 'relu';
    this.outputs = outputs;
  }

  /**
   * He-uniform for relu hidden layers (keeps the activations' variance through relu), Glorot-uniform for tanh and
   * the output layer; biases start at 0.
   */
  initialize(rng: Mulberry32): void {
    const theta = this.theta;
    const hiddenCount = this.shapes.length - 1;
    for (const [l, s] of this.shapes.entries()) {
      const bound = l < hiddenCount && this.relu ? Math.sqrt(6 / s.inputs) : Math.sqrt(6 / (s.inputs + s.outputs));
      for (let k = s.w; k < s.b; k++) theta[k] = (2 * rng.next() - 1) * bound;
      theta.fill(0, s.b, s.b + s.outputs);
    }
  }

  /** Forward pass of rows `order[start, start + count)`; fills `acts` (logits in the last one). */
  forward(input: Input, order: Int32Array, start: number, count: number): void {
    const theta = this.theta;
    const shapes = this.shapes;
    const first = shapes[0]!;
    if (input.kind === 'sparse') {
      sparseForward(input.rowStart, input.colIndex, input.values, order, start, count, theta, first, this.acts[0]!);
    } else {
      denseForward(input.data, input.cols, order, start, count, theta, first, this.acts[0]!);
    }
    this.activate(0, count);
    for (let l = 1; l < shapes.length; l++) {
      layerForward(this.acts[l - 1]!, count, theta, shapes[l]!, this.acts[l]!);
      if (l < shapes.length - 1) this.activate(l, count);
    }
  }

  private activate(layer: number, count: number): void {
    const a = this.acts[layer]!;
    const end = count * this.shapes[layer]!.outputs;
    if (this.relu) {
      for (let k = 0; k < end; k++) if (a[k]! < 0) a[k] = 0;
    } else {
      for (let k = 0; k < end; k++) a[k] = Math.tanh(a[k]!);
    }
  }

  /**
   * Loss of the rows just forwarded: Σ wᵢ·ℓᵢ. With `scale` > 0 it also writes the output deltas
   * `scale · wᵢ · ∂ℓᵢ/∂zᵢ` for {@link backward}.
   */
  loss(
    y: Float64Array,
    weights: Float64Array | undefined,
    order: Int32Array,
    start: number,
    count: number,
    scale: number,
  ): number {
    const z = this.acts.at(-1)!;
    const delta = this.deltas.at(-1)!;
    const K = this.outputs;
    let total = 0;
    for (let n = 0; n < count; n++) {
      const r = order[start + n]!;
      const target = y[r]!;
      const w = weights ? weights[r]! : 1;
      const s = scale * w;
      if (this.task === 'binary') {
        const logit = z[n]!;
        // log(1 + e^z) - y·z, written so that neither exp nor log loses precision for large |z|.
        total += w * (Math.max(logit, 0) - target * logit + Math.log1p(Math.exp(-Math.abs(logit))));
        delta[n] = s * (sigmoid(logit) - target);
      } else if (this.task === 'multiclass') {
        const ob = n * K;
        const logPartition = softmaxInto(z, ob, K, this.probs, ob);
        total += w * (logPartition - z[ob + target]!);
        for (let k = 0; k < K; k++) delta[ob + k] = s * (this.probs[ob + k]! - (k === target ? 1 : 0));
      } else {
        const diff = z[n]! - target;
        total += w * 0.5 * diff * diff;
        delta[n] = s * diff;
      }
    }
    return total;
  }

  /** Accumulates into `grad` the gradient of the batch whose deltas {@link loss} wrote. */
  backward(input: Input, order: Int32Array, start: number, count: number): void {
    const shapes = this.shapes;
    for (let l = shapes.length - 1; l >= 1; l--) {
      const prev = this.acts[l - 1]!;
      const delta = this.deltas[l]!;
      const prevDelta = this.deltas[l - 1]!;
      if (this.relu) layerBackwardRelu(prev, delta, prevDelta, count, this.theta, this.grad, shapes[l]!);
      else layerBackwardTanh(prev, delta, prevDelta, count, this.theta, this.grad, shapes[l]!);
    }
    const first = shapes[0]!;
    const delta0 = this.deltas[0]!;
    if (input.kind === 'sparse') {
      sparseBackward(input.rowStart, input.colIndex, input.values, order, start, count, this.grad, first, delta0);
    } else {
      denseBackward(input.data, input.cols, order, start, count, this.grad, first, delta0);
    }
  }

  /**
   * Objective and gradient (in `grad`) of one mini-batch, see the module comment.
   *
   * @returns The objective times the batch's total weight (what the epoch loss sums), or 0 for a weightless batch.
   */
  objective(
    input: Input,
    y: Float64Array,
    weights: Float64Array | undefined,
    order: Int32Array,
    start: number,
    count: number,
    alpha: number,
  ): { weighted: number; weightSum: number } {
    let weightSum = count;
    if (weights) {
      weightSum = 0;
      for (let n = 0; n < count; n++) weightSum += weights[order[start + n]!]!;
    }
    this.grad.fill(0);
    if (weightSum <= 0) return { weighted: 0, weightSum: 0 };
    this.forward(input, order, start, count);
    const dataLoss = this.loss(y, weights, order, start, count, 1 / weightSum);
    this.backward(input, order, start, count);
    if (alpha === 0) return { weighted: dataLoss, weightSum };
    // The penalty's gradient and value in one pass over the weights.
    const theta = this.theta;
    const grad = this.grad;
    const decay = alpha / weightSum;
    let squares = 0;
    for (const s of this.shapes) {
      for (let k = s.w; k < s.b; k++) {
        const t = theta[k]!;
        grad[k]! += decay * t;
        squares += t * t;
      }
    }
    return { weighted: dataLoss + 0.5 * alpha * squares, weightSum };
  }

  /** Weighted mean data loss (no penalty) over `rows`, in batches of the buffers' capacity. */
  evaluate(input: Input, y: Float64Array, weights: Float64Array | undefined, rows: Int32Array): number {
    let total = 0;
    let weightSum = 0;
    for (let start = 0; start < rows.length; start += this.capacity) {
      const count = Math.min(this.capacity, rows.length - start);
      this.forward(input, rows, start, count);
      total += this.loss(y, weights, rows, start, count, 0);
    }
    if (weights) for (const r of rows) weightSum += weights[r]!;
    else weightSum = rows.length;
    return total / weightSum;
  }

  /** The parameters as an {@link MlpModel} (weights transposed to output-major). */
  toModel(theta: Float64Array, activation: 'relu' | 'tanh'): MlpModel {
    const layers: MlpLayer[] = this.shapes.map((s, l) => {
      const weights: number[][] = [];
      for (let o = 0; o < s.outputs; o++) {
        const row = new Array<number>(s.inputs);
        for (let i = 0; i < s.inputs; i++) row[i] = theta[s.w + i * s.outputs + o]!;
        weights.push(row);
      }
      const biases = Array.from(theta.subarray(s.b, s.b + s.outputs));
      return { weights, biases, activation: l === this.shapes.length - 1 ? 'identity' : activation };
    });
    return { kind: 'mlp', task: this.task, layers };
  }

  /** Loads an {@link MlpModel}'s parameters (the inverse of {@link toModel}). */
  loadModel(model: MlpModel): void {
    for (const [l, s] of this.shapes.entries()) {
      const layer = model.layers[l]!;
      for (let o = 0; o < s.outputs; o++) {
        const row = layer.weights[o]!;
        for (let i = 0; i < s.inputs; i++) this.theta[s.w + i * s.outputs + o] = row[i]!;
        this.theta[s.b + o] = layer.biases[o]!;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Data checks and the validation split

function checkData(data: EncodedDataset, params: ResolvedMlpParams): number {
  const { x, y, weights } = data;
  if (!Number.isInteger(x.rows) || !Number.isInteger(x.cols) || x.rows < 1 || x.cols < 1) {
    throw new TrainingParameterError('x', `needs at least one row and one column, got ${x.rows} × ${x.cols}`);
  }
  if (x.data.length !== x.rows * x.cols) {
    throw new TrainingParameterError('x', `holds ${x.data.length} values, expected ${x.rows} × ${x.cols}`);
  }
  if (y.length !== x.rows) throw new TrainingParameterError('y', `has ${y.length} values for ${x.rows} rows`);
  if (weights) {
    if (weights.length !== x.rows) {
      throw new TrainingParameterError('weights', `has ${weights.length} values for ${x.rows} rows`);
    }
    let total = 0;
    for (const w of weights) {
      if (!(w >= 0) || !Number.isFinite(w)) throw new TrainingParameterError('weights', `must be ≥ 0, got ${w}`);
      total += w;
    }
    if (!(total > 0)) throw new TrainingParameterError('weights', 'total weight is 0');
  }
  let outputs = 1;
  if (params.task === 'regression') {
    for (const v of y) if (!Number.isFinite(v)) throw new TrainingParameterError('y', `non-finite target ${v}`);
  } else if (params.task === 'binary') {
    for (const v of y) if (v !== 0 && v !== 1) throw new TrainingParameterError('y', `binary label must be 0/1: ${v}`);
  } else {
    let max = 0;
    for (const v of y) {
      if (!Number.isInteger(v) || v < 0) throw new TrainingParameterError('y', `class index must be ≥ 0: ${v}`);
      if (v > max) max = v;
    }
    outputs = params.classCount ?? max + 1;
    if (max >= outputs) throw new TrainingParameterError('classCount', `is ${outputs} but y holds class ${max}`);
    if (outputs < 2) throw new TrainingParameterError('y', 'multiclass needs at least 2 classes');
  }
  if (params.classCount !== undefined && params.task !== 'multiclass') {
    throw new TrainingParameterError('classCount', 'only applies to multiclass');
  }
  return outputs;
}

/**
 * Rows for training and validation. Classification stratifies (each class keeps its share in the validation slice,
 * as scikit-learn's MLP does), so a rare class cannot vanish from it.
 */
function splitRows(
  data: EncodedDataset,
  params: ResolvedMlpParams,
  outputs: number,
): { train: Int32Array; validation: Int32Array } {
  const n = data.x.rows;
  const all = new Int32Array(n);
  for (let r = 0; r < n; r++) all[r] = r;
  if (!params.earlyStopping) return { train: all, validation: new Int32Array(0) };
  shuffleInPlace(all, streamRng(params.seed, Stream.Split));
  const isValidation = new Uint8Array(n);
  let validationCount = 0;
  if (params.task === 'regression') {
    validationCount = Math.max(1, Math.round(params.validationFraction * n));
    for (let k = 0; k < validationCount; k++) isValidation[all[k]!] = 1;
  } else {
    // Binary has one output but two classes.
    const classCounts = new Float64Array(Math.max(outputs, 2));
    for (const v of data.y) classCounts[v]! += 1;
    const quota = classCounts.map((c) => Math.round(params.validationFraction * c));
    for (const r of all) {
      const c = data.y[r]!;
      if (quota[c]! > 0) {
        quota[c]! -= 1;
        isValidation[r] = 1;
        validationCount++;
      }
    }
    if (validationCount === 0) {
      isValidation[all[0]!] = 1;
      validationCount = 1;
    }
  }
  if (validationCount >= n) {
    throw new TrainingParameterError('validationFraction', `leaves no training rows out of ${n}`);
  }
  // Ascending row order in both sets: the per-epoch shuffle alone decides the batch order.
  const train = new Int32Array(n - validationCount);
  const validation = new Int32Array(validationCount);
  let t = 0;
  let v = 0;
  for (let r = 0; r < n; r++) {
    if (isValidation[r]) validation[v++] = r;
    else train[t++] = r;
  }
  if (data.weights) {
    let total = 0;
    for (const r of validation) total += data.weights[r]!;
    if (!(total > 0)) throw new TrainingParameterError('weights', 'the validation slice has zero total weight');
  }
  return { train, validation };
}

// ---------------------------------------------------------------------------------------------------------------
// Training

/** Canonical JSON of the parameters that determine the result (the input layout does not). */
function paramsKey(params: Readonly<Record<string, unknown>>): string {
  const keys = Object.keys(params)
    .filter((k) => k !== 'inputLayout' && params[k] !== undefined)
    .sort();
  return JSON.stringify(keys.map((k) => [k, params[k]]));
}

function parseCheckpoint(
  state: unknown,
  params: ResolvedMlpParams,
  data: EncodedDataset,
  outputs: number,
  size: number,
): MlpCheckpoint {
  const parsed = checkpointSchema.safeParse(state);
  if (!parsed.success) {
    throw new TrainingParameterError('resumeFrom', `not an MLP checkpoint: ${parsed.error.issues[0]?.message ?? ''}`);
  }
  const c = parsed.data;
  if (paramsKey(c.params) !== paramsKey(params)) {
    throw new TrainingParameterError('resumeFrom', 'the checkpoint was made with different parameters');
  }
  if (c.rows !== data.x.rows || c.cols !== data.x.cols || c.outputs !== outputs) {
    throw new TrainingParameterError('resumeFrom', `the checkpoint was made on data of another shape`);
  }
  if (
    c.parameters.length !== size ||
    c.adam.m.length !== size ||
    c.adam.v.length !== size ||
    (c.bestParameters !== null && c.bestParameters.length !== size)
  ) {
    throw new TrainingParameterError('resumeFrom', `the checkpoint holds parameters of another network`);
  }
  return { ...c, params } as MlpCheckpoint;
}

function abortIfSignalled(signal: AbortSignal | undefined): void {
  // The signal's reason is what cancelled us (an AbortError DOMException by default, Temporal's CancelledFailure in
  // an activity): rethrowing it lets the caller recognise its own cancellation.
  signal?.throwIfAborted();
}

/** How long a stretch of computation may keep the event loop (abort events, heartbeats) waiting. */
const YIELD_EVERY_MS = 25;

/**
 * Trains an MLP with Adam on mini-batches.
 *
 * Deterministic for a seed: the same data, parameters and seed give the same model bit for bit, also when training
 * is interrupted and resumed from a checkpoint.
 *
 * @param data - Encoded rows (see `applyTransform`); binary labels 0/1, multiclass class indexes, regression targets.
 * @param params - See {@link mlpParamsSchema}; validated at run time (it usually comes from user JSON).
 * @param hooks - `onProgress` once per epoch (mean training objective, validation data loss, rows per second);
 *   `onCheckpoint` every `checkpointEvery` epochs (default 1) with an {@link MlpCheckpoint}; `resumeFrom` a
 *   checkpoint made with the same parameters and data; `signal` is checked between mini-batches, and the trainer
 *   yields to the event loop every few tens of milliseconds so that an abort (or a heartbeat) gets through.
 * @returns With early stopping, the parameters of the epoch with the lowest validation loss; otherwise the last.
 * @throws TrainingParameterError on invalid parameters, data, or checkpoint, or when the loss diverges.
 * @throws The signal's reason (an `AbortError` by default) when cancelled.
 */
export async function trainMlp(data: EncodedDataset, params: MlpParams, hooks: TrainingHooks = {}): Promise<MlpModel> {
  const p = parseMlpParams(params);
  const { signal, onProgress, onCheckpoint } = hooks;
  const checkpointEvery = hooks.checkpointEvery ?? 1;
  if (!Number.isInteger(checkpointEvery) || checkpointEvery < 1) {
    throw new TrainingParameterError('checkpointEvery', `must be a positive integer, got ${checkpointEvery}`);
  }
  abortIfSignalled(signal);
  const outputs = checkData(data, p);
  const { train, validation } = splitRows(data, p, outputs);
  const input = prepareInput(data, p.inputLayout);
  const batchSize = Math.min(p.batchSize, train.length);
  const net = new Network(data.x.cols, p.hiddenLayers, outputs, p.activation, p.task, batchSize);
  const adamOptions = { learningRate: p.learningRate, beta1: p.beta1, beta2: p.beta2, epsilon: p.epsilon };

  const resume =
    hooks.resumeFrom === undefined ? undefined : parseCheckpoint(hooks.resumeFrom, p, data, outputs, net.size);
  let adam: Adam;
  let rng: Mulberry32;
  let epoch = 0;
  let noImprovement = 0;
  let bestLoss = Infinity;
  let bestValidationLoss = Infinity;
  const bestTheta = p.earlyStopping ? new Float64Array(net.size) : undefined;
  if (resume) {
    net.theta.set(resume.parameters);
    adam = new Adam(net.size, adamOptions, resume.adam);
    rng = new Mulberry32(resume.rngState);
    epoch = resume.epoch;
    noImprovement = resume.noImprovementCount;
    bestLoss = resume.bestLoss ?? Infinity;
    bestValidationLoss = resume.bestValidationLoss ?? Infinity;
    if (bestTheta && resume.bestParameters) bestTheta.set(resume.bestParameters);
  } else {
    net.initialize(streamRng(p.seed, Stream.Init));
    adam = new Adam(net.size, adamOptions);
    rng = streamRng(p.seed, Stream.Shuffle);
  }

  let trainWeight = train.length;
  if (data.weights) {
    trainWeight = 0;
    for (const r of train) trainWeight += data.weights[r]!;
  }
  const order = new Int32Array(train.length);
  let lastYield = performance.now();

  // scikit-learn's rule: stop once the criterion failed to improve by tol in MORE than nIterNoChange epochs.
  while (epoch < p.maxEpochs && noImprovement <= p.nIterNoChange) {
    const started = performance.now();
    // Reset before shuffling so that the order depends on the PRNG state alone (a checkpoint need not hold it).
    order.set(train);
    shuffleInPlace(order, rng);
    let weightedLoss = 0;
    for (let start = 0; start < order.length; start += batchSize) {
      abortIfSignalled(signal);
      if (performance.now() - lastYield >= YIELD_EVERY_MS) {
        await yieldToEventLoop();
        abortIfSignalled(signal);
        lastYield = performance.now();
      }
      const count = Math.min(batchSize, order.length - start);
      const { weighted, weightSum } = net.objective(input, data.y, data.weights, order, start, count, p.alpha);
      if (weightSum === 0) continue;
      adam.step(net.theta, net.grad);
      weightedLoss += weighted;
    }
    const seconds = (performance.now() - started) / 1000;
    const loss = weightedLoss / trainWeight;
    if (!Number.isFinite(loss)) {
      throw new TrainingParameterError('learningRate', `training diverged in epoch ${epoch + 1} (loss ${loss})`);
    }
    epoch++;
    let validationLoss: number | undefined;
    if (bestTheta) {
      validationLoss = net.evaluate(input, data.y, data.weights, validation);
      noImprovement = validationLoss > bestValidationLoss - p.tol ? noImprovement + 1 : 0;
      if (validationLoss < bestValidationLoss) {
        bestValidationLoss = validationLoss;
        bestTheta.set(net.theta);
      }
    } else {
      noImprovement = loss > bestLoss - p.tol ? noImprovement + 1 : 0;
    }
    if (loss < bestLoss) bestLoss = loss;
    onProgress?.({
      iteration: epoch,
      loss,
      ...(validationLoss === undefined ? {} : { validationLoss }),
      rowsPerSecond: seconds > 0 ? train.length / seconds : undefined,
    });
    if (onCheckpoint && epoch % checkpointEvery === 0) {
      const state: MlpCheckpoint = {
        format: 'mlp-checkpoint/1',
        params: p,
        rows: data.x.rows,
        cols: data.x.cols,
        outputs,
        epoch,
        rngState: rng.state,
        parameters: Array.from(net.theta),
        adam: adam.snapshot(),
        noImprovementCount: noImprovement,
        bestLoss: Number.isFinite(bestLoss) ? bestLoss : null,
        bestValidationLoss: Number.isFinite(bestValidationLoss) ? bestValidationLoss : null,
        bestParameters: bestTheta && Number.isFinite(bestValidationLoss) ? Array.from(bestTheta) : null,
      };
      await onCheckpoint(state);
      lastYield = performance.now();
    }
  }
  return net.toModel(bestTheta && Number.isFinite(bestValidationLoss) ? bestTheta : net.theta, p.activation);
}

/**
 * The rows {@link trainMlp} trains and validates on for these parameters (validation empty without early stopping).
 * Exposed for tests.
 *
 * @internal
 */
export function mlpValidationSplit(
  data: EncodedDataset,
  params: MlpParams,
): { train: Int32Array; validation: Int32Array } {
  const p = parseMlpParams(params);
  return splitRows(data, p, checkData(data, p));
}

/** Per-layer gradient in the {@link MlpLayer} layout (`weights[o][i]`). */
export interface MlpLayerGradient {
  readonly weights: number[][];
  readonly biases: number[];
}

/**
 * The training objective over all rows of `data` as ONE mini-batch, and its gradient, for a given model. Exposed for
 * tests (finite-difference checks of the training kernels); training does not call it.
 *
 * @internal
 */
export function mlpObjective(
  model: MlpModel,
  data: EncodedDataset,
  alpha: number,
  inputLayout: 'dense' | 'sparse' = 'sparse',
): { loss: number; gradient: MlpLayerGradient[] } {
  const hidden = model.layers.slice(0, -1).map((l) => l.biases.length);
  const activation = model.layers[0]?.activation === 'tanh' ? 'tanh' : 'relu';
  const outputs = model.layers.at(-1)!.biases.length;
  const net = new Network(data.x.cols, hidden, outputs, activation, model.task, data.x.rows);
  net.loadModel(model);
  const input = prepareInput(data, inputLayout);
  const rows = new Int32Array(data.x.rows);
  for (let r = 0; r < rows.length; r++) rows[r] = r;
  const { weighted, weightSum } = net.objective(input, data.y, data.weights, rows, 0, rows.length, alpha);
  const asModel = net.toModel(net.grad, activation);
  return {
    loss: weighted / weightSum,
    gradient: asModel.layers.map((l) => ({ weights: l.weights.map((row) => [...row]), biases: [...l.biases] })),
  };
}
