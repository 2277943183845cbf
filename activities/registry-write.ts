import { toApplicationFailure } from '../core/application-failure.js';

/**
 * Runs a registry write inside an activity: refusals no retry can fix (a conflict, a missing version or deployment)
 * become non-retryable failures with the platform's failure types; anything else (the database down) is thrown as it
 * is, for Temporal to retry.
 */
export async function registryWrite<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    throw toApplicationFailure(error);
  }
}
