import { Context } from '@temporalio/activity';
import type { Logger } from '../core/logger.js';

/** A child logger that stamps every line with the workflow id, run id, activity and attempt it belongs to. */
export function activityLogger(logger: Logger): Logger {
  const { info } = Context.current();
  return logger.child({
    workflowId: info.workflowExecution?.workflowId,
    runId: info.workflowExecution?.runId,
    activity: info.activityType,
    attempt: info.attempt,
  });
}
