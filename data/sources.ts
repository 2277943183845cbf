import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { isErrnoException } from '../core/errors.js';
import { sha256OfFile } from '../storage/content-hash.js';
import { ObjectNotFoundError, objectUri, type ObjectInfo, type ObjectSource } from '../storage/object-source.js';
import { DomainError, type DomainErrorKind } from '../core/errors.js';

/**
 * Where the extract stage reads from: local files, objects of any S3 bucket, or a Postgres query. Each source is
 * resolved into a list of inputs with a content identity, before any data is read in full, so the snapshot's
 * fingerprint is known early.
 */

/** The file formats DuckDB reads here. */
export type DataFormat = 'csv' | 'parquet' | 'json';

/** Stable `code`s of {@link ExtractError}; callers match on them. */
export const ExtractErrorCode = {
  /** The request itself is malformed (not a path or URI, bad span, unknown format name). */
  InvalidRequest: 'invalid_request',
  /** No file or object matches the source. */
  SourceNotFound: 'source_not_found',
  /** The inputs hold no rows (or no columns). */
  EmptySource: 'empty_source',
  /** The inputs hold rows, but none inside the span. */
  EmptySpan: 'empty_span',
  /** The format is neither given nor inferable from the names, or the inputs mix formats. */
  UnknownFormat: 'unknown_format',
  /** DuckDB cannot read an input as its format (not Parquet, broken encoding, malformed JSON). */
  CorruptInput: 'corrupt_input',
  /** The span names a missing column, or one that is not a timestamp or date. */
  InvalidSpan: 'invalid_span',
  /** The Postgres query is not a single read-only SELECT. */
  InvalidQuery: 'invalid_query',
  /** Postgres refused or failed the query. */
  QueryFailed: 'query_failed',
  /** An object changed between listing and download; retrying reads the new version. */
  SourceChanged: 'source_changed',
} as const;
export type ExtractErrorCodeName = (typeof ExtractErrorCode)[keyof typeof ExtractErrorCode];

const KIND: Record<ExtractErrorCodeName, DomainErrorKind> = {
  invalid_request: 'invalid',
  source_not_found: 'not_found',
  empty_source: 'invalid_data',
  empty_span: 'invalid_data',
  unknown_format: 'invalid',
  corrupt_input: 'invalid_data',
  invalid_span: 'invalid',
  invalid_query: 'invalid',
  query_failed: 'invalid',
  source_changed: 'not_found',
};

/**
 * Thrown when a source cannot be extracted because of what it is or holds (never for a transient service failure,
 * which is thrown as it comes). `retryable` says whether trying again can help: false for everything but
 * `source_changed` and a Postgres connection or resource failure. The message names the source.
 */
export class ExtractError extends DomainError {
  override readonly name = 'ExtractError';
  override readonly code: ExtractErrorCodeName;
  constructor(
    code: ExtractErrorCodeName,
    /** The source as the user wrote it (a Postgres URL without its password). */
    readonly source: string,
    problem: string,
    options: ErrorOptions & { retryable?: boolean } = {},
  ) {
    super(KIND[code], `${source}: ${problem}`, {
      ...options,
      code,
      details: { code },
      retryable: options.retryable ?? code === 'source_changed',
    });
    this.code = code;
  }
}

/** Type guard for {@link ExtractError}, optionally of one code. */
export function isExtractError(error: unknown, code?: ExtractErrorCodeName): error is ExtractError {
  return error instanceof ExtractError && (code === undefined || error.code === code);
}

// ---------------------------------------------------------------------------------------------------------------
// Formats and names

const DATA_EXTENSIONS: Record<string, DataFormat> = {
  '.csv': 'csv',
  '.tsv': 'csv',
  '.parquet': 'parquet',
  '.json': 'json',
  '.ndjson': 'json',
  '.jsonl': 'json',
};
// DuckDB decompresses these by extension; Parquet compresses inside the file and has none.
const COMPRESSIONS = ['.gz', '.zst'];

