/**
 * A deployment's monitoring on Temporal: its Schedule (`monitor:<deployment>`, one `monitorDeployment` action per
 * interval, overlaps skipped) and a window computed on demand. Used by the deploy activity (a definition with a
 * `monitoring` section gets its schedule when it deploys) and by the API.
 *
 * Who set a schedule is kept in its action's memo (`monitoringScheduleSetBy`: `definition` or `api`; the schedule's
 * own memo cannot be updated once created, the action's can): a deploy creates the schedule when there is none and
 * brings one a definition set up to date, but leaves one set by hand through the API as it is. Deleting the schedule
 * hands it back to the definitions: the next deploy creates it again.
 */
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
  type Client,
} from '@temporalio/client';
import type { Logger } from '../core/logger.js';
import { monitorDeployment, type MonitorDeploymentInput, type MonitorDeploymentResult } from '../workflows/index.js';

/** The id of a deployment's monitoring schedule, as `temporal schedule list` shows it. */
export function monitorScheduleId(deployment: string): string {
  return `monitor:${deployment}`;
}

/** A window's workflow runs for minutes at most (alert retries included); a stuck one is ended by this bound. */
const MONITOR_WORKFLOW_TIMEOUT = '1 hour';

/** Who set a monitoring schedule: a deploy, from its definition's `monitoring` section, or a caller of the API. */
export type MonitorScheduleSetBy = 'definition' | 'api';

/** The key, in the memo of a schedule's action, that says who set the schedule. */
export const SET_BY_MEMO_KEY = 'monitoringScheduleSetBy';

export interface MonitorScheduleOptions {
  readonly deployment: string;
  /**
   * `api`: set by hand; it replaces any schedule and is kept by later deploys. `definition`: a deploy's; it creates
   * the schedule or updates one a definition set, and leaves one set by hand alone.
   */
  readonly setBy: MonitorScheduleSetBy;
  /** How often a window is computed, in seconds. */
  readonly everySeconds: number;
  /** The span of each window; default: the definition's, else `everySeconds`, resolved by each window. */
  readonly windowSeconds?: number | undefined;
  /** The main task queue, where the monitor workflow and its activities run. */
  readonly taskQueue: string;
  readonly logger?: Logger;
}

export interface MonitorScheduleView {
  readonly scheduleId: string;
  readonly deployment: string;
  readonly everySeconds: number | undefined;
  readonly windowSeconds: number | undefined;
  /** Who set it; undefined for a schedule set before this was recorded (treated as a definition's). */
  readonly setBy: MonitorScheduleSetBy | undefined;
  readonly paused: boolean;
  readonly nextActionTimes: readonly string[];
  readonly recentActions: readonly {
    readonly scheduledAt: string;
    readonly takenAt: string;
    readonly workflowId: string;
  }[];
}

/** Who set a schedule, from its action's memo. */
function setByOf(action: { readonly memo?: Record<string, unknown> | undefined }): MonitorScheduleSetBy | undefined {
  const value = action.memo?.[SET_BY_MEMO_KEY];
  return value === 'api' || value === 'definition' ? value : undefined;
}

/**
 * Creates the deployment's monitoring schedule, or brings an existing one up to date (interval, window, task
 * queue): safe to call on every deploy, concurrently too. A window is computed at each interval; a window still
 * running when the next is due makes that one skip; missed ones are not caught up. With `setBy: 'definition'` (a
 * deploy), a schedule set by hand (`setBy: 'api'`) is kept as it is.
 *
 * @returns whether the schedule was created (false: it existed, and was updated or, set by hand, kept).
 */
export async function ensureMonitorSchedule(client: Client, options: MonitorScheduleOptions): Promise<boolean> {
  const scheduleId = monitorScheduleId(options.deployment);
  const spec = { intervals: [{ every: `${options.everySeconds}s` }] };
  const input: MonitorDeploymentInput = {
    deployment: options.deployment,
    ...(options.windowSeconds !== undefined ? { windowSeconds: options.windowSeconds } : {}),
  };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: monitorDeployment,
    // The schedule appends each action's time, so every window has an id of its own.
    workflowId: scheduleId,
    taskQueue: options.taskQueue,
    args: [input] as [MonitorDeploymentInput],
    workflowExecutionTimeout: MONITOR_WORKFLOW_TIMEOUT,
    memo: { [SET_BY_MEMO_KEY]: options.setBy },
  };
  try {
    await client.schedule.create({
      scheduleId,
      spec,
      action,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
      memo: { description: `monitoring windows of deployment ${options.deployment}` },
    });
    options.logger?.info({ scheduleId, everySeconds: options.everySeconds }, 'monitoring schedule created');
    return true;
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
  }
  const handle = client.schedule.getHandle(scheduleId);
  const keep = (previous: { readonly action: { readonly memo?: Record<string, unknown> | undefined } }) =>
    options.setBy === 'definition' && setByOf(previous.action) === 'api';
  // Decided on the description the update applies to: one set by hand is not written at all.
  const kept = new Error('kept');
  try {
    await handle.update((previous) => {
      if (keep(previous)) throw kept;
      return { ...previous, spec, action };
    });
  } catch (error) {
    if (error !== kept) throw error;
    options.logger?.info({ scheduleId }, 'monitoring schedule set by hand: kept as it is');
    return false;
  }
  options.logger?.info({ scheduleId, everySeconds: options.everySeconds }, 'monitoring schedule updated');
  return false;
}

