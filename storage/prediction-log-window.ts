/**
 * Reading a window of prediction logs wherever its rows are: in Postgres (day partitions and the DEFAULT one) or, for
 * days whose partitions were exported and dropped, in the serving-log warehouse's Parquet files. Callers see one list
 * of rows, as `prediction_logs` would give them had nothing been dropped.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { daysOverlapping, type Day } from '../core/days.js';
import { DataEngine, sqlString } from '../data/engine.js';
import type { PredictionLog } from '../schema/index.js';
import type { PredictionLogWarehouse } from './prediction-log-warehouse.js';

export interface PredictionLogWindowDeps {
  readonly pool: pg.Pool;
  readonly warehouse: PredictionLogWarehouse;
  /** Exported files a window needs are downloaded to a folder under it, removed afterwards. */
  readonly scratchDir: string;
}

export interface PredictionLogWindowQuery {
  readonly deployment: string;
  /** Inclusive. */
  readonly start: Date;
  /** Exclusive. */
  readonly end: Date;
  /** Only rows this version answered. */
  readonly versionId?: string;
  /** Only rows answered in this role (champion, challenger, shadow). */
  readonly role?: PredictionLog['role'];
}

/** An export whose partition was dropped: its rows are in the warehouse only. */
export interface ExportedPart {
  readonly day: Day;
  readonly uri: string;
  readonly rows: number;
}

export interface PredictionLogWindow {
  /** Oldest first (by `loggedAt`, then `id`). */
  readonly rows: PredictionLog[];
  /** How many came from Postgres and how many from the warehouse. */
  readonly liveRows: number;
  readonly exportedRows: number;
  /** The exported files read. */
  readonly parts: readonly ExportedPart[];
}

/**
 * The rows of `deployment` logged in `[start, end)`, from Postgres and, for exported days, from the warehouse.
 * Consistent with a concurrent export: the Postgres rows are read first (which holds the partitions read until the
 * transaction ends, so none of them can be dropped meanwhile), then, in the same transaction, the exports whose
 * partitions are dropped; a row is never missed or read twice.
 *
 * @example const { rows } = await readPredictionLogWindow(deps, { deployment: 'flights', start, end });
 */
export async function readPredictionLogWindow(
  deps: PredictionLogWindowDeps,
  query: PredictionLogWindowQuery,
): Promise<PredictionLogWindow> {
  if (query.end.getTime() <= query.start.getTime()) return { rows: [], liveRows: 0, exportedRows: 0, parts: [] };
  const client = await deps.pool.connect();
  let live: PredictionLog[];
  let parts: ExportedPart[];
  let broken: Error | undefined;
  try {
    await client.query('begin');
    const result = await client.query<LiveRow>(
      `select id::text as id, request_id, logged_at, deployment, model, version_id, version, role, features, outputs,
          latency_ms, error
        from prediction_logs where deployment = $1 and logged_at >= $2 and logged_at < $3
          and ($4::uuid is null or version_id = $4::uuid) and ($5::text is null or role = $5::text)`,
      [query.deployment, query.start, query.end, query.versionId ?? null, query.role ?? null],
    );
    live = result.rows.map(fromPostgres);
    parts = await droppedExportsOverlapping(client, query.start, query.end);
    await client.query('commit');
  } catch (error) {
    broken = error as Error;
    throw error;
  } finally {
    client.release(broken);
  }
  const archived = parts.length === 0 ? [] : await readExportedParts(deps, parts, query);
  const rows = [...live, ...archived].sort((a, b) => a.loggedAt.getTime() - b.loggedAt.getTime() || a.id - b.id);
  return { rows, liveRows: live.length, exportedRows: archived.length, parts };
}

/**
 * The exports whose partitions were dropped, of the days `[start, end)` touches: where the rows of that span that
 * Postgres no longer holds are. To stay consistent with a concurrent export, call it after reading the span from
 * `prediction_logs`, in the same transaction (see {@link readPredictionLogWindow}).
 */