/** The data extension of a name, compression suffix included (`.csv.gz`); '' when it has none we know. */
export function dataExtension(name: string): string {
  const lower = name.toLowerCase();
  const compression = COMPRESSIONS.find((c) => lower.endsWith(c)) ?? '';
  const stem = lower.slice(0, lower.length - compression.length);
  const ext = path.posix.extname(stem);
  if (!(ext in DATA_EXTENSIONS)) return '';
  if (compression && DATA_EXTENSIONS[ext] === 'parquet') return '';
  return ext + compression;
}

/** The format a name's extension says, if any. */
export function formatOfName(name: string): DataFormat | undefined {
  const ext = dataExtension(name);
  if (!ext) return undefined;
  return DATA_EXTENSIONS[COMPRESSIONS.reduce((e, c) => (e.endsWith(c) ? e.slice(0, -c.length) : e), ext)];
}

/** Hidden files and Hadoop-style markers (`_SUCCESS`, `_metadata`) are never data. */
function isHiddenName(name: string): boolean {
  const base = name.slice(name.lastIndexOf('/') + 1);
  return base.startsWith('.') || base.startsWith('_');
}

// ---------------------------------------------------------------------------------------------------------------
// Globs

/** Whether a path or key pattern has wildcards: `*` (within a segment), `**` (any depth) or `?` (one character). */
export function hasGlob(pattern: string): boolean {
  return /[*?]/.test(pattern);
}

