import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Registry } from 'prom-client';
import type { Logger } from '../core/logger.js';
import { authentication, SECURITY_SCHEME, type AuthMode } from './auth.js';
import type { AppEnv } from './context.js';
import { createErrorHandler, notFoundHandler } from './error-handler.js';
import { bodyLimit } from './middleware/body-limit.js';
import { hostCheck } from './middleware/host-check.js';
import { KeyRateLimiter, rateLimit } from './middleware/rate-limit.js';
import { requestId } from './middleware/request-id.js';
import { requestLogger } from './middleware/request-logger.js';
import type { ReadinessCheck } from './readiness.js';
import { createRouter } from './router.js';
import type { PipelineRunnerDeps } from '../pipelines/runs.js';
import type { DefinitionValidationDeps } from '../pipelines/validate-definition.js';
import type { PipelineStore } from '../storage/pipeline-store.js';
import type { DeploymentStore } from '../storage/deployment-store.js';
import type { MonitoringActionStore } from '../storage/monitoring-action-store.js';
import type { MonitoringStore } from '../storage/monitoring-store.js';
import type { FeedbackStore } from '../storage/feedback-store.js';
import type { LineageStore } from '../storage/lineage-store.js';
import type { WatchedObjectStore } from '../storage/watched-object-store.js';
import type { TriggerStore } from '../storage/trigger-store.js';
import { syncPollSchedule } from '../pipelines/poll-schedules.js';
import { DENY_ALL_POLICY } from '../data/access-policy.js';
import { createWatchList, dataEvents } from './routes/data-events.js';
import type { RegistryStore } from '../storage/registry-store.js';
import { batchPredictions } from './routes/batch-predictions.js';
import { datasets, type DatasetsDeps } from './routes/datasets.js';
import { deployments } from './routes/deployments.js';
import { docs } from './routes/docs.js';
import { feedback } from './routes/feedback.js';
import { artifacts as artifactRoutes } from './routes/artifacts.js';
import { lineage } from './routes/lineage.js';
import { health } from './routes/health.js';
import { keys } from './routes/keys.js';
import { connections } from './routes/connections.js';
import type { ConnectionStore } from '../storage/connection-store.js';
import type { ApiKeyStore } from '../storage/api-key-store.js';
import { models } from './routes/models.js';
import { pipelines } from './routes/pipelines.js';
import { runs } from './routes/runs.js';
import { metrics } from './routes/metrics.js';
import type { PredictDeps } from './routes/predict.js';

/**
 * Everything the HTTP API needs, built once by the entry point and handed to `createApp`. Each resource's sub-app
 * receives only the fields it uses (`Pick<ApiDeps, ...>`), so adding a dependency for a new resource (registry,
 * Temporal client, ...) is one new field here and touches no existing resource.
 */
