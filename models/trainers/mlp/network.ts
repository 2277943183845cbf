/**
 * The MLP's network: parameters, gradient and batch buffers, and the forward and backward passes over a batch of row
 * indexes, with the training objective and its gradient.
 *
 * Objective of a mini-batch B (per-row weights wᵢ, all 1 without `data.weights`):
 *   (Σ_{i∈B} wᵢ·ℓᵢ + ½·alpha·‖W‖²) / Σ_{i∈B} wᵢ
 * with ℓ the binary cross-entropy of one logit, the softmax cross-entropy of K logits, or ½·(ŷ - y)² for regression
 * (scikit-learn's `squared_loss`, hence the ½), and W every weight but not the biases.
 *
 * Hot-path layout: every parameter lives in one Float64Array, each layer's weights input-major (`w[i·out + o]`), so
 * that a non-zero input contributes one contiguous row in the forward pass and its gradient is one contiguous row in
 * the backward pass. The first layer reads the input as compressed sparse rows or dense (input.ts) and touches only
 * the non-zeros either way. All batch buffers are allocated once per training.
 *
 * This is a deliberate trainer kernel: the layer kernels and the Network class that calls them stay in one file,
 * read together when the arithmetic is checked against scikit-learn's.
 */
import { sigmoid, softmaxInto } from '../../predict/mlp.js';
import type { LabelTask, MlpLayer, MlpModel } from '../../types.js';
import type { Input } from './input.js';
import type { Mulberry32 } from './random.js';

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
export class Network {
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
