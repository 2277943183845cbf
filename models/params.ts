import type { z } from 'zod';
import { TrainingParameterError } from './types.js';

/**
 * Validates trainer parameters with `schema` and fills in its defaults.
 *
 * @throws TrainingParameterError naming the first offending parameter by its path (`hiddenLayers.0`), the key itself
 *   for an unknown key, or `params` when the input is not an object at all.
 */
export function parseTrainingParams<T extends z.ZodType>(schema: T, params: unknown): z.output<T> {
  const parsed = schema.safeParse(params);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  // zod reports an unknown key at the object's level, with the key in `keys`: name the key itself.
  const unknownKey = issue?.code === 'unrecognized_keys' ? issue.keys[0] : undefined;
  const name = unknownKey ?? (issue && issue.path.length > 0 ? issue.path.map(String).join('.') : 'params');
  throw new TrainingParameterError(name, issue?.message ?? 'invalid');
}
