/**
 * Exporting an expired day partition of `prediction_logs` to the serving-log warehouse (Parquet in S3), then dropping
 * it. One export of a day runs at a time: it holds a session advisory lock on the day, on the one connection that does
 * all its database work, so a second attempt that Temporal starts while a slow first one still runs waits for it (then
 * finds the partition gone), and nothing one attempt recorded or uploaded is replaced under the other. The order of
 * the steps is what makes it safe to retry at any point:
 *
 * 1. the partition's rows are copied out (COPY ... TO STDOUT as CSV) and written to one Parquet file with DuckDB,
 *    whose row count must equal the rows copied;
 * 2. the file is uploaded to a key named by the day and the ids it holds, then downloaded back: the bytes S3 returns
 *    must hash to the file's sha256, and DuckDB must read in them the rows and ids that were copied;
 * 3. the export is recorded in `prediction_log_exports` (replacing an earlier record of the same partition whose rows
 *    have grown since);
 * 4. in one transaction, the partition is frozen (a SHARE lock, which only writes of late rows for that day wait
 *    for), its rows are counted again and the export's record is locked; only when the partition still holds exactly
 *    the exported rows and the record is still pending is the partition dropped and the record marked dropped;
 *    otherwise rows arrived meanwhile and the export starts over.
 *
 * Dropping a partition takes ACCESS EXCLUSIVE locks on `prediction_logs` and its DEFAULT partition. Waiting for them
 * would queue every serving-log write behind the drop, and could deadlock with a write routing a late row into the
 * day (it holds `prediction_logs` and waits for the frozen partition). So they are only ever tried without waiting
 * (NOWAIT), again and again for a few seconds; when they cannot be had, the export fails, to be retried, with the
 * partition in place. (`DETACH PARTITION ... CONCURRENTLY`, which needs no such lock, is refused by Postgres while
 * the table has a DEFAULT partition, which `prediction_logs` has.)
 *
 * A crash before 4 leaves the partition in place (and at worst a recorded, not yet dropped, export that the next try
 * replaces or finds again); nothing is ever dropped before a verified export.
 */
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { Day } from '../core/days.js';
import { DataEngine, sqlString } from '../data/engine.js';
import { sha256OfFile } from './content-hash.js';
import {
  DEFAULT_PARTITION,
  isPartition,
  partitionName,
  PREDICTION_LOG_COLUMNS,
  qualifiedPartition,
} from './prediction-log-partitions.js';
import { WarehouseVerificationError, type PredictionLogWarehouse } from './prediction-log-warehouse.js';

/** The Parquet schema of exported rows: JSON columns keep the text Postgres held, times are UTC microseconds. */
export const PARQUET_COLUMNS: Readonly<Record<(typeof PREDICTION_LOG_COLUMNS)[number], string>> = {
  id: 'BIGINT',
  request_id: 'VARCHAR',
  logged_at: 'TIMESTAMPTZ',
  deployment: 'VARCHAR',
  model: 'VARCHAR',
  version_id: 'VARCHAR',
  version: 'INTEGER',
  role: 'VARCHAR',
  features: 'JSON',
  outputs: 'JSON',
  // real in Postgres; its shortest text read as a double is the number the pg driver gives for it.
  latency_ms: 'DOUBLE',
  error: 'VARCHAR',
};

/** The first key of the day's advisory lock (`pg_try_advisory_lock(key, yyyymmdd)`): "PLOG" in ASCII. */
const DAY_LOCK_KEY = 0x504c4f47;
/** How long an export waits for another export of the same day to finish, by default, in ms. */
const DAY_LOCK_WAIT_MS = 120_000;
/** How often the day's lock is tried meanwhile, in ms. */
const DAY_LOCK_RETRY_MS = 250;
/** How long freezing the partition waits for writes of late rows into it to finish, in ms. */
const FREEZE_LOCK_TIMEOUT_MS = 2_000;
/** How long the locks dropping takes are tried (never waited for), by default, in ms. */
const DROP_LOCK_WAIT_MS = 5_000;
/** The pause between two tries of them, in ms (with jitter). */
const DROP_LOCK_RETRY_MS = 20;
/** How often `onProgress` is told the current step again while it runs, by default, in ms. */
const PROGRESS_INTERVAL_MS = 10_000;

