/**
 * Linear models on the encoded input, following scikit-learn's conventions so that their numbers can be checked
 * against it:
 *
 * - logistic regression (binary) and softmax regression (multinomial, K weight rows): minimizes
 *   ½‖W‖² + C·Σᵢ cᵢ·ℓᵢ with ℓ the log loss and cᵢ the row's weight (sample weight × class weight); the intercepts
 *   are not penalized (scikit-learn's `LogisticRegression(penalty='l2', C, solver='lbfgs')`). Solved by L-BFGS on
 *   the same objective divided by C·Σcᵢ (same minimizer; the reported loss is then the weighted mean log loss plus
 *   ‖W‖²/(2·C·Σcᵢ), and tolerances do not depend on the number of rows).
 * - ridge: minimizes Σᵢ cᵢ·(yᵢ − xᵢ·w − b)² + alpha·‖w‖² (scikit-learn's `Ridge(alpha)`), by the normal equations of
 *   the centered problem, Cholesky and two steps of iterative refinement, or by preconditioned conjugate gradients
 *   for many columns.
 *
 * Loss and gradient are one pass over the rows. The input is mostly one-hot, so by default it is read as compressed
 * sparse rows (given as such, or built once from the dense matrix): a row costs its non-zeros, not its width. The
 * dense path skips zeros in the same order, so both give bit-identical models. Equal rows are merged once before
 * training (their label weights summed), when that removes at least a fifth of them: encoded tabular data repeats
 * itself (the flights training split: 966k rows, 169k distinct).
 */
import { z } from 'zod';
import { parseTrainingParams } from '../params.js';
import type { SparseEncodedDataset, SparseMatrix } from '../dataset.js';
import { minimizeLbfgs, abortError, type LbfgsState, type Objective } from '../optim/lbfgs.js';
import { TrainingParameterError, type EncodedDataset, type LinearModel, type TrainingHooks } from '../types.js';

/** What the linear trainers read: the contract's dense dataset, or the same matrix as CSR (models/dataset.ts). */
export type LinearTrainingData = EncodedDataset | SparseEncodedDataset;

const classWeightSchema = z.union([
  z.literal('balanced'),
  z.record(z.string().regex(/^\d+$/, 'keys are class indexes'), z.number().positive().finite()),
]);

const inputLayoutSchema = z.enum(['auto', 'dense', 'sparse']).default('auto');

/**
 * Parameters of logistic and softmax regression. Defaults are scikit-learn's `LogisticRegression` (C = 1,
 * intercept, L-BFGS with 10 correction pairs, max_iter = 100, tol = 1e-4) with the stopping rule of its recent
 * versions: the objective divided by C·Σcᵢ (a weighted mean log loss plus penalty), L-BFGS stopping when the largest
 * gradient component is at most `tol` or an iteration gains less than 64·ε relatively (scipy's gtol and ftol).
 */
export const logisticRegressionParamsSchema = z.strictObject({
  /** `binary`: one logit (labels 0/1); `multiclass`: softmax over `classCount` logits. */
  task: z.enum(['binary', 'multiclass']).default('binary'),
  /** Multiclass: number of classes K; default max(y) + 1. Set it when a class may be absent from `y`. */
  classCount: z.number().int().min(2).max(100_000).optional(),
  /** Inverse regularization strength (scikit-learn's C). */
  C: z.number().positive().finite().default(1),
  fitIntercept: z.boolean().default(true),
  /**
   * Multiplies each row's weight by its class's: `balanced` = rows / (classes present × rows of the class), as
   * scikit-learn; or a record from class index (the encoded label, as a string key) to weight, 1 for classes absent.
   */
  classWeight: classWeightSchema.optional(),
  /** L-BFGS iterations at most (scikit-learn's max_iter). */
  maxIterations: z.number().int().min(1).max(100_000).default(100),
  /** Stop when max |∂f/∂θ| ≤ tol, f the objective divided by C·Σcᵢ. */
  tol: z.number().min(0).finite().default(1e-4),
  /** Stop when an iteration lowers f by at most lossTol·max(|f|, 1) (scipy's ftol; default 64·ε). */
  lossTol: z
    .number()
    .min(0)
    .finite()
    .default(64 * Number.EPSILON),
  /** L-BFGS correction pairs. */
  memory: z.number().int().min(1).max(100).default(10),
  /** How rows are read: `auto` uses CSR when at most a quarter of a dense matrix is non-zero. Same results. */
  inputLayout: inputLayoutSchema,
});

/** Parameters as a caller writes them (defaults may be omitted). */
export type LogisticRegressionParams = z.input<typeof logisticRegressionParamsSchema>;
/** Parameters with every default filled in. */
export type ResolvedLogisticRegressionParams = z.output<typeof logisticRegressionParamsSchema>;

