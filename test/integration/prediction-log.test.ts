/**
 * Prediction logs against a real PostgreSQL of this test's own (so stopping it disturbs no other test file): rows
 * written through the predict route land once each; with Postgres stopped, predictions keep answering 200, the
 * bounded queue fills and the overflow is counted as dropped; once Postgres is back on the same port and data, the
 * queue drains and every row that was not dropped lands exactly once.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import type { AppEnv } from '../../server/context.js';
import { ServingMetrics } from '../../serving/metrics.js';
import { ModelPool } from '../../serving/model-pool.js';
import type { PredictionLogWriter } from '../../serving/prediction-log.js';
import { createPredictionLogWriter } from '../../serving/prediction-log-postgres.js';
import {
  startPostgresServer,
  type PostgresServerOptions,
  type RunningPostgresServer,
} from '../../stack/postgres-server.js';
import { findFreePort } from '../../stack/ports.js';
import { createDatabase, runMigrations, type DatabaseHandle } from '../../storage/database.js';
import { FakeRegistry, fakeLoader, silentLogger } from '../unit/serving/fixtures.js';

const QUEUE_SIZE = 300;

let dir: string;
let serverOptions: PostgresServerOptions;
let server: RunningPostgresServer | undefined;
let database: DatabaseHandle;
let pool: ModelPool;
let metrics: ServingMetrics;
let writer: PredictionLogWriter;
let app: OpenAPIHono<AppEnv>;
let versionId: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prediction-log-'));
  // The server runs as `postgres` when the tests run as root: it must be able to enter the folder.
  fs.chmodSync(dir, 0o755);
  serverOptions = {
    clusterDir: path.join(dir, 'postgres'),
    logFile: path.join(dir, 'postgres.log'),
    pidFile: path.join(dir, 'postgres.pid'),
    host: '127.0.0.1',
    port: await findFreePort(),
    timeoutMs: 60_000,
  };
  server = await startPostgresServer(serverOptions);
  database = createDatabase(server.url, { max: 2, onPoolError: () => {} });
  await runMigrations(database.db);

  const registry = new FakeRegistry();
  const version = registry.addVersion('delays');
  versionId = version.id;
  registry.deploy('delays', 'delays', version.id);
  metrics = new ServingMetrics({ defaultMetrics: false });
  pool = new ModelPool({
    registry,
    deployments: registry,
    metrics,
    logger: silentLogger,
    loadModel: fakeLoader(metrics).load,
    pollIntervalMs: 0,
  });
  await pool.start();
  writer = createPredictionLogWriter({
    databaseUrl: server.url,
    queueSize: QUEUE_SIZE,
    batchSize: 50,
    flushMs: 20,
    retryMinMs: 50,
    retryMaxMs: 400,
    statementTimeoutMs: 2_000,
    metrics,
    logger: silentLogger,
  });
  app = createApp({
    logger: silentLogger,
    readiness: [],
    auth: { kind: 'open' },
    version: 'test',
    bodyLimitBytes: 1_048_576,
    serving: { pool, metrics, predictionLog: writer },
  });
});

afterAll(async () => {
  await writer?.close(1_000);
  await pool?.close();
  await database?.close();
  await server?.process.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function predict(requestId: string, instances: Record<string, unknown>[]): Promise<number> {
  const response = await app.request('/v1/models/delays/predict', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': requestId },
    body: JSON.stringify({ instances }),
  });
  await response.arrayBuffer();
  return response.status;
}

/** Rows per request id. */
async function rowsByRequest(): Promise<Map<string, number>> {
  const { rows } = await database.pool.query<{ request_id: string; n: string }>(
    'select request_id, count(*) as n from prediction_logs group by request_id',
  );
  return new Map(rows.map((r) => [r.request_id, Number(r.n)]));
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(writer.stats)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function scrape(): Promise<string> {
  const response = await app.request('/metrics');
  return response.text();
}

describe('prediction logs on a real Postgres', () => {
  // Request id → instances it sent.
  const sent = new Map<string, number>();
  const dropped = new Set<string>();

  it('writes one row per answered instance, with what was asked and answered', async () => {
    for (let i = 0; i < 120; i++) {
      const id = `up-${i}`;
      const n = 1 + (i % 3);
      const instances = Array.from({ length: n }, (_, j) => ({ x: i + j, kind: `k${j}`, extra: 'kept' }));
      expect(await predict(id, instances)).toBe(200);
      sent.set(id, n);
    }
    await until(() => writer.stats.depth === 0 && writer.stats.written === 240, 10_000, 'the first rows');
    const counts = await rowsByRequest();
    for (const [id, n] of sent) expect(counts.get(id), id).toBe(n);

    const { rows } = await database.pool.query(
      `select request_id, deployment, model, version_id, version, role, features, outputs, latency_ms, error,
              extract(epoch from now() - logged_at) as age_s
         from prediction_logs where request_id = 'up-2' order by id`,
    );
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatchObject({
      request_id: 'up-2',
      deployment: 'delays',
      model: 'delays',
      version_id: versionId,
      version: 1,
      role: 'champion',
      features: { x: 2, kind: 'k0', extra: 'kept' },
      outputs: { label: 'no', probabilities: [expect.closeTo(0.9, 5), expect.closeTo(0.1, 5)] },
      error: null,
    });
    expect((rows as { features: { x: number } }[]).map((r) => r.features.x)).toEqual([2, 3, 4]);
    expect(rows[0].latency_ms).toBeGreaterThan(0);
    expect(Number(rows[0].age_s)).toBeLessThan(60);
  });

  it('keeps answering with Postgres down, queues what it can, counts what it cannot', async () => {
    await server!.process.stop();
    server = undefined;
    const before = writer.stats;
    for (let i = 0; i < 500; i++) {
      const id = `down-${i}`;
      expect(await predict(id, [{ x: i, kind: 'k1' }])).toBe(200);
      sent.set(id, 1);
      // The queue holds the first QUEUE_SIZE rows; newer ones are dropped.
      if (i >= QUEUE_SIZE) dropped.add(id);
    }
    expect(writer.stats.depth).toBe(QUEUE_SIZE);
    expect(writer.stats.dropped - before.dropped).toBe(500 - QUEUE_SIZE);
    await until(() => writer.stats.writeErrors > before.writeErrors, 10_000, 'a failed write');
    const text = await scrape();
    expect(text).toContain(`mlops_serving_prediction_log_queue_depth ${QUEUE_SIZE}`);
    expect(text).toContain(`mlops_serving_prediction_logs_dropped_total ${500 - QUEUE_SIZE}`);
    expect(text).toMatch(/mlops_serving_prediction_log_write_errors_total [1-9]/);
  });

  it('drains once Postgres is back: every row not dropped lands exactly once', async () => {
    server = await startPostgresServer(serverOptions);
    await until(() => writer.stats.depth === 0, 20_000, 'the queue to drain');
    const counts = await rowsByRequest();
    for (const [id, n] of sent) expect(counts.get(id) ?? 0, id).toBe(dropped.has(id) ? 0 : n);
    const expectedRows = [...sent].reduce((total, [id, n]) => total + (dropped.has(id) ? 0 : n), 0);
    const { rows } = await database.pool.query<{ n: string }>('select count(*) as n from prediction_logs');
    expect(Number(rows[0]!.n)).toBe(expectedRows);
    expect(writer.stats).toMatchObject({ depth: 0, written: expectedRows, dropped: dropped.size, rejected: 0 });
    expect(await scrape()).toContain(`mlops_serving_prediction_logs_written_total ${expectedRows}`);
  });

  it('stores any feature values JSON can carry, and isolates a row Postgres refuses without losing its batch', async () => {
    const before = writer.stats;
    expect(await predict('odd-ok-1', [{ x: 1, kind: 'k0' }])).toBe(200);
    // Escapes `features` (json) keeps as text: a NUL, a lone surrogate, backslashes, tabs and line breaks.
    const odd = { x: 2, kind: 'k0', note: 'a\u0000b\ud800c\\d\te\nf\rg"h' };
    expect(await predict('odd-kept', [odd])).toBe(200);
    // A row that breaks a constraint of the table (the latency check): Postgres refuses this one row.
    writer.enqueue({
      requestId: 'odd-refused',
      loggedAt: Date.now(),
      deployment: 'delays',
      model: { name: 'delays', version: 1, versionId },
      role: 'champion',
      instances: [{ x: 3, kind: 'k0' }],
      outputs: ['{"label":1,"probabilities":[0.5,0.5]}'],
      latencyMs: -1,
    });
    expect(await predict('odd-ok-2', [{ x: 3, kind: 'k0' }])).toBe(200);
    await until(() => writer.stats.depth === 0, 10_000, 'the batch');
    const counts = await rowsByRequest();
    expect(['odd-ok-1', 'odd-kept', 'odd-refused', 'odd-ok-2'].map((id) => counts.get(id))).toEqual([
      1,
      1,
      undefined,
      1,
    ]);
    const { rows } = await database.pool.query<{ features: unknown }>(
      `select features from prediction_logs where request_id = 'odd-kept'`,
    );
    expect(rows[0]?.features).toEqual(odd);
    expect(writer.stats.rejected - before.rejected).toBe(1);
    expect(writer.stats.written - before.written).toBe(3);
  });
});