export interface ApiDeps {
  readonly logger: Logger;
  /** Who may call: API keys (the default of `npm start`), or open (every caller acts with every scope). */
  readonly auth: AuthMode;
  /** API keys, managed over `/v1/keys` by admin keys; mounted when given. */
  readonly keys?: ApiKeyStore;
  /** Named data connections, managed over `/v1/connections` by admin keys; mounted when given. */
  readonly connections?: ConnectionStore;
  /** Host header values answered; undefined: any (see API_ALLOWED_HOSTS). */
  readonly allowedHosts?: readonly string[] | undefined;
  /** Requests per second per key; 0 or undefined: no limit. */
  readonly rateLimitPerSecond?: number;
  /** Dependencies that `/readyz` checks; names must be unique. */
  readonly readiness: readonly ReadinessCheck[];
  /** Reported by `/healthz` and in the OpenAPI document. */
  readonly version: string;
  /** Largest accepted request body (`API_BODY_LIMIT_BYTES`). */
  readonly bodyLimitBytes: number;
  /** Bound on each readiness check in milliseconds. Default 2000. */
  readonly readinessTimeoutMs?: number;
  /** The platform's stores; the resources that read or change state are mounted when they are given. */
  readonly stores?: DatasetsDeps['stores'] & {
    readonly pipelines?: PipelineStore;
    readonly registry?: RegistryStore;
    /** Mounted with `registry`: `/v1/deployments` needs both. */
    readonly deployments?: DeploymentStore;
    /** Monitoring windows and what they did: `/v1/deployments/{name}/monitoring...`, mounted with both. */
    readonly monitoringWindows?: MonitoringStore;
    readonly monitoringActions?: MonitoringActionStore;
    /** Ground truth by request id: `POST /v1/feedback` (classes are read from `artifacts`). */
    readonly feedback?: FeedbackStore;
    /** New-data triggers: `POST /v1/events/s3` (bucket notifications), mounted with `runner`. */
    readonly watchedObjects?: WatchedObjectStore;
    /** Trigger events: with `runner`, `/v1/pipelines/{name}/schedules` and `/v1/pipelines/{name}/triggers`. */
    readonly triggers?: TriggerStore;
    /** Lineage across metadata, runs, registry and deployments: `/v1/lineage` and `/v1/artifacts/{id}`. */
    readonly lineage?: LineageStore;
  };
  /**
   * How pipeline definitions' sources are probed to check their columns (S3 objects, the platform database, a
   * scratch folder). Default: local sources only.
   */
  readonly sources?: DefinitionValidationDeps;
  /** Starts and steers pipeline runs (a Temporal client and the task queues); `/v1/runs` is mounted with it. */
  readonly runner?: PipelineRunnerDeps;
  /** The Temporal UI's base URL, for links from a run to its workflow. */
  readonly temporalUiUrl?: string | undefined;
  /**
   * Online serving (a started model pool and its metrics): `POST /v1/models/{name}/predict` and `GET /metrics` are
   * mounted with it.
   */
  readonly serving?: PredictDeps;
  /** More Prometheus registries `GET /metrics` renders after serving's: the platform's own (platform-metrics.ts). */
  readonly metricsRegistries?: readonly Pick<Registry, 'metrics'>[];
}

export const OPENAPI_PATH = '/openapi.json';
export const DOCS_PATH = '/docs';

/** Paths anyone may call: liveness and readiness probes, and the API's own description. */
const PUBLIC_PATHS = new Set(['/healthz', '/readyz', OPENAPI_PATH, DOCS_PATH]);

function isPublicPath(path: string): boolean {
  return PUBLIC_PATHS.has(path) || path.startsWith(`${DOCS_PATH}/`);
}

/**
 * Builds the API as a Hono app without binding a port: tests call `app.request(...)`, and `startApiServer` serves
 * it. Every response carries `x-request-id`; every error, including unknown routes and invalid input, uses the
 * `{ error: { code, message, details? } }` shape.
 *
 * @throws Error when the dependencies are inconsistent (for example two readiness checks with one name).
 * @example
 * const app = createApp({ logger, readiness: [temporalReadiness(connection)], version, bodyLimitBytes: 1_048_576 });
 */
/** The body limit of `POST /v1/feedback`: 10,000 items of the longest request id and a label, with room. */
const FEEDBACK_BODY_LIMIT_BYTES = 4 * 1_048_576;

