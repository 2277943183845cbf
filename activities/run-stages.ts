import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { failureOf } from '../core/failure.js';
import { STAGE_OF_ACTIVITY } from '../core/stages.js';
import type { Logger } from '../core/logger.js';
import type { JsonProperties } from '../schema/index.js';
import type { PipelineStore } from '../storage/pipeline-store.js';

export { STAGE_OF_ACTIVITY } from '../core/stages.js';

type AnyActivity = (...args: never[]) => Promise<unknown>;

/**
 * Wraps stage activities so that each attempt is recorded in the run's stage rows (running → succeeded or failed,
 * with its outputs or failure, timings and attempt number) when the calling workflow is a pipeline run. The same
 * activities in other workflows (a data check, a training job) find no run and record nothing. Recording lives here
 * rather than in the workflow so that it costs no extra activity round trips.
 */
export function trackRunStages<T extends Record<string, AnyActivity>>(
  activities: T,
  pipelines: PipelineStore,
  logger: Logger,
): T {
  const tracked: Record<string, AnyActivity> = { ...activities };
  for (const [name, activity] of Object.entries(activities)) {
    const stage = STAGE_OF_ACTIVITY[name];
    if (!stage) continue;
    tracked[name] = async (...args: never[]) => {
      const { info } = Context.current();
      const workflowId = info.workflowExecution?.workflowId;
      if (!workflowId) return activity(...args);
      await pipelines.startStage(workflowId, stage, info.attempt);
      try {
        const result = await activity(...args);
        await pipelines.finishStage(workflowId, stage, {
          status: 'succeeded',
          outputs: (result ?? {}) as JsonProperties,
        });
        return result;
      } catch (error) {
        const cancelled = error instanceof CancelledFailure || Context.current().cancellationSignal.aborted;
        const reported = withRootCause(error);
        const failure = { ...failureOf(reported), stage };
        // The stage's own error is what Temporal must see: a bookkeeping failure is logged, not thrown over it.
        await pipelines
          .finishStage(workflowId, stage, cancelled ? { status: 'cancelled' } : { status: 'failed', failure })
          .catch((recordError: unknown) => logger.warn({ err: recordError, stage }, 'could not record stage failure'));
        throw reported;
      }
    };
  }
  return tracked as T;
}

/**
 * A database error wraps the server's message in its `cause` and carries the whole SQL in its own message: the run's
 * failure should say what went wrong (the cause) first. Still retryable, as the original was.
 */
function withRootCause(error: unknown): unknown {
  if (error instanceof ApplicationFailure || error instanceof CancelledFailure || !(error instanceof Error))
    return error;
  const cause = error.cause;
  if (!(cause instanceof Error) || !cause.message) return error;
  const summary = error.message.split('\n')[0]?.slice(0, 200) ?? '';
  return ApplicationFailure.create({
    type: cause.name || error.name,
    message: `${cause.message} (${summary})`,
    cause,
  });
}