export async function droppedExportsOverlapping(
  client: Pick<pg.PoolClient, 'query'>,
  start: Date,
  end: Date,
): Promise<ExportedPart[]> {
  const days = daysOverlapping(start, end);
  if (days.length === 0) return [];
  const exported = await client.query<{ day: string; uri: string; rows: string }>(
    `select to_char(day, 'YYYY-MM-DD') as day, uri, rows from prediction_log_exports
      where dropped_at is not null and day >= $1 and day <= $2 order by day, id`,
    [days[0], days[days.length - 1]],
  );
  return exported.rows.map((r) => ({ day: r.day, uri: r.uri, rows: Number(r.rows) }));
}

/** Downloads the parts and reads the window's rows of them with DuckDB, in no particular order. */
export async function readExportedParts(
  deps: PredictionLogWindowDeps,
  parts: readonly ExportedPart[],
  query: PredictionLogWindowQuery,
): Promise<PredictionLog[]> {
  await mkdir(deps.scratchDir, { recursive: true });
  const workDir = await mkdtemp(path.join(deps.scratchDir, 'prediction-log-window-'));
  try {
    const files: string[] = [];
    for (const [i, part] of parts.entries()) {
      const file = path.join(workDir, `part-${i}.parquet`);
      await deps.warehouse.download(deps.warehouse.keyOfUri(part.uri), file);
      files.push(file);
    }
    const engine = await DataEngine.open({ workDir, threads: 2 });
    try {
      const rows = await engine.rows<ParquetRow>(
        `select id, request_id, epoch_ms(logged_at) as logged_at_ms, deployment, model, version_id, version, role,
            features::varchar as features, outputs::varchar as outputs, latency_ms, error
          from read_parquet([${files.map(sqlString).join(', ')}])
          where deployment = $1 and epoch_ms(logged_at) >= $2::bigint and epoch_ms(logged_at) < $3::bigint
            and ($4::varchar is null or version_id = $4::varchar) and ($5::varchar is null or role = $5::varchar)`,
        // Whole milliseconds either side: epoch_ms truncates, which keeps [start, end) exact for ms bounds.
        [query.deployment, query.start.getTime(), query.end.getTime(), query.versionId ?? null, query.role ?? null],
      );
      return rows.map(fromParquet);
    } finally {
      engine.close();
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

interface LiveRow {
  id: string;
  request_id: string;
  logged_at: Date;
  deployment: string | null;
  model: string;
  version_id: string;
  version: number;
  role: PredictionLog['role'];
  features: Record<string, unknown>;
  outputs: Record<string, unknown> | null;
  latency_ms: number;
  error: string | null;
}

function fromPostgres(r: LiveRow): PredictionLog {
  return {
    id: Number(r.id),
    requestId: r.request_id,
    loggedAt: r.logged_at,
    deployment: r.deployment,
    model: r.model,
    versionId: r.version_id,
    version: r.version,
    role: r.role,
    features: r.features,
    outputs: r.outputs,
    latencyMs: r.latency_ms,
    error: r.error,
  };
}

interface ParquetRow extends Record<string, unknown> {
  id: number;
  request_id: string;
  logged_at_ms: number;
  deployment: string | null;
  model: string;
  version_id: string;
  version: number;
  role: PredictionLog['role'];
  features: string;
  outputs: string | null;
  latency_ms: number;
  error: string | null;
}

function fromParquet(r: ParquetRow): PredictionLog {
  return {
    id: r.id,
    requestId: r.request_id,
    loggedAt: new Date(r.logged_at_ms),
    deployment: r.deployment,
    model: r.model,
    versionId: r.version_id,
    version: r.version,
    role: r.role,
    features: JSON.parse(r.features) as Record<string, unknown>,
    outputs: r.outputs === null ? null : (JSON.parse(r.outputs) as Record<string, unknown>),
    latencyMs: r.latency_ms,
    error: r.error,
  };
}
