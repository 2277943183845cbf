/**
 * Serving logs at scale, on the real stack: `prediction_logs` partitioned by day (migration 0007), partitions made
 * ahead, rows of a day without one caught by DEFAULT and moved when it is made, expired days exported to Parquet in
 * S3 and dropped (retried safely), and windows read across Postgres and the warehouse. Every test gets a database
 * of its own on the test server and a prefix of its own in the bucket, so no test depends on another's partitions or
 * on the order they run in (nor do other files' rows and partitions matter). Days are counted from one `today`
 * taken when the file loads, far enough from it that a run crossing UTC midnight changes nothing.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client as TemporalClient, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createPredictionLogMaintenanceActivities } from '../../activities/prediction-log-maintenance.js';
import { addDays, dayOf, dayStart, type Day } from '../../core/days.js';
import { DataEngine, sqlString } from '../../data/engine.js';
import type { PredictionLogRow } from '../../serving/prediction-log-records.js';
import { postgresPredictionLogSink } from '../../serving/prediction-log-postgres.js';
import { S3ArtifactStore } from '../../storage/artifact-store.js';
import { createDatabase, MIGRATIONS_FOLDER, runMigrations, type DatabaseHandle } from '../../storage/database.js';
import {
  exportPredictionLogPartition,
  PredictionLogExportBusyError,
  type PredictionLogExportDeps,
} from '../../storage/prediction-log-export.js';
import {
  DEFAULT_PARTITION,
  ensurePredictionLogPartition,
  ensurePredictionLogPartitions,
  expiredPartitionDays,
  listPredictionLogPartitions,
  partitionName,
} from '../../storage/prediction-log-partitions.js';
import { PredictionLogWarehouse } from '../../storage/prediction-log-warehouse.js';
import { readPredictionLogWindow } from '../../storage/prediction-log-window.js';
import { createPlatformWorker } from '../../workers/create-worker.js';
import { installTemporalRuntime } from '../../workers/runtime.js';
import { ensurePredictionLogMaintenanceSchedule } from '../../workers/schedules.js';
import { maintainPredictionLogs } from '../../workflows/index.js';
import { testLogger } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

let admin: pg.Pool;
let artifacts: S3ArtifactStore;
/** The databases made and not dropped yet, with their handles while open. */
const databases = new Map<string, DatabaseHandle | undefined>();
/** This test's database (migrated), and its pool. */
let pool: pg.Pool;
/** This test's warehouse: a prefix of its own in the bucket. */
let warehouse: PredictionLogWarehouse;
let scratchDir: string;

/** Taken once: every day below is counted from it, so the tests see the same days whenever each one runs. */
const today = dayOf(new Date());
const versionId = randomUUID();

async function freshDatabase(): Promise<DatabaseHandle> {
  const name = `plog_${randomUUID().replaceAll('-', '')}`;
  await admin.query(`create database "${name}"`);
  databases.set(name, undefined);
  const url = new URL(testEndpoints().databaseUrl);
  url.pathname = `/${name}`;
  const handle = createDatabase(url.toString(), { max: 4 });
  databases.set(name, handle);
  return handle;
}

async function dropDatabases(): Promise<void> {
  for (const [name, handle] of databases) {
    await handle?.close();
    await admin.query(`drop database if exists "${name}" with (force)`);
    databases.delete(name);
  }
}

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: testEndpoints().databaseUrl, max: 1 });
  artifacts = S3ArtifactStore.fromConfig(testEndpoints().s3);
  await artifacts.ensureBucket();
  scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prediction-log-partitions-'));
});

beforeEach(async () => {
  const database = await freshDatabase();
  await runMigrations(database.db);
  pool = database.pool;
  warehouse = new PredictionLogWarehouse(artifacts.client, artifacts.bucket, `test-${randomUUID()}/prediction_logs/`);
});

afterEach(dropDatabases);

afterAll(async () => {
  if (admin) await dropDatabases();
  await admin?.end();
  if (scratchDir) fs.rmSync(scratchDir, { recursive: true, force: true });
});

let sequence = 0;

