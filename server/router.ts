import { OpenAPIHono } from '@hono/zod-openapi';
import type { AppEnv } from './context.js';
import { ValidationError, validationErrorFromZod, type RequestLocation } from './errors.js';
import { findUnstorableText } from './storable-text.js';

const locations: Record<string, RequestLocation> = { json: 'body', form: 'body', param: 'path' };

/**
 * The 400 of a validated request part that holds text PostgreSQL cannot store (a NUL, an unpaired surrogate), or
 * undefined when it holds none: refused here, with the field named, rather than as a 500 from the write.
 */
function unstorableTextError(data: unknown, target: string): ValidationError | undefined {
  const found = findUnstorableText(data);
  if (!found) return undefined;
  const location = locations[target] ?? (target as RequestLocation);
  const where = found.path === '' ? location : `${location}.${found.path}`;
  return new ValidationError(`Invalid request: ${where}: ${found.problem}`, {
    details: [{ location, path: found.path, problem: found.problem }],
  });
}

/**
 * Creates the app or a resource sub-app. Every router rejects invalid input the same way: the validation hook throws
 * a `ValidationError`, so the app's one error handler writes the 400 (`invalid_request`, one entry per field).
 */
export function createRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw validationErrorFromZod(result.error, result.target);
      const unstorable = unstorableTextError(result.data, result.target);
      if (unstorable) throw unstorable;
    },
  });
}