export interface PredictionLogExportDeps {
  readonly pool: pg.Pool;
  readonly warehouse: PredictionLogWarehouse;
  /** Scratch folder: one export's CSV and Parquet files are written in a folder under it, removed afterwards. */
  readonly scratchDir: string;
  /**
   * Called as the export moves on, and again every `progressIntervalMs` while a step (a long copy, the DuckDB
   * conversion, an upload, waiting for a lock) runs: for activity heartbeats.
   */
  readonly onProgress?: (step: string) => void;
  /** How often `onProgress` is called again during a step, in ms; default 10 s. */
  readonly progressIntervalMs?: number;
  /** Stops the export (before anything is dropped, when it fires in time): the activity's cancellation signal. */
  readonly signal?: AbortSignal;
  /** How long to wait for another export of the same day to finish, in ms; default 2 minutes. */
  readonly dayLockWaitMs?: number;
  /** How long to keep trying, without waiting, for the locks that dropping the partition takes, in ms; default 5 s. */
  readonly dropLockWaitMs?: number;
  /** Told about a superseded object that could not be removed (it is no longer recorded, so never read). */
  readonly onWarning?: (message: string, error: unknown) => void;
}

export interface PartitionExport {
  readonly day: Day;
  /** `exported`: exported and dropped now; `absent`: the day has no partition (exported earlier, or never made). */
  readonly status: 'exported' | 'absent';
  readonly rows: number;
  /** The Parquet file written now; null when absent. */
  readonly uri: string | null;
  readonly bytes: number;
}

/**
 * Thrown when the export could not get a lock it needs in time: another export of the day kept running, or the locks
 * for dropping the partition could not be had (busy readers or writers). Nothing was dropped; retrying is the remedy.
 */
export class PredictionLogExportBusyError extends DomainError {
  override readonly name = 'PredictionLogExportBusyError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('unavailable', message, { code: 'prediction_log_export_busy', ...options });
  }
}

/**
 * Exports `day`'s partition to the warehouse and drops it (see the module comment). Idempotent: a partition that is
 * gone is reported `absent`; a retry after any failure exports the same rows to the same key. Holds one connection
 * of the pool for its whole run.
 *
 * @param maxAttempts how often to start over when rows keep arriving for the day during the export; default 3.
 * @throws WarehouseVerificationError when S3 does not hold the uploaded file as written; the partition stays.
 * @throws PredictionLogExportBusyError when a lock was not had in time; the partition stays.
 */