/** Parameters of ridge regression; defaults follow scikit-learn's `Ridge`. */
export const ridgeParamsSchema = z.strictObject({
  /** L2 penalty on the weights, not the intercept (scikit-learn's alpha). 0 is ordinary least squares. */
  alpha: z.number().min(0).finite().default(1),
  fitIntercept: z.boolean().default(true),
  /** `cholesky`: normal equations (columns² memory); `cg`: conjugate gradients; `auto`: cholesky up to 4096 columns. */
  solver: z.enum(['auto', 'cholesky', 'cg']).default('auto'),
  /** CG: stop when ‖residual‖ ≤ tol·‖right-hand side‖. */
  tol: z.number().positive().finite().default(1e-10),
  /** CG iterations at most; default: columns + 1000. */
  maxIterations: z.number().int().min(1).max(10_000_000).optional(),
  inputLayout: inputLayoutSchema,
});

export type RidgeParams = z.input<typeof ridgeParamsSchema>;
export type ResolvedRidgeParams = z.output<typeof ridgeParamsSchema>;

/**
 * Validates logistic/softmax regression parameters and fills in the defaults.
 *
 * @throws TrainingParameterError naming the first offending parameter.
 */
export function parseLogisticRegressionParams(params: unknown): ResolvedLogisticRegressionParams {
  return parseTrainingParams(logisticRegressionParamsSchema, params ?? {});
}

/**
 * Validates ridge parameters and fills in the defaults.
 *
 * @throws TrainingParameterError naming the first offending parameter.
 */
export function parseRidgeParams(params: unknown): ResolvedRidgeParams {
  return parseTrainingParams(ridgeParamsSchema, params ?? {});
}

/**
 * The state handed to `hooks.onCheckpoint`: plain JSON from which `hooks.resumeFrom` continues bit for bit (the
 * optimizer's whole state; see `minimizeLbfgs`). It records the problem it belongs to, and a resume with other data
 * dimensions or other objective parameters is refused.
 */
export interface LinearCheckpoint {
  readonly format: 'linear-lbfgs-checkpoint/1';
  readonly rows: number;
  readonly cols: number;
  readonly outputs: number;
  /** The parameters that define the objective (C, task, classCount, classWeight, fitIntercept). */
  readonly objective: Record<string, unknown>;
  readonly optimizer: LbfgsState;
}

const checkpointSchema = z.object({
  format: z.literal('linear-lbfgs-checkpoint/1'),
  rows: z.number().int(),
  cols: z.number().int(),
  outputs: z.number().int(),
  objective: z.record(z.string(), z.unknown()),
  optimizer: z.object({
    version: z.literal(1),
    x: z.array(z.number()),
    loss: z.number(),
    gradient: z.array(z.number()),
    previousLoss: z.number().nullable(),
    s: z.array(z.array(z.number())),
    y: z.array(z.array(z.number())),
    iteration: z.number().int().min(0),
    evaluations: z.number().int().min(0),
  }),
});

/**
 * Trains binary logistic regression (`task: 'binary'`, labels 0/1) or softmax regression (`task: 'multiclass'`,
 * labels 0..K−1) with L-BFGS. Deterministic: the same data and parameters give the same model bit for bit, dense or
 * sparse input alike, resumed or not.
 *
 * Progress: `hooks.onProgress` after every iteration (loss = the scaled objective, see the module comment);
 * checkpoints every `hooks.checkpointEvery` iterations (default 10) when `hooks.onCheckpoint` is set (awaited);
 * `hooks.resumeFrom` continues such a checkpoint; `hooks.signal` stops training between iterations with an error
 * named `AbortError`.
 *
 * @returns weights[k][j] per output (binary: one row, the logit of class 1) and the intercepts.
 * @throws TrainingParameterError for invalid parameters, labels, weights or non-finite inputs, or a checkpoint of
 *   another problem.
 * @example
 * const train = await loadSparseEncodedDataset(engine, trainPath, transform);
 * const model = await trainLogisticRegression(train, { C: 1 }, { onProgress: (p) => log.info(p) });
 */
