/**
 * The day partitions of `prediction_logs` (migration 0007): one per UTC day, `prediction_log_partitions.pYYYYMMDD`,
 * bounded `[day 00:00Z, next day 00:00Z)`, and the DEFAULT partition `prediction_log_partitions.p_default` that takes
 * the rows of a day without one. This module creates them ahead, lists them and finds the expired ones; exporting and
 * dropping a partition is prediction-log-export.ts's.
 */
import type pg from 'pg';
import { addDays, dayStart, isDay, type Day } from '../core/days.js';

/** The schema the partitions live in (outside `public`, where drizzle-kit and the schema checks look). */
export const PARTITION_SCHEMA = 'prediction_log_partitions';
/** The DEFAULT partition's table name. */
export const DEFAULT_PARTITION = 'p_default';
/** How long DDL here waits for a lock before failing (and being retried by its caller), in ms. */
const LOCK_TIMEOUT_MS = 10_000;

/** The table name of `day`'s partition: `p` and the date's digits. */
export function partitionName(day: Day): string {
  if (!isDay(day)) throw new Error(`not a day (YYYY-MM-DD): ${day}`);
  return `p${day.replaceAll('-', '')}`;
}

/** The day a partition name stands for; undefined for the DEFAULT partition or a name this module did not make. */
export function dayOfPartition(name: string): Day | undefined {
  const match = /^p(\d{4})(\d{2})(\d{2})$/.exec(name);
  if (!match) return undefined;
  const day = `${match[1]}-${match[2]}-${match[3]}`;
  return isDay(day) ? day : undefined;
}

/** `schema.table`, quoted, of a partition name. */
export function qualifiedPartition(name: string): string {
  return `"${PARTITION_SCHEMA}"."${name.replaceAll('"', '""')}"`;
}

export interface PredictionLogPartition {
  /** Table name in {@link PARTITION_SCHEMA}. */
  readonly name: string;
  /** The day it holds; null for the DEFAULT partition. */
  readonly day: Day | null;
  /** Size on disk with its indexes, in bytes. */
  readonly bytes: number;
}

/** Every partition of `prediction_logs`, day partitions sorted by day, the DEFAULT partition last. */
export async function listPredictionLogPartitions(pool: Queryable): Promise<PredictionLogPartition[]> {
  const { rows } = await pool.query<{ name: string; is_default: boolean; bytes: string }>(
    `select c.relname as name, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' as is_default,
        pg_total_relation_size(c.oid) as bytes
      from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'public.prediction_logs'::regclass`,
  );
  const partitions = rows.map((r) => ({
    name: r.name,
    day: r.is_default ? null : (dayOfPartition(r.name) ?? null),
    bytes: Number(r.bytes),
  }));
  return partitions.sort((a, b) => (a.day ?? '9999').localeCompare(b.day ?? '9999'));
}

export interface EnsuredPartition {
  readonly day: Day;
  /** False: it existed already. */
  readonly created: boolean;
  /** Rows of that day moved out of the DEFAULT partition into it. */
  readonly movedRows: number;
}

/**
 * Makes sure `day` has its partition. Idempotent and safe to run concurrently (a second caller waits for the first
 * and finds the partition). Rows of that day already in the DEFAULT partition (logged while the day had no partition)
 * are moved into the new one in the same transaction: Postgres refuses a partition whose range has rows in DEFAULT.
 *
 * The partition is made as a table of its own, filled, then attached (not `CREATE TABLE ... PARTITION OF`, which
 * locks the whole of `prediction_logs` against writes): writes routed to other days' partitions go on meanwhile,
 * and writes of rows bound for the DEFAULT partition wait the few milliseconds it takes when DEFAULT is empty.
 *
 * @throws on a lock not obtained within 10 s (a long query on the DEFAULT partition); retrying is the remedy.
 */
