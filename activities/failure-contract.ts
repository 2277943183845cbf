import { toApplicationFailure } from '../core/application-failure.js';

type AnyActivity = (...args: never[]) => Promise<unknown>;

/**
 * Wraps every activity so that whatever it throws passes through {@link toApplicationFailure}: a domain error no
 * retry can fix ends the activity at once with its failure type, whichever activity met it, and nothing else changes.
 * Activities that add context to the failure (the stage) call toApplicationFailure themselves; an ApplicationFailure
 * passes through untouched.
 */
export function withFailureContract<T extends Record<string, AnyActivity>>(activities: T): T {
  const wrapped: Record<string, AnyActivity> = {};
  for (const [name, activity] of Object.entries(activities)) {
    wrapped[name] = async (...args: never[]) => {
      try {
        return await activity(...args);
      } catch (error) {
        throw toApplicationFailure(error);
      }
    };
  }
  return wrapped as T;
}
