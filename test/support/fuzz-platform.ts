/**
 * The platform the bad-input property suite (test/integration/bad-input.test.ts) fuzzes: the API in process over real
 * stores on a database of its own (so no other test file's writes are seen), seeded with a pipeline (local and S3
 * sources inside the data access policy), runs in the states the run routes branch on, two registered model versions
 * (real ONNX in S3) with one deployed and served, an API key and a connection store; and what the generators should
 * know about that state (see fuzz-requests.ts).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
// The app first: it loads @hono/zod-openapi, which must extend zod before the pipeline definition's schemas are built.
import { createApp } from '../../server/app.js';
import { storedKeys } from '../../server/auth.js';
import type { DataAccessPolicy } from '../../data/access-policy.js';
import { exportOnnx } from '../../models/onnx/index.js';
import type { PipelineRunnerDeps } from '../../pipelines/runs.js';
import { createServing } from '../../serving/index.js';
import { openConnectionStore } from '../../storage/connection-store.js';
import { createDatabase, runMigrations } from '../../storage/database.js';
import { makeTransform, randomLinear } from '../unit/models/onnx-fixtures.js';
import { operationsOf, resolverOf, type FuzzContext, type OpenApiDocument, type Operation } from './fuzz-requests.js';
import { connectTestPlatform, testLogger, type TestPlatform } from './platform.js';
import { syntheticCsv, syntheticDefinition } from './pipelines.js';
import { testEndpoints } from './stack.js';

export interface FuzzPlatform {
  /** The API running open (every caller acts with every scope). */
  readonly app: ReturnType<typeof createApp>;
  /** The same API requiring keys from the real key store, which holds one live admin key. */
  readonly keysApp: ReturnType<typeof createApp>;
  /** The first characters of that key's token: a lookup by them finds its row (and then a wrong hash). */
  readonly keyPrefix: string;
  /** Every operation of the API's OpenAPI document. */
  readonly operations: readonly Operation[];
  readonly ctx: FuzzContext;
  /** How many rows of the platform's database were ever written (see countWrites). */
  databaseState(): Promise<string>;
  /** Ends the workflows the fuzzing started, closes every connection and drops the database. */
  stop(): Promise<void>;
}

/**
 * Makes the database count its writes: a row trigger on every table counts each insert, update and delete (and each
 * truncate) in the one-row table `fuzz_writes`, in the writing transaction, so a rolled-back write counts for nothing.
 * One cheap query per request instead of hashing every table.
 */
async function countWrites(pool: pg.Pool): Promise<void> {
  const tables = await pool.query<{ name: string }>(
    `select table_name as name from information_schema.tables
     where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`,
  );
  const names = tables.rows.map((t) => t.name);
  for (const table of [
    'pipelines',
    'pipeline_versions',
    'pipeline_runs',
    'model_versions',
    'deployments',
    'api_keys',
  ]) {
    if (!names.includes(table)) throw new Error(`the platform database has no table ${table} to watch`);
  }
  await pool.query(`
    create table fuzz_writes (n bigint not null);
    insert into fuzz_writes values (0);
    create function fuzz_count_write() returns trigger language plpgsql as
      $$ begin update fuzz_writes set n = n + 1; return null; end $$;`);
  for (const { name } of tables.rows) {
    await pool.query(`
      create trigger fuzz_count_rows after insert or update or delete on "${name}"
        for each row execute function fuzz_count_write();
      create trigger fuzz_count_truncate after truncate on "${name}"
        for each statement execute function fuzz_count_write();`);
  }
}

/**
 * Runs in the states the run routes branch on, without workflows: pending (its workflow never started: a crash
 * between the row and the start), failed, and a failed one kept for the resume route.
 */
async function seedRuns(
  platform: TestPlatform,
  pipelineName: string,
): Promise<{ pending: string; failed: string; resumable: string }> {
  const { pipelines } = platform.storage;
  const version = await pipelines.getVersion(pipelineName);
  if (!version) throw new Error('the seeded pipeline has no version');
  const create = async (fail: boolean) => {
    const workflowId = `fuzz-run-${randomUUID()}`;
    const { run } = await pipelines.createRun({ pipelineVersionId: version.id, workflowId, trigger: 'manual' });
    if (fail) await pipelines.failPendingRun(workflowId, { type: 'WorkflowNotStarted', message: 'seeded' });
    return run.id;
  };
  return { pending: await create(false), failed: await create(true), resumable: await create(true) };
}

