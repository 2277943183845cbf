import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { createActivities, createTrainingActivities, type ActivityDeps } from '../../activities/index.js';
import type { ServiceEndpoints } from '../../core/config.js';
import { createLogger } from '../../core/logger.js';
import type { S3ArtifactStore } from '../../storage/artifact-store.js';
import { inject } from 'vitest';
import { createDataAccessPolicy } from '../../data/access-policy.js';
import { openConnectionStore, type ConnectionStore } from '../../storage/connection-store.js';
import { openStorage, type PlatformStorage } from '../../storage/open-storage.js';
import { createPlatformWorker } from '../../workers/create-worker.js';
import { installTemporalRuntime } from '../../workers/runtime.js';

export const testLogger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent', name: 'test' });

/** Real clients and stores on a stack, plus a unique task queue per test file so workers never steal tasks. */
/**
 * What tests' sources may read: their temporary folders, and the public datasets the tests train on (the
 * vega-datasets package: flights, penguins, cars).
 */
export const TEST_DATA_ROOTS = [
  os.tmpdir(),
  fileURLToPath(new URL('../../node_modules/vega-datasets/data', import.meta.url)),
];

export interface TestPlatform {
  readonly endpoints: ServiceEndpoints;
  readonly storage: PlatformStorage;
  readonly artifacts: S3ArtifactStore;
  readonly client: Client;
  readonly nativeConnection: NativeConnection;
  readonly taskQueue: string;
  readonly trainingTaskQueue: string;
  /** Named data connections (with the built-in read-only `platform` one of the test stack). */
  readonly connections: ConnectionStore;
  /** What the activities are built with, for running one activity directly (MockActivityEnvironment). */
  readonly activityDeps: ActivityDeps;
  /** A worker on the main queue with the real activities, optionally wrapped (to inject a crash, say). */
  mainWorker(wrap?: (activities: ReturnType<typeof createActivities>) => object): Promise<Worker>;
  trainingWorker(): Promise<Worker>;
  close(): Promise<void>;
}

/** Connects to the given stack's real services; a fresh bucket keeps each test file's objects apart. */
export async function connectTestPlatform(endpoints: ServiceEndpoints, bucket?: string): Promise<TestPlatform> {
  // The SDK's own worker logs go through the test logger (silent unless LOG_LEVEL is set).
  installTemporalRuntime(testLogger, process.env.LOG_LEVEL ?? 'warn');
  const scoped = bucket ? { ...endpoints, s3: { ...endpoints.s3, bucket } } : endpoints;
  const storage = openStorage(scoped, { logger: testLogger, applicationName: 'mlops-test', poolSize: 4 });
  await storage.artifacts.ensureBucket();
  const connection = await Connection.connect({ address: endpoints.temporal.address });
  const client = new Client({ connection, namespace: endpoints.temporal.namespace });
  const nativeConnection = await NativeConnection.connect({ address: endpoints.temporal.address });
  const suffix = randomUUID().slice(0, 8);
  const taskQueue = `test-main-${suffix}`;
  const trainingTaskQueue = `test-training-${suffix}`;
  const connections = openConnectionStore({
    db: storage.database.db,
    dataDir: inject('stackDataDir'),
    databaseUrl: endpoints.databaseUrl,
    connectionsKey: undefined,
  });
  const deps: ActivityDeps = {
    artifacts: storage.artifacts,
    metadata: storage.metadata,
    datasets: storage.datasets,
    objects: storage.objects,
    pipelines: storage.pipelines,
    registry: storage.registry,
    deployments: storage.deployments,
    pgPool: storage.database.pool,
    // Tests keep their files in temporary folders and their objects in buckets of their own.
    dataAccess: { policy: createDataAccessPolicy({ roots: TEST_DATA_ROOTS, buckets: ['*'] }), connections },
    temporal: { client, taskQueue, trainingTaskQueue },
    scratchDir: fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-scratch-')),
    logger: testLogger,
  };
  return {
    endpoints: scoped,
    storage,
    artifacts: storage.artifacts,
    client,
    nativeConnection,
    taskQueue,
    trainingTaskQueue,
    connections,
    activityDeps: deps,
    mainWorker: (wrap) => {
      const activities = createActivities(deps);
      return createPlatformWorker({
        connection: nativeConnection,
        namespace: endpoints.temporal.namespace,
        taskQueue,
        activities: wrap ? wrap(activities) : activities,
        runsWorkflows: true,
        maxConcurrentActivities: 4,
        shutdownGraceSeconds: 5,
        logger: testLogger,
      });
    },
    trainingWorker: () =>
      createPlatformWorker({
        connection: nativeConnection,
        namespace: endpoints.temporal.namespace,
        taskQueue: trainingTaskQueue,
        activities: createTrainingActivities(deps),
        runsWorkflows: false,
        maxConcurrentActivities: 1,
        shutdownGraceSeconds: 5,
        logger: testLogger,
      }),
    close: async () => {
      fs.rmSync(deps.scratchDir, { recursive: true, force: true });
      await connection.close();
      await nativeConnection.close();
      await storage.close();
    },
  };
}
