/**
 * The polling fallback's Temporal Schedule per pipeline (`poll:<pipeline>`, one `pollWatchedPrefix` action every
 * `triggers.newData.pollEverySeconds`, overlaps skipped). Created or updated when a definition that polls is saved
 * through the API (a retried save repairs a schedule a Temporal outage left out); a schedule whose pipeline no longer
 * polls deletes itself at its next action (activities/new-data.ts), so nothing else has to remember to remove it.
 */
import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { PipelineStore } from '../storage/pipeline-store.js';
import { pollScheduleId, pollWatchedPrefix } from '../workflows/index.js';
import { watchOfStored } from './new-data.js';

export interface PollScheduleDeps {
  readonly client: Client;
  /** The main task queue, where the poll workflow and its activity run. */
  readonly taskQueue: string;
  readonly pipelines: Pick<PipelineStore, 'getVersion'>;
}

/** What {@link syncPollSchedule} did. */
export type PollScheduleChange = 'created' | 'updated' | 'none';

/**
 * Brings the pipeline's poll schedule in line with its newest definition: created or updated (interval, task queue)
 * when it polls; left alone when it does not (a leftover schedule deletes itself). Idempotent and safe to call
 * concurrently; calls Temporal only for a definition that polls.
 */
export async function syncPollSchedule(deps: PollScheduleDeps, pipeline: string): Promise<PollScheduleChange> {
  const version = await deps.pipelines.getVersion(pipeline);
  const every = version ? watchOfStored(version.definition)?.pollEverySeconds : undefined;
  if (!every) return 'none';
  const scheduleId = pollScheduleId(pipeline);
  const spec = { intervals: [{ every: `${every}s` }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: pollWatchedPrefix,
    // The schedule appends each action's time, so every poll has an id of its own.
    workflowId: scheduleId,
    taskQueue: deps.taskQueue,
    args: [{ pipeline }] as [{ pipeline: string }],
    workflowExecutionTimeout: '10 minutes',
  };
  try {
    await deps.client.schedule.create({
      scheduleId,
      spec,
      action,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
      memo: { description: `lists the watched prefix of pipeline ${pipeline} for new objects` },
    });
    return 'created';
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
  }
  await deps.client.schedule.getHandle(scheduleId).update((previous) => ({ ...previous, spec, action }));
  return 'updated';
}

/** Deletes the pipeline's poll schedule; true when there was one. */
export async function deletePollSchedule(client: Client, pipeline: string): Promise<boolean> {
  try {
    await client.schedule.getHandle(pollScheduleId(pipeline)).delete();
    return true;
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) return false;
    throw error;
  }
}
