/**
 * The boosting loop of the histogram gradient-boosted trees (scikit-learn's HistGradientBoosting in TypeScript):
 * hold out a validation split when early stopping, bin once, then per iteration compute gradients, grow one tree per
 * output and add its leaves to the raw scores, report, checkpoint, and stop early when the validation loss stalls.
 */
import os from 'node:os';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { rawScoresGradientBoostedTrees } from '../../predict/gbt.js';
import {
  TrainingParameterError,
  type GradientBoostedTreesModel,
  type Tree,
  type TreeDataset,
  type TrainingHooks,
} from '../../types.js';
import { binRows, fitBinning } from './binning.js';
import { GBT_CHECKPOINT_FORMAT, parseCheckpoint, type GbtCheckpoint } from './checkpoint.js';
import { allRows, shouldStop, splitValidation } from './early-stopping.js';
import { SerialExecutor, allocateArrays, createControl, type Executor } from './executor.js';
import { TreeGrower, addBinnedTree } from './grow-tree.js';
import { lossFor, totalWeight } from './losses.js';
import { HelperThreads, ParallelExecutor } from './parallel.js';
import { parseGbtParams, type GbtParams, type GbtParamsInput } from './params.js';
import { SeededRandom } from './random.js';

/** Rows above which earlyStopping 'auto' turns early stopping on (scikit-learn's rule). */
export const AUTO_EARLY_STOPPING_ROWS = 10_000;

/** Rows from which threads 'auto' uses helper threads (below, starting them costs more than they save). */
export const AUTO_THREADS_ROWS = 200_000;

/** Most threads 'auto' uses: the passes are memory-bound beyond that. */
export const AUTO_THREADS_MAX = 4;

/**
 * Trains gradient-boosted trees on a {@link TreeDataset}: binary (log loss), multiclass (softmax, one tree per class
 * per iteration) or regression (squared error), with scikit-learn's HistGradientBoosting defaults and semantics.
 *
 * Guarantees: deterministic for the same data, parameters and seed; numeric thresholds are float32 values and route
 * every training row exactly as the bins did (see binning.ts); `hooks.onProgress` is called after each iteration with
 * the mean training loss (and the validation loss when early stopping); `hooks.onCheckpoint` every
 * `hooks.checkpointEvery` iterations (awaited) with JSON from which `hooks.resumeFrom` continues to the same model as
 * an uninterrupted run; `hooks.signal` is checked between iterations, and the loop yields to the event loop there so
 * that an abort can arrive.
 *
 * @param params see {@link GbtParamsInput}; `task` is required.
 * @throws TrainingParameterError naming a bad parameter (or `resumeFrom`, `checkpointEvery`, or `task` when the
 *   labels do not fit the task).
 * @throws DOMException named AbortError when `hooks.signal` fires.
 * @example
 * const model = await trainGradientBoostedTrees(dataset, { task: 'binary', maxIterations: 200 }, {
 *   onProgress: (p) => heartbeat(p),
 * });
 */
