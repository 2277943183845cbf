/**
 * The platform's Temporal schedules, created idempotently when the main worker starts: today the rollout reconciler
 * (workflows/rollout-reconciler.ts), which rolls back canaries whose rollout workflow no longer runs.
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { Logger } from '../core/logger.js';
import { reconcileDeploymentRollouts, ROLLOUT_RECONCILER_SCHEDULE_ID } from '../workflows/index.js';

export interface ReconcilerScheduleOptions {
  /** The main task queue, where the reconciler's workflow and activity run. */
  readonly taskQueue: string;
  /** How often it runs, in seconds. */
  readonly everySeconds: number;
  readonly logger?: Logger;
}

/**
 * Creates the rollout reconciler's schedule, or brings an existing one up to date (interval and task queue): safe to
 * call from every worker start, concurrently too. Overlapping runs are skipped, missed ones are not caught up.
 *
 * @returns whether the schedule was created (false: it existed and was updated).
 */
export async function ensureRolloutReconcilerSchedule(
  client: Client,
  options: ReconcilerScheduleOptions,
): Promise<boolean> {
  const spec = { intervals: [{ every: `${options.everySeconds}s` }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: reconcileDeploymentRollouts,
    workflowId: ROLLOUT_RECONCILER_SCHEDULE_ID,
    taskQueue: options.taskQueue,
    args: [{}] as [Record<string, never>],
    workflowExecutionTimeout: '10 minutes',
  };
  try {
    await client.schedule.create({
      scheduleId: ROLLOUT_RECONCILER_SCHEDULE_ID,
      spec,
      action,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
      memo: { description: 'rolls back canaries whose rollout workflow no longer runs' },
    });
    options.logger?.info({ scheduleId: ROLLOUT_RECONCILER_SCHEDULE_ID }, 'rollout reconciler schedule created');
    return true;
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
  }
  await client.schedule.getHandle(ROLLOUT_RECONCILER_SCHEDULE_ID).update((previous) => ({ ...previous, spec, action }));
  return false;
}
