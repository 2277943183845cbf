import { ApplicationFailure } from '@temporalio/common';
import { DomainError } from './errors.js';

/**
 * The one translation of errors into activity failures: a {@link DomainError} no retry can fix becomes a
 * non-retryable ApplicationFailure of its failure type, with its message and its details (merged over `context`,
 * such as the stage that met it); anything else (a retryable refusal, a dropped connection, an ApplicationFailure
 * already) is returned as it is, for Temporal to retry. Kept apart from core/errors.ts so that code in worker threads
 * can throw domain errors without loading Temporal.
 *
 * @example
 * try { return await stage(); } catch (error) { throw toApplicationFailure(error, { stage: 'prepare' }); }
 */
export function toApplicationFailure(error: unknown, context?: Readonly<Record<string, unknown>>): unknown {
  if (!(error instanceof DomainError) || error.retryable) return error;
  const details = mergeDetails(context, error.details);
  return ApplicationFailure.create({
    type: error.failureType,
    message: error.message,
    nonRetryable: true,
    // The cause stays out: a driver's error can quote a connection string, and histories are kept and shown.
    ...(details === undefined ? {} : { details: [details] }),
  });
}

function mergeDetails(context: Readonly<Record<string, unknown>> | undefined, details: unknown): unknown {
  if (context === undefined) return details;
  if (details === undefined) return context;
  return typeof details === 'object' && details !== null && !Array.isArray(details)
    ? { ...context, ...details }
    : { ...context, details };
}