export async function trainLogisticRegression(
  data: LinearTrainingData,
  params: LogisticRegressionParams = {},
  hooks: TrainingHooks = {},
): Promise<LinearModel> {
  const p = parseLogisticRegressionParams(params);
  const { rows, cols } = data.x;
  const { objective, size, outputs, objectiveParams } = buildLogisticObjective(data, p);
  const resumeFrom = hooks.resumeFrom === undefined ? undefined : readCheckpoint(hooks.resumeFrom);
  if (resumeFrom) {
    const same =
      resumeFrom.rows === rows &&
      resumeFrom.cols === cols &&
      resumeFrom.outputs === outputs &&
      resumeFrom.optimizer.x.length === size &&
      JSON.stringify(resumeFrom.objective) === JSON.stringify(objectiveParams);
    if (!same) throw new TrainingParameterError('resumeFrom', 'the checkpoint belongs to another problem');
  }

  const every = hooks.checkpointEvery ?? 10;
  const started = performance.now();
  const result = await minimizeLbfgs(objective, new Float64Array(size), {
    memory: p.memory,
    maxIterations: p.maxIterations,
    gradientTolerance: p.tol,
    lossTolerance: p.lossTol,
    ...(hooks.signal ? { signal: hooks.signal } : {}),
    ...(resumeFrom ? { resumeFrom: resumeFrom.optimizer } : {}),
    onIteration: async (report) => {
      const seconds = (performance.now() - started) / 1000;
      const evaluated = report.evaluations - (resumeFrom?.optimizer.evaluations ?? 0);
      hooks.onProgress?.({
        iteration: report.iteration,
        loss: report.loss,
        ...(seconds > 0 ? { rowsPerSecond: (evaluated * rows) / seconds } : {}),
      });
      if (hooks.onCheckpoint && every > 0 && report.iteration % every === 0) {
        const checkpoint: LinearCheckpoint = {
          format: 'linear-lbfgs-checkpoint/1',
          rows,
          cols,
          outputs,
          objective: objectiveParams,
          optimizer: report.state(),
        };
        await hooks.onCheckpoint(checkpoint);
      }
    },
  });
  const theta = result.x;
  const weights: number[][] = [];
  for (let k = 0; k < outputs; k++) {
    const row = new Array<number>(cols);
    for (let j = 0; j < cols; j++) row[j] = theta[j * outputs + k]!;
    weights.push(row);
  }
  const intercepts = Array.from({ length: outputs }, (_, k) => (p.fitIntercept ? theta[cols * outputs + k]! : 0));
  return { kind: 'linear', task: p.task, weights, intercepts };
}

/** The objective L-BFGS minimizes, θ's layout (feature-major W, then intercepts) and the problem's identity. */
interface LogisticProblem {
  readonly objective: Objective;
  readonly size: number;
  readonly outputs: number;
  readonly objectiveParams: Record<string, unknown>;
}

/**
 * The exact objective {@link trainLogisticRegression} minimizes (value and gradient, one pass over the distinct
 * rows), for gradient checks and diagnostics. θ = [W feature-major: θ[j·K + k] for output k and column j, then the
 * K intercepts when fitted]; the value is (½‖W‖² + C·Σᵢcᵢℓᵢ) / (C·Σᵢcᵢ).
 *
 * @throws TrainingParameterError as {@link trainLogisticRegression}.
 */
export function logisticObjective(
  data: LinearTrainingData,
  params: LogisticRegressionParams = {},
): { readonly objective: Objective; readonly size: number } {
  const { objective, size } = buildLogisticObjective(data, parseLogisticRegressionParams(params));
  return { objective, size };
}

function buildLogisticObjective(data: LinearTrainingData, p: ResolvedLogisticRegressionParams): LogisticProblem {
  const { rows, cols } = data.x;
  checkLengths(data);
  const maxLabel = checkClassLabels(data.y);
  const classCount = p.task === 'binary' ? 2 : (p.classCount ?? Math.max(2, maxLabel + 1));
  if (maxLabel >= classCount) {
    const what = p.task === 'binary' ? 'binary labels must be 0 or 1' : `classCount is ${classCount}`;
    throw new TrainingParameterError('y', `label ${maxLabel} is out of range: ${what}`);
  }
  const outputs = p.task === 'binary' ? 1 : classCount;
  const rowWeights = classRowWeights(data, classCount, p.classWeight);
  const design = toDesign(data.x, p.inputLayout);
  let total = 0;
  for (let i = 0; i < rows; i++) total += rowWeights[i]!;
  if (!(total > 0)) throw new TrainingParameterError('weights', 'the rows weigh nothing in all');
  const scale = { data: 1 / total, penalty: 1 / (p.C * total) };
  const merged = weightedRows(design, data.y, rowWeights, classCount);
  return {
    objective:
      outputs === 1
        ? binaryObjective(merged, p.fitIntercept, scale)
        : softmaxObjective(merged, outputs, p.fitIntercept, scale),
    size: cols * outputs + (p.fitIntercept ? outputs : 0),
    outputs,
    objectiveParams: {
      task: p.task,
      classCount,
      C: p.C,
      fitIntercept: p.fitIntercept,
      classWeight: p.classWeight ?? null,
    },
  };
}

