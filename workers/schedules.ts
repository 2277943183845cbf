/**
 * The platform's Temporal schedules, created idempotently when the main worker starts: the rollout reconciler
 * (workflows/rollout-reconciler.ts), which rolls back canaries whose rollout workflow no longer runs, and the
 * prediction log's daily maintenance (workflows/prediction-log-maintenance.ts).
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { Logger } from '../core/logger.js';
import {
  maintainPredictionLogs,
  PREDICTION_LOG_MAINTENANCE_SCHEDULE_ID,
  reconcileDeploymentRollouts,
  ROLLOUT_RECONCILER_SCHEDULE_ID,
  type PredictionLogMaintenanceInput,
} from '../workflows/index.js';

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

export interface PredictionLogMaintenanceScheduleOptions extends PredictionLogMaintenanceInput {
  /** The main task queue, where the maintenance workflow and its activities run. */
  readonly taskQueue: string;
  /** Default {@link PREDICTION_LOG_MAINTENANCE_SCHEDULE_ID}; tests use one of their own. */
  readonly scheduleId?: string;
  readonly logger?: Logger;
}

/**
 * Creates the prediction log maintenance's schedule (daily at 00:10 UTC, ahead of the day that starts then having
 * its partition made the days before), or brings an existing one up to date, and triggers one run now, so a worker
 * that starts after a gap catches up at once. Safe to call from every worker start: runs are idempotent, and an
 * overlapping one is skipped.
 *
 * @returns whether the schedule was created (false: it existed and was updated).
 */
export async function ensurePredictionLogMaintenanceSchedule(
  client: Client,
  options: PredictionLogMaintenanceScheduleOptions,
): Promise<boolean> {
  const scheduleId = options.scheduleId ?? PREDICTION_LOG_MAINTENANCE_SCHEDULE_ID;
  const spec = { calendars: [{ hour: 0, minute: 10 }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: maintainPredictionLogs,
    workflowId: scheduleId,
    taskQueue: options.taskQueue,
    args: [{ aheadDays: options.aheadDays, retentionDays: options.retentionDays }] as [PredictionLogMaintenanceInput],
    workflowExecutionTimeout: '12 hours',
  };
  const handle = client.schedule.getHandle(scheduleId);
  let created = false;
  try {
    await client.schedule.create({
      scheduleId,
      spec,
      action,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
      memo: {
        description: 'creates prediction log partitions ahead; exports expired days to Parquet, then drops them',
      },
    });
    created = true;
    options.logger?.info({ scheduleId }, 'prediction log maintenance schedule created');
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
    await handle.update((previous) => ({ ...previous, spec, action }));
  }
  await handle.trigger(ScheduleOverlapPolicy.SKIP);
  return created;
}
