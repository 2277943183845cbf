import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { MainActivities } from '../activities/index.js';
import { TEMPORAL_SCHEDULED_START_TIME } from '../core/constants.js';
import type { TriggerOutcome, TriggerRequest } from '../pipelines/triggers.js';

export type TriggerPipelineRunInput = Omit<TriggerRequest, 'dedupeKey'> & {
  /** Default: derived from this workflow's id, which a schedule makes unique per action (it appends the time). */
  readonly dedupeKey?: string;
};

/**
 * The action's nominal time: the one given, else the time the schedule meant it for (Temporal's
 * `TemporalScheduledStartTime`: a backfilled action's past time, not when it ran), else when this workflow started.
 */
function nominalTimeOf(input: TriggerPipelineRunInput): string {
  if (input.triggeredAt !== undefined) return input.triggeredAt;
  const info = workflowInfo();
  return (info.typedSearchAttributes.get(TEMPORAL_SCHEDULED_START_TIME) ?? info.startTime).toISOString();
}

/**
 * Starts (or skips, with why) one run of a pipeline through the trigger path: the action of every pipeline schedule,
 * and what new-data and monitoring workflows start. A schedule's retried or repeated action finds its first event.
 * The run gets the action's nominal time, so a window measured from the trigger covers the span the action was for.
 */
export async function triggerPipelineRun(input: TriggerPipelineRunInput): Promise<TriggerOutcome> {
  const { fireTrigger } = proxyActivities<MainActivities>({
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 20 },
  });
  return fireTrigger({
    ...input,
    dedupeKey: input.dedupeKey ?? `${input.kind}:${workflowInfo().workflowId}`,
    triggeredAt: nominalTimeOf(input),
  });
}
