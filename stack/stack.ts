import fs from 'node:fs';
import path from 'node:path';
import { Client as MinioClient } from 'minio';
import { Connection } from '@temporalio/client';
import type { AppConfig, ServiceEndpoints } from '../core/config.js';
import { ServiceError } from '../core/errors.js';
import type { TaskLine } from '../core/live-lines.js';
import type { Logger } from '../core/logger.js';
import { parseBucketGrant } from '../data/access-policy.js';
import { createDatabase, runMigrations, waitForDatabase } from '../storage/database.js';
import { S3ArtifactStore } from '../storage/artifact-store.js';
import { platformReaderPasswordFile } from '../storage/connection-store.js';
import { MINIO_SERVER, TEMPORAL_CLI, ensureBinary } from './binaries.js';
import { DataDirOwner } from './data-dir-owner.js';
import { stopOrphan, type ManagedProcess } from './managed-process.js';
import {
  configureBucketNotifications,
  notifiedPrefixes,
  webhookArn,
  webhookEnvironment,
  type ConfiguredNotifications,
  type MinioWebhookTarget,
} from './minio-notifications.js';
import { startMinioServer } from './minio-server.js';
import { assertPortFree, findFreePorts } from './ports.js';
import { postgresUser, resolvePostgresCluster, type PostgresLocation } from './postgres-location.js';
import { startPostgresServer } from './postgres-server.js';
import { ensureSearchAttributes } from './search-attributes.js';
import { startTemporalDevServer } from './temporal-dev-server.js';
import { retryWithBackoff } from './wait-until.js';

const LOCAL_HOST = '127.0.0.1';

export interface StartStackOptions {
  readonly logger: Logger;
  /**
   * `configured`: the ports from the configuration (defaults for `npm start`), refused when taken.
   * `random`: free ports chosen now, so a test stack never collides with a running dev stack.
   */
  readonly ports?: 'configured' | 'random';
  /** Shows people the work that takes long (a binary downloaded or built): a line redrawn in place. */
  readonly task?: (text: string) => TaskLine;
  /**
   * With a local MinIO, send created objects under the readable buckets (`DATA_BUCKETS`) to this webhook target:
   * `npm start` points it at the API's `/v1/events/s3`. Ignored with an external S3 (configure its notifications
   * there).
   */
  readonly notifications?: Omit<MinioWebhookTarget, 'queueDir'>;
}

/** The platform's three services, reachable, migrated and provisioned. */
export interface Stack {
  readonly endpoints: ServiceEndpoints;
  /** Services this stack manager started (and will stop); external ones are absent. */
  readonly managed: readonly string[];
  readonly dataDir: string;
  /** Where the local PostgreSQL keeps its data; undefined when PostgreSQL is external. */
  readonly postgres: PostgresLocation | undefined;
  /** The local MinIO's bucket notification rules, when it sends them; undefined otherwise. */
  readonly notifications: ConfiguredNotifications | undefined;
  /** This process's claim on the data directory (one platform per data directory). */
  readonly owner: DataDirOwner;
  /** Stops what this stack manager started, and only that, workers' dependencies last; then gives up the claim. */
  stop(): Promise<void>;
}

/** Where each local service keeps its state, logs and pid under the data directory. */
export function stackLayout(dataDir: string) {
  const file = (folder: string, name: string) => path.join(dataDir, folder, name);
  return {
    temporalState: path.join(dataDir, 'temporal'),
    minioStorage: path.join(dataDir, 'minio'),
    minioEvents: path.join(dataDir, 'minio-events'),
    log: (service: string) => file('logs', `${service}.log`),
    pid: (service: string) => file('run', `${service}.pid`),
  };
}

/**
 * Brings up Temporal, Postgres and S3: for each, the external service when its variable is set (retried with
 * backoff while it is briefly down), otherwise a local server under the data directory. Then applies the database
 * migrations, registers the search attributes and creates the bucket. On any failure, everything started so far is
 * stopped before the error is thrown.
 *
 * One platform per data directory: the data directory is claimed first, and a start that finds a live owner throws
 * AlreadyRunningError before it touches anything. Services left running by an owner that is gone are stopped.
 */
