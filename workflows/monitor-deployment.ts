/**
 * One monitoring window of a deployment, and what its breaches do. Started by the deployment's Temporal Schedule
 * (`monitor:<deployment>`, one action per interval, overlaps skipped) or on demand by the API. Short-lived: the
 * schedule is the loop, and what the window compares against (the previous window, the training baseline) is read
 * from storage, not carried in workflow state, so the monitor survives schedule restarts and worker deploys alike.
 */
import { proxyActivities, workflowInfo, type ActivityOptions } from '@temporalio/workflow';
import type { MainActivities, MonitoringActionOutcome } from '../activities/index.js';
import { TEMPORAL_SCHEDULED_START_TIME } from '../core/constants.js';
import { failureOf } from '../core/failure.js';
import { FINAL_FAILURE_TYPES } from '../core/stages.js';
import { rollbackCause, windowActs, windowSecondsOf } from '../monitoring/action-policy.js';
import type { WindowSummary } from '../monitoring/types.js';

export interface MonitorDeploymentInput {
  readonly deployment: string;
  /** The span of the window; default: the definition's `monitoring.windowSeconds`, else its interval. */
  readonly windowSeconds?: number;
  /**
   * The window's end (ISO 8601). Default: the time the schedule's action was scheduled for, else the workflow's
   * start; floored to whole seconds, so a retried or repeated action covers the same span.
   */
  readonly windowEnd?: string;
}

export interface MonitorDeploymentResult {
  readonly summary: WindowSummary;
  /** The pipeline whose definition's policy applied, when the champion came from one. */
  readonly pipeline?: string;
  /** What the breach did, one entry per action the definition asks for; empty when the window did not act. */
  readonly actions: readonly MonitoringActionOutcome[];
}

const quickActivity = {
  startToCloseTimeout: '1 minute',
  retry: {
    initialInterval: '1s',
    maximumInterval: '30s',
    maximumAttempts: 10,
    nonRetryableErrorTypes: [...FINAL_FAILURE_TYPES],
  },
} satisfies ActivityOptions;

/** Reading a window's prediction logs, baselines and feedback, and writing its report. */
const windowActivity = {
  startToCloseTimeout: '10 minutes',
  retry: {
    initialInterval: '2s',
    maximumInterval: '1 minute',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [...FINAL_FAILURE_TYPES],
  },
} satisfies ActivityOptions;

/** Webhook deliveries: backoff from 1 s to a minute, 8 attempts (about 4 minutes), each bounded at 10 s. */
const alertActivity = {
  startToCloseTimeout: '30 seconds',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 8,
    nonRetryableErrorTypes: [...FINAL_FAILURE_TYPES],
  },
} satisfies ActivityOptions;

const { loadMonitoringPolicy, retrainFromMonitoring, rollbackFromMonitoring } =
  proxyActivities<MainActivities>(quickActivity);
const { computeMonitoringWindow } = proxyActivities<MainActivities>(windowActivity);
const { deliverMonitoringAlert } = proxyActivities<MainActivities>(alertActivity);

/** The end of the window this execution covers, floored to whole seconds. */
function windowEndOf(input: MonitorDeploymentInput): string {
  const info = workflowInfo();
  const at = input.windowEnd
    ? new Date(input.windowEnd)
    : (info.typedSearchAttributes.get(TEMPORAL_SCHEDULED_START_TIME) ?? info.startTime);
  return new Date(Math.floor(at.getTime() / 1000) * 1000).toISOString();
}

/** An action that failed after its retries is reported as failed; the others still run. */
async function settled(
  kind: MonitoringActionOutcome['kind'],
  action: () => Promise<MonitoringActionOutcome>,
): Promise<MonitoringActionOutcome> {
  try {
    return await action();
  } catch (error) {
    return { kind, status: 'failed', reason: failureOf(error).message };
  }
}

/**
 * Computes the deployment's window ending at the scheduled time (see {@link MonitorDeploymentInput.windowEnd}), then,
 * when it breached a threshold or the rollback floor (with at least `minRows` predictions), runs at once the actions
 * the definition asks for: alert, retrain, rollback. Each action records its outcome once per window, so running
 * this workflow again for the same window repeats nothing that was done.
 */
export async function monitorDeployment(input: MonitorDeploymentInput): Promise<MonitorDeploymentResult> {
  const windowEnd = windowEndOf(input);
  const policy = await loadMonitoringPolicy({ deployment: input.deployment });
  const monitoring = policy.monitoring;
  const summary = await computeMonitoringWindow({
    deployment: input.deployment,
    windowEnd,
    windowSeconds: windowSecondsOf(monitoring, input.windowSeconds),
  });
  const pipeline = policy.pipeline ? { pipeline: policy.pipeline } : {};
  if (!monitoring || !windowActs(summary, monitoring)) return { summary, ...pipeline, actions: [] };

  const actions: Promise<MonitoringActionOutcome>[] = [];
  if (monitoring.alert) {
    const alert = monitoring.alert;
    actions.push(settled('alert', () => deliverMonitoringAlert({ summary, alert })));
  }
  if (monitoring.retrain && policy.pipeline) {
    const input = { summary, pipeline: policy.pipeline, cooldownSeconds: monitoring.retrain.cooldownSeconds };
    actions.push(settled('retrain', () => retrainFromMonitoring(input)));
  } else if (monitoring.retrain) {
    const reason = 'the champion was not trained by a pipeline of this platform: nothing to retrain';
    actions.push(Promise.resolve({ kind: 'retrain', status: 'skipped', reason }));
  }
  if (monitoring.rollback && rollbackCause(summary, monitoring.rollback)) {
    const rollback = monitoring.rollback;
    actions.push(settled('rollback', () => rollbackFromMonitoring({ summary, rollback })));
  }
  return { summary, ...pipeline, actions: await Promise.all(actions) };
}