/**
 * Softmax (multinomial) regression: {@link trainLogisticRegression} with `task: 'multiclass'` (refuses any other
 * task), for the `softmax_regression` trainer.
 */
export function trainSoftmaxRegression(
  data: LinearTrainingData,
  params: Omit<LogisticRegressionParams, 'task'> & { task?: 'multiclass' } = {},
  hooks: TrainingHooks = {},
): Promise<LinearModel> {
  if ((params as { task?: unknown }).task !== undefined && params.task !== 'multiclass') {
    throw new TrainingParameterError('task', 'softmax regression is multiclass');
  }
  return trainLogisticRegression(data, { ...params, task: 'multiclass' }, hooks);
}

function readCheckpoint(state: unknown): LinearCheckpoint {
  const parsed = checkpointSchema.safeParse(state);
  if (!parsed.success) throw new TrainingParameterError('resumeFrom', 'not a linear-model checkpoint');
  return parsed.data as LinearCheckpoint;
}

// ---------------------------------------------------------------------------------------------------------------
// Input checks and row weights

function checkLengths(data: LinearTrainingData): void {
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

/** Checks that labels are non-negative integers; returns the largest. */
function checkClassLabels(y: Float64Array): number {
  let max = 0;
  for (let i = 0; i < y.length; i++) {
    const v = y[i]!;
    if (!(Number.isInteger(v) && v >= 0)) throw new TrainingParameterError('y', `label ${i} is ${v}, not a class`);
    if (v > max) max = v;
  }
  return max;
}

/** Row weights: sample weight (1 without) × the row's class weight. */
function classRowWeights(
  data: LinearTrainingData,
  classCount: number,
  classWeight: ResolvedLogisticRegressionParams['classWeight'],
): Float64Array {
  const rows = data.y.length;
  const perClass = new Float64Array(classCount).fill(1);
  if (classWeight === 'balanced') {
    const counts = new Float64Array(classCount);
    for (let i = 0; i < rows; i++) counts[data.y[i]!]!++;
    let present = 0;
    for (const c of counts) if (c > 0) present++;
    for (let k = 0; k < classCount; k++) if (counts[k]! > 0) perClass[k] = rows / (present * counts[k]!);
  } else if (classWeight) {
    for (const [key, weight] of Object.entries(classWeight)) {
      const k = Number(key);
      if (k >= classCount) throw new TrainingParameterError('classWeight', `class ${key} is out of range`);
      perClass[k] = weight;
    }
  }
  const weights = new Float64Array(rows);
  for (let i = 0; i < rows; i++) weights[i] = (data.weights?.[i] ?? 1) * perClass[data.y[i]!]!;
  return weights;
}

// ---------------------------------------------------------------------------------------------------------------
// Design matrix access

type Design =
  | { readonly kind: 'dense'; readonly rows: number; readonly cols: number; readonly data: Float64Array }
  | {
      readonly kind: 'sparse';
      readonly rows: number;
      readonly cols: number;
      readonly indptr: Int32Array;
      readonly indices: Int32Array;
      readonly values: Float64Array;
    };

function toDesign(x: EncodedDataset['x'] | SparseMatrix, layout: 'auto' | 'dense' | 'sparse'): Design {
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

// ---------------------------------------------------------------------------------------------------------------
// Distinct rows. Encoded tabular data repeats itself (flights: 966k rows, 169k distinct), and the log loss of k equal
// rows is a function of their summed label weights: the objective runs over distinct rows, each with its total
// weight and its weight per label. Same objective, fewer exp/log and fewer passes over memory.

/** The rows the objective iterates over: distinct feature rows, each with its label weights. */
interface WeightedRows {
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
function weightedRows(design: Design, y: Float64Array, c: Float64Array, classCount: number): WeightedRows {
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

/** Rows are summed in blocks of this many, then the blocks: less rounding error than one running sum. */
const BLOCK = 1024;

// ---------------------------------------------------------------------------------------------------------------
// Logistic objectives. θ = [W feature-major (θ[j·K + k]), intercepts (K)]. Rows skip zeros in both layouts, in
// ascending column order, so dense and sparse inputs give the same sums bit for bit.

interface Scale {
  /** 1 / Σcᵢ. */
  readonly data: number;
  /** 1 / (C·Σcᵢ). */
  readonly penalty: number;
}

/**
 * Binary log loss, K = 1: f = (1/Σc)·Σᵤ [Wᵤ·log(1 + e^zᵤ) − W⁺ᵤ·zᵤ] + ‖w‖²/(2CΣc), zᵤ = xᵤ·w + b, over distinct rows
 * u with total weight Wᵤ and weight W⁺ᵤ on label 1 (= Σ over the copies of cᵢ·[log(1 + e^zᵢ) − yᵢzᵢ]).
 */
function binaryObjective(rows: WeightedRows, fitIntercept: boolean, scale: Scale): Objective {
  const { design, total } = rows;
  const { cols } = design;
  const count = design.rows;
  const positive = new Float64Array(count);
  for (let u = 0; u < count; u++) {
    for (let k = rows.labelStart[u]!; k < rows.labelStart[u + 1]!; k++) {
      if (rows.labels[k] === 1) positive[u] = rows.labelWeights[k]!;
    }
  }
  // One loop per layout, typed arrays in locals: the hot loop sees monomorphic, hoistable loads.
  const indptr = design.kind === 'sparse' ? design.indptr : new Int32Array(0);
  const indices = design.kind === 'sparse' ? design.indices : new Int32Array(0);
  const values = design.kind === 'sparse' ? design.values : new Float64Array(0);
  const dense = design.kind === 'dense' ? design.data : new Float64Array(0);
  const sparse = design.kind === 'sparse';
  return (theta, grad) => {
    grad.fill(0);
    const b = fitIntercept ? theta[cols]! : 0;
    let loss = 0;
    let block = 0;
    let gb = 0;
    for (let u = 0; u < count; u++) {
      let z = b;
      const start = sparse ? indptr[u]! : u * cols;
      const end = sparse ? indptr[u + 1]! : start + cols;
      if (sparse) {
        for (let k = start; k < end; k++) z += values[k]! * theta[indices[k]!]!;
      } else {
        for (let k = start; k < end; k++) {
          const v = dense[k]!;
          if (v !== 0) z += v * theta[k - start]!;
        }
      }
      const weight = total[u]!;
      const weightPositive = positive[u]!;
      // softplus(z) = log(1 + e^z) and p = sigmoid(z), from one exp of −|z|.
      let softplus: number;
      let p: number;
      if (z >= 0) {
        const e = Math.exp(-z);
        softplus = z + Math.log1p(e);
        p = 1 / (1 + e);
      } else {
        const e = Math.exp(z);
        softplus = Math.log1p(e);
        p = e / (1 + e);
      }
      block += weight * softplus - weightPositive * z;
      if ((u & (BLOCK - 1)) === BLOCK - 1) {
        loss += block;
        block = 0;
      }
      const residual = weight * p - weightPositive;
      gb += residual;
      if (sparse) {
        for (let k = start; k < end; k++) grad[indices[k]!]! += residual * values[k]!;
      } else {
        for (let k = start; k < end; k++) {
          const v = dense[k]!;
          if (v !== 0) grad[k - start]! += residual * v;
        }
      }
    }
    loss += block;
    let penalty = 0;
    for (let j = 0; j < cols; j++) {
      const w = theta[j]!;
      penalty += w * w;
      grad[j] = grad[j]! * scale.data + w * scale.penalty;
    }
    if (fitIntercept) grad[cols] = gb * scale.data;
    return loss * scale.data + 0.5 * penalty * scale.penalty;
  };
}

/**
 * Multinomial log loss over K outputs: per distinct row, Wᵤ·logΣₖe^{zᵤₖ} − Σ_labels w·zᵤ,label (= Σ over the copies
 * of cᵢ·[logΣₖe^{zᵢₖ} − zᵢ,yᵢ]); penalty ‖W‖²/(2CΣc) over every output's weights.
 */
function softmaxObjective(rows: WeightedRows, outputs: number, fitIntercept: boolean, scale: Scale): Objective {
  const { design, total, labelStart, labels, labelWeights } = rows;
  const { cols } = design;
  const count = design.rows;
  const K = outputs;
  const z = new Float64Array(K);
  const bias = cols * K;
  const sparse = design.kind === 'sparse' ? design : null;
  const dense = design.kind === 'dense' ? design.data : null;
  return (theta, grad) => {
    grad.fill(0);
    let loss = 0;
    let block = 0;
    for (let u = 0; u < count; u++) {
      for (let k = 0; k < K; k++) z[k] = fitIntercept ? theta[bias + k]! : 0;
      if (sparse) {
        const { indptr, indices, values } = sparse;
        const end = indptr[u + 1]!;
        for (let p = indptr[u]!; p < end; p++) {
          const v = values[p]!;
          const base = indices[p]! * K;
          for (let k = 0; k < K; k++) z[k] = z[k]! + v * theta[base + k]!;
        }
      } else {
        const row = u * cols;
        for (let j = 0; j < cols; j++) {
          const v = dense![row + j]!;
          if (v === 0) continue;
          const base = j * K;
          for (let k = 0; k < K; k++) z[k] = z[k]! + v * theta[base + k]!;
        }
      }
      let max = z[0]!;
      for (let k = 1; k < K; k++) if (z[k]! > max) max = z[k]!;
      const weight = total[u]!;
      // Σ w·(z_label − max) before z is overwritten.
      let labelled = 0;
      for (let p = labelStart[u]!; p < labelStart[u + 1]!; p++) labelled += labelWeights[p]! * (z[labels[p]!]! - max);
      let sum = 0;
      for (let k = 0; k < K; k++) {
        const e = Math.exp(z[k]! - max);
        z[k] = e;
        sum += e;
      }
      block += weight * Math.log(sum) - labelled;
      if ((u & (BLOCK - 1)) === BLOCK - 1) {
        loss += block;
        block = 0;
      }
      // Residuals Wᵤ·pₖ − w(label k) into z.
      const scaled = weight / sum;
      for (let k = 0; k < K; k++) z[k] = z[k]! * scaled;
      for (let p = labelStart[u]!; p < labelStart[u + 1]!; p++) z[labels[p]!] = z[labels[p]!]! - labelWeights[p]!;
      if (sparse) {
        const { indptr, indices, values } = sparse;
        const end = indptr[u + 1]!;
        for (let p = indptr[u]!; p < end; p++) {
          const v = values[p]!;
          const base = indices[p]! * K;
          for (let k = 0; k < K; k++) grad[base + k]! += z[k]! * v;
        }
      } else {
        const row = u * cols;
        for (let j = 0; j < cols; j++) {
          const v = dense![row + j]!;
          if (v === 0) continue;
          const base = j * K;
          for (let k = 0; k < K; k++) grad[base + k]! += z[k]! * v;
        }
      }
      if (fitIntercept) for (let k = 0; k < K; k++) grad[bias + k]! += z[k]!;
    }
    loss += block;
    let penalty = 0;
    for (let i = 0; i < bias; i++) {
      const w = theta[i]!;
      penalty += w * w;
      grad[i] = grad[i]! * scale.data + w * scale.penalty;
    }
    if (fitIntercept) for (let k = 0; k < K; k++) grad[bias + k] = grad[bias + k]! * scale.data;
    return loss * scale.data + 0.5 * penalty * scale.penalty;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Ridge

/** `auto` solves by Cholesky up to this many columns (a d×d Gram matrix, d³/6 multiply-adds), by CG beyond. */
export const RIDGE_CHOLESKY_MAX_COLUMNS = 2048;

/**
 * Trains ridge regression (scikit-learn's `Ridge`): minimizes Σᵢ cᵢ·(yᵢ − xᵢ·w − b)² + alpha·‖w‖², cᵢ the sample
 * weight (1 without), b unpenalized. With an intercept the problem is centered (weighted means of x and y), solved for
 * w, and b = ȳ − x̄·w. Cholesky solves to machine precision (plus two steps of iterative refinement that repair the
 * cancellation of forming the centered Gram matrix); CG to `tol`. Deterministic.
 *
 * Hooks: `onProgress` once for Cholesky, per iteration for CG (loss = objective / Σcᵢ); `signal` is checked before
 * solving and between CG iterations. Checkpoints are not taken (`onCheckpoint`/`resumeFrom` are ignored): a solve is
 * one pass to build the system plus a few passes per CG iteration.
 *
 * @throws TrainingParameterError for invalid parameters or inputs, or alpha = 0 on a rank-deficient matrix.
 */
export async function trainRidge(
  data: LinearTrainingData,
  params: RidgeParams = {},
  hooks: TrainingHooks = {},
): Promise<LinearModel> {
  const p = parseRidgeParams(params);
  checkLengths(data);
  for (let i = 0; i < data.y.length; i++) {
    if (!Number.isFinite(data.y[i]!)) throw new TrainingParameterError('y', `target ${i} is ${data.y[i]}`);
  }
  const design = toDesign(data.x, p.inputLayout);
  const { rows, cols } = design;
  const c = data.weights ?? new Float64Array(rows).fill(1);
  const system = centeredSystem(design, data.y, c, p.fitIntercept);
  if (!(system.total > 0)) throw new TrainingParameterError('weights', 'the rows weigh nothing in all');
  if (hooks.signal?.aborted) throw abortError(hooks.signal);

  const useCholesky = p.solver === 'cholesky' || (p.solver === 'auto' && cols <= RIDGE_CHOLESKY_MAX_COLUMNS);
  const apply = (v: Float64Array, out: Float64Array) => applyCentered(design, c, system.mean, p.alpha, v, out);
  let w: Float64Array;
  if (useCholesky) {
    const a = gramMatrix(design, c, system, p.alpha);
    if (!choleskyInPlace(a, cols)) {
      throw new TrainingParameterError('alpha', 'the centered matrix is rank-deficient: use alpha > 0');
    }
    w = choleskySolve(a, cols, system.rhs);
    const residual = new Float64Array(cols);
    for (let step = 0; step < 2; step++) {
      apply(w, residual);
      for (let j = 0; j < cols; j++) residual[j] = system.rhs[j]! - residual[j]!;
      const correction = choleskySolve(a, cols, residual);
      for (let j = 0; j < cols; j++) w[j] = w[j]! + correction[j]!;
    }
    hooks.onProgress?.({ iteration: 1, loss: ridgeLoss(system, w, apply) });
  } else {
    w = await conjugateGradients(design, c, system, p, apply, hooks);
  }
  let intercept = 0;
  if (p.fitIntercept) {
    intercept = system.yMean;
    for (let j = 0; j < cols; j++) intercept -= system.mean[j]! * w[j]!;
  }
  return { kind: 'linear', task: 'regression', weights: [Array.from(w)], intercepts: [intercept] };
}

interface CenteredSystem {
  /** Σcᵢ. */
  readonly total: number;
  /** Weighted column means (zeros without an intercept). */
  readonly mean: Float64Array;
  readonly yMean: number;
  /** Σ cᵢ·(xᵢ − x̄)·(yᵢ − ȳ). */
  readonly rhs: Float64Array;
  /** Σ cᵢ·(yᵢ − ȳ)². */
  readonly yy: number;
  /** Σ cᵢ·(xᵢ − x̄)²ⱼ (the diagonal of the centered Gram matrix, for CG's preconditioner). */
  readonly diagonal: Float64Array;
}

/** Visits the non-zeros of row r (both layouts, ascending columns). */
function forEachNonZero(design: Design, r: number, visit: (j: number, v: number) => void): void {
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

function centeredSystem(design: Design, y: Float64Array, c: Float64Array, fitIntercept: boolean): CenteredSystem {
  const { rows, cols } = design;
  const mean = new Float64Array(cols);
  let total = 0;
  let ySum = 0;
  for (let r = 0; r < rows; r++) {
    const cr = c[r]!;
    total += cr;
    ySum += cr * y[r]!;
    if (fitIntercept) forEachNonZero(design, r, (j, v) => (mean[j] = mean[j]! + cr * v));
  }
  const yMean = fitIntercept ? ySum / total : 0;
  if (fitIntercept) for (let j = 0; j < cols; j++) mean[j] = mean[j]! / total;
  const rhs = new Float64Array(cols);
  const squares = new Float64Array(cols);
  let residualSum = 0;
  let yy = 0;
  for (let r = 0; r < rows; r++) {
    const cr = c[r]!;
    const t = cr * (y[r]! - yMean);
    residualSum += t;
    yy += t * (y[r]! - yMean);
    forEachNonZero(design, r, (j, v) => {
      rhs[j] = rhs[j]! + t * v;
      squares[j] = squares[j]! + cr * v * v;
    });
  }
  const diagonal = new Float64Array(cols);
  for (let j = 0; j < cols; j++) {
    rhs[j] = rhs[j]! - mean[j]! * residualSum;
    diagonal[j] = squares[j]! - total * mean[j]! * mean[j]!;
  }
  return { total, mean, yMean, rhs, yy, diagonal };
}

/** The centered Gram matrix plus alpha·I, full (both triangles), row-major. */
function gramMatrix(design: Design, c: Float64Array, system: CenteredSystem, alpha: number): Float64Array {
  const { rows, cols } = design;
  const a = new Float64Array(cols * cols);
  const js = new Int32Array(cols);
  const vs = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const cr = c[r]!;
    let count = 0;
    forEachNonZero(design, r, (j, v) => {
      js[count] = j;
      vs[count++] = v;
    });
    for (let p = 0; p < count; p++) {
      const row = js[p]! * cols;
      const cv = cr * vs[p]!;
      for (let q = p; q < count; q++) a[row + js[q]!]! += cv * vs[q]!;
    }
  }
  const { mean, total } = system;
  for (let j = 0; j < cols; j++) {
    for (let k = j; k < cols; k++) {
      const value = a[j * cols + k]! - total * mean[j]! * mean[k]! + (j === k ? alpha : 0);
      a[j * cols + k] = value;
      a[k * cols + j] = value;
    }
  }
  return a;
}

/** out = (Xc'·C·Xc + alpha·I)·v, Xc = X − 1·x̄ᵀ, without forming Xc: one pass over the rows. */
function applyCentered(
  design: Design,
  c: Float64Array,
  mean: Float64Array,
  alpha: number,
  v: Float64Array,
  out: Float64Array,
): void {
  const { rows, cols } = design;
  let meanDot = 0;
  for (let j = 0; j < cols; j++) meanDot += mean[j]! * v[j]!;
  out.fill(0);
  let tSum = 0;
  for (let r = 0; r < rows; r++) {
    let dotRow = 0;
    forEachNonZero(design, r, (j, x) => (dotRow += x * v[j]!));
    const t = c[r]! * (dotRow - meanDot);
    tSum += t;
    forEachNonZero(design, r, (j, x) => (out[j] = out[j]! + t * x));
  }
  for (let j = 0; j < cols; j++) out[j] = out[j]! - mean[j]! * tSum + alpha * v[j]!;
}

/** Objective / Σc at w, from the quadratic form: Σc(y−ȳ)² − wᵀ(rhs + r), r = rhs − A·w. */
function ridgeLoss(
  system: CenteredSystem,
  w: Float64Array,
  apply: (v: Float64Array, out: Float64Array) => void,
): number {
  const aw = new Float64Array(w.length);
  apply(w, aw);
  let value = system.yy;
  for (let j = 0; j < w.length; j++) value -= w[j]! * (2 * system.rhs[j]! - aw[j]!);
  return value / system.total;
}

/** In-place lower Cholesky factor of a symmetric positive-definite row-major matrix; false when not positive. */
function choleskyInPlace(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rowJ = j * n;
    let diagonal = a[rowJ + j]!;
    for (let k = 0; k < j; k++) diagonal -= a[rowJ + k]! * a[rowJ + k]!;
    if (!(diagonal > 0)) return false;
    const pivot = Math.sqrt(diagonal);
    a[rowJ + j] = pivot;
    for (let i = j + 1; i < n; i++) {
      const rowI = i * n;
      let sum = a[rowI + j]!;
      for (let k = 0; k < j; k++) sum -= a[rowI + k]! * a[rowJ + k]!;
      a[rowI + j] = sum / pivot;
    }
  }
  return true;
}

/** Solves L·Lᵀ·x = b with the factor from {@link choleskyInPlace}. */
function choleskySolve(l: Float64Array, n: number, b: Float64Array): Float64Array {
  const x = Float64Array.from(b);
  for (let i = 0; i < n; i++) {
    let sum = x[i]!;
    for (let k = 0; k < i; k++) sum -= l[i * n + k]! * x[k]!;
    x[i] = sum / l[i * n + i]!;
  }
  for (let i = n - 1; i >= 0; i--) {
    let sum = x[i]!;
    for (let k = i + 1; k < n; k++) sum -= l[k * n + i]! * x[k]!;
    x[i] = sum / l[i * n + i]!;
  }
  return x;
}

/** Jacobi-preconditioned conjugate gradients on the centered normal equations, from w = 0. */
async function conjugateGradients(
  design: Design,
  c: Float64Array,
  system: CenteredSystem,
  p: ResolvedRidgeParams,
  apply: (v: Float64Array, out: Float64Array) => void,
  hooks: TrainingHooks,
): Promise<Float64Array> {
  const n = design.cols;
  const maxIterations = p.maxIterations ?? n + 1000;
  const inverseDiagonal = system.diagonal.map((d) => (d + p.alpha > 0 ? 1 / (d + p.alpha) : 1));
  const w = new Float64Array(n);
  const r = Float64Array.from(system.rhs);
  const z = r.map((v, j) => v * inverseDiagonal[j]!);
  const direction = Float64Array.from(z);
  const ad = new Float64Array(n);
  const rhsNorm = Math.sqrt(dot(system.rhs, system.rhs));
  let rz = dot(r, z);
  for (let iteration = 1; iteration <= maxIterations; iteration++) {
    if (Math.sqrt(dot(r, r)) <= p.tol * rhsNorm) break;
    await new Promise((resolve) => setImmediate(resolve));
    if (hooks.signal?.aborted) throw abortError(hooks.signal);
    apply(direction, ad);
    const curvature = dot(direction, ad);
    if (!(curvature > 0)) {
      throw new TrainingParameterError('alpha', 'the centered matrix is rank-deficient: use alpha > 0');
    }
    const step = rz / curvature;
    for (let j = 0; j < n; j++) {
      w[j] = w[j]! + step * direction[j]!;
      r[j] = r[j]! - step * ad[j]!;
      z[j] = r[j]! * inverseDiagonal[j]!;
    }
    const next = dot(r, z);
    const beta = next / rz;
    rz = next;
    for (let j = 0; j < n; j++) direction[j] = z[j]! + beta * direction[j]!;
    // Objective from the quadratic form: Σc(y−ȳ)² − wᵀ(rhs + r).
    let value = system.yy;
    for (let j = 0; j < n; j++) value -= w[j]! * (system.rhs[j]! + r[j]!);
    hooks.onProgress?.({ iteration, loss: value / system.total });
  }
  return w;
}

function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]! * b[i]!;
  return sum;
}