export async function startStack(config: AppConfig, options: StartStackOptions): Promise<Stack> {
  const { logger } = options;
  const layout = stackLayout(config.dataDir);
  fs.mkdirSync(config.dataDir, { recursive: true });
  const owner = DataDirOwner.claim(config.dataDir);
  const timeoutMs = config.serviceStartTimeoutSeconds * 1000;
  const started: ManagedProcess[] = [];
  const stopStarted = async () => {
    await Promise.allSettled([...started].reverse().map((p) => p.stop()));
  };
  let postgresLocation: PostgresLocation | undefined;

  try {
    // Services orphaned by a crashed earlier owner still hold this data directory's ports: stop them first.
    await Promise.all([
      stopOrphan(layout.pid('temporal'), 'SIGTERM'),
      stopOrphan(layout.pid('postgres'), 'SIGINT'),
      stopOrphan(layout.pid('minio'), 'SIGTERM'),
    ]);
    const ports = await resolvePorts(config, options.ports ?? 'configured');
    // Binaries are located (or fetched, or built) before anything starts, so a missing one leaves nothing running.
    const binaryOptions = {
      toolsDir: config.toolsDir,
      logger,
      downloads: config.binaryDownloads,
      ...(options.task ? { task: options.task } : {}),
    };
    const [temporalBinary, minioBinary] = await settleAll([
      config.temporal.address ? Promise.resolve(undefined) : ensureBinary(TEMPORAL_CLI, binaryOptions),
      config.s3.endpoint ? Promise.resolve(undefined) : ensureBinary(MINIO_SERVER, binaryOptions),
    ]);

    const temporalUp = async () => {
      if (config.temporal.address) {
        const address = config.temporal.address;
        await retryWithBackoff(() => checkTemporal(address), {
          service: `Temporal at ${address}`,
          timeoutMs,
          onRetry: (error) => logger.warn({ err: error }, 'Temporal not reachable yet, retrying'),
        });
        return { address, uiUrl: undefined };
      }
      const server = await startTemporalDevServer({
        binary: temporalBinary!,
        stateDir: layout.temporalState,
        logFile: layout.log('temporal'),
        pidFile: layout.pid('temporal'),
        host: LOCAL_HOST,
        port: ports.temporal,
        uiPort: ports.temporalUi,
        httpPort: ports.temporalHttp,
        metricsPort: ports.temporalMetrics,
        namespace: config.temporal.namespace,
        timeoutMs,
      });
      started.push(server.process);
      return { address: server.address, uiUrl: server.uiUrl };
    };

    const postgresUp = async () => {
      if (config.database.url) {
        const url = config.database.url;
        await waitForDatabase(url, {
          timeoutMs,
          onRetry: ({ attempt, error }) =>
            logger.warn({ attempt, err: error }, 'PostgreSQL not reachable yet, retrying'),
        });
        return url;
      }
      postgresLocation = resolvePostgresCluster({
        dataDir: config.dataDir,
        fallbackDir: config.postgresFallbackDir,
        user: postgresUser(),
      });
      const server = await startPostgresServer({
        clusterDir: postgresLocation.clusterDir,
        binaryCopyDir: config.postgresFallbackDir,
        logFile: layout.log('postgres'),
        pidFile: layout.pid('postgres'),
        host: LOCAL_HOST,
        port: ports.postgres,
        timeoutMs,
        readerPasswordFile: platformReaderPasswordFile(config.dataDir),
      });
      started.push(server.process);
      return server.url;
    };

    const s3Up = async () => {
      if (config.s3.endpoint) {
        const endpoint = config.s3.endpoint;
        await retryWithBackoff(() => checkS3(endpoint, config), {
          service: `S3 at ${endpoint}`,
          timeoutMs,
          onRetry: (error) => logger.warn({ err: error }, 'S3 not reachable yet, retrying'),
        });
        return endpoint;
      }
      const server = await startMinioServer({
        binary: minioBinary!,
        storageDir: layout.minioStorage,
        logFile: layout.log('minio'),
        pidFile: layout.pid('minio'),
        host: LOCAL_HOST,
        port: ports.minio,
        consolePort: ports.minioConsole,
        accessKey: config.s3.accessKey,
        secretKey: config.s3.secretKey,
        timeoutMs,
        ...(options.notifications
          ? { environment: webhookEnvironment({ ...options.notifications, queueDir: layout.minioEvents }) }
          : {}),
      });
      started.push(server.process);
      return server.endpoint;
    };

    const [temporal, databaseUrl, s3Endpoint] = await settleAll([temporalUp(), postgresUp(), s3Up()]);
    const endpoints: ServiceEndpoints = {
      temporal: { address: temporal.address, namespace: config.temporal.namespace, uiUrl: temporal.uiUrl },
      databaseUrl,
      s3: {
        endpoint: s3Endpoint,
        accessKey: config.s3.accessKey,
        secretKey: config.s3.secretKey,
        bucket: config.s3.bucket,
        region: config.s3.region,
      },
    };
    await settleAll([
      migrate(databaseUrl, logger),
      registerSearchAttributes(endpoints, logger),
      S3ArtifactStore.fromConfig(endpoints.s3).ensureBucket(),
    ]);
    // After the bucket exists, so the default grant (`<bucket>/landing/`) gets its rule on the first start.
    const notifications =
      options.notifications && !config.s3.endpoint ? await notifyNewObjects(config, endpoints, logger) : undefined;

    let stopping: Promise<void> | undefined;
    return {
      endpoints,
      managed: started.map((p) => p.options.service),
      dataDir: config.dataDir,
      postgres: postgresLocation,
      notifications,
      owner,
      stop: () => (stopping ??= stopStarted().finally(() => owner.release())),
    };
  } catch (error) {
    await stopStarted();
    owner.release();
    throw error;
  }
}