/** Deletes the deployment's monitoring schedule; false when it had none. Windows already computed stay. */
export async function deleteMonitorSchedule(client: Client, deployment: string): Promise<boolean> {
  try {
    await client.schedule.getHandle(monitorScheduleId(deployment)).delete();
    return true;
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) return false;
    throw error;
  }
}

/** The deployment's monitoring schedule: interval, window, paused, next and recent actions; undefined without one. */
export async function describeMonitorSchedule(
  client: Client,
  deployment: string,
): Promise<MonitorScheduleView | undefined> {
  const scheduleId = monitorScheduleId(deployment);
  let described;
  try {
    described = await client.schedule.getHandle(scheduleId).describe();
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) return undefined;
    throw error;
  }
  const every = described.spec.intervals?.[0]?.every;
  const [input] = described.action.type === 'startWorkflow' ? (described.action.args as [unknown]) : [];
  const windowSeconds = (input as Partial<MonitorDeploymentInput> | undefined)?.windowSeconds;
  return {
    scheduleId,
    deployment,
    everySeconds: typeof every === 'number' ? Math.round(every / 1000) : undefined,
    windowSeconds,
    setBy: setByOf(described.action),
    paused: described.state.paused,
    nextActionTimes: described.info.nextActionTimes.map((t) => t.toISOString()),
    recentActions: described.info.recentActions.map((a) => ({
      scheduledAt: a.scheduledAt.toISOString(),
      takenAt: a.takenAt.toISOString(),
      workflowId: a.action.workflow.workflowId,
    })),
  };
}

/**
 * Computes one window now, as the schedule would, and waits for it (actions included). The window ends at
 * `windowEnd` (default: now), floored to whole seconds; the same window asked twice while it runs is one workflow.
 */
export async function computeMonitoringWindowNow(
  deps: { readonly client: Client; readonly taskQueue: string; readonly answerTimeoutMs?: number },
  request: { deployment: string; windowEnd?: Date | undefined; windowSeconds?: number | undefined },
): Promise<MonitorDeploymentResult & { readonly workflowId: string }> {
  const end = new Date(Math.floor((request.windowEnd ?? new Date()).getTime() / 1000) * 1000).toISOString();
  const input: MonitorDeploymentInput = {
    deployment: request.deployment,
    windowEnd: end,
    ...(request.windowSeconds !== undefined ? { windowSeconds: request.windowSeconds } : {}),
  };
  const workflowId = `${monitorScheduleId(request.deployment)}-now-${end}-${request.windowSeconds ?? 'default'}`;
  const handle = await deps.client.workflow.start(monitorDeployment, {
    workflowId,
    taskQueue: deps.taskQueue,
    args: [input],
    workflowExecutionTimeout: MONITOR_WORKFLOW_TIMEOUT,
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    staticSummary: `monitoring window of ${request.deployment} ending ${end}`,
  });
  // Without a worker the result never comes: answer 503 naming the workflow rather than hold the request open.
  const waitMs = deps.answerTimeoutMs ?? DEFAULT_ANSWER_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new WindowPendingError(
            `the monitoring window workflow ${workflowId} did not finish within ${waitMs / 1000} s (is a worker ` +
              'running?); it goes on: the same request joins it, and the window is listed once computed',
            { details: { workflowId } },
          ),
        ),
      waitMs,
    );
  });
  try {
    return { ...(await Promise.race([handle.result(), timedOut])), workflowId };
  } finally {
    clearTimeout(timer);
  }
}

/** How long computing a window now may take before the request answers 503 (the workflow goes on). */
export const DEFAULT_ANSWER_TIMEOUT_MS = 30_000;

/** A window asked for now is still being computed (no worker, or a slow one); worth retrying. */
export class WindowPendingError extends DomainError {
  override readonly name = 'WindowPendingError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('unavailable', message, { code: 'window_pending', ...options });
  }
}