/** A row logged at `time`, with the awkward values a COPY or CSV round trip could get wrong on some rows. */
function row(time: Date | string, overrides: Partial<PredictionLogRow> = {}): PredictionLogRow {
  const n = sequence++;
  const odd = n % 4 === 1;
  return {
    requestId: odd ? `req "${n}",\ttab\nline \\ back` : `req-${n}`,
    loggedAt: new Date(time).getTime(),
    deployment: n % 7 === 3 ? null : 'flights',
    model: 'flights-delay',
    versionId,
    version: 3,
    role: n % 5 === 2 ? 'shadow' : 'champion',
    features: JSON.stringify({
      distance: 100 + n * 1.5,
      origin: odd ? 'a\\b"c\nd\te, "é"' : 'PIT',
      nested: { list: [1, null, 'x'] },
      empty: '',
    }),
    outputs: n % 6 === 5 ? null : JSON.stringify({ label: n % 2, probabilities: [0.25, 0.75] }),
    latencyMs: [0.1, 1.234, 3, 0.000123][n % 4]!,
    error: n % 9 === 4 ? 'failed: "quote", comma\nand line' : n % 9 === 5 ? '' : null,
    ...overrides,
  };
}

async function write(rows: readonly PredictionLogRow[]): Promise<void> {
  await postgresPredictionLogSink(pool)(rows);
}

/** Rows per partition table holding rows of `requestIds` (or all). */
async function partitionsOf(where = 'true'): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ part: string; n: number }>(
    `select tableoid::regclass::text as part, count(*)::int as n from prediction_logs where ${where} group by 1`,
  );
  return Object.fromEntries(rows.map((r) => [r.part, r.n]));
}

const at = (day: Day, time = '12:00:00.000'): string => `${day}T${time}Z`;
const qualified = (day: Day): string => `prediction_log_partitions.${partitionName(day)}`;

describe('migration 0007', () => {
  it('moves existing rows into day partitions, keeping their ids, and numbering goes on', async () => {
    const handle = await freshDatabase();
    // The migrations before this one, from a copy of the folder whose journal stops at 0006.
    const before = fs.mkdtempSync(path.join(os.tmpdir(), 'migrations-0006-'));
    fs.cpSync(MIGRATIONS_FOLDER, before, { recursive: true });
    const journalPath = path.join(before, 'meta', '_journal.json');
    const journal = JSON.parse(fs.readFileSync(journalPath, 'utf8')) as { entries: { tag: string }[] };
    journal.entries = journal.entries.filter((e) => e.tag < '0007');
    fs.writeFileSync(journalPath, JSON.stringify(journal));
    await migrate(drizzle(handle.pool), { migrationsFolder: before });
    fs.rmSync(before, { recursive: true, force: true });
    await handle.pool.query(
      `insert into prediction_logs (request_id, logged_at, deployment, model, version_id, version, role, features,
          outputs, latency_ms)
        select 'old-' || i, timestamptz '2026-01-01 23:59:59.999+00' + (i || ' hours')::interval, 'flights', 'm',
          $1, 1, 'champion', '{"x": 1}', '{"label": 1}', 1.5
        from generate_series(0, 4) i`,
      [versionId],
    );
    const { rows: idsBefore } = await handle.pool.query<{ id: string }>('select id from prediction_logs order by id');

    const started = performance.now();
    await runMigrations(handle.db);
    const migrateMs = performance.now() - started;

    const { rows } = await handle.pool.query<{ id: string; part: string }>(
      'select id, tableoid::regclass::text as part from prediction_logs order by id',
    );
    expect(rows.map((r) => r.id)).toEqual(idsBefore.map((r) => r.id));
    expect(rows.map((r) => r.part)).toEqual([
      'prediction_log_partitions.p20260101',
      'prediction_log_partitions.p20260102',
      'prediction_log_partitions.p20260102',
      'prediction_log_partitions.p20260102',
      'prediction_log_partitions.p20260102',
    ]);
    const { rows: next } = await handle.pool.query<{ id: string }>(
      `insert into prediction_logs (request_id, logged_at, model, version_id, version, role, features, latency_ms)
        values ('new', now(), 'm', $1, 1, 'champion', '{}', 0) returning id`,
      [versionId],
    );
    expect(Number(next[0]!.id)).toBeGreaterThan(Number(idsBefore.at(-1)!.id));
    // The partitioned indexes and the key, on the parent and on every partition.
    const { rows: indexes } = await handle.pool.query<{ indexname: string }>(
      `select indexname from pg_indexes where schemaname = 'public' and tablename = 'prediction_logs' order by 1`,
    );
    expect(indexes.map((i) => i.indexname)).toEqual([
      'prediction_logs_deployment_logged_idx',
      'prediction_logs_pk',
      'prediction_logs_request_idx',
      'prediction_logs_version_logged_idx',
    ]);
    const { rows: partitionIndexes } = await handle.pool.query<{ n: number }>(
      `select count(*)::int as n from pg_indexes where schemaname = 'prediction_log_partitions' and tablename = 'p20260101'`,
    );
    expect(partitionIndexes[0]!.n).toBe(4);
    // One statement per day with rows, and a copy of the rows: quick at this size (on an empty table too).
    testLogger.info({ migrateMs }, 'migration 0007 with rows');
  });
});

