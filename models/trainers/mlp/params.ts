/** The MLP's parameters: their schema, with scikit-learn's defaults, and their validation. */
import { z } from 'zod';
import { parseTrainingParams } from '../../params.js';

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
