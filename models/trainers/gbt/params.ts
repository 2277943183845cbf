/**
 * Parameters of the gradient-boosted trees, validated once with zod. Defaults are scikit-learn's
 * HistGradientBoostingClassifier/Regressor defaults (1.2), so our figures and theirs are comparable run for run.
 */
import { z } from 'zod';
import { parseTrainingParams } from '../../params.js';
import type { LabelTask } from '../../types.js';

/** Most value bins of a numeric feature: bins are stored in a byte, and bin 255 is reserved for missing values. */
export const MAX_BINS = 255;

const positiveInt = z.number().int().min(1);

/** The schema of {@link GbtParams}; unknown keys are rejected so that a misspelt parameter is not silently ignored. */
export const gbtParamsSchema = z.strictObject({
  /** The learning task; the training thread passes the prepared label's task. */
  task: z.enum(['binary', 'multiclass', 'regression']),
  /** Multiclass only: number of classes (the transform's class count); default: largest label + 1. */
  numClasses: z.number().int().min(2).max(1000).optional(),
  learningRate: z.number().gt(0).max(1e3).default(0.1),
  maxIterations: positiveInt.max(100_000).default(100),
  /** Leaves per tree; null: unlimited (then bound by maxDepth and minSamplesLeaf). */
  maxLeafNodes: z.number().int().min(2).nullable().default(31),
  /** Edges from the root to the deepest leaf; null: unlimited. */
  maxDepth: positiveInt.nullable().default(null),
  minSamplesLeaf: positiveInt.default(20),
  l2Regularization: z.number().min(0).max(1e12).default(0),
  /** Value bins per numeric feature (one more bin always holds missing values). */
  maxBins: z.number().int().min(2).max(MAX_BINS).default(MAX_BINS),
  /** 'auto': on when there are more than 10,000 rows (scikit-learn's rule). */
  earlyStopping: z.union([z.literal('auto'), z.boolean()]).default('auto'),
  /** Share of the rows held out (stratified for classification) to score early stopping. */
  validationFraction: z.number().gt(0).lt(1).default(0.1),
  /** Stop when none of the last nIterNoChange validation losses beats the one before them by more than tol. */
  nIterNoChange: positiveInt.max(10_000).default(10),
  tol: z.number().min(0).default(1e-7),
  /** Seeds the binning subsample and the validation split; the same seed and data give the same model. */
  seed: z.number().int().min(0).max(0xffffffff).default(0),
  /**
   * Threads for the row passes; 'auto': up to 4 cores from 200,000 rows, else 1. The model does not depend on it
   * (work is split into fixed chunks, combined in a fixed order).
   */
  threads: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto'),
});

/** Parameters as a caller writes them (JSON): everything but `task` may be left out. */
export type GbtParamsInput = z.input<typeof gbtParamsSchema>;

/** Parameters after validation, with every default filled in. */
export type GbtParams = z.output<typeof gbtParamsSchema>;

/**
 * Validates training parameters and fills in defaults.
 *
 * @throws TrainingParameterError naming the first offending parameter (or `params` when the input is not an object).
 */
export function parseGbtParams(input: unknown): GbtParams {
  return parseTrainingParams(gbtParamsSchema, input);
}

/** Number of raw-score outputs (trees per iteration) of a task. */
export function outputCount(task: LabelTask, numClasses: number): number {
  return task === 'multiclass' ? numClasses : 1;
}