describe('day partitions', () => {
  it('creates today and the days ahead once, and lists them', async () => {
    const first = await ensurePredictionLogPartitions(pool, { from: today, aheadDays: 3 });
    expect(first.map((p) => [p.day, p.created])).toEqual([
      [today, true],
      [addDays(today, 1), true],
      [addDays(today, 2), true],
      [addDays(today, 3), true],
    ]);
    const again = await ensurePredictionLogPartitions(pool, { from: today, aheadDays: 3 });
    expect(again.every((p) => !p.created)).toBe(true);
    // Concurrent callers: one creates, the others find it.
    const raced = await Promise.all([1, 2, 3].map(() => ensurePredictionLogPartition(pool, addDays(today, 4))));
    expect(raced.filter((p) => p.created)).toHaveLength(1);

    const listed = await listPredictionLogPartitions(pool);
    expect(listed.map((p) => p.day)).toEqual([...[0, 1, 2, 3, 4].map((i) => addDays(today, i)), null]);
    expect(listed.at(-1)!.name).toBe(DEFAULT_PARTITION);
  });

  it('routes each row to its day partition', async () => {
    await ensurePredictionLogPartitions(pool, { from: today, aheadDays: 1 });
    await write([
      row(at(today, '00:00:00.000')),
      row(at(today, '23:59:59.999')),
      row(at(addDays(today, 1), '00:00:00.000')),
    ]);
    expect(await partitionsOf(`version_id = '${versionId}'`)).toEqual({
      [qualified(today)]: 2,
      [qualified(addDays(today, 1))]: 1,
    });
  });

  it('keeps rows of a day without a partition in DEFAULT, and moves them when the day gets one', async () => {
    const day = addDays(today, -100);
    const later = addDays(today, 200);
    await write([
      row(at(day, '00:00:00.000')),
      row(at(day, '10:00:00.000')),
      row(at(day, '23:59:59.999')),
      row(at(later)),
    ]);
    expect(await partitionsOf(`logged_at < '${at(addDays(day, 1), '00:00:00')}'`)).toEqual({
      [`prediction_log_partitions.${DEFAULT_PARTITION}`]: 3,
    });

    const made = await ensurePredictionLogPartition(pool, day);
    expect(made).toEqual({ day, created: true, movedRows: 3 });
    expect(await partitionsOf(`logged_at < '${at(addDays(day, 1), '00:00:00')}'`)).toEqual({ [qualified(day)]: 3 });
    // New rows of that day go to it; its indexes were made when it was attached.
    await write([row(at(day, '11:00:00.000'))]);
    expect(await partitionsOf(`logged_at < '${at(addDays(day, 1), '00:00:00')}'`)).toEqual({ [qualified(day)]: 4 });
    const { rows: indexes } = await pool.query<{ n: number }>(
      `select count(*)::int as n from pg_indexes where schemaname = 'prediction_log_partitions' and tablename = $1`,
      [partitionName(day)],
    );
    expect(indexes[0]!.n).toBe(4);

    // The maintenance adopts every day it finds in DEFAULT.
    const ensured = await ensurePredictionLogPartitions(pool, { from: today, aheadDays: 1 });
    expect(ensured.find((p) => p.day === later)).toEqual({ day: later, created: true, movedRows: 1 });
    expect(await partitionsOf(`tableoid = 'prediction_log_partitions.${DEFAULT_PARTITION}'::regclass`)).toEqual({});
  });
});

