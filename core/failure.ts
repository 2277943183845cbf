// @temporalio/common, not the workflow or activity package: workflows, activities and the API read failures alike.
import { ActivityFailure, ApplicationFailure, TimeoutFailure } from '@temporalio/common';

/** What an activity's failure reaches a workflow as is wrapped in ActivityFailure: the failure below the wrappers. */
export function rootCause(error: unknown): unknown {
  let cause: unknown = error;
  while (cause instanceof ActivityFailure && cause.cause) cause = cause.cause;
  return cause;
}

/**
 * A failure's stable type (the activity's ApplicationFailure type, `Timeout`, else the error's name) and message, as
 * runs, stages and jobs record them. The one place this is derived.
 */
export function failureOf(error: unknown): { type: string; message: string } {
  const cause = rootCause(error);
  const type =
    cause instanceof ApplicationFailure && cause.type
      ? cause.type
      : cause instanceof TimeoutFailure
        ? 'Timeout'
        : cause instanceof Error
          ? cause.name
          : 'Error';
  return { type, message: cause instanceof Error ? cause.message : String(cause) };
}