export async function trainGradientBoostedTrees(
  data: TreeDataset,
  params: GbtParamsInput | Record<string, unknown>,
  hooks: TrainingHooks = {},
): Promise<GradientBoostedTreesModel> {
  const p = parseGbtParams(params);
  const checkpointEvery = hooks.checkpointEvery;
  if (checkpointEvery !== undefined && !(Number.isInteger(checkpointEvery) && checkpointEvery >= 1)) {
    throw new TrainingParameterError('checkpointEvery', 'must be a positive integer');
  }
  const numClasses = checkData(data, p);
  const loss = lossFor(p.task, numClasses);
  const outputs = loss.outputs;
  const random = new SeededRandom(p.seed);

  const threads =
    p.threads === 'auto'
      ? data.rows >= AUTO_THREADS_ROWS
        ? Math.min(os.availableParallelism(), AUTO_THREADS_MAX)
        : 1
      : p.threads;
  // Started first: they load their modules while this thread splits and bins.
  const helpers = threads > 1 ? HelperThreads.start(threads - 1) : null;
  let executor: Executor | null = null;
  try {
    const earlyStopping = p.earlyStopping === 'auto' ? data.rows > AUTO_EARLY_STOPPING_ROWS : p.earlyStopping;
    const { train, validation } = earlyStopping
      ? splitValidation(data, p, numClasses, random)
      : { train: allRows(data.rows), validation: new Uint32Array(0) };
    const binning = fitBinning(data, train, p.maxBins, random);
    const shared = helpers !== null;
    const trainBins = binRows(data, binning, train, true, shared);
    const validationBins = binRows(data, binning, validation, false);
    const yValidation = pick(data.y, validation);
    const wValidation = data.weights && pick(data.weights, validation);
    const n = train.length;
    const nValidation = validation.length;
    const arrays = allocateArrays(data, train, trainBins.bins, outputs, shared);

    const featureKinds = data.features.map((f) => f.kind);
    let baseScores: number[];
    let trees: Tree[];
    let validationLosses: number[];
    let rawValidation: Float64Array;
    if (hooks.resumeFrom !== undefined) {
      const checkpoint = parseCheckpoint(hooks.resumeFrom, { params: p, rows: data.rows, featureKinds });
      const fits =
        checkpoint.baseScores.length === outputs &&
        checkpoint.trees.length === checkpoint.iteration * outputs &&
        checkpoint.trees.every((tree, i) => tree.output === i % outputs) &&
        checkpoint.validationLosses.length === (earlyStopping ? checkpoint.iteration + 1 : 0);
      if (!fits) throw new TrainingParameterError('resumeFrom', 'the checkpoint does not fit this task and data');
      baseScores = [...checkpoint.baseScores];
      trees = [...checkpoint.trees];
      validationLosses = [...checkpoint.validationLosses];
      // Rebuilt with the same additions in the same order as the interrupted run made: bit-identical scores.
      const model: GradientBoostedTreesModel = { kind: 'gbt', task: p.task, baseScores, trees };
      try {
        arrays.raw.set(rawScoresGradientBoostedTrees(model, data, train));
        rawValidation = rawScoresGradientBoostedTrees(model, data, validation);
      } catch (error) {
        // A tree that names a missing feature or a node out of range: the checkpoint is not of this data.
        throw new TrainingParameterError('resumeFrom', error instanceof Error ? error.message : String(error));
      }
    } else {
      baseScores = loss.baseline(arrays.y, arrays.weights);
      trees = [];
      for (const [k, s] of baseScores.entries()) arrays.raw.fill(s, k * n, (k + 1) * n);
      rawValidation = initialScores(baseScores, nValidation);
      validationLosses = earlyStopping ? [loss.loss(rawValidation, yValidation, wValidation)] : [];
    }

    const control = createControl(shared);
    executor =
      helpers && (await helpers.attach({ arrays, control, task: p.task, numClasses }))
        ? new ParallelExecutor(arrays, loss, control, helpers)
        : new SerialExecutor(arrays, loss, control);
    const trainWeight = totalWeight(n, arrays.weights);
    executor.gradients();
    const grower = new TreeGrower(executor, binning, p);
    const { raw, indices } = arrays;

    for (let iteration = trees.length / outputs; iteration < p.maxIterations; iteration++) {
      if (earlyStopping && shouldStop(validationLosses, p.nIterNoChange, p.tol)) break;
      throwIfAborted(hooks.signal);
      const started = performance.now();
      for (let k = 0; k < outputs; k++) {
        const grown = grower.grow(k);
        trees.push(grown.tree);
        const offset = k * n;
        for (const leaf of grown.leaves) {
          for (let i = leaf.start; i < leaf.end; i++) {
            const r = offset + indices[i]!;
            raw[r] = raw[r]! + leaf.value;
          }
        }
        addBinnedTree(grown.binned, validationBins, rawValidation, k * nValidation);
      }
      // The next iteration's gradients, and the training loss after this one, in one pass.
      const trainLoss = executor.gradients() / trainWeight;
      let validationLoss: number | undefined;
      if (earlyStopping) {
        validationLoss = loss.loss(rawValidation, yValidation, wValidation);
        validationLosses.push(validationLoss);
      }
      const seconds = (performance.now() - started) / 1000;
      hooks.onProgress?.({
        iteration: iteration + 1,
        loss: trainLoss,
        ...(validationLoss === undefined ? {} : { validationLoss }),
        rowsPerSecond: seconds > 0 ? n / seconds : undefined,
      });
      if (hooks.onCheckpoint && checkpointEvery !== undefined && (iteration + 1) % checkpointEvery === 0) {
        const state: GbtCheckpoint = {
          format: GBT_CHECKPOINT_FORMAT,
          iteration: iteration + 1,
          params: { ...p },
          rows: data.rows,
          featureKinds,
          baseScores: [...baseScores],
          trees: [...trees],
          validationLosses: [...validationLosses],
        };
        await hooks.onCheckpoint(state);
      }
      // Lets timers, heartbeats and an abort reach us between iterations.
      await yieldToEventLoop();
    }
    throwIfAborted(hooks.signal);
    return { kind: 'gbt', task: p.task, baseScores, trees };
  } finally {
    if (executor) await executor.close();
    else if (helpers) await helpers.terminate();
  }
}

/** Checks shapes and labels; returns the number of classes (1 for regression). */
function checkData(data: TreeDataset, p: GbtParams): number {
  if (!(Number.isInteger(data.rows) && data.rows >= 1)) throw new RangeError('the dataset has no rows');
  const lengths: [string, number][] = [
    ['y', data.y.length],
    ...data.features.map((f): [string, number] => [f.name, f.kind === 'numeric' ? f.values.length : f.codes.length]),
  ];
  if (data.weights) lengths.push(['weights', data.weights.length]);
  for (const [name, length] of lengths) {
    if (length !== data.rows) throw new RangeError(`${name} has ${length} values for ${data.rows} rows`);
  }
  if (data.weights?.some((w) => !(w >= 0 && Number.isFinite(w)))) {
    throw new RangeError('weights must be finite and non-negative');
  }
  if (p.task === 'regression') {
    if (data.y.some((v) => !Number.isFinite(v)))
      throw new TrainingParameterError('task', 'regression labels must be finite');
    return 1;
  }
  let max = 0;
  for (const v of data.y) {
    if (!(Number.isInteger(v) && v >= 0)) {
      throw new TrainingParameterError('task', `${p.task} labels must be class indexes; found ${v}`);
    }
    if (v > max) max = v;
  }
  if (p.task === 'binary') {
    if (max > 1) throw new TrainingParameterError('task', `binary labels must be 0 or 1; found ${max}`);
    return 2;
  }
  const classes = p.numClasses ?? max + 1;
  if (max >= classes) throw new TrainingParameterError('numClasses', `label ${max} needs more than ${classes} classes`);
  if (classes < 2) throw new TrainingParameterError('numClasses', 'multiclass needs at least 2 classes');
  return classes;
}

function pick(values: Float64Array, rows: Uint32Array): Float64Array {
  const out = new Float64Array(rows.length);
  for (let i = 0; i < rows.length; i++) out[i] = values[rows[i]!]!;
  return out;
}

function initialScores(baseScores: readonly number[], n: number): Float64Array {
  const raw = new Float64Array(n * baseScores.length);
  for (const [k, s] of baseScores.entries()) raw.fill(s, k * n, (k + 1) * n);
  return raw;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new DOMException('training was cancelled', { name: 'AbortError', cause: signal.reason });
}