/** Every column of the rows of one day, as Postgres gives them (the window reader's shape). */
async function dayRows(day: Day) {
  const window = await readPredictionLogWindow(
    { pool, warehouse, scratchDir },
    { deployment: 'flights', start: dayStart(day), end: dayStart(addDays(day, 1)) },
  );
  return window;
}

/** The Parquet file of an export, read back with DuckDB. */
async function parquetRows(uri: string): Promise<Record<string, unknown>[]> {
  const dir = fs.mkdtempSync(path.join(scratchDir, 'read-'));
  try {
    const file = path.join(dir, 'part.parquet');
    await warehouse.download(warehouse.keyOfUri(uri), file);
    const engine = await DataEngine.open({ workDir: dir, threads: 1 });
    try {
      return await engine.rows(
        `select id, request_id, epoch_ms(logged_at) as logged_at, deployment, model, version_id, version, role,
            features::varchar as features, outputs::varchar as outputs, latency_ms, error
          from read_parquet(${sqlString(file)}) order by id`,
      );
    } finally {
      engine.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('export of expired days', () => {
  const exportDeps = (): PredictionLogExportDeps => ({ pool, warehouse, scratchDir });

  it('exports an expired partition to Parquet with the same rows, then drops it', async () => {
    const day = addDays(today, -40);
    await ensurePredictionLogPartition(pool, day);
    const rows = Array.from({ length: 50 }, (_, i) => row(new Date(dayStart(day).getTime() + i * 1_700_000 + (i % 3))));
    await write(rows);
    const { rows: stored } = await pool.query<Record<string, unknown>>(
      `select id::int as id, request_id, (extract(epoch from logged_at) * 1000)::bigint::int8::text as logged_at,
          deployment, model, version_id::text as version_id, version, role, features::text as features,
          outputs::text as outputs, latency_ms::text as latency_ms, error
        from ${qualified(day)} order by id`,
    );
    const before = await dayRows(day);
    expect(before.liveRows).toBe(rows.filter((r) => r.deployment === 'flights').length);

    expect(await expiredPartitionDays(pool, { today, retentionDays: 30 })).toEqual([day]);
    expect(await expiredPartitionDays(pool, { today, retentionDays: 120 })).toEqual([]);

    const result = await exportPredictionLogPartition(exportDeps(), day);
    expect(result).toMatchObject({ day, status: 'exported', rows: 50 });
    expect(result.uri).toMatch(new RegExp(`/date=${day}/part-\\d+-\\d+\\.parquet$`));

    // Gone from Postgres, recorded as dropped, and in S3 with every column as Postgres held it.
    expect((await listPredictionLogPartitions(pool)).some((p) => p.day === day)).toBe(false);
    const { rows: records } = await pool.query<{ rows: string; dropped: boolean; uri: string }>(
      `select rows, dropped_at is not null as dropped, uri from prediction_log_exports where day = $1`,
      [day],
    );
    expect(records).toEqual([{ rows: '50', dropped: true, uri: result.uri }]);
    const exported = await parquetRows(result.uri!);
    expect(
      exported.map((r) => ({
        ...r,
        logged_at: String(r.logged_at),
        latency_ms: String(r.latency_ms),
      })),
    ).toEqual(stored);

    // And the window reader now finds the same rows in the warehouse.
    const after = await dayRows(day);
    expect(after.liveRows).toBe(0);
    expect(after.exportedRows).toBe(before.liveRows);
    expect(after.rows).toEqual(before.rows);
  });

  it('is safe to retry: a failed drop keeps the partition, and the retry finds the same export', async () => {
    const day = addDays(today, -45);
    await ensurePredictionLogPartition(pool, day);
    await write(Array.from({ length: 10 }, (_, i) => row(new Date(dayStart(day).getTime() + i * 60_000))));

    // A reader holding the partition keeps the drop from its locks: the export fails after the upload. Meanwhile
    // writes of other days go on: the drop never queues for prediction_logs' lock, which would hold them up behind it.
    await ensurePredictionLogPartition(pool, today);
    const reader = await pool.connect();
    try {
      await reader.query('begin');
      await reader.query(`select count(*) from ${qualified(day)}`);
      let dropping: () => void = () => undefined;
      const droppingStarted = new Promise<void>((resolve) => (dropping = resolve));
      const failed = exportPredictionLogPartition(
        {
          ...exportDeps(),
          dropLockWaitMs: 5_000,
          onProgress: (step) => (step === 'dropping partition' ? dropping() : undefined),
        },
        day,
      );
      const failure = expect(failed).rejects.toThrow(PredictionLogExportBusyError);
      await droppingStarted;
      await new Promise((resolve) => setTimeout(resolve, 200));
      // Ordering, not a time bound: the write lands while the drop is still trying for its locks (it gives up only
      // after 5 s); a drop queued for prediction_logs' lock would hold the write until it gave up.
      const first = await Promise.race([
        write([row(at(today))]).then(() => 'write'),
        failed.then(
          () => 'export',
          () => 'export',
        ),
      ]);
      expect(first).toBe('write');
      await failure;
      await reader.query('commit');
    } finally {
      reader.release();
    }
    expect((await listPredictionLogPartitions(pool)).some((p) => p.day === day)).toBe(true);
    const { rows: pending } = await pool.query<{ uri: string; dropped: boolean }>(
      `select uri, dropped_at is not null as dropped from prediction_log_exports where day = $1`,
      [day],
    );
    expect(pending).toHaveLength(1);
    expect(pending[0]!.dropped).toBe(false);
    // Meanwhile the window reads the rows once, from Postgres.
    const meanwhile = await dayRows(day);
    expect([meanwhile.liveRows, meanwhile.exportedRows]).toEqual([meanwhile.rows.length, 0]);

    // A row arrives for the day before the retry: the retry exports 11 rows under a new key and replaces the first.
    await write([row(at(day, '23:00:00.000'))]);
    const retried = await exportPredictionLogPartition(exportDeps(), day);
    expect(retried).toMatchObject({ status: 'exported', rows: 11 });
    expect(retried.uri).not.toBe(pending[0]!.uri);
    const { rows: records } = await pool.query<{ uri: string; rows: string; dropped: boolean }>(
      `select uri, rows, dropped_at is not null as dropped from prediction_log_exports where day = $1`,
      [day],
    );
    expect(records).toEqual([{ uri: retried.uri, rows: '11', dropped: true }]);
    expect(await warehouse.stat(warehouse.keyOfUri(pending[0]!.uri))).toBeUndefined();

    // Once more: nothing left to do, nothing changed.
    expect(await exportPredictionLogPartition(exportDeps(), day)).toMatchObject({ status: 'absent', rows: 0 });
    const { rows: again } = await pool.query(`select 1 from prediction_log_exports where day = $1`, [day]);
    expect(again).toHaveLength(1);
    expect((await warehouse.stat(warehouse.keyOfUri(retried.uri!)))?.rows).toBe(11);
  });

  it('runs one export of a day at a time: a second one started beside it waits, then finds nothing to do', async () => {
    const day = addDays(today, -55);
    await ensurePredictionLogPartition(pool, day);
    await write(Array.from({ length: 30 }, (_, i) => row(new Date(dayStart(day).getTime() + i * 60_000))));
    // A late row of the day arrives while the first export uploads: that one starts over, the other may not meddle.
    const late = row(at(day, '23:30:00.000'));
    let lateWritten = false;
    class LateRowWarehouse extends PredictionLogWarehouse {
      override async upload(...args: Parameters<PredictionLogWarehouse['upload']>): Promise<void> {
        if (!lateWritten) {
          lateWritten = true;
          await write([late]);
        }
        await super.upload(...args);
      }
    }
    const racing = new LateRowWarehouse(warehouse.client, warehouse.bucket, warehouse.prefix);
    const steps: string[][] = [[], []];
    const results = await Promise.all(
      [0, 1].map((i) =>
        exportPredictionLogPartition(
          { ...exportDeps(), warehouse: racing, progressIntervalMs: 20, onProgress: (step) => steps[i]!.push(step) },
          day,
        ),
      ),
    );
    const { rows: ids } = await pool.query<{ id: string }>(
      `select id::text as id from prediction_logs where version_id = $1 order by id`,
      [versionId],
    );
    expect(ids).toEqual([]);

    expect(results.map((r) => r.status).sort()).toEqual(['absent', 'exported']);
    const exported = results.find((r) => r.status === 'exported')!;
    expect(exported.rows).toBe(31);
    // The one that waited heartbeated meanwhile, and never got further than finding the partition gone.
    const waited = steps[results.indexOf(exported) === 0 ? 1 : 0]!;
    expect(waited.filter((s) => s === 'waiting for the day lock').length).toBeGreaterThan(2);
    expect(waited).not.toContain('copying rows');

    const { rows: records } = await pool.query<{ uri: string; rows: string; dropped: boolean }>(
      `select uri, rows, dropped_at is not null as dropped from prediction_log_exports where day = $1`,
      [day],
    );
    expect(records).toEqual([{ uri: exported.uri, rows: '31', dropped: true }]);
    expect((await listPredictionLogPartitions(pool)).some((p) => p.day === day)).toBe(false);
    const inParquet = await parquetRows(exported.uri!);
    expect(inParquet).toHaveLength(31);
    expect(inParquet.map((r) => r.request_id)).toContain(late.requestId);
    expect(new Set(inParquet.map((r) => Number(r.id))).size).toBe(31);
  });

  it('reads a window spanning exported and live days, rows from both sides, each once', async () => {
    const old = addDays(today, -50);
    await ensurePredictionLogPartition(pool, old);
    const flights = { deployment: 'flights' };
    const oldRows = [
      row(at(old, '00:00:00.000'), flights),
      row(at(old, '06:00:00.000'), flights),
      row(at(old, '23:59:59.999'), { ...flights, role: 'shadow' }),
    ];
    await write(oldRows);
    await exportPredictionLogPartition(exportDeps(), old);
    const mid = addDays(today, -49);
    await ensurePredictionLogPartition(pool, mid);
    const midRows = [
      row(at(mid, '08:00:00.000'), { ...flights, role: 'shadow' }),
      row(at(mid, '09:00:00.000'), { deployment: 'other' }),
    ];
    await write(midRows);

    const start = new Date(at(old, '06:00:00.000'));
    const end = new Date(at(mid, '09:00:00.000'));
    const window = await readPredictionLogWindow(
      { pool, warehouse, scratchDir },
      { deployment: 'flights', start, end },
    );
    const expected = [...oldRows, ...midRows].filter(
      (r) => r.deployment === 'flights' && r.loggedAt >= start.getTime() && r.loggedAt < end.getTime(),
    );
    expect(window.rows.map((r) => r.requestId)).toEqual(expected.map((r) => r.requestId));
    expect(window.exportedRows).toBe(expected.filter((r) => r.loggedAt < dayStart(mid).getTime()).length);
    expect(window.liveRows).toBe(expected.length - window.exportedRows);
    expect(window.exportedRows).toBeGreaterThan(0);
    expect(window.liveRows).toBeGreaterThan(0);
    expect(window.rows[0]!.features).toEqual(JSON.parse(expected[0]!.features));

    // Filters by version and role apply on both sides.
    const shadows = await readPredictionLogWindow(
      { pool, warehouse, scratchDir },
      { deployment: 'flights', start, end, versionId, role: 'shadow' },
    );
    expect(shadows.rows.map((r) => r.requestId)).toEqual(
      expected.filter((r) => r.role === 'shadow').map((r) => r.requestId),
    );
  });
});

describe('maintenance workflow and schedule', () => {
  let nativeConnection: NativeConnection;
  let connection: Connection;
  let client: TemporalClient;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = `test-prediction-log-${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    installTemporalRuntime(testLogger, process.env.LOG_LEVEL ?? 'warn');
    nativeConnection = await NativeConnection.connect({ address: testEndpoints().temporal.address });
    connection = await Connection.connect({ address: testEndpoints().temporal.address });
    client = new TemporalClient({ connection, namespace: testEndpoints().temporal.namespace });
    worker = await createPlatformWorker({
      connection: nativeConnection,
      namespace: testEndpoints().temporal.namespace,
      taskQueue,
      // The database and warehouse of the test running.
      activities: createPredictionLogMaintenanceActivities({
        get pgPool() {
          return pool;
        },
        get predictionLogWarehouse() {
          return warehouse;
        },
        scratchDir,
        logger: testLogger,
      }),
      runsWorkflows: true,
      maxConcurrentActivities: 2,
      shutdownGraceSeconds: 5,
      logger: testLogger,
    });
    running = worker.run();
  });

  afterAll(async () => {
    if (worker?.getState() === 'RUNNING') worker.shutdown();
    await running;
    await connection?.close();
    await nativeConnection?.close();
  });

  it('creates partitions ahead and exports every expired day, and does nothing more when run again', async () => {
    const expired = addDays(today, -60);
    await ensurePredictionLogPartition(pool, expired);
    await write([row(at(expired))]);
    // A day without a partition: its row waits in DEFAULT, for the maintenance to give it one (then export it).
    const adopted = addDays(today, -100);
    await write([row(at(adopted))]);

    const run = () =>
      client.workflow.execute(maintainPredictionLogs, {
        taskQueue,
        workflowId: `test-prediction-log-maintenance-${randomUUID()}`,
        args: [{ aheadDays: 6, retentionDays: 30 }],
      });
    const first = await run();
    // The workflow's clock: today, or tomorrow should the run cross midnight (the days above stay expired either way).
    expect([today, addDays(today, 1)]).toContain(first.today);
    expect(first.created.map((p) => [p.day, p.movedRows])).toEqual([
      [adopted, 1],
      ...[0, 1, 2, 3, 4, 5, 6].map((i) => [addDays(first.today, i), 0]),
    ]);
    expect(first.exported.map((e) => [e.day, e.status, e.rows])).toEqual([
      [adopted, 'exported', 1],
      [expired, 'exported', 1],
    ]);
    const second = await run();
    // Nothing, unless midnight passed in between: then the one day that became the last one ahead.
    expect(second.created.map((p) => p.day)).toEqual(second.today === first.today ? [] : [addDays(second.today, 6)]);
    expect(second.exported).toEqual([]);
  });

  it('creates its schedule once, updates it after, and runs it at once', async () => {
    const scheduleId = `test-prediction-log-maintenance-${randomUUID().slice(0, 8)}`;
    const options = { taskQueue, aheadDays: 6, retentionDays: 30, scheduleId };
    try {
      expect(await ensurePredictionLogMaintenanceSchedule(client, options)).toBe(true);
      expect(await ensurePredictionLogMaintenanceSchedule(client, options)).toBe(false);
      const handle = client.schedule.getHandle(scheduleId);
      const deadline = Date.now() + 20_000;
      let completed = 0;
      while (Date.now() < deadline) {
        const description = await handle.describe();
        const ids = description.info.recentActions.map((a) => a.action.workflow.workflowId);
        const statuses = await Promise.all(
          ids.map(async (id) => (await client.workflow.getHandle(id).describe()).status.name),
        );
        completed = statuses.filter((s) => s === 'COMPLETED').length;
        if (completed > 0) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(completed).toBeGreaterThan(0);
      const description = await handle.describe();
      expect(description.spec.calendars?.[0]).toMatchObject({ hour: [{ start: 0, end: 0, step: 1 }] });
    } finally {
      await client.schedule.getHandle(scheduleId).delete();
    }
  });
});
