import { FINAL_FAILURE_TYPES } from '../core/stages.js';
import {
  ApplicationFailure,
  defineQuery,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { MainActivities, ScoreDatasetInput, ScoreDatasetResult } from '../activities/index.js';
import { SearchAttributeKeys } from '../core/constants.js';
import { failureOf } from '../core/failure.js';

export type BatchScoreInput = ScoreDatasetInput;
export type BatchScoreResult = ScoreDatasetResult;

/** Where a batch scoring run is: `scoring` (the activity runs; its heartbeats carry rows done), `done`, `failed`. */
export type BatchScoreStage = 'scoring' | 'done' | 'failed';

export interface BatchScoreState {
  readonly stage: BatchScoreStage;
  readonly model: string;
  readonly input: string;
}

export const batchScoreStateQuery = defineQuery<BatchScoreState>('batchScoreState');

/**
 * The activity reads and writes whole datasets. It heartbeats every 2 s; the SDK sends one every 0.8 × the timeout
 * at most, so 30 s both notices a lost worker quickly and keeps the progress the API shows under half a minute old.
 */
const { scoreDataset } = proxyActivities<MainActivities>({
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '30 seconds',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [...FINAL_FAILURE_TYPES],
  },
});

/**
 * Scores a Parquet dataset with one model version and stores the predictions as a Parquet artifact (one activity,
 * heartbeating its progress). A failure ends the workflow with the activity's failure type and message, so callers
 * read `NotFound`, `InvalidInput`, ... without unwrapping.
 */
export async function batchScore(input: BatchScoreInput): Promise<BatchScoreResult> {
  let stage: BatchScoreStage = 'scoring';
  setHandler(batchScoreStateQuery, () => ({ stage, model: input.modelName, input: input.input }));
  upsertSearchAttributes([
    { key: SearchAttributeKeys.model, value: input.modelName },
    { key: SearchAttributeKeys.stage, value: stage },
  ]);
  try {
    const result = await scoreDataset(input);
    stage = 'done';
    upsertSearchAttributes([{ key: SearchAttributeKeys.stage, value: stage }]);
    return result;
  } catch (error) {
    stage = 'failed';
    upsertSearchAttributes([{ key: SearchAttributeKeys.stage, value: stage }]);
    if (isCancellation(error)) throw error;
    throw ApplicationFailure.create({ ...failureOf(error), nonRetryable: true });
  }
}