export function createApp(deps: ApiDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  app.use('*', requestId());
  app.use('*', requestLogger({ logger: deps.logger }));
  // A full feedback batch (10,000 labels under request ids of up to 128 characters) is about 1.7 MB: it gets room
  // for that whatever the general limit, so the documented batch size never answers 413.
  const generalLimit = bodyLimit({ maxBytes: deps.bodyLimitBytes });
  const feedbackLimit = bodyLimit({ maxBytes: Math.max(deps.bodyLimitBytes, FEEDBACK_BODY_LIMIT_BYTES) });
  app.use('*', (c, next) => (c.req.path === '/v1/feedback' ? feedbackLimit(c, next) : generalLimit(c, next)));
  app.onError(createErrorHandler(deps.logger));
  app.notFound(notFoundHandler);
  if (deps.allowedHosts) app.use('*', hostCheck(deps.allowedHosts));
  app.use('*', authentication(deps.auth, isPublicPath));
  if (deps.rateLimitPerSecond) {
    app.use('*', rateLimit(new KeyRateLimiter(deps.rateLimitPerSecond, deps.rateLimitPerSecond * 2)));
  }
  app.openAPIRegistry.registerComponent('securitySchemes', SECURITY_SCHEME, {
    type: 'http',
    scheme: 'bearer',
    description:
      'An API key: `Authorization: Bearer mlk_...`. Each operation lists the one scope it needs; `admin` holds all.',
  });

  app.route('/', health(deps));
  if (deps.keys) app.route('/v1/keys', keys({ keys: deps.keys }));
  if (deps.connections) app.route('/v1/connections', connections({ connections: deps.connections }));
  if (deps.stores) app.route('/v1/datasets', datasets({ stores: deps.stores }));
  const pipelineStore = deps.stores?.pipelines ?? deps.runner?.pipelines;
  // The new-data webhook's watched prefixes, shared with the pipelines route, which refreshes them on a save.
  const watchList =
    deps.stores?.watchedObjects && deps.runner ? createWatchList(deps.stores.watchedObjects) : undefined;
  const runsDeps = deps.runner ? { runner: deps.runner, temporalUiUrl: deps.temporalUiUrl } : undefined;
  if (pipelineStore) {
    app.route(
      '/v1/pipelines',
      pipelines({
        pipelines: pipelineStore,
        sources: deps.sources ?? {},
        ...(runsDeps ? { runs: runsDeps } : {}),
        ...(deps.stores?.triggers ? { triggers: deps.stores.triggers } : {}),
        // A saved definition may watch a new prefix: the webhook's cached watch list is read again at once. One
        // that polls for new data gets (or updates) its poll schedule.
        ...(runsDeps || watchList
          ? {
              afterSave: async (name: string) => {
                watchList?.invalidate();
                if (runsDeps) await syncPollSchedule({ ...runsDeps.runner, pipelines: pipelineStore }, name);
              },
            }
          : {}),
      }),
    );
  }
  if (runsDeps) app.route('/v1/runs', runs(runsDeps));
  // One mount per resource; a resource's file mounts its sub-resources (see the top of each routes/ file).
  const registry = deps.stores?.registry;
  const batchDeps =
    deps.runner && registry ? { runner: deps.runner, registry, temporalUiUrl: deps.temporalUiUrl } : undefined;
  if (registry || deps.serving) {
    app.route('/v1/models', models({ registry, batchPredictions: batchDeps, serving: deps.serving }));
  }
  const deploymentStore = deps.stores?.deployments;
  if (registry && deploymentStore) {
    // Canaries run as workflows on the main task queue (the runner's); shadow and replace need the stores only.
    const { monitoringWindows: windows, monitoringActions: actions, artifacts } = deps.stores ?? {};
    const monitoring = windows && actions && artifacts ? { windows, actions, artifacts } : undefined;
    app.route(
      '/v1/deployments',
      deployments({ registry, deployments: deploymentStore, rollouts: deps.runner, monitoring }),
    );
  }
  if (batchDeps) app.route('/v1/batch-predictions', batchPredictions(batchDeps));
  if (deps.stores?.watchedObjects && deps.runner) {
    const policy = deps.sources?.policy ?? DENY_ALL_POLICY;
    app.route(
      '/v1/events',
      dataEvents({
        watched: deps.stores.watchedObjects,
        temporal: deps.runner,
        policy,
        ...(watchList ? { watchList } : {}),
      }),
    );
  }
  if (deps.stores?.feedback) {
    app.route('/v1/feedback', feedback({ feedback: deps.stores.feedback, artifacts: deps.stores.artifacts }));
  }
  if (deps.stores?.lineage) {
    app.route('/v1/artifacts', artifactRoutes({ lineage: deps.stores.lineage }));
    app.route('/v1/lineage', lineage({ lineage: deps.stores.lineage }));
  }
  if (deps.serving) app.route('/', metrics({ ...deps.serving, registries: deps.metricsRegistries }));

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