export async function exportPredictionLogPartition(
  deps: PredictionLogExportDeps,
  day: Day,
  maxAttempts = 3,
): Promise<PartitionExport> {
  const name = partitionName(day);
  const conn: Connection = { client: await deps.pool.connect() };
  let step = 'waiting for the day lock';
  const progress = (next: string) => {
    deps.signal?.throwIfAborted();
    step = next;
    deps.onProgress?.(next);
  };
  const ticker = setInterval(() => {
    try {
      deps.onProgress?.(step);
    } catch {
      // A heartbeat that fails now is the next step's to report.
    }
  }, deps.progressIntervalMs ?? PROGRESS_INTERVAL_MS);
  let locked = false;
  try {
    progress('waiting for the day lock');
    await lockDay(conn.client, day, deps);
    locked = true;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (!(await isPartition(conn.client, name))) return { day, status: 'absent', rows: 0, uri: null, bytes: 0 };
      await mkdir(deps.scratchDir, { recursive: true });
      const workDir = await mkdtemp(path.join(deps.scratchDir, `prediction-log-export-${day}-`));
      try {
        progress('copying rows');
        const csvPath = path.join(workDir, 'rows.csv');
        const copied = await copyPartitionToCsv(conn, name, csvPath);
        progress('writing parquet');
        const parquetPath = path.join(workDir, 'part.parquet');
        const ids = await writeParquet(workDir, csvPath, parquetPath);
        if (ids.rows !== copied) {
          throw new Error(`${name}: Postgres copied ${copied} rows, the Parquet file holds ${ids.rows}`);
        }
        const { sha256, bytes } = await sha256OfFile(parquetPath);
        const key = deps.warehouse.keyOf(day, ids);
        const uri = deps.warehouse.uriOf(key);
        progress('uploading');
        await deps.warehouse.upload(key, parquetPath, { sha256, bytes, rows: ids.rows });
        progress('verifying upload');
        await verifyUpload(deps.warehouse, key, workDir, { sha256, bytes }, ids);
        progress('recording export');
        const superseded = await recordExport(conn, { day, partition: name, uri, bytes, sha256, ...ids });
        for (const old of superseded) {
          await deps.warehouse
            .remove(deps.warehouse.keyOfUri(old))
            .catch((error: unknown) => deps.onWarning?.(`could not remove the superseded export ${old}`, error));
        }
        progress('dropping partition');
        if (await dropIfUnchanged(conn, name, ids, uri, deps)) {
          return { day, status: 'exported', rows: ids.rows, uri, bytes };
        }
        // Rows arrived for the day since they were copied: their export is replaced by the next attempt's.
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
    }
    throw new Error(`${name}: rows kept arriving during ${maxAttempts} exports; it stays in Postgres for now`);
  } finally {
    clearInterval(ticker);
    if (locked && !conn.broken) {
      await conn.client
        .query('select pg_advisory_unlock($1::int4, $2::int4)', [DAY_LOCK_KEY, dayLockKey(day)])
        .catch((error: unknown) => {
          conn.broken = error as Error;
        });
    }
    // A broken connection is closed, not pooled: its session, and the day's lock with it, end.
    conn.client.release(conn.broken);
  }
}

/** The connection an export does its work on, and the error that broke it (then it is closed, not pooled). */
interface Connection {
  readonly client: pg.PoolClient;
  broken?: Error;
}

interface ExportedIds {
  readonly rows: number;
  readonly minId: number | null;
  readonly maxId: number | null;
}

/** The second key of the day's advisory lock: the date's digits as a number. */
function dayLockKey(day: Day): number {
  return Number(day.replaceAll('-', ''));
}

/**
 * Takes the day's session advisory lock, trying (never blocking the connection on it) until `dayLockWaitMs` passes.
 *
 * @throws PredictionLogExportBusyError when another export of the day kept it that long.
 */
async function lockDay(client: pg.PoolClient, day: Day, deps: PredictionLogExportDeps): Promise<void> {
  const waitMs = deps.dayLockWaitMs ?? DAY_LOCK_WAIT_MS;
  const deadline = Date.now() + waitMs;
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>(
      'select pg_try_advisory_lock($1::int4, $2::int4) as locked',
      [DAY_LOCK_KEY, dayLockKey(day)],
    );
    if (rows[0]?.locked) return;
    if (Date.now() >= deadline) {
      throw new PredictionLogExportBusyError(`another export of ${day} has been running for ${waitMs} ms at least`);
    }
    await sleep(DAY_LOCK_RETRY_MS, undefined, { signal: deps.signal });
  }
}

/** Runs `work` in a transaction on the connection: committed when it returns, rolled back when it throws. */
async function inTransaction<T>(conn: Connection, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  await conn.client.query('begin');
  try {
    const result = await work(conn.client);
    await conn.client.query('commit');
    return result;
  } catch (error) {
    // A broken connection is closed instead: its transaction ends with it.
    if (!conn.broken) {
      await conn.client.query('rollback').catch((rollbackError: unknown) => {
        conn.broken = rollbackError as Error;
      });
    }
    throw error;
  }
}

/** Streams the partition's rows to a CSV file; returns how many rows Postgres sent. */
function copyPartitionToCsv(conn: Connection, name: string, filePath: string): Promise<number> {
  return inTransaction(conn, async (client) => {
    // Times as ISO text in UTC, floats as their shortest exact text, whatever the server's defaults.
    await client.query(
      `set local timezone = 'UTC'; set local datestyle = 'ISO, YMD'; set local extra_float_digits = 1`,
    );
    const stream = client.query(
      copyTo(
        `copy (select ${PREDICTION_LOG_COLUMNS.join(', ')} from ${qualifiedPartition(name)} order by id)
          to stdout with (format csv)`,
      ),
    );
    try {
      await pipeline(stream, createWriteStream(filePath));
    } catch (error) {
      // The protocol may be mid-COPY: the connection cannot be trusted with another query.
      conn.broken = error as Error;
      throw error;
    }
    return stream.rowCount;
  });
}