/** A whole-string matcher for a `/`-separated glob pattern (`*`, `**`, `?`; everything else literal). */
export function globToRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      // `**/` matches zero or more whole segments; a bare `**` anything at all.
      if (pattern[i + 2] === '/') {
        out += '(?:[^/]*/)*';
        i += 2;
      } else {
        out += '.*';
        i += 1;
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** The part of a pattern before its first wildcard, cut back to a whole segment: where listing starts. */
function literalPrefix(pattern: string): string {
  const first = pattern.search(/[*?]/);
  if (first < 0) return pattern;
  return pattern.slice(0, pattern.lastIndexOf('/', first) + 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Source specs

/** A source, as parsed from the request. */
export type SourceSpec =
  | { readonly kind: 'file'; readonly pattern: string; readonly display: string }
  | { readonly kind: 's3'; readonly bucket: string; readonly key: string; readonly display: string }
  | { readonly kind: 'postgres'; readonly query: string; readonly url: string | undefined; readonly display: string };

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Parses a source string (path, glob, `file://` or `s3://` URI) or a Postgres query record into a spec with a
 * canonical form: absolute paths, one bucket and key, the query without trailing semicolons.
 *
 * @throws ExtractError `invalid_request` for an unsupported scheme or a bad bucket name.
 */
export function parseSourceSpec(
  source: string | { readonly kind: 'postgres'; readonly query: string; readonly url?: string | undefined },
): SourceSpec {
  if (typeof source !== 'string') {
    const query = source.query.trim().replace(/[\s;]+$/, '');
    const where = source.url ? redactUrl(source.url) : 'the platform database';
    const short = query.replace(/\s+/g, ' ');
    const display = `postgres query on ${where}: ${short.length > 120 ? `${short.slice(0, 117)}...` : short}`;
    return { kind: 'postgres', query, url: source.url, display };
  }
  if (source.startsWith('s3://')) {
    const rest = source.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const key = slash < 0 ? '' : rest.slice(slash + 1);
    if (!BUCKET_NAME.test(bucket)) {
      throw new ExtractError('invalid_request', source, `${JSON.stringify(bucket)} is not a valid S3 bucket name`);
    }
    if (hasGlob(bucket)) throw new ExtractError('invalid_request', source, 'a bucket name cannot be a glob');
    return { kind: 's3', bucket, key, display: source };
  }
  if (source.startsWith('file://')) {
    let pattern: string;
    try {
      pattern = fileURLToPath(source);
    } catch (error) {
      throw new ExtractError('invalid_request', source, `not a valid file:// URL (${(error as Error).message})`);
    }
    return { kind: 'file', pattern, display: source };
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(source)) {
    throw new ExtractError('invalid_request', source, 'unsupported scheme; use a path, file://, s3:// or a query');
  }
  return { kind: 'file', pattern: path.resolve(source), display: source };
}

/** host:port/database of a Postgres URL, never its password. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `postgres://${parsed.host}${parsed.pathname}`;
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Resolving files and objects

/** One input file as DuckDB will read it, with the identity that enters the fingerprint. */
export interface ResolvedInput {
  /** Where DuckDB reads it (a local file, or an object's cache file once downloaded). */
  readonly name: string;
  readonly format: DataFormat | undefined;
  readonly bytes: number;
  /** Content identity: sha256 of a local file; bucket, key, size and ETag of an object. */
  readonly identity: Readonly<Record<string, string | number>>;
}

/**
 * Decides the format of a set of inputs: the requested one, or the one their extensions agree on.
 *
 * @throws ExtractError `unknown_format` when none is given and the names do not say one format.
 */
export function resolveFormat(
  display: string,
  names: readonly string[],
  requested: DataFormat | undefined,
): DataFormat {
  if (requested) return requested;
  const formats = new Set(names.map((n) => formatOfName(n)));
  const [only] = formats;
  if (formats.size === 1 && only !== undefined) return only;
  if (formats.has(undefined)) {
    const odd = names.find((n) => formatOfName(n) === undefined) ?? '';
    throw new ExtractError(
      'unknown_format',
      display,
      `cannot infer the format of ${JSON.stringify(path.basename(odd))} from its name; ` +
        'pass format (csv, parquet or json)',
    );
  }
  throw new ExtractError(
    'unknown_format',
    display,
    `the inputs mix formats (${[...formats].sort().join(', ')}); narrow the source or pass format`,
  );
}

/**
 * For a folder or prefix source: keeps the data files (known extension, not hidden), of the requested format when
 * one is given. Globs and single names are taken as the user wrote them.
 */
function keepDataFiles<T>(items: readonly T[], nameOf: (item: T) => string, requested: DataFormat | undefined): T[] {
  return items.filter((item) => {
    const name = nameOf(item);
    const format = formatOfName(name);
    return !isHiddenName(name) && format !== undefined && (requested === undefined || format === requested);
  });
}

/**
 * Expands a local path, folder or glob into the paths of its data files, sorted, and their format; reads no file.
 *
 * @throws ExtractError `source_not_found` when nothing matches.
 */
export async function listLocalFiles(
  spec: Extract<SourceSpec, { kind: 'file' }>,
  requested: DataFormat | undefined,
): Promise<{ paths: string[]; format: DataFormat }> {
  let paths: string[];
  if (hasGlob(spec.pattern)) {
    const base = literalPrefix(spec.pattern) || path.sep;
    const matcher = globToRegExp(spec.pattern);
    const recursive = spec.pattern.slice(base.length).includes('/');
    paths = (await listFiles(base, recursive)).filter((p) => matcher.test(p) && !isHiddenName(p));
  } else {
    const info = await statOrUndefined(spec.pattern);
    if (info?.isFile()) paths = [spec.pattern];
    else if (info?.isDirectory()) {
      paths = keepDataFiles(await listFiles(spec.pattern, true), (p) => path.relative(spec.pattern, p), requested);
    } else paths = [];
  }
  if (paths.length === 0) {
    throw new ExtractError('source_not_found', spec.display, 'no file matches (or the folder holds no data files)');
  }
  paths.sort();
  return { paths, format: resolveFormat(spec.display, paths, requested) };
}

/**
 * Expands a local path, folder or glob into its files, sorted, each hashed (sha256) for its identity.
 *
 * @throws ExtractError `source_not_found` when nothing matches.
 */
export async function resolveLocalFiles(
  spec: Extract<SourceSpec, { kind: 'file' }>,
  requested: DataFormat | undefined,
): Promise<{ files: ResolvedInput[]; format: DataFormat }> {
  const { paths, format } = await listLocalFiles(spec, requested);
  const files = await Promise.all(
    paths.map(async (p) => {
      const { sha256, bytes } = await sha256OfFile(p);
      return { name: p, format, bytes, identity: { path: p, sha256 } };
    }),
  );
  return { files, format };
}

async function listFiles(dir: string, recursive: boolean): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive });
  } catch (error) {
    if (isErrnoException(error) && (error.code === 'ENOENT' || error.code === 'ENOTDIR')) return [];
    throw error;
  }
  const files = await Promise.all(
    entries.map(async (e) => {
      const full = path.join(e.parentPath, e.name);
      // A symbolic link counts as the file it points to (a `current.csv` link to the latest export, say).
      if (e.isSymbolicLink()) return (await statOrUndefined(full))?.isFile() ? full : undefined;
      return e.isFile() ? full : undefined;
    }),
  );
  return files.filter((f): f is string => f !== undefined);
}

