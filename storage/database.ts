import { fileURLToPath } from 'node:url';
import type { Logger as DrizzleLogger } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import { ServiceError } from '../core/errors.js';
import * as schema from '../schema/index.js';

/** The application's Drizzle database: relational queries (`db.query.*`) over the whole schema, on a pg Pool. */
export type Database = NodePgDatabase<typeof schema> & { $client: pg.Pool };

export interface DatabaseHandle {
  readonly db: Database;
  readonly pool: pg.Pool;
  /** Ends the pool; safe to call more than once. */
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** Pool size; default 10. */
  max?: number;
  /** Drizzle's query logger (`true` logs to the console); off by default. */
  logger?: boolean | DrizzleLogger;
  /** Shown in pg_stat_activity, so an operator can tell the API's connections from a worker's. */
  applicationName?: string;
  /** How long a query waits for a free or new connection before failing, in ms; default 10 000. */
  connectionTimeoutMs?: number;
  /**
   * Called when an idle pooled connection dies (Postgres restarted, network dropped). The pool has already discarded
   * the connection and the next query opens a new one, so this is for logging only.
   */
  onPoolError?: (error: Error) => void;
}

/** The committed drizzle-kit migrations; resolved from this file so it works from any working directory. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../schema/migrations', import.meta.url));

// Any fixed 64-bit number, unique among the advisory locks this database sees; 'mlops' + 'migr' in ASCII.
const MIGRATION_LOCK_KEY = 0x6d6c6f70_6d696772n;

/**
 * Opens a pool to `url`. Connections are made lazily, so this never fails on an unreachable server; use
 * {@link waitForDatabase} first where start-up should wait for Postgres.
 */
export function createDatabase(url: string, options: DatabaseOptions = {}): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
    application_name: options.applicationName,
  });
  // Without a listener, an idle client's error is an unhandled 'error' event and kills the process; a Postgres
  // restart must only delay work, never crash the API or a worker.
  pool.on('error', (error) => options.onPoolError?.(error));
  const db = drizzle(pool, { schema, logger: options.logger ?? false });
  let closing: Promise<void> | undefined;
  return {
    db,
    pool,
    close: () => (closing ??= pool.end()),
  };
}

/**
 * Applies the committed migrations that the database has not seen yet.
 *
 * Idempotent: applying twice is a no-op. Safe to run from several processes starting at once (API, workers,
 * the compose `migrate` job): a Postgres advisory lock serialises them, and each one after the first finds nothing
 * left to apply. Migrations run in one transaction, so a failure leaves the schema as it was.
 */
export async function runMigrations(db: Database): Promise<void> {
  const client = await db.$client.connect();
  let broken: Error | undefined;
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    try {
      // Drizzle on this one client (not the pool) so the migration runs in the session that holds the lock.
      await migrate(drizzle(client), { migrationsFolder: MIGRATIONS_FOLDER });
    } finally {
      await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]);
    }
  } catch (error) {
    broken = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    // A client that failed mid-way is destroyed rather than returned, which also releases a lock it may still hold.
    client.release(broken);
  }
}

/** SQLSTATEs that waiting cannot fix: bad password, role not allowed, database does not exist. */
const PERMANENT_CONNECT_ERRORS = new Set(['28P01', '28000', '3D000']);

export interface WaitForDatabaseOptions {
  /** Give up after this long, in ms; default 30 000. */
  timeoutMs?: number;
  /** Called before each retry, for logging. */
  onRetry?: (info: { attempt: number; delayMs: number; error: Error }) => void;
}

/**
 * Waits until Postgres at `url` accepts a connection and answers a query, retrying with exponential backoff
 * (100 ms doubling to 2 s) so that a server that is still starting, or briefly down, is waited for.
 *
 * Fails at once on errors that retrying cannot fix (authentication, missing database).
 *
 * @throws ServiceError naming Postgres, the server (without its password) and the last cause.
 * @example await waitForDatabase(config.database.url, { timeoutMs: 60_000, onRetry: (i) => log.warn(i, 'waiting') });
 */
export async function waitForDatabase(url: string, options: WaitForDatabaseOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const started = Date.now();
  const deadline = started + timeoutMs;
  let delayMs = 100;
  for (let attempt = 1; ; attempt++) {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: Math.max(1_000, Math.min(5_000, deadline - Date.now())),
    });
    // A failed connect can still emit 'error' later; it must not become an unhandled event.
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('select 1');
      return;
    } catch (caught) {
      const error = caught instanceof Error ? caught : new Error(String(caught));
      const code = (error as { code?: unknown }).code;
      const permanent = typeof code === 'string' && PERMANENT_CONNECT_ERRORS.has(code);
      const left = deadline - Date.now();
      if (permanent || left <= 0) {
        const waited = permanent ? '' : ` after ${attempt} attempts in ${((Date.now() - started) / 1000).toFixed(1)} s`;
        const cause = error.message || (typeof code === 'string' ? code : 'unknown error');
        throw new ServiceError('Postgres', `cannot connect to ${describeUrl(url)}${waited}: ${cause}`, undefined, {
          cause: error,
        });
      }
      const sleepMs = Math.min(delayMs, left);
      options.onRetry?.({ attempt, delayMs: sleepMs, error });
      await new Promise((resolve) => setTimeout(resolve, sleepMs));
      delayMs = Math.min(delayMs * 2, 2_000);
    } finally {
      await client.end().catch(() => {});
    }
  }
}

/** host:port/database for messages; never the password. */
function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname}`;
  } catch {
    return 'the configured DATABASE_URL';
  }
}