/** Two blessed versions of a small linear model (real ONNX in S3), the first deployed and served. */
async function seedModels(platform: TestPlatform, modelName: string): Promise<void> {
  const { registry, deployments, artifacts } = platform.storage;
  const transform = makeTransform('binary');
  const ids: string[] = [];
  for (const seed of [1, 2]) {
    const { bytes, signature } = exportOnnx(randomLinear('binary', transform, seed), transform);
    const uploaded = await artifacts.put(Buffer.from(bytes), { kind: 'model.onnx' });
    const { version } = await registry.registerVersion({
      modelName,
      onnxUri: uploaded.uri,
      sha256: uploaded.sha256,
      signature,
      metrics: { auc: 0.8 },
      params: {},
      blessing: { blessed: true, reason: 'seeded', evaluatedAt: new Date().toISOString() },
      actor: 'fuzz-seed',
      reason: 'seeded for the bad-input suite',
    });
    ids.push(version.id);
  }
  await deployments.deploy({
    deploymentName: modelName,
    modelName,
    versionId: ids[0]!,
    actor: 'fuzz-seed',
    reason: 'seeded',
  });
}

/**
 * Starts the platform on this test run's stack. `bodyLimitBytes` is the API's body limit (oversized bodies are
 * generated just above it).
 */
