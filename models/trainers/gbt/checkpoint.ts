/**
 * The checkpoint of a boosting run: plain JSON holding the trees so far and the early-stopping history. Everything
 * else (bins, validation split, raw scores, gradients) is a deterministic function of the data, the parameters and
 * these trees, so a resumed run recomputes it and continues to the same model as an uninterrupted one.
 */
import { z } from 'zod';
import { TrainingParameterError, type Tree } from '../../types.js';
import type { GbtParams } from './params.js';

/** Format tag of {@link GbtCheckpoint}. */
export const GBT_CHECKPOINT_FORMAT = 'gbt-checkpoint/1';

const nodeSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('numeric'),
    feature: z.number().int().min(0),
    threshold: z.number(),
    missingLeft: z.boolean(),
    left: z.number().int().min(1),
    right: z.number().int().min(1),
  }),
  z.strictObject({
    kind: z.literal('categorical'),
    feature: z.number().int().min(0),
    leftCodes: z.array(z.number().int().min(0)),
    left: z.number().int().min(1),
    right: z.number().int().min(1),
  }),
  z.strictObject({ kind: z.literal('leaf'), value: z.number() }),
]);

const checkpointSchema = z.strictObject({
  format: z.literal(GBT_CHECKPOINT_FORMAT),
  iteration: z.number().int().min(0),
  params: z.record(z.string(), z.unknown()),
  rows: z.number().int().min(0),
  featureKinds: z.array(z.enum(['numeric', 'categorical'])),
  baseScores: z.array(z.number()),
  trees: z.array(z.strictObject({ output: z.number().int().min(0), nodes: z.array(nodeSchema).min(1) })),
  validationLosses: z.array(z.number()),
});

/** A checkpoint state as `TrainingHooks.onCheckpoint` receives it (plain JSON). */
export interface GbtCheckpoint {
  readonly format: typeof GBT_CHECKPOINT_FORMAT;
  /** Boosting iterations done. */
  readonly iteration: number;
  /** The parameters the run was started with (all must match on resume but maxIterations and threads). */
  readonly params: Readonly<Record<string, unknown>>;
  /** Rows and feature kinds of the dataset, to refuse a resume on other data. */
  readonly rows: number;
  readonly featureKinds: readonly ('numeric' | 'categorical')[];
  readonly baseScores: readonly number[];
  /** `iteration × outputs` trees, in the order they were grown. */
  readonly trees: readonly Tree[];
  /** Validation loss before the first tree and after each iteration (early stopping's history). */
  readonly validationLosses: readonly number[];
}

/** What a resume must agree on with the checkpoint. */
export interface RunIdentity {
  readonly params: GbtParams;
  readonly rows: number;
  readonly featureKinds: readonly ('numeric' | 'categorical')[];
}

/**
 * Validates a checkpoint against the run that wants to continue it.
 *
 * @throws TrainingParameterError (`resumeFrom`) when it is malformed or was taken with other parameters or data.
 */
export function parseCheckpoint(state: unknown, run: RunIdentity): GbtCheckpoint {
  const parsed = checkpointSchema.safeParse(state);
  if (!parsed.success) throw new TrainingParameterError('resumeFrom', z.prettifyError(parsed.error));
  const checkpoint: GbtCheckpoint = parsed.data;
  for (const [key, value] of Object.entries(run.params)) {
    // More iterations may be asked of a resumed run; threads do not change the model.
    if (key === 'maxIterations' || key === 'threads') continue;
    if (JSON.stringify(checkpoint.params[key]) !== JSON.stringify(value)) {
      throw new TrainingParameterError('resumeFrom', `the checkpoint was taken with another ${key}`);
    }
  }
  if (checkpoint.rows !== run.rows || checkpoint.featureKinds.join() !== run.featureKinds.join()) {
    throw new TrainingParameterError('resumeFrom', 'the checkpoint was taken on other data');
  }
  return checkpoint;
}
