import { FINAL_FAILURE_TYPES } from '../core/stages.js';
import { ActivityCancellationType, proxyActivities, upsertSearchAttributes } from '@temporalio/workflow';
import type { TrainingActivities, TrainModelInput, TrainModelResult } from '../activities/index.js';
import { SearchAttributeKeys } from '../core/constants.js';

export interface TrainModelWorkflowInput extends TrainModelInput {
  /** The training task queue (configured per deployment, so the starter passes it). */
  readonly trainingTaskQueue: string;
  /** How long a silent training worker is waited for before the attempt is retried elsewhere. Default 30 s. */
  readonly heartbeatTimeoutSeconds?: number;
  /** Upper bound of one training attempt. Default 2 hours. */
  readonly attemptTimeoutMinutes?: number;
}

/**
 * Trains one model on the training task queue (the one GPU hosts serve). A worker that dies mid-training is
 * noticed by its missing heartbeats; the retry, on any worker of the queue, resumes from the last checkpoint.
 */
export async function trainModel(input: TrainModelWorkflowInput): Promise<TrainModelResult> {
  const { trainingTaskQueue, heartbeatTimeoutSeconds, attemptTimeoutMinutes, ...training } = input;
  const { trainModel: train } = proxyActivities<TrainingActivities>({
    taskQueue: trainingTaskQueue,
    startToCloseTimeout: `${attemptTimeoutMinutes ?? 120} minutes`,
    heartbeatTimeout: `${heartbeatTimeoutSeconds ?? 30} seconds`,
    // A cancelled run ends only once the training thread has stopped: the slot is free when the caller hears of it.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '1s',
      maximumInterval: '30s',
      nonRetryableErrorTypes: [...FINAL_FAILURE_TYPES],
    },
  });
  upsertSearchAttributes([
    { key: SearchAttributeKeys.pipeline, value: training.dataset },
    { key: SearchAttributeKeys.stage, value: 'train' },
  ]);
  return train(training);
}
