/**
 * The prediction log's Postgres side: a sink that streams each batch into `prediction_logs` with one COPY, and the
 * writer over a connection of its own that the API uses (the queue and the flusher are prediction-log.ts's).
 */
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from '../core/logger.js';
import {
  isRejectedRowsError,
  PredictionLogWriter,
  type PredictionLogMetrics,
  type PredictionLogOptions,
  type PredictionLogSink,
} from './prediction-log.js';
import { COPY_ROWS, copyText } from './prediction-log-copy.js';

/**
 * A sink that streams each batch into `prediction_logs` with one `COPY ... FROM STDIN` (text format) on a connection
 * of `pool`. COPY is atomic like an INSERT (a refused row fails the whole batch with its SQLSTATE, so the writer's
 * splitting still isolates it) and costs Postgres about half as much per row, and the text it takes is cheaper to
 * build than a JSON document of the rows (BENCHMARKS.md, "Prediction log writes").
 */
export function postgresPredictionLogSink(pool: Pick<pg.Pool, 'connect'>): PredictionLogSink {
  return async (rows) => {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      const stream = client.query(copyFrom(COPY_ROWS));
      await new Promise<void>((resolve, reject) => {
        stream.on('finish', resolve);
        stream.on('error', reject);
        stream.end(copyText(rows));
      });
    } catch (error) {
      // A COPY the server refused leaves the connection usable; anything else (a socket error) may not.
      if (!isRejectedRowsError(error)) broken = error as Error;
      throw error;
    } finally {
      client.release(broken);
    }
  };
}

export interface PostgresPredictionLogOptions extends PredictionLogOptions {
  readonly databaseUrl: string;
  /** Bound on one COPY, in ms (server-side statement_timeout; the client gives up 1 s later). Default 5 000. */
  readonly statementTimeoutMs?: number;
  readonly metrics?: PredictionLogMetrics;
  readonly logger?: Logger;
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
}

/**
 * A writer over a dedicated single connection to `databaseUrl` (never the API's pool, so a slow log write cannot
 * hold a connection a request needs). Connecting is lazy: this never fails when Postgres is down.
 */
export function createPredictionLogWriter(options: PostgresPredictionLogOptions): PredictionLogWriter {
  const statementTimeoutMs = options.statementTimeoutMs ?? 5_000;
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: 1,
    application_name: 'mlops-prediction-log',
    connectionTimeoutMillis: 2_000,
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs + 1_000,
  });
  // An idle connection that dies (Postgres restarted) is discarded by the pool; the next write reconnects.
  pool.on('error', (error) => options.logger?.debug({ err: error }, 'prediction logs: idle connection lost'));
  const { databaseUrl: _url, statementTimeoutMs: _timeout, ...rest } = options;
  return new PredictionLogWriter({
    ...rest,
    write: postgresPredictionLogSink(pool),
    onClose: () => pool.end(),
  });
}
