import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Logger } from '../core/logger.js';
import type { AppEnv } from './context.js';
import { createErrorHandler, notFoundHandler } from './error-handler.js';
import { bodyLimit } from './middleware/body-limit.js';
import { requestId } from './middleware/request-id.js';
import { requestLogger } from './middleware/request-logger.js';
import type { ReadinessCheck } from './readiness.js';
import { createRouter } from './router.js';
import { datasets, type DatasetsDeps } from './routes/datasets.js';
import { docs } from './routes/docs.js';
import { health } from './routes/health.js';

/**
 * Everything the HTTP API needs, built once by the entry point and handed to `createApp`. Each resource's sub-app
 * receives only the fields it uses (`Pick<ApiDeps, ...>`), so adding a dependency for a new resource (registry,
 * Temporal client, ...) is one new field here and touches no existing resource.
 */
export interface ApiDeps {
  readonly logger: Logger;
  /** Dependencies that `/readyz` checks; names must be unique. */
  readonly readiness: readonly ReadinessCheck[];
  /** Reported by `/healthz` and in the OpenAPI document. */
  readonly version: string;
  /** Largest accepted request body (`API_BODY_LIMIT_BYTES`). */
  readonly bodyLimitBytes: number;
  /** Bound on each readiness check in milliseconds. Default 2000. */
  readonly readinessTimeoutMs?: number;
  /** The platform's stores; the resources that read or change state are mounted when they are given. */
  readonly stores?: DatasetsDeps['stores'];
}

export const OPENAPI_PATH = '/openapi.json';
export const DOCS_PATH = '/docs';

/**
 * Builds the API as a Hono app without binding a port: tests call `app.request(...)`, and `startApiServer` serves
 * it. Every response carries `x-request-id`; every error, including unknown routes and invalid input, uses the
 * `{ error: { code, message, details? } }` shape.
 *
 * @throws Error when the dependencies are inconsistent (for example two readiness checks with one name).
 * @example
 * const app = createApp({ logger, readiness: [temporalReadiness(connection)], version, bodyLimitBytes: 1_048_576 });
 */
export function createApp(deps: ApiDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  app.use('*', requestId());
  app.use('*', requestLogger({ logger: deps.logger }));
  app.use('*', bodyLimit({ maxBytes: deps.bodyLimitBytes }));
  app.onError(createErrorHandler(deps.logger));
  app.notFound(notFoundHandler);

  app.route('/', health(deps));
  if (deps.stores) app.route('/v1/datasets', datasets({ stores: deps.stores }));

  app.doc31(OPENAPI_PATH, (c) => ({
    openapi: '3.1.0',
    info: {
      title: 'temporal-mlops API',
      version: deps.version,
      description:
        'The HTTP API of temporal-mlops, an MLOps platform on Temporal, PostgreSQL and S3. ' +
        'Errors share one shape: `{ error: { code, message, details? } }`.',
    },
    // The origin the caller used, so "Try it out" works whichever host or port the server is reached on.
    servers: [{ url: new URL(c.req.url).origin }],
  }));
  app.route(DOCS_PATH, docs({ specUrl: OPENAPI_PATH, basePath: DOCS_PATH }));
  return app;
}
