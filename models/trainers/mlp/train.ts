/**
 * Training the MLP: checks the data, holds out the validation rows, and runs epochs of Adam over shuffled
 * mini-batches with scikit-learn's stopping rule, checkpointing and yielding to the event loop as it goes.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Adam } from '../../optim/adam.js';
import { TrainingParameterError, type EncodedDataset, type MlpModel, type TrainingHooks } from '../../types.js';
import { parseCheckpoint, type MlpCheckpoint } from './checkpoint.js';
import { prepareInput } from './input.js';
import { Network } from './network.js';
import { parseMlpParams, type MlpParams, type ResolvedMlpParams } from './params.js';
import { Mulberry32, shuffleInPlace, Stream, streamRng } from './random.js';

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
