/**
 * A Postgres query as an extract source: checked to be one read-only SELECT, run through a server-side cursor in a
 * READ ONLY transaction, and streamed into an NDJSON file of text values with the DuckDB type of each column.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import pg from 'pg';
import { isErrnoException } from '../core/errors.js';
import { PLATFORM_CONNECTION } from '../storage/connection-store.js';
import { ExtractError } from './extract-errors.js';
import type { SourceSpec } from './sources.js';

/** A column of a Postgres result as it is written for DuckDB. */
export interface ExportedColumn {
  readonly name: string;
  /** DuckDB type the text value is cast to when read. */
  readonly duckdbType: string;
}

export interface PostgresExport {
  readonly columns: readonly ExportedColumn[];
  readonly rowCount: number;
  readonly bytes: number;
  /** sha256 over the column list and every row as streamed, in order: the content identity of the result. */
  readonly sha256: string;
}

/** Names of connections: lowercase letters, digits, - and _, at most 63. */
export const CONNECTION_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/**
 * Finds a named connection's URL, secret included, at the moment a query runs, so the secret never travels in a
 * request, a definition or a workflow input. storage/connection-store.ts implements it.
 */
export interface ConnectionResolver {
  /**
   * The full `postgres://` URL of the connection `name`.
   *
   * @throws DomainError (`not_found`) for an unknown connection; (`unavailable`) when its secret cannot be read.
   */
  connectionString(name: string): Promise<string>;
}

export interface PostgresExportOptions {
  readonly spec: Extract<SourceSpec, { kind: 'postgres' }>;
  /**
   * Resolves the spec's named connection ({@link PLATFORM_CONNECTION} when it names none). Without it, a spec
   * without a connection uses `pool` (library use and tests; the platform's activities and API always resolve).
   */
  readonly connections?: ConnectionResolver | undefined;
  /** Used when there is no resolver and the spec names no connection. */
  readonly pool?: pg.Pool | undefined;
  /** Bound on establishing a connection, in ms; default 10 000. */
  readonly connectTimeoutMs?: number;
  /** Where the rows are written, one JSON object per line, every value as Postgres's text (or null). */
  readonly file: string;
  readonly batchRows: number;
  readonly statementTimeoutMs: number;
  readonly onRows?: (rows: number, bytes: number) => void;
  readonly signal?: AbortSignal;
}

// Text output settings that make every value castable by DuckDB and independent of the server's defaults.
const SESSION_SETTINGS: readonly [string, string][] = [
  ['TimeZone', 'UTC'],
  ['DateStyle', 'ISO, YMD'],
  ['IntervalStyle', 'iso_8601'],
  ['extra_float_digits', '1'],
  ['bytea_output', 'hex'],
];

// Postgres type OIDs (pg_type.oid, fixed in the catalog) to the DuckDB type that reads their text output.
const DUCKDB_TYPES: Record<number, string> = {
  16: 'BOOLEAN',
  20: 'BIGINT',
  21: 'SMALLINT',
  23: 'INTEGER',
  26: 'UBIGINT',
  700: 'FLOAT',
  701: 'DOUBLE',
  1082: 'DATE',
  1083: 'TIME',
  1114: 'TIMESTAMP',
  1184: 'TIMESTAMPTZ',
  2950: 'UUID',
};
const NUMERIC_OID = 1700;

/** The DuckDB type for a Postgres column; anything without an exact equivalent stays text. */
function duckdbTypeOf(oid: number, typmod: number): string {
  if (oid === NUMERIC_OID) {
    // numeric(p, s) packs precision and scale into typmod - 4; unconstrained numeric has typmod -1.
    if (typmod < 4) return 'DOUBLE';
    const precision = ((typmod - 4) >> 16) & 0xffff;
    const scale = (typmod - 4) & 0xffff;
    return precision >= 1 && precision <= 38 && scale <= precision ? `DECIMAL(${precision},${scale})` : 'DOUBLE';
  }
  return DUCKDB_TYPES[oid] ?? 'VARCHAR';
}

