import path from 'node:path';
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import type { AppConfig, ServiceEndpoints } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { PLATFORM_VERSION } from '../core/version.js';
import { latestMonitoringWindows, registerMonitoringGauges } from '../monitoring/gauges.js';
import { createServing } from '../serving/index.js';
import { PREDICTION_LOG_CLOSE_TIMEOUT_MS } from '../serving/prediction-log.js';
import { createDataAccessPolicy } from '../data/access-policy.js';
import { openConnectionStore } from '../storage/connection-store.js';
import { servingRefusal } from '../storage/deployment-guards.js';
import { openStorage } from '../storage/open-storage.js';
import { ensureAdminKey, type AdminKey } from './admin-key.js';
import { ensureNotificationKey, notificationTokenFile, type NotificationKeyState } from './notification-key.js';
import { createApp } from './app.js';
import { PlatformMetrics } from './platform-metrics.js';
import { storedKeys } from './auth.js';
import { postgresReadiness, s3Readiness, servingReadiness, temporalReadiness } from './readiness.js';
import { startApiServer, type ApiServer } from './serve.js';

/** Longest the API waits at start for the deployed models to load before it serves anyway. */
const INITIAL_LOAD_WAIT_MS = 10_000;

/** Attempts of one Temporal call from the API when the frontend is unavailable (100 ms × 1.7^n apart). */
export const TEMPORAL_CALL_ATTEMPTS = 4;

/**
 * Builds the API's dependencies over the resolved endpoints and serves it. The Temporal connection is made lazily,
 * so the API comes up (and `/readyz` reports 503) while Temporal is still unreachable; the client that starts and
 * steers pipeline runs shares it, and it is closed with the server.
 */
export async function startApi(options: {
  config: AppConfig;
  endpoints: ServiceEndpoints;
  logger: Logger;
  /** The token MinIO's webhook target sends (server/notification-key.ts): its `trigger` key is stored if missing. */
  notificationToken?: string;
}): Promise<
  ApiServer & { readonly adminKey: AdminKey | undefined; readonly notificationKey: NotificationKeyState | undefined }
> {
  const { config, endpoints, logger } = options;
  // Calls to an unreachable Temporal are retried for about a second (the SDK's default retries for about 20 s), so
  // a request meets an outage as a prompt 503 with Retry-After rather than a hang (core/outage.ts).
  const connection = Connection.lazy({
    address: endpoints.temporal.address,
    interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions({ maxAttempts: TEMPORAL_CALL_ATTEMPTS }))],
  });
  const client = new Client({ connection, namespace: endpoints.temporal.namespace });
  const storage = openStorage(endpoints, { logger, applicationName: 'mlops-api', poolSize: 10 });
  const serving = createServing({
    registry: storage.registry,
    deployments: storage.deployments,
    artifacts: storage.artifacts,
    databaseUrl: endpoints.databaseUrl,
    logger,
    options: {
      maxInstances: config.serving.maxInstances,
      maxBatchRows: config.serving.maxBatchRows,
      maxWaitMs: config.serving.maxWaitMs,
      inferenceThread: config.serving.inferenceThreads,
      maxInferenceThreads: config.serving.maxInferenceThreads,
      sessionThreads: config.serving.sessionThreads,
      predictionLog: config.predictionLog,
    },
  });
  // The latest monitoring window of each deployment on /metrics, read from Postgres when scraped.
  registerMonitoringGauges(serving.metrics.registry, {
    read: () => latestMonitoringWindows(storage.database.db),
    logger,
  });
  // The first load of the deployed models, awaited for a bounded time: with the services up, the API is ready when
  // it says so (its /readyz `serving` check passes); with Postgres or S3 down it still comes up, /readyz says why,
  // and the pool keeps retrying (a request for a model not loaded yet loads it on demand).
  const initialLoad = serving.pool.start();
  await Promise.race([initialLoad, new Promise((resolve) => setTimeout(resolve, INITIAL_LOAD_WAIT_MS).unref())]);
  // With keys, the first start makes the admin key the operator creates every other key with. A database that is
  // down now is not a reason to refuse to start: requests get 503 until it is back, and the next start makes the key.
  const adminKey =
    config.api.auth === 'keys'
      ? await ensureAdminKey(storage.apiKeys, config.dataDir).catch((error: unknown) => {
          logger.warn({ err: error }, 'could not check or create the admin API key; requests need an existing key');
          return undefined;
        })
      : undefined;
  const notificationKey =
    config.api.auth === 'keys' && options.notificationToken
      ? await ensureNotificationKey(storage.apiKeys, options.notificationToken).catch((error: unknown) => {
          logger.warn({ err: error }, 'could not store the MinIO notification key; notifications get 401 until then');
          return undefined;
        })
      : undefined;
  if (notificationKey === 'revoked') {
    logger.warn(
      { file: notificationTokenFile(config.dataDir) },
      'the MinIO notification key was revoked: notifications get 401 (delete its file and restart for a new one)',
    );
  }
  const connections = openConnectionStore({
    db: storage.database.db,
    dataDir: config.dataDir,
    databaseUrl: endpoints.databaseUrl,
    connectionsKey: config.dataAccess.connectionsKey,
  });
  const app = createApp({
    logger,
    auth: config.api.auth === 'open' ? { kind: 'open' } : storedKeys(storage.apiKeys),
    keys: storage.apiKeys,
    allowedHosts: config.api.allowedHosts,
    rateLimitPerSecond: config.api.rateLimitPerSecond,
    version: PLATFORM_VERSION,
    bodyLimitBytes: config.api.bodyLimitBytes,
    stores: storage,
    sources: {
      policy: createDataAccessPolicy(config.dataAccess),
      objects: storage.objects,
      connections,
      queryTimeoutMs: config.dataAccess.probeTimeoutMs,
      connectTimeoutMs: config.dataAccess.connectTimeoutMs,
      scratchDir: path.join(config.dataDir, 'scratch', 'api'),
    },
    connections,
    runner: {
      client,
      pipelines: storage.pipelines,
      taskQueue: config.temporal.taskQueue,
      trainingTaskQueue: config.temporal.trainingTaskQueue,
    },
    temporalUiUrl: endpoints.temporal.uiUrl,
    serving: { ...serving, servingRefusal: (versionId) => servingRefusal(storage.database.db, versionId) },
    // The platform's own metrics (runs, stages, triggers, monitoring), read from Postgres when scraped.
    metricsRegistries: [new PlatformMetrics({ pool: storage.database.pool, logger }).registry],
    readiness: [
      temporalReadiness(connection),
      postgresReadiness(storage.database.pool),
      s3Readiness(storage.artifacts.client, storage.artifacts.bucket),
      servingReadiness(serving.pool),
    ],
  });
  try {
    const server = await startApiServer({ app, host: config.api.host, port: config.api.port, logger });
    return {
      url: server.url,
      finished: server.finished,
      adminKey,
      notificationKey,
      close: async () => {
        await server.close();
        await serving.pool.close();
        await serving.closeInference();
        // Bounded: with Postgres down, what is still queued is counted as dropped rather than holding shutdown.
        await serving.predictionLog?.close(PREDICTION_LOG_CLOSE_TIMEOUT_MS);
        await Promise.allSettled([storage.close(), connection.close()]);
      },
    };
  } catch (error) {
    await serving.pool.close();
    await serving.closeInference();
    await serving.predictionLog?.close(0);
    await Promise.allSettled([storage.close(), connection.close()]);
    throw error;
  }
}
