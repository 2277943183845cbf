/**
 * The MLP's checkpoint: plain JSON of everything a resumed training needs to continue bit for bit (parameters, Adam's
 * moments, the shuffle PRNG's state, the stopping rule's counters), and its validation against the run it resumes.
 */
import { z } from 'zod';
import type { AdamState } from '../../optim/adam.js';
import { TrainingParameterError, type EncodedDataset } from '../../types.js';
import type { ResolvedMlpParams } from './params.js';

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

/** Canonical JSON of the parameters that determine the result (the input layout does not). */
function paramsKey(params: Readonly<Record<string, unknown>>): string {
  const keys = Object.keys(params)
    .filter((k) => k !== 'inputLayout' && params[k] !== undefined)
    .sort();
  return JSON.stringify(keys.map((k) => [k, params[k]]));
}

/** The checkpoint `state`, checked to fit these parameters, this data and a network of `size` parameters. */
export function parseCheckpoint(
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
