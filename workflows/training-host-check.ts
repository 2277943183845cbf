import { proxyActivities } from '@temporalio/workflow';
import type { TrainingActivities, TrainingHostInfo } from '../activities/index.js';

export interface TrainingHostCheckInput {
  /** The training task queue (configured per deployment, so the starter passes it). */
  readonly trainingTaskQueue: string;
}

/**
 * Asks whichever worker serves the training task queue to describe its host (CPUs, memory, GPUs). Proves the queue
 * is served before long training is scheduled on it; fails fast when nobody polls it.
 */
export async function trainingHostCheck(input: TrainingHostCheckInput): Promise<TrainingHostInfo> {
  const { probeTrainingHost } = proxyActivities<TrainingActivities>({
    taskQueue: input.trainingTaskQueue,
    scheduleToStartTimeout: '1 minute',
    startToCloseTimeout: '30 seconds',
    retry: { maximumAttempts: 3 },
  });
  return probeTrainingHost();
}