/**
 * Checks that a query is one SELECT (or WITH ... SELECT, VALUES, TABLE): one statement, outside string literals,
 * quoted identifiers and comments. This is the first wall; Postgres itself is the second (the query runs as a
 * cursor, in a READ ONLY transaction, through the extended protocol, which refuses several statements).
 *
 * @returns a reason when the query is refused, undefined when it is accepted.
 */
export function whyNotSingleSelect(query: string): string | undefined {
  const code = stripSqlLiterals(query).trim();
  if (code === '') return 'the query is empty';
  if (code.includes(';')) return 'the query holds more than one statement';
  const first = /^[(\s]*([A-Za-z]+)/.exec(code)?.[1]?.toLowerCase();
  if (first !== 'select' && first !== 'with' && first !== 'values' && first !== 'table') {
    return `only a SELECT is allowed, this is ${first ? first.toUpperCase() : 'not a statement'}`;
  }
  return undefined;
}

/** The query with string literals, quoted identifiers, dollar quotes and comments blanked out. */
function stripSqlLiterals(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const rest = sql.slice(i);
    const dollar = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(rest);
    let end: number;
    if (rest.startsWith('--')) end = rest.includes('\n') ? rest.indexOf('\n') : rest.length;
    else if (rest.startsWith('/*')) end = rest.includes('*/') ? rest.indexOf('*/') + 2 : rest.length;
    else if (rest[0] === "'" || rest[0] === '"') {
      const quote = rest[0];
      end = 1;
      while (end < rest.length) {
        if (rest[end] === quote && rest[end + 1] === quote) end += 2;
        else if (rest[end] === quote) break;
        else end += 1;
      }
      end += 1;
    } else if (dollar) {
      const close = rest.indexOf(dollar[0], dollar[0].length);
      end = close < 0 ? rest.length : close + dollar[0].length;
    } else {
      out += sql[i];
      i += 1;
      continue;
    }
    out += ' ';
    i += end;
  }
  return out;
}

// SQLSTATE classes where trying again can succeed: connection, resources, operator intervention (but not a
// statement timeout), serialization failures.
function isTransientPgError(code: string | undefined): boolean {
  if (!code) return true; // no SQLSTATE: a socket or protocol error
  if (code === '57014') return false; // statement timeout or cancel: the same query times out again
  return /^(08|53|57|40)/.test(code);
}

/**
 * Runs a read-only query through a server-side cursor and streams its rows, batch by batch, into an NDJSON file of
 * text values, together with the DuckDB types to read them as (type-preserving: integers, decimals, timestamps,
 * dates and booleans come back as such). Memory use is bounded by one batch.
 *
 * The query runs in a READ ONLY transaction with a statement timeout applying to each fetch, and is rolled back.
 *
 * @throws ExtractError `invalid_query` for anything but a single SELECT, or a result with duplicate column names;
 *   `query_failed` when Postgres refuses or fails it (retryable for connection and resource errors).
 */