/** How many rows a Parquet file holds, and their smallest and largest ids. */
async function parquetIds(engine: DataEngine, parquetPath: string): Promise<ExportedIds> {
  const [stats] = await engine.rows<{ rows: number; min_id: number | null; max_id: number | null }>(
    `select count(*) as rows, min(id) as min_id, max(id) as max_id from read_parquet(${sqlString(parquetPath)})`,
  );
  return { rows: stats?.rows ?? 0, minId: stats?.min_id ?? null, maxId: stats?.max_id ?? null };
}

/** Converts the CSV to Parquet (sorted by time), and reads back from the Parquet file how many rows it holds. */
async function writeParquet(workDir: string, csvPath: string, parquetPath: string): Promise<ExportedIds> {
  const engine = await DataEngine.open({ workDir, threads: 2 });
  try {
    const columns = Object.entries(PARQUET_COLUMNS)
      .map(([name, type]) => `${sqlString(name)}: ${sqlString(type)}`)
      .join(', ');
    // Postgres' CSV: "" is an empty string, an unquoted empty field is null.
    await engine.run(
      `copy (select * from read_csv(${sqlString(csvPath)}, header = false, delim = ',', quote = '"', escape = '"',
          allow_quoted_nulls = false, auto_detect = false, columns = {${columns}})
        order by logged_at, id)
      to ${sqlString(parquetPath)} (format parquet, compression zstd)`,
    );
    return await parquetIds(engine, parquetPath);
  } finally {
    engine.close();
  }
}

/**
 * Downloads what S3 stored at `key` and checks it is the file written: the same bytes (size and sha256 of what S3
 * returned, not of its metadata) holding, as DuckDB reads them, the same rows and ids.
 *
 * @throws WarehouseVerificationError otherwise.
 */
async function verifyUpload(
  warehouse: PredictionLogWarehouse,
  key: string,
  workDir: string,
  file: { readonly sha256: string; readonly bytes: number },
  ids: ExportedIds,
): Promise<void> {
  const downloaded = path.join(workDir, 'downloaded.parquet');
  await warehouse.verifyContent(key, downloaded, file);
  const engine = await DataEngine.open({ workDir, threads: 2 });
  let found: ExportedIds;
  try {
    found = await parquetIds(engine, downloaded);
  } finally {
    engine.close();
  }
  if (found.rows !== ids.rows || found.minId !== ids.minId || found.maxId !== ids.maxId) {
    throw new WarehouseVerificationError(
      `${warehouse.uriOf(key)}: expected ${ids.rows} rows, ids ${ids.minId}..${ids.maxId}; ` +
        `the downloaded file holds ${found.rows} rows, ids ${found.minId}..${found.maxId}`,
    );
  }
}

/**
 * Records an export, replacing the not-yet-dropped records of the same day (an earlier export of the same partition,
 * before more rows arrived: the day's lock rules out one being made now). Returns the URIs of the records replaced.
 */
function recordExport(
  conn: Connection,
  record: ExportedIds & { day: Day; partition: string; uri: string; bytes: number; sha256: string },
): Promise<string[]> {
  return inTransaction(conn, async (client) => {
    const replaced = await client.query<{ uri: string }>(
      `delete from prediction_log_exports where day = $1 and dropped_at is null and uri <> $2 returning uri`,
      [record.day, record.uri],
    );
    await client.query(
      `insert into prediction_log_exports (day, partition, uri, rows, min_id, max_id, bytes, sha256)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        on conflict (uri) do update set rows = excluded.rows, bytes = excluded.bytes, sha256 = excluded.sha256,
          exported_at = now()
        where prediction_log_exports.dropped_at is null`,
      [record.day, record.partition, record.uri, record.rows, record.minId, record.maxId, record.bytes, record.sha256],
    );
    return replaced.rows.map((r) => r.uri);
  });
}

