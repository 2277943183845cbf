import { OpenAPIHono } from '@hono/zod-openapi';
import type { AppEnv } from './context.js';
import { validationErrorFromZod } from './errors.js';

/**
 * Creates the app or a resource sub-app. Every router rejects invalid input the same way: the validation hook throws
 * a `ValidationError`, so the app's one error handler writes the 400 (`invalid_request`, one entry per field).
 */
export function createRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw validationErrorFromZod(result.error, result.target);
    },
  });
}