/**
 * Awaits every promise even when one rejects, so no service is left starting in the background, then throws the
 * first failure.
 */
async function settleAll<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

interface StackPorts {
  temporal: number;
  temporalUi: number;
  temporalHttp: number;
  temporalMetrics: number;
  postgres: number;
  minio: number;
  minioConsole: number;
}

async function resolvePorts(config: AppConfig, mode: 'configured' | 'random'): Promise<StackPorts> {
  const [a, b, c, d, e, f, g] = await findFreePorts(7, LOCAL_HOST);
  if (mode === 'random') {
    return {
      temporal: a!,
      temporalUi: b!,
      temporalHttp: c!,
      temporalMetrics: d!,
      postgres: e!,
      minio: f!,
      minioConsole: g!,
    };
  }
  const checks: Promise<void>[] = [];
  if (!config.temporal.address) {
    checks.push(assertPortFree('Temporal', config.temporal.port, 'TEMPORAL_PORT'));
    checks.push(assertPortFree('Temporal UI', config.temporal.uiPort, 'TEMPORAL_UI_PORT'));
  }
  if (!config.database.url) checks.push(assertPortFree('PostgreSQL', config.database.port, 'POSTGRES_PORT'));
  if (!config.s3.endpoint) {
    checks.push(assertPortFree('MinIO', config.s3.port, 'MINIO_PORT'));
    checks.push(assertPortFree('MinIO console', config.s3.consolePort, 'MINIO_CONSOLE_PORT'));
  }
  await settleAll(checks);
  return {
    temporal: config.temporal.port,
    temporalUi: config.temporal.uiPort,
    // The dev server's HTTP API and metrics ports are internal: any free port will do.
    temporalHttp: c!,
    temporalMetrics: d!,
    postgres: config.database.port,
    minio: config.s3.port,
    minioConsole: config.s3.consolePort,
  };
}

async function checkTemporal(address: string): Promise<void> {
  const connection = await Connection.connect({ address, connectTimeout: 2_000 });
  try {
    await connection.workflowService.getSystemInfo({});
  } finally {
    await connection.close();
  }
}

async function checkS3(endpoint: string, config: AppConfig): Promise<void> {
  const url = new URL(endpoint);
  const client = new MinioClient({
    endPoint: url.hostname,
    port: url.port ? Number(url.port) : undefined,
    useSSL: url.protocol === 'https:',
    accessKey: config.s3.accessKey,
    secretKey: config.s3.secretKey,
    region: config.s3.region,
    pathStyle: true,
  });
  await client.bucketExists(config.s3.bucket);
}

async function migrate(databaseUrl: string, logger: Logger): Promise<void> {
  const database = createDatabase(databaseUrl, { max: 2 });
  try {
    const started = Date.now();
    await runMigrations(database.db);
    logger.debug({ ms: Date.now() - started }, 'database migrations applied');
  } catch (error) {
    throw new ServiceError('PostgreSQL', `migrations failed: ${(error as Error).message}`, undefined, { cause: error });
  } finally {
    await database.close();
  }
}

/** Rules on the local MinIO's readable buckets sending created objects to the webhook target it started with. */
async function notifyNewObjects(
  config: AppConfig,
  endpoints: ServiceEndpoints,
  logger: Logger,
): Promise<ConfiguredNotifications> {
  const client = S3ArtifactStore.fromConfig(endpoints.s3).client;
  const grants = config.dataAccess.buckets.map(parseBucketGrant);
  const buckets = grants.some((g) => g.bucket === '*') ? (await client.listBuckets()).map((b) => b.name) : [];
  const configured = await configureBucketNotifications(client, notifiedPrefixes(grants, buckets), webhookArn());
  logger.info(
    { rules: configured.rules, missingBuckets: configured.missingBuckets },
    'MinIO sends created objects to the new-data webhook',
  );
  return configured;
}

async function registerSearchAttributes(endpoints: ServiceEndpoints, logger: Logger): Promise<void> {
  const connection = await Connection.connect({ address: endpoints.temporal.address });
  try {
    const added = await ensureSearchAttributes(connection, endpoints.temporal.namespace);
    if (added.length > 0) logger.info({ added }, 'registered Temporal search attributes');
  } finally {
    await connection.close();
  }
}