/**
 * Drops the partition if it still holds exactly the exported rows and `uri` is still its pending export, and marks
 * that export dropped, in one transaction. Returns false (and changes nothing) when rows arrived since.
 *
 * Writes of late rows for the day wait while the partition's rows are counted (a partition past the retention gets
 * none, normally); no other write ever waits for more than the drop itself (see the module comment).
 *
 * @throws PredictionLogExportBusyError when the locks for dropping could not be had within `dropLockWaitMs`.
 */
function dropIfUnchanged(
  conn: Connection,
  name: string,
  exported: ExportedIds,
  uri: string,
  deps: PredictionLogExportDeps,
): Promise<boolean> {
  return inTransaction(conn, async (client) => {
    await client.query(`set local lock_timeout = ${FREEZE_LOCK_TIMEOUT_MS}`);
    await client.query(`lock table ${qualifiedPartition(name)} in share mode`);
    const { rows } = await client.query<{ n: string; min_id: string | null; max_id: string | null }>(
      `select count(*) as n, min(id) as min_id, max(id) as max_id from ${qualifiedPartition(name)}`,
    );
    const now = rows[0];
    const same =
      now !== undefined &&
      Number(now.n) === exported.rows &&
      (now.min_id === null ? null : Number(now.min_id)) === exported.minId &&
      (now.max_id === null ? null : Number(now.max_id)) === exported.maxId;
    if (!same) return false;
    const record = await client.query(
      `select 1 from prediction_log_exports where uri = $1 and dropped_at is null for update`,
      [uri],
    );
    if (record.rows.length !== 1) {
      throw new Error(`${name}: its export ${uri} is no longer recorded as pending; the partition is not dropped`);
    }
    await lockForDrop(client, name, deps);
    await client.query(`drop table ${qualifiedPartition(name)}`);
    const marked = await client.query(
      `update prediction_log_exports set dropped_at = now() where uri = $1 and dropped_at is null`,
      [uri],
    );
    if (marked.rowCount !== 1) {
      throw new Error(
        `${name}: marking its export ${uri} dropped changed ${String(marked.rowCount)} rows; rolled back`,
      );
    }
    return true;
  });
}

/**
 * Takes, in the open transaction, the ACCESS EXCLUSIVE locks that dropping the partition takes (on the partition, the
 * DEFAULT partition and `prediction_logs` alone), each with NOWAIT: a try that finds one held is undone at once and
 * tried again shortly, so no write queues behind a drop waiting for its locks, and no lock cycle forms.
 */
async function lockForDrop(client: pg.PoolClient, name: string, deps: PredictionLogExportDeps): Promise<void> {
  const waitMs = deps.dropLockWaitMs ?? DROP_LOCK_WAIT_MS;
  const deadline = Date.now() + waitMs;
  for (let tries = 1; ; tries++) {
    deps.signal?.throwIfAborted();
    await client.query('savepoint drop_locks');
    try {
      // prediction_logs last: a try that fails on one of the others never holds up its writers, even briefly.
      await client.query(`lock table ${qualifiedPartition(name)} in access exclusive mode nowait`);
      await client.query(`lock table ${qualifiedPartition(DEFAULT_PARTITION)} in access exclusive mode nowait`);
      await client.query('lock table only public.prediction_logs in access exclusive mode nowait');
      await client.query('release savepoint drop_locks');
      return;
    } catch (error) {
      if ((error as { code?: unknown }).code !== LOCK_NOT_AVAILABLE) throw error;
      await client.query('rollback to savepoint drop_locks');
      if (Date.now() >= deadline) {
        throw new PredictionLogExportBusyError(
          `${name}: could not take the locks to drop it within ${waitMs} ms (${tries} tries, none waited for, so ` +
            `prediction-log writes went on): another session keeps prediction_logs or the partition in use`,
        );
      }
    }
    await sleep(DROP_LOCK_RETRY_MS * (0.5 + Math.random()), undefined, { signal: deps.signal });
  }
}

/** SQLSTATE of a lock NOWAIT could not take (or one not had within lock_timeout). */
const LOCK_NOT_AVAILABLE = '55P03';
