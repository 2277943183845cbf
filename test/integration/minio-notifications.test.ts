import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import { Client as MinioClient } from 'minio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withFailureContract } from '../../activities/failure-contract.js';
import { createTriggerActivities } from '../../activities/triggers.js';
import { createDataAccessPolicy, parseBucketGrant } from '../../data/access-policy.js';
import { pipelineDefinitionSchema } from '../../pipelines/definition.js';
import type { PipelineTrigger } from '../../schema/index.js';
import { createApp } from '../../server/app.js';
import { storedKeys } from '../../server/auth.js';
import { ensureNotificationKey, notificationToken, notificationTokenFile } from '../../server/notification-key.js';
import { startApiServer, type ApiServer } from '../../server/serve.js';
import { locateBinary, MINIO_SERVER } from '../../stack/binaries.js';
import {
  configureBucketNotifications,
  notifiedPrefixes,
  webhookArn,
  webhookEnvironment,
} from '../../stack/minio-notifications.js';
import { startMinioServer, type RunningMinioServer } from '../../stack/minio-server.js';
import { findFreePorts } from '../../stack/ports.js';
import { TriggerStore } from '../../storage/trigger-store.js';
import { connectTestPlatform, testLogger, type TestPlatform } from '../support/platform.js';
import { syntheticCsv, syntheticDefinition } from '../support/pipelines.js';
import { testConfig, testEndpoints } from '../support/stack.js';

// What `npm start` sets up for the local MinIO: its webhook target (from its environment, authenticated with a
// `trigger` key whose token exists before the database does) and the bucket rules for the readable prefixes. A
// MinIO of its own posts real notifications to the API's route; the runs they start go to a queue nobody polls.

const suffix = randomUUID().slice(0, 8);
const bucket = `hooked-${suffix}`;
const pipeline = `hooked-${suffix}`;
const idleQueue = `hooked-idle-${suffix}`;

let platform: TestPlatform;
let worker: Worker;
let running: Promise<void>;
let triggers: TriggerStore;
let app: ReturnType<typeof createApp>;
let api: ApiServer | undefined;
let apiPort: number;
let minio: RunningMinioServer | undefined;
let client: MinioClient;
let dataDir: string;
let token: string;

async function serveApi(): Promise<void> {
  api = await startApiServer({ app, host: '127.0.0.1', port: apiPort, logger: testLogger });
}

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
  triggers = TriggerStore.over(platform.storage.database.pool);
  const newData = { settleSeconds: 1, pollEverySeconds: 3600 };
  const definition = syntheticDefinition(pipeline, `s3://${bucket}/landing/*.csv`, { triggers: { newData } });
  await platform.storage.pipelines.saveDefinition(pipelineDefinitionSchema.parse(definition), 'test');
  const idle = withFailureContract(
    createTriggerActivities({
      ...platform.activityDeps,
      temporal: { ...platform.activityDeps.temporal!, taskQueue: idleQueue },
    }),
  );
  worker = await platform.mainWorker((activities) => ({ ...activities, ...idle }));
  running = worker.run();
  app = createApp({
    logger: testLogger,
    auth: storedKeys(platform.storage.apiKeys),
    readiness: [],
    version: 'test',
    bodyLimitBytes: 1_000_000,
    stores: platform.storage,
    runner: {
      client: platform.client,
      pipelines: platform.storage.pipelines,
      taskQueue: platform.taskQueue,
      trainingTaskQueue: platform.trainingTaskQueue,
    },
    sources: {
      policy: createDataAccessPolicy({ roots: [], buckets: [`${bucket}/landing/`] }),
      objects: platform.storage.objects,
    },
  });

  dataDir = await mkdtemp(path.join(os.tmpdir(), 'minio-notifications-'));
  token = await notificationToken(dataDir);
  const [port, consolePort, listen] = (await findFreePorts(3)) as [number, number, number];
  apiPort = listen;
  const config = testConfig();
  // MinIO starts before the API answers, as under `npm start`: its queue keeps what it cannot deliver yet.
  minio = await startMinioServer({
    binary: locateBinary(MINIO_SERVER, config.toolsDir)!,
    storageDir: path.join(dataDir, 'minio'),
    logFile: path.join(dataDir, 'minio.log'),
    pidFile: path.join(dataDir, 'minio.pid'),
    host: '127.0.0.1',
    port,
    consolePort,
    accessKey: config.s3.accessKey,
    secretKey: config.s3.secretKey,
    timeoutMs: 60_000,
    environment: webhookEnvironment({
      endpoint: `http://127.0.0.1:${apiPort}/v1/events/s3`,
      authToken: token,
      queueDir: path.join(dataDir, 'minio-events'),
    }),
  });
  client = new MinioClient({
    endPoint: '127.0.0.1',
    port,
    useSSL: false,
    accessKey: config.s3.accessKey,
    secretKey: config.s3.secretKey,
    pathStyle: true,
  });
  await client.makeBucket(bucket);
}, 120_000);