export async function exportPostgresQuery(options: PostgresExportOptions): Promise<PostgresExport> {
  const { spec } = options;
  const refused = whyNotSingleSelect(spec.query);
  if (refused) throw new ExtractError('invalid_query', spec.display, refused);
  const connection = spec.connection ?? (options.connections ? PLATFORM_CONNECTION : undefined);
  if (connection !== undefined && !options.connections) {
    throw new ExtractError('invalid_request', spec.display, 'a named connection needs a connection resolver');
  }
  if (connection === undefined && !options.pool) {
    throw new ExtractError('invalid_request', spec.display, 'a Postgres source needs a connection, or a pgPool to use');
  }

  let client: pg.ClientBase;
  let release: (error?: Error) => Promise<void>;
  let own: pg.Client | undefined;
  if (connection !== undefined) {
    own = new pg.Client({
      connectionString: await options.connections!.connectionString(connection),
      application_name: 'mlops-extract',
      connectionTimeoutMillis: Math.max(1, Math.round(options.connectTimeoutMs ?? 10_000)),
      // Also set per transaction below; this bounds the statements that run before it.
      statement_timeout: Math.max(1, Math.round(options.statementTimeoutMs)),
    });
    const ownClient = own;
    ownClient.on('error', () => {}); // reported through the failing query instead
    client = ownClient;
    release = () => ownClient.end().catch(() => {});
  } else {
    const pooled = await options.pool!.connect();
    client = pooled;
    release = async (error) => pooled.release(error);
  }

  const hash = createHash('sha256');
  const out = createWriteStream(options.file, { flags: 'wx' });
  let failure: Error | undefined;
  try {
    if (own) await own.connect();
    await client.query('BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.round(options.statementTimeoutMs))}`);
    for (const [name, value] of SESSION_SETTINGS) await client.query(`SET LOCAL ${name} = '${value}'`);
    // The extended protocol (one Parse message) refuses several statements where the simple protocol runs them all.
    const declare = { text: `DECLARE mlops_extract NO SCROLL CURSOR FOR ${spec.query}`, queryMode: 'extended' };
    await client.query(declare as pg.QueryConfig);

    const fetch: pg.QueryArrayConfig = {
      text: `FETCH FORWARD ${options.batchRows} FROM mlops_extract`,
      rowMode: 'array',
      // Every value as Postgres's text: DuckDB casts it with the declared type, so nothing is lost in JavaScript.
      types: { getTypeParser: () => (value: string) => value },
    };
    let columns: ExportedColumn[] | undefined;
    let keys: string[] = [];
    let rowCount = 0;
    let bytes = 0;
    for (;;) {
      options.signal?.throwIfAborted();
      const result = await client.query(fetch);
      if (!columns) {
        columns = result.fields.map((f) => ({
          name: f.name,
          duckdbType: duckdbTypeOf(f.dataTypeID, f.dataTypeModifier),
        }));
        const duplicate = columns.find((c, i) => columns!.findIndex((d) => d.name === c.name) !== i);
        if (duplicate) {
          throw new ExtractError('invalid_query', spec.display, `the result has two columns named ${duplicate.name}`);
        }
        hash.update(`${JSON.stringify(columns)}\n`);
        keys = columns.map((c) => `${JSON.stringify(c.name)}:`);
      }
      if (result.rows.length === 0) break;
      let chunk = '';
      for (const row of result.rows as (string | null)[][]) {
        chunk += `{${keys.map((k, i) => k + JSON.stringify(row[i] ?? null)).join(',')}}\n`;
      }
      hash.update(chunk);
      rowCount += result.rows.length;
      bytes += Buffer.byteLength(chunk);
      if (!out.write(chunk)) await once(out, 'drain');
      options.onRows?.(rowCount, bytes);
      if (result.rows.length < options.batchRows) break;
    }
    await client.query('ROLLBACK');
    out.end();
    await once(out, 'finish');
    return { columns: columns ?? [], rowCount, bytes, sha256: hash.digest('hex') };
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
    out.destroy();
    if (error instanceof ExtractError || options.signal?.aborted) throw error;
    const pgCode = (error as { code?: unknown }).code;
    const sqlState = typeof pgCode === 'string' && /^[0-9A-Z]{5}$/.test(pgCode) ? pgCode : undefined;
    // 25006: a write in the read-only transaction; 0A000: a data-modifying WITH, which a cursor refuses.
    if (sqlState === '25006' || sqlState === '0A000') {
      throw new ExtractError('invalid_query', spec.display, `refused by Postgres: ${failure.message}`, {
        cause: error,
      });
    }
    // A socket error on the platform's own pool is an outage of the platform (503); on a user's connection it is
    // that source failing (an unknown host, a refused port), which the caller must see as the source's problem.
    if (!own && !sqlState && !(error as { severity?: unknown }).severity && isErrnoException(error)) throw error;
    throw new ExtractError('query_failed', spec.display, `Postgres: ${failure.message}`, {
      cause: error,
      retryable: isTransientPgError(sqlState),
    });
  } finally {
    // A failed transaction is rolled back by discarding the connection, never by returning it to the pool mid-way.
    await release(failure);
  }
}