export async function startFuzzPlatform(options: { bodyLimitBytes: number }): Promise<FuzzPlatform> {
  const suffix = randomUUID().slice(0, 8);
  const pipelineName = `fuzz-${suffix}`;
  const modelName = `fuzz-model-${suffix}`;
  const databaseName = `fuzz_${suffix}`;
  const stack = testEndpoints();
  const admin = new pg.Pool({ connectionString: stack.databaseUrl, max: 1 });
  await admin.query(`create database "${databaseName}"`);
  const url = new URL(stack.databaseUrl);
  url.pathname = `/${databaseName}`;
  const migrating = createDatabase(url.toString(), { max: 1 });
  try {
    await runMigrations(migrating.db);
  } finally {
    await migrating.close();
  }
  const platform = await connectTestPlatform({ ...stack, databaseUrl: url.toString() }, `fuzz-${suffix}`);
  await countWrites(platform.storage.database.pool);
  // The data root (a local source) and the probes' scratch space, apart; and an object source in the bucket.
  const scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bad-input-'));
  const dataDir = path.join(scratchDir, 'data');
  fs.mkdirSync(dataDir);
  fs.mkdirSync(path.join(scratchDir, 'probes'));
  const csv = path.join(dataDir, 'events.csv');
  fs.writeFileSync(csv, syntheticCsv());
  const bucket = platform.endpoints.s3.bucket;
  await platform.artifacts.client.putObject(bucket, 'landing/events.csv', Buffer.from(syntheticCsv()));
  const policy: DataAccessPolicy = {
    roots: [dataDir],
    buckets: [{ bucket, prefix: 'landing/' }],
    maxFiles: 100,
    maxDepth: 4,
  };

  const { storage } = platform;
  const definition = syntheticDefinition(pipelineName, csv);
  await storage.pipelines.saveDefinition(definition, 'fuzz-seed');
  // No worker polls this queue: a run or rollout the fuzzer starts stays pending and costs nothing.
  const runner: PipelineRunnerDeps = {
    client: platform.client,
    pipelines: storage.pipelines,
    taskQueue: platform.taskQueue,
    trainingTaskQueue: platform.trainingTaskQueue,
    // No worker computes monitoring windows here: a valid request answers 503 after this long instead of hanging.
    answerTimeoutMs: 500,
  };
  const runs = await seedRuns(platform, pipelineName);
  // The connection store of this file: its key file in the scratch folder, no built-in platform connection.
  const connections = openConnectionStore({
    db: storage.database.db,
    dataDir: scratchDir,
    databaseUrl: url.toString(),
    connectionsKey: undefined,
  });
  await seedModels(platform, modelName);

  const serving = createServing({
    registry: storage.registry,
    deployments: storage.deployments,
    artifacts: storage.artifacts,
    databaseUrl: url.toString(),
    logger: testLogger,
    options: { defaultMetrics: false, pollIntervalMs: 600_000, listenerApplicationName: `fuzz-${suffix}` },
  });
  await serving.pool.start();

  const deps = {
    logger: testLogger,
    readiness: [],
    version: 'test',
    bodyLimitBytes: options.bodyLimitBytes,
    stores: {
      artifacts: storage.artifacts,
      metadata: storage.metadata,
      datasets: storage.datasets,
      pipelines: storage.pipelines,
      registry: storage.registry,
      deployments: storage.deployments,
      feedback: storage.feedback,
      triggers: storage.triggers,
      watchedObjects: storage.watchedObjects,
      monitoringWindows: storage.monitoringWindows,
      monitoringActions: storage.monitoringActions,
      lineage: storage.lineage,
    },
    sources: { policy, objects: storage.objects, scratchDir: path.join(scratchDir, 'probes') },
    runner,
    serving: { ...serving, maxInstances: 100 },
    keys: storage.apiKeys,
    connections,
  };
  const app = createApp({ ...deps, auth: { kind: 'open' } });
  // Keys mode over the real key store, with a live admin key whose token no generated header holds: every
  // non-public request must be a 401. Some generated tokens carry its prefix, so the lookup finds its row.
  const { key: adminKey, token } = await storage.apiKeys.create({
    name: 'fuzz-admin',
    scopes: ['admin'],
    createdBy: 'fuzz-seed',
  });
  const keysApp = createApp({ ...deps, auth: storedKeys(storage.apiKeys) });

  const doc = (await (await app.request('/openapi.json')).json()) as OpenApiDocument;
  const operations = operationsOf(doc);
  const instance = Object.fromEntries(
    makeTransform('binary').features.map((f) => [f.name, f.kind === 'numeric' ? 1.5 : 'a']),
  );
  const ctx: FuzzContext = {
    resolve: resolverOf(doc),
    knownParams: {
      name: [pipelineName, modelName],
      dataset: [pipelineName],
      runId: [runs.pending, runs.failed],
      version: ['1', '2'],
      versionOrAlias: ['1', '2', 'champion'],
      id: [randomUUID(), `batch-score-${modelName}-${randomUUID()}`],
    },
    // Resuming starts a workflow that no worker runs, and a live run's reads wait for its progress query (2 s):
    // only this run is resumed, and no read names it.
    knownParamsOf: {
      'POST /v1/runs/{runId}/resume': { runId: [runs.resumable, runs.pending] },
      '/v1/pipelines/': { name: [pipelineName] },
      '/v1/models/': { name: [modelName] },
      '/v1/deployments/': { name: [modelName] },
      '/v1/keys/': { id: [adminKey.id] },
      '/v1/connections/': { name: ['warehouse'] },
    },
    exampleBodies: {
      'POST /v1/pipelines': [
        definition,
        { ...definition, description: 'another version' },
        { ...definition, source: { uri: `s3://${bucket}/landing/events.csv` } },
        { ...definition, source: { uri: `${dataDir}/*.csv` } },
      ],
      'PUT /v1/pipelines/{name}': [definition],
      'POST /v1/pipelines/{name}/runs': [{}, { version: 1 }],
      'POST /v1/models/{name}/predict': [{ instance }, { instances: [instance, instance] }],
      'PUT /v1/models/{name}/aliases/{alias}': [{ version: 1 }, { version: 2, reason: 'fuzz' }],
      'PATCH /v1/models/{name}': [{ description: 'fuzzed', tags: { team: 'fuzz' } }],
      'PATCH /v1/models/{name}/versions/{version}': [{ tags: { team: 'fuzz', gone: null } }],
      'POST /v1/deployments/{name}/rollouts': [
        { strategy: 'replace', version: 2 },
        { strategy: 'shadow', version: 2 },
        { strategy: 'canary', version: 2 },
      ],
      'POST /v1/deployments/{name}/rollback': [{ reason: 'fuzz' }, { to: 1, reason: 'fuzz' }],
      'POST /v1/connections': [
        {
          name: 'warehouse',
          url: 'postgres://reader@127.0.0.1:1/warehouse',
          secret: { source: 'env', variable: 'MLOPS_CONNECTION_PW' },
        },
        { name: 'lake', url: 'postgres://reader:secret@127.0.0.1:1/lake', description: 'the lake' },
      ],
      'PUT /v1/connections/{name}': [{ url: 'postgres://reader@127.0.0.1:1/warehouse', secret: null }],
      'POST /v1/keys': [{ name: 'ci', scopes: ['read', 'trigger'] }],
      'POST /v1/runs/{runId}/approve': [{ reason: 'looks right' }],
      'POST /v1/runs/{runId}/reject': [{ reason: 'looks wrong' }],
    },
    expensive: new Set([
      'POST /v1/pipelines/{name}/runs',
      'POST /v1/runs/{runId}/resume',
      'POST /v1/models/{name}/batch-predictions',
    ]),
    bodyLimitBytes: options.bodyLimitBytes,
  };
  const stop = async () => {
    await serving.pool.close();
    // The workflows the fuzzing started wait on a queue no worker polls: end them rather than leave them open.
    try {
      const ids: string[] = [];
      for await (const wf of platform.client.workflow.list({
        query: `TaskQueue = '${platform.taskQueue}' AND ExecutionStatus = 'Running'`,
      })) {
        ids.push(wf.workflowId);
      }
      await Promise.allSettled(ids.map((id) => platform.client.workflow.getHandle(id).terminate('bad-input suite')));
    } catch (error) {
      testLogger.warn({ err: error }, 'could not terminate the fuzzed workflows');
    }
    await platform.close();
    fs.rmSync(scratchDir, { recursive: true, force: true });
    await admin.query(`drop database if exists "${databaseName}" with (force)`);
    await admin.end();
  };
  return {
    app,
    keysApp,
    keyPrefix: token.slice(0, 'mlk_'.length + 8),
    operations,
    ctx,
    databaseState: async () => {
      const result = await platform.storage.database.pool.query<{ n: string }>('select n from fuzz_writes');
      return result.rows[0]!.n;
    },
    stop,
  };
}
