import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { createActivities, createTrainingActivities } from '../activities/index.js';
import type { AppConfig, ServiceEndpoints } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { createDataAccessPolicy } from '../data/access-policy.js';
import { openConnectionStore } from '../storage/connection-store.js';
import { openStorage, type PlatformStorage } from '../storage/open-storage.js';
import { PredictionLogWarehouse } from '../storage/prediction-log-warehouse.js';
import { retryWithBackoff } from '../stack/wait-until.js';
import { createPlatformWorker } from './create-worker.js';
import { installTemporalRuntime } from './runtime.js';
import { ensurePredictionLogMaintenanceSchedule, ensureRolloutReconcilerSchedule } from './schedules.js';

export type QueueRole = 'main' | 'training';

export interface RunningWorkers {
  readonly workers: readonly Worker[];
  /** Resolves when every worker has stopped; rejects if one fails. */
  readonly finished: Promise<void>;
  /** Graceful: stop polling, let in-flight activities finish within the grace time, then close connections. */
  shutdown(): Promise<void>;
}

/**
 * Starts workers for the given queues in this process, sharing one Temporal connection and one set of stores. The
 * main queue runs workflows and the pipeline's activities; the training queue runs training activities only (the
 * queue GPU hosts serve).
 */
export async function startWorkers(options: {
  config: AppConfig;
  endpoints: ServiceEndpoints;
  logger: Logger;
  roles: readonly QueueRole[];
}): Promise<RunningWorkers> {
  const { config, endpoints, logger } = options;
  installTemporalRuntime(logger, config.logLevel, { metricsBindAddress: config.worker.metricsBindAddress });
  const connection = await retryWithBackoff(() => NativeConnection.connect({ address: endpoints.temporal.address }), {
    service: `Temporal at ${endpoints.temporal.address}`,
    timeoutMs: config.serviceStartTimeoutSeconds * 1000,
    onRetry: (error) => logger.warn({ err: error }, 'Temporal not reachable yet, retrying'),
  });
  let storage: PlatformStorage | undefined;
  const workers: Worker[] = [];
  try {
    const identity = `${os.hostname()}:${process.pid}`;
    for (const role of options.roles) {
      storage ??= openStorage(endpoints, { logger, applicationName: `mlops-worker-${role}` });
      const deps = {
        artifacts: storage.artifacts,
        metadata: storage.metadata,
        datasets: storage.datasets,
        objects: storage.objects,
        pipelines: storage.pipelines,
        registry: storage.registry,
        deployments: storage.deployments,
        pgPool: storage.database.pool,
        dataAccess: {
          policy: createDataAccessPolicy(config.dataAccess),
          connections: openConnectionStore({
            db: storage.database.db,
            dataDir: config.dataDir,
            databaseUrl: endpoints.databaseUrl,
            connectionsKey: config.dataAccess.connectionsKey,
          }),
          connectTimeoutMs: config.dataAccess.connectTimeoutMs,
          statementTimeoutMs: config.dataAccess.statementTimeoutMs,
        },
        temporal: {
          client: new Client({ connection, namespace: endpoints.temporal.namespace }),
          taskQueue: config.temporal.taskQueue,
          trainingTaskQueue: config.temporal.trainingTaskQueue,
        },
        // The serving-log warehouse lies in the artifact bucket, under its own prefix.
        predictionLogWarehouse: new PredictionLogWarehouse(storage.artifacts.client, storage.artifacts.bucket),
        scratchDir: path.join(config.dataDir, 'scratch'),
        logger,
      };
      if (role === 'main') {
        workers.push(
          await createPlatformWorker({
            connection,
            namespace: endpoints.temporal.namespace,
            taskQueue: config.temporal.taskQueue,
            activities: createActivities(deps),
            runsWorkflows: true,
            maxConcurrentActivities: config.worker.maxConcurrentActivities,
            maxConcurrentWorkflowTasks: config.worker.maxConcurrentWorkflowTasks,
            shutdownGraceSeconds: config.worker.shutdownGraceSeconds,
            identity: `${identity}:main`,
            logger,
          }),
        );
        // The rollout reconciler's schedule, created (or updated) idempotently: without it a canary whose rollout
        // was terminated would keep its share. Not fatal: the API also reconciles a deployment before a canary.
        await ensureRolloutReconcilerSchedule(new Client({ connection, namespace: endpoints.temporal.namespace }), {
          taskQueue: config.temporal.taskQueue,
          everySeconds: config.worker.rolloutReconcileEverySeconds,
          logger,
        }).catch((error: unknown) => logger.warn({ err: error }, 'could not create the rollout reconciler schedule'));
        // Partitions ahead and the retention of prediction logs: daily, and once now. Not fatal either: rows of a day
        // without a partition land in the DEFAULT one and are moved on the next run.
        await ensurePredictionLogMaintenanceSchedule(
          new Client({ connection, namespace: endpoints.temporal.namespace }),
          {
            taskQueue: config.temporal.taskQueue,
            aheadDays: config.predictionLog.partitionsAheadDays,
            retentionDays: config.predictionLog.retentionDays,
            logger,
          },
        ).catch((error: unknown) =>
          logger.warn({ err: error }, 'could not create the prediction log maintenance schedule'),
        );
      } else {
        workers.push(
          await createPlatformWorker({
            connection,
            namespace: endpoints.temporal.namespace,
            taskQueue: config.temporal.trainingTaskQueue,
            activities: createTrainingActivities(deps),
            runsWorkflows: false,
            maxConcurrentActivities: config.worker.trainingMaxConcurrentActivities,
            shutdownGraceSeconds: config.worker.shutdownGraceSeconds,
            identity: `${identity}:training`,
            logger,
          }),
        );
      }
    }
  } catch (error) {
    await storage?.close();
    await connection.close();
    throw error;
  }
  const finished = Promise.all(workers.map((w) => w.run())).then(() => undefined);
  // A worker that crashes is reported by `finished`; keep the rejection from being unhandled meanwhile.
  finished.catch((error: unknown) => logger.error({ err: error }, 'a worker stopped with an error'));
  let stopping: Promise<void> | undefined;
  const shutdown = async () => {
    for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
    await finished.catch(() => undefined);
    await storage?.close();
    await connection.close();
  };
  return { workers, finished, shutdown: () => (stopping ??= shutdown()) };
}
