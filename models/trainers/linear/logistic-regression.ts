/**
 * Logistic regression (binary) and softmax regression (multinomial, K weight rows), following scikit-learn's
 * conventions so that their numbers can be checked against it: minimizes ½‖W‖² + C·Σᵢ cᵢ·ℓᵢ with ℓ the log loss and
 * cᵢ the row's weight (sample weight × class weight); the intercepts are not penalized (scikit-learn's
 * `LogisticRegression(penalty='l2', C, solver='lbfgs')`). Solved by L-BFGS on the same objective divided by C·Σcᵢ
 * (same minimizer; the reported loss is then the weighted mean log loss plus ‖W‖²/(2·C·Σcᵢ), and tolerances do not
 * depend on the number of rows).
 */
import { z } from 'zod';
import { parseTrainingParams } from '../../params.js';
import { minimizeLbfgs, type LbfgsState, type Objective } from '../../optim/lbfgs.js';
import { TrainingParameterError, type LinearModel, type TrainingHooks } from '../../types.js';
import { checkLengths, inputLayoutSchema, toDesign, type LinearTrainingData } from './design.js';
import { weightedRows } from './distinct-rows.js';
import { binaryObjective, softmaxObjective } from './logistic-objectives.js';

const classWeightSchema = z.union([
  z.literal('balanced'),
  z.record(z.string().regex(/^\d+$/, 'keys are class indexes'), z.number().positive().finite()),
]);

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

/**
 * Validates logistic/softmax regression parameters and fills in the defaults.
 *
 * @throws TrainingParameterError naming the first offending parameter.
 */
export function parseLogisticRegressionParams(params: unknown): ResolvedLogisticRegressionParams {
  return parseTrainingParams(logisticRegressionParamsSchema, params ?? {});
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