async function statOrUndefined(p: string) {
  try {
    return await stat(p);
  } catch (error) {
    if (isErrnoException(error) && (error.code === 'ENOENT' || error.code === 'ENOTDIR')) return undefined;
    throw error;
  }
}

/**
 * Lists the objects an `s3://` source names: one object, every data object under a prefix, or the keys matching a
 * glob. Only listing: nothing is downloaded.
 *
 * @throws ExtractError `source_not_found` when the bucket does not exist or nothing matches.
 */
export async function resolveObjects(
  spec: Extract<SourceSpec, { kind: 's3' }>,
  objects: ObjectSource,
  requested: DataFormat | undefined,
): Promise<{ objects: ObjectInfo[]; format: DataFormat }> {
  let found: ObjectInfo[];
  try {
    if (hasGlob(spec.key)) {
      const matcher = globToRegExp(spec.key);
      found = (await objects.list(spec.bucket, literalPrefix(spec.key))).filter(
        (o) => matcher.test(o.key) && !isHiddenName(o.key),
      );
    } else {
      const single = spec.key && !spec.key.endsWith('/') ? await objects.stat(spec.bucket, spec.key) : undefined;
      if (single) found = [single];
      else {
        // `s3://b/flights` means the folder `flights/`, never also `flights-2/...`.
        const prefix = spec.key === '' || spec.key.endsWith('/') ? spec.key : `${spec.key}/`;
        found = keepDataFiles(await objects.list(spec.bucket, prefix), (o) => o.key.slice(prefix.length), requested);
      }
    }
  } catch (error) {
    if (error instanceof ObjectNotFoundError) {
      throw new ExtractError('source_not_found', spec.display, `bucket ${spec.bucket} does not exist`, {
        cause: error,
      });
    }
    throw error;
  }
  if (found.length === 0) {
    throw new ExtractError('source_not_found', spec.display, 'no object matches (or the prefix holds no data files)');
  }
  const format = resolveFormat(
    spec.display,
    found.map((o) => o.key),
    requested,
  );
  return { objects: found, format };
}

/** The identity of an object in the fingerprint: what S3 says about its content, and where it is. */
export function objectIdentity(object: ObjectInfo): Record<string, string | number> {
  return { uri: objectUri(object.bucket, object.key), size: object.size, etag: object.etag };
}

// ---------------------------------------------------------------------------------------------------------------
// Postgres

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

export interface PostgresExportOptions {
  readonly spec: Extract<SourceSpec, { kind: 'postgres' }>;
  /** Used when the spec has no URL of its own. */
  readonly pool: pg.Pool | undefined;
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
  if (!spec.url && !options.pool) {
    throw new ExtractError('invalid_request', spec.display, 'a Postgres source needs a url, or a pgPool to use');
  }

  let client: pg.ClientBase;
  let release: (error?: Error) => Promise<void>;
  if (spec.url) {
    const own = new pg.Client({ connectionString: spec.url, application_name: 'mlops-extract' });
    own.on('error', () => {}); // reported through the failing query instead
    client = own;
    release = () => own.end().catch(() => {});
  } else {
    const pooled = await options.pool!.connect();
    client = pooled;
    release = async (error) => pooled.release(error);
  }

  const hash = createHash('sha256');
  const out = createWriteStream(options.file, { flags: 'wx' });
  let failure: Error | undefined;
  try {
    if (spec.url) await (client as pg.Client).connect();
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
    if (!sqlState && !(error as { severity?: unknown }).severity && isErrnoException(error)) throw error;
    throw new ExtractError('query_failed', spec.display, `Postgres: ${failure.message}`, {
      cause: error,
      retryable: isTransientPgError(sqlState),
    });
  } finally {
    // A failed transaction is rolled back by discarding the connection, never by returning it to the pool mid-way.
    await release(failure);
  }
}
