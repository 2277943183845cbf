import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { AppConfig, ServiceEndpoints } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { PLATFORM_VERSION } from '../core/version.js';
import { createServing } from '../serving/index.js';
import { PREDICTION_LOG_CLOSE_TIMEOUT_MS } from '../serving/prediction-log.js';
import { openStorage } from '../storage/open-storage.js';
import { createApp } from './app.js';
import { postgresReadiness, s3Readiness, servingReadiness, temporalReadiness } from './readiness.js';
import { startApiServer, type ApiServer } from './serve.js';

/** Longest the API waits at start for the deployed models to load before it serves anyway. */
const INITIAL_LOAD_WAIT_MS = 10_000;

/**
 * Builds the API's dependencies over the resolved endpoints and serves it. The Temporal connection is made lazily,
 * so the API comes up (and `/readyz` reports 503) while Temporal is still unreachable; the client that starts and
 * steers pipeline runs shares it, and it is closed with the server.
 */
export async function startApi(options: {
  config: AppConfig;
  endpoints: ServiceEndpoints;
  logger: Logger;
}): Promise<ApiServer> {
  const { config, endpoints, logger } = options;
  const connection = Connection.lazy({ address: endpoints.temporal.address });
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
      predictionLog: config.predictionLog,
    },
  });
  // The first load of the deployed models, awaited for a bounded time: with the services up, the API is ready when
  // it says so (its /readyz `serving` check passes); with Postgres or S3 down it still comes up, /readyz says why,
  // and the pool keeps retrying (a request for a model not loaded yet loads it on demand).
  const initialLoad = serving.pool.start();
  await Promise.race([initialLoad, new Promise((resolve) => setTimeout(resolve, INITIAL_LOAD_WAIT_MS).unref())]);
  const app = createApp({
    logger,
    version: PLATFORM_VERSION,
    bodyLimitBytes: config.api.bodyLimitBytes,
    stores: storage,
    sources: {
      objects: storage.objects,
      pgPool: storage.database.pool,
      scratchDir: path.join(config.dataDir, 'scratch', 'api'),
    },
    runner: {
      client,
      pipelines: storage.pipelines,
      taskQueue: config.temporal.taskQueue,
      trainingTaskQueue: config.temporal.trainingTaskQueue,
    },
    temporalUiUrl: endpoints.temporal.uiUrl,
    serving,
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