export async function ensurePredictionLogPartition(pool: pg.Pool, day: Day): Promise<EnsuredPartition> {
  const name = partitionName(day);
  if (await isPartition(pool, name)) return { day, created: false, movedRows: 0 };
  const table = qualifiedPartition(name);
  const from = `'${dayStart(day).toISOString()}'`;
  const to = `'${dayStart(addDays(day, 1)).toISOString()}'`;
  const columns = PREDICTION_LOG_COLUMNS.join(', ');
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('begin');
    await client.query(`set local lock_timeout = ${LOCK_TIMEOUT_MS}`);
    // Taken first (before the parent's lock that attaching takes), as writers routed to DEFAULT do: no deadlock.
    await client.query(`lock table ${qualifiedPartition(DEFAULT_PARTITION)} in exclusive mode`);
    if (await isPartition(client, name)) {
      await client.query('commit');
      return { day, created: false, movedRows: 0 };
    }
    await client.query(`create table ${table} (like public.prediction_logs including defaults including constraints)`);
    // Proves the rows fit the range, so attaching does not scan them again; dropped once attached.
    await client.query(
      `alter table ${table} add constraint ${name}_bounds check (logged_at >= ${from} and logged_at < ${to})`,
    );
    const moved = await client.query(
      `with moved as (
         delete from ${qualifiedPartition(DEFAULT_PARTITION)} where logged_at >= ${from} and logged_at < ${to}
         returning ${columns})
       insert into ${table} (${columns}) select ${columns} from moved`,
    );
    await client.query(
      `alter table public.prediction_logs attach partition ${table} for values from (${from}) to (${to})`,
    );
    await client.query(`alter table ${table} drop constraint ${name}_bounds`);
    await client.query('commit');
    return { day, created: true, movedRows: moved.rowCount ?? 0 };
  } catch (error) {
    await client.query('rollback').catch((rollbackError: unknown) => {
      broken = rollbackError as Error;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}

/**
 * Ensures the partitions of `from` and the `aheadDays` days after it, in order, and of every day that has rows in
 * the DEFAULT partition (moving them out); idempotent.
 *
 * @example await ensurePredictionLogPartitions(pool, { from: dayOf(new Date()), aheadDays: 7 });
 */
export async function ensurePredictionLogPartitions(
  pool: pg.Pool,
  options: { readonly from: Day; readonly aheadDays: number },
): Promise<EnsuredPartition[]> {
  const days = new Set<Day>();
  for (let i = 0; i <= options.aheadDays; i++) days.add(addDays(options.from, i));
  for (const day of await daysInDefaultPartition(pool)) days.add(day);
  const ensured: EnsuredPartition[] = [];
  for (const day of [...days].sort()) ensured.push(await ensurePredictionLogPartition(pool, day));
  return ensured;
}

/** The UTC days of the rows in the DEFAULT partition (normally none), at most `limit` of them, oldest first. */
export async function daysInDefaultPartition(pool: Queryable, limit = 1_000): Promise<Day[]> {
  const { rows } = await pool.query<{ day: string }>(
    `select distinct to_char(logged_at at time zone 'UTC', 'YYYY-MM-DD') as day
      from ${qualifiedPartition(DEFAULT_PARTITION)} order by 1 limit $1`,
    [limit],
  );
  return rows.map((r) => r.day);
}

/**
 * Days whose partitions are past the retention: every day before `today - retentionDays`. With a retention of 30,
 * on 2026-03-31 the partitions of 2026-03-01 and later stay in Postgres.
 */
export async function expiredPartitionDays(
  pool: Queryable,
  options: { readonly today: Day; readonly retentionDays: number },
): Promise<Day[]> {
  const oldestKept = addDays(options.today, -options.retentionDays);
  return (await listPredictionLogPartitions(pool))
    .flatMap((p) => (p.day !== null && p.day < oldestKept ? [p.day] : []))
    .sort();
}

/** Whether `name` is attached to `prediction_logs` as a partition. */
export async function isPartition(pool: Queryable, name: string): Promise<boolean> {
  const { rows } = await pool.query(
    `select 1 from pg_inherits i join pg_class c on c.oid = i.inhrelid
        join pg_namespace n on n.oid = c.relnamespace
      where i.inhparent = 'public.prediction_logs'::regclass and n.nspname = $1 and c.relname = $2`,
    [PARTITION_SCHEMA, name],
  );
  return rows.length > 0;
}

/** Every column of `prediction_logs`, in the table's order. */
export const PREDICTION_LOG_COLUMNS = [
  'id',
  'request_id',
  'logged_at',
  'deployment',
  'model',
  'version_id',
  'version',
  'role',
  'features',
  'outputs',
  'latency_ms',
  'error',
] as const;

/** A pool or a client. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;