afterAll(async () => {
  await api?.close();
  await minio?.process.stop();
  if (platform) {
    for (const run of await platform.storage.pipelines.listRuns({ pipelineName: pipeline })) {
      await platform.client.workflow
        .getHandle(run.workflowId)
        .terminate('test over')
        .catch(() => undefined);
      await platform.storage.pipelines.setRunStatus(run.workflowId, 'cancelled');
    }
  }
  worker?.shutdown();
  await running;
  await platform?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function put(key: string): Promise<string> {
  const body = Buffer.from(syntheticCsv());
  return (await client.putObject(bucket, key, body, body.length)).etag;
}

async function waitForTriggers(count: number, timeoutMs: number): Promise<PipelineTrigger[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = (await triggers.list(pipeline)).reverse();
    if (rows.length >= count || Date.now() > deadline) return rows;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('the local MinIO notifying the API of new data', () => {
  it('keeps the webhook token in a file only its owner reads, and stores its trigger key once', async () => {
    expect((await stat(notificationTokenFile(dataDir))).mode & 0o777).toBe(0o600);
    expect(await notificationToken(dataDir)).toBe(token);
    expect(await ensureNotificationKey(platform.storage.apiKeys, token)).toBe('created');
    expect(await ensureNotificationKey(platform.storage.apiKeys, token)).toBe('live');
    const key = await platform.storage.apiKeys.authenticate(token);
    expect(key?.scopes).toEqual(['trigger']);
  });

  it('sends objects created under the readable prefix only, and each starts one run', async () => {
    const rules = notifiedPrefixes([parseBucketGrant(`${bucket}/landing/`)], []);
    const configured = await configureBucketNotifications(client, rules, webhookArn());
    expect(configured).toEqual({ rules: [{ bucket, prefix: 'landing/' }], missingBuckets: [] });
    // Configured twice (a second start): the rule is replaced, not doubled.
    await configureBucketNotifications(client, rules, webhookArn());
    const stored = await client.getBucketNotification(bucket);
    expect(stored.QueueConfiguration).toHaveLength(1);

    // Landed while the API is not listening yet: MinIO queues it and delivers it once the API answers.
    const queuedEtag = await put('landing/2001-04.csv');
    await put('elsewhere/2001-04.csv');
    await serveApi();
    const [first] = await waitForTriggers(1, 30_000);
    expect(first).toMatchObject({ kind: 'new_data', status: 'started', source: `s3://${bucket}/landing/` });

    const sent = Date.now();
    const etag = await put('landing/2001-05.csv');
    const both = await waitForTriggers(2, 30_000);
    console.log(
      `new object -> run started (MinIO notification, settleSeconds 1): ${both[1]!.createdAt.getTime() - sent} ms`,
    );
    expect(both).toHaveLength(2);
    const watched = await platform.storage.watchedObjects.list(pipeline);
    expect(watched.map((w) => [w.key, w.etag, w.seenBy]).sort()).toEqual([
      ['landing/2001-04.csv', queuedEtag, 'notification'],
      ['landing/2001-05.csv', etag, 'notification'],
    ]);
  }, 90_000);

  it('is refused once an operator revokes its key, and the key is not made again', async () => {
    const key = (await platform.storage.apiKeys.list()).find((k) => k.name === 'minio-notifications');
    await platform.storage.apiKeys.revoke(key!.id);
    expect(await ensureNotificationKey(platform.storage.apiKeys, token)).toBe('revoked');
    expect(await platform.storage.apiKeys.authenticate(token)).toBeUndefined();
  });
});
