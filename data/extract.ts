import { createHash, randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Client } from 'minio';
import type pg from 'pg';
import { z } from 'zod';
import type { ArtifactRef, ArtifactStore } from '../storage/artifact-store.js';
import {
  ObjectChangedError,
  ObjectNotFoundError,
  S3ObjectSource,
  type ObjectSource,
} from '../storage/object-source.js';
import { DataEngine, sqlIdentifier, sqlString } from './engine.js';
import {
  ExtractError,
  dataExtension,
  exportPostgresQuery,
  objectIdentity,
  parseSourceSpec,
  resolveLocalFiles,
  resolveObjects,
  type DataFormat,
  type ExportedColumn,
  type ResolvedInput,
  type SourceSpec,
} from './sources.js';

export { ExtractError, ExtractErrorCode, isExtractError } from './sources.js';
export type { DataFormat, ExtractErrorCodeName } from './sources.js';

/**
 * The extract stage (TFX's ExampleGen): reads a source (local files, S3 objects, a Postgres query) with DuckDB,
 * keeps the rows of an optional time span, and stores them as one Parquet snapshot in the artifact store.
 */

/** A column of a snapshot, with DuckDB's type name as read back from the Parquet file. */
export interface SnapshotColumn {
  readonly name: string;
  readonly type: string;
}

/** What the extract stage produced; small and JSON-serializable (it travels in Temporal payloads). */
export interface Snapshot {
  /** The Parquet file (zstd), kind `dataset.parquet`. */
  readonly artifact: ArtifactRef;
  readonly rowCount: number;
  readonly columns: readonly SnapshotColumn[];
  /**
   * sha256 (hex) over the normalized source, format, span and every input's content identity. Equal fingerprints
   * mean the same rows; look a snapshot up by it to skip re-extracting unchanged input.
   */
  readonly fingerprint: string;
  /** The source as the user wrote it, with what it resolved to, for people. */
  readonly sourceDescription: string;
}

/** A Postgres query source. */
export interface PostgresSource {
  readonly kind: 'postgres';
  /** One read-only SELECT (or WITH ... SELECT); a trailing semicolon is allowed. */
  readonly query: string;
  /** The database to query; default: the `pgPool` given to the call (the platform's database). */
  readonly url?: string;
}

/** Rows whose `column` lies in [from, to); both bounds ISO 8601, a bound without offset is UTC. */
export interface Span {
  readonly column: string;
  readonly from?: string;
  readonly to?: string;
}

export type ExtractPhase = 'resolve' | 'query' | 'download' | 'snapshot' | 'upload' | 'done';

/** Progress report, for heartbeats. `rows` and `bytes` are totals so far within the phase. */
export interface ExtractProgress {
  readonly phase: ExtractPhase;
  readonly rows?: number;
  readonly bytes?: number;
}

export interface ExtractOptions {
  /** A path or glob (`/data/*.csv`), `file://` URL, `s3://bucket/prefix[/glob]`, or a {@link PostgresSource}. */
  readonly source: string | PostgresSource;
  /** Default: inferred from the names' extensions (`.csv`, `.tsv`, `.parquet`, `.json`, `.ndjson`, `.jsonl`). */
  readonly format?: DataFormat;
  readonly span?: Span;
  /** Scratch folder of this run: the only place the engine writes. */
  readonly workDir: string;
  /**
   * Where downloaded objects are cached; give every run of a worker the same one to reuse downloads across runs.
   * Default `<workDir>/object-cache`.
   */
  readonly cacheDir?: string;
  readonly artifacts: ArtifactStore;
  /** How `s3://` sources are read; default: an `S3ObjectSource` on `s3Client`. */
  readonly objectSource?: ObjectSource;
  readonly s3Client?: Client;
  /** The platform database, for Postgres sources without their own `url`. */
  readonly pgPool?: pg.Pool;
  /**
   * Looks up a snapshot already made with this fingerprint (the metadata store). When it returns one whose artifact
   * still exists, that snapshot is returned and nothing is downloaded, read or uploaded.
   */
  readonly findExisting?: (fingerprint: string) => Promise<Snapshot | undefined>;
  readonly onProgress?: (progress: ExtractProgress) => void;
  /** How often `onProgress` is called while DuckDB works, in ms; default 2000. */
  readonly progressIntervalMs?: number;
  /** Cancels the extraction: downloads stop, a running query is interrupted, the call rejects. */
  readonly signal?: AbortSignal;
  readonly postgres?: {
    /** Rows per FETCH; default 10 000. */
    readonly batchRows?: number;
    /** Per statement; default 300 000 (5 min). */
    readonly statementTimeoutMs?: number;
  };
  readonly engine?: { readonly threads?: number; readonly memoryLimit?: string };
}

/** Changing how snapshots are made (writer options, type mapping) changes this, so old fingerprints stop matching. */
const FINGERPRINT_SCHEME = 'mlops-extract/1';
const ROW_GROUP_SIZE = 122_880;
const DOWNLOAD_CONCURRENCY = 4;
const SNAPSHOT_CONTENT_TYPE = 'application/vnd.apache.parquet';

const isoTimestamp = z.union([z.iso.datetime({ offset: true, local: true }), z.iso.date()], {
  error: 'expected an ISO 8601 date or timestamp, for example 2001-03-01 or 2001-03-01T00:00:00Z',
});

const requestSchema = z.object({
  source: z.union([
    z.string().trim().min(1, 'the source is empty'),
    z.strictObject({
      kind: z.literal('postgres'),
      query: z.string().trim().min(1, 'the query is empty'),
      url: z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// or postgresql:// URL')
        .optional(),
    }),
  ]),
  format: z.enum(['csv', 'parquet', 'json']).optional(),
  span: z
    .strictObject({ column: z.string().min(1), from: isoTimestamp.optional(), to: isoTimestamp.optional() })
    .refine((s) => !s.from || !s.to || toUtc(s.from) < toUtc(s.to), { message: 'from must be before to' })
    .optional(),
});

/** An ISO date or timestamp as a Date; no offset means UTC (never the worker's time zone). */
function toUtc(iso: string): Date {
  const hasZone = /(Z|[+-]\d{2}(:?\d{2})?)$/i.test(iso) && iso.includes('T');
  return new Date(hasZone || !iso.includes('T') ? iso : `${iso}Z`);
}

/** What DuckDB reads: the files, their format, and how to show each in messages. */
interface ReadPlan {
  readonly format: DataFormat;
  readonly files: readonly string[];
  /** Local file → the name the user knows it by (an `s3://` URI for a cached object). */
  readonly displayNames: ReadonlyMap<string, string>;
  /** A Postgres export: NDJSON read with these declared types. */
  readonly declaredColumns?: readonly ExportedColumn[];
}

/**
 * Extracts a snapshot: resolves the source, computes its fingerprint, downloads `s3://` objects into a local
 * content-addressed cache, reads the inputs with a sandboxed DuckDB (readable: the inputs' folders; writable:
 * `workDir`), keeps the span, writes one zstd Parquet file and stores it with `artifacts.putFile`.
 *
 * Idempotent and retriable: the same input gives the same fingerprint, and (DuckDB's Parquet writer being
 * deterministic for the same input and settings, see the tests) the same bytes, so the same artifact and no second
 * object; with `findExisting`, an unchanged source is not even read again. Changed input gives a new fingerprint.
 * Temporary files in `workDir` are removed; cached downloads are kept for reuse.
 *
 * @throws ExtractError for bad input (see {@link ExtractErrorCode}), naming the source. Service failures (S3,
 *   network) are thrown as they come, for the caller's retry policy.
 * @example
 * const snapshot = await extractSnapshot({
 *   source: 's3://landing/flights/*.parquet',
 *   span: { column: 'date', from: '2001-01-01', to: '2001-04-01' },
 *   workDir, artifacts, s3Client: artifacts.client,
 *   findExisting: (fingerprint) => metadata.findSnapshot(fingerprint),
 *   onProgress: (p) => heartbeat(p),
 * });
 */
export async function extractSnapshot(options: ExtractOptions): Promise<Snapshot> {
  const display = typeof options.source === 'string' ? options.source : 'postgres query';
  const parsed = requestSchema.safeParse({ source: options.source, format: options.format, span: options.span });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(request)'}: ${i.message}`);
    throw new ExtractError('invalid_request', display, problems.join('; '));
  }
  const request = parsed.data;
  const spec = parseSourceSpec(request.source);
  const span = request.span && {
    column: request.span.column,
    from: request.span.from ? toUtc(request.span.from).toISOString() : undefined,
    to: request.span.to ? toUtc(request.span.to).toISOString() : undefined,
  };
  const workDir = path.resolve(options.workDir);
  const cacheDir = path.resolve(options.cacheDir ?? path.join(workDir, 'object-cache'));
  const progress = options.onProgress ?? (() => {});
  const { signal } = options;
  const temporary: string[] = [];

  try {
    progress({ phase: 'resolve' });
    const resolved = await resolveInputs(spec, request.format, options, workDir, temporary);
    signal?.throwIfAborted();
    const fingerprint = computeFingerprint(spec, resolved.format, span, resolved.identities);

    if (options.findExisting) {
      const existing = await options.findExisting(fingerprint);
      if (existing && existing.fingerprint === fingerprint && (await options.artifacts.exists(existing.artifact))) {
        progress({ phase: 'done', rows: existing.rowCount });
        return existing;
      }
    }

    const plan = resolved.plan ?? (await downloadObjects(resolved, options, cacheDir));
    signal?.throwIfAborted();
    const readableDirs = [...new Set(plan.files.map((f) => path.dirname(f)))];
    const output = path.join(workDir, `snapshot-${randomUUID()}.parquet`);
    temporary.push(output);
    const written = await writeSnapshot(plan, span, output, readableDirs, workDir, spec.display, options);

    progress({ phase: 'upload', bytes: 0 });
    const artifact = await options.artifacts.putFile(output, {
      kind: 'dataset.parquet',
      contentType: SNAPSHOT_CONTENT_TYPE,
    });
    progress({ phase: 'done', rows: written.rowCount, bytes: artifact.bytes });
    return {
      artifact,
      rowCount: written.rowCount,
      columns: written.columns,
      fingerprint,
      sourceDescription: `${spec.display} (${resolved.summary})`,
    };
  } finally {
    await Promise.all(temporary.map((f) => rm(f, { force: true })));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Resolving inputs

interface ResolvedSource {
  readonly format: DataFormat;
  /** Content identity of every input, in read order. */
  readonly identities: readonly Readonly<Record<string, string | number>>[];
  /** Set when the inputs are local already; objects still to download otherwise. */
  readonly plan: ReadPlan | undefined;
  readonly objects: Awaited<ReturnType<typeof resolveObjects>>['objects'];
  readonly summary: string;
}

async function resolveInputs(
  spec: SourceSpec,
  requested: DataFormat | undefined,
  options: ExtractOptions,
  workDir: string,
  temporary: string[],
): Promise<ResolvedSource> {
  const progress = options.onProgress ?? (() => {});
  switch (spec.kind) {
    case 'file': {
      const { files, format } = await resolveLocalFiles(spec, requested);
      const plan: ReadPlan = { format, files: files.map((f) => f.name), displayNames: new Map() };
      return {
        format,
        identities: files.map((f) => f.identity),
        plan,
        objects: [],
        summary: describeInputs(files, format, 'file'),
      };
    }
    case 's3': {
      const { objects, format } = await resolveObjects(spec, objectSourceOf(options, spec.display), requested);
      const inputs = objects.map((o) => ({ name: o.key, format, bytes: o.size, identity: objectIdentity(o) }));
      return {
        format,
        identities: inputs.map((i) => i.identity),
        plan: undefined,
        objects,
        summary: describeInputs(inputs, format, 'object'),
      };
    }
    case 'postgres': {
      const file = path.join(workDir, `postgres-${randomUUID()}.ndjson`);
      temporary.push(file);
      progress({ phase: 'query', rows: 0, bytes: 0 });
      const exported = await exportPostgresQuery({
        spec,
        pool: options.pgPool,
        file,
        batchRows: options.postgres?.batchRows ?? 10_000,
        statementTimeoutMs: options.postgres?.statementTimeoutMs ?? 300_000,
        onRows: (rows, bytes) => progress({ phase: 'query', rows, bytes }),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (exported.rowCount === 0) throw new ExtractError('empty_source', spec.display, 'the query returned no rows');
      return {
        format: 'json',
        identities: [{ rows: exported.rowCount, sha256: exported.sha256 }],
        plan: { format: 'json', files: [file], displayNames: new Map(), declaredColumns: exported.columns },
        objects: [],
        summary: `${exported.rowCount} rows, ${exported.columns.length} columns`,
      };
    }
  }
}

function objectSourceOf(options: ExtractOptions, display: string): ObjectSource {
  const source = options.objectSource ?? (options.s3Client ? new S3ObjectSource(options.s3Client) : undefined);
  if (!source) throw new ExtractError('invalid_request', display, 'an s3:// source needs an objectSource or s3Client');
  return source;
}

function describeInputs(inputs: readonly ResolvedInput[], format: DataFormat, noun: string): string {
  const bytes = inputs.reduce((sum, i) => sum + i.bytes, 0);
  return `${inputs.length} ${format} ${noun}${inputs.length === 1 ? '' : 's'}, ${bytes} bytes`;
}

/**
 * sha256 over a canonical JSON of everything that decides the snapshot's rows: the fingerprint scheme, the
 * normalized source, format, span, and each input's content identity in read order. Never the Parquet bytes, which
 * a writer upgrade may change without changing the rows.
 */
function computeFingerprint(
  spec: SourceSpec,
  format: DataFormat,
  span: { column: string; from: string | undefined; to: string | undefined } | undefined,
  identities: readonly Readonly<Record<string, string | number>>[],
): string {
  const source =
    spec.kind === 'file'
      ? { kind: 'file', pattern: spec.pattern }
      : spec.kind === 's3'
        ? { kind: 's3', bucket: spec.bucket, key: spec.key }
        : { kind: 'postgres', query: spec.query };
  const canonical = JSON.stringify({
    scheme: FINGERPRINT_SCHEME,
    source,
    format,
    span: span ? { column: span.column, from: span.from ?? null, to: span.to ?? null } : null,
    inputs: identities,
  });
  return createHash('sha256').update(canonical).digest('hex');
}

/** Downloads the objects (at most a few at a time) into the cache; cached copies are reused. */
async function downloadObjects(resolved: ResolvedSource, options: ExtractOptions, cacheDir: string): Promise<ReadPlan> {
  const source = objectSourceOf(options, 's3');
  const progress = options.onProgress ?? (() => {});
  const files: string[] = new Array<string>(resolved.objects.length);
  const displayNames = new Map<string, string>();
  let downloadedBytes = 0;
  let next = 0;
  progress({ phase: 'download', bytes: 0 });
  const worker = async () => {
    for (let i = next++; i < resolved.objects.length; i = next++) {
      const object = resolved.objects[i]!;
      const uri = `s3://${object.bucket}/${object.key}`;
      try {
        const result = await source.download(object, cacheDir, {
          extension: dataExtension(object.key) || `.${resolved.format}`,
          ...(options.signal ? { signal: options.signal } : {}),
        });
        files[i] = result.path;
        displayNames.set(result.path, uri);
        if (result.downloaded) {
          downloadedBytes += result.bytes;
          progress({ phase: 'download', bytes: downloadedBytes });
        }
      } catch (error) {
        if (error instanceof ObjectChangedError) {
          throw new ExtractError('source_changed', uri, error.message, { cause: error });
        }
        if (error instanceof ObjectNotFoundError) {
          // Listed a moment ago and gone now: deleted meanwhile; a retry lists again.
          throw new ExtractError('source_changed', uri, 'deleted after it was listed', {
            cause: error,
            retryable: true,
          });
        }
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DOWNLOAD_CONCURRENCY, resolved.objects.length) }, worker));
  return { format: resolved.format, files, displayNames };
}

// ---------------------------------------------------------------------------------------------------------------
// DuckDB

/** The table function call that reads the plan's files. */
function readExpression(plan: ReadPlan, sampleAll: boolean): string {
  const list = `[${plan.files.map(sqlString).join(', ')}]`;
  const args: string[] = [list];
  // Several files may order or type their columns differently: match them by name, missing ones become NULL.
  if (plan.files.length > 1) args.push('union_by_name = true');
  if (plan.declaredColumns) {
    const columns = plan.declaredColumns.map((c) => `${sqlString(c.name)}: ${sqlString(c.duckdbType)}`);
    return `read_json(${list}, format = 'newline_delimited', columns = {${columns.join(', ')}})`;
  }
  switch (plan.format) {
    case 'parquet':
      return `read_parquet(${args.join(', ')})`;
    case 'csv':
      // skip = 0: with inconsistent rows DuckDB's skip detection may take a later, wider row as the header and drop
      // every row above it without a word; a wrong header is at least visible downstream.
      args.push('header = true', 'skip = 0');
      if (sampleAll) args.push('sample_size = -1');
      return `read_csv(${args.join(', ')})`;
    case 'json':
      if (sampleAll) args.push('sample_size = -1');
      return `read_json_auto(${args.join(', ')})`;
  }
}

const TIMESTAMP_TYPES = new Set(['TIMESTAMP', 'TIMESTAMP_S', 'TIMESTAMP_MS', 'TIMESTAMP_NS', 'DATE']);
const TIMESTAMPTZ_TYPES = new Set(['TIMESTAMP WITH TIME ZONE', 'TIMESTAMPTZ']);

/** The WHERE clause of a span, after checking its column; naive timestamps are compared as UTC. */
function spanCondition(
  span: { column: string; from: string | undefined; to: string | undefined },
  columns: readonly SnapshotColumn[],
  display: string,
): string {
  const column =
    columns.find((c) => c.name === span.column) ??
    columns.find((c) => c.name.toLowerCase() === span.column.toLowerCase());
  if (!column) {
    throw new ExtractError(
      'invalid_span',
      display,
      `span column ${JSON.stringify(span.column)} does not exist; columns: ${columns.map((c) => c.name).join(', ')}`,
    );
  }
  let literal: (iso: string) => string;
  if (TIMESTAMP_TYPES.has(column.type)) {
    literal = (iso) => `TIMESTAMP ${sqlString(iso.replace('T', ' ').replace('Z', ''))}`;
  } else if (TIMESTAMPTZ_TYPES.has(column.type)) {
    literal = (iso) => `TIMESTAMPTZ ${sqlString(iso.replace('T', ' ').replace('Z', '+00'))}`;
  } else {
    throw new ExtractError(
      'invalid_span',
      display,
      `span column ${JSON.stringify(column.name)} is ${column.type}; ` +
        'a span needs a TIMESTAMP, TIMESTAMPTZ or DATE column',
    );
  }
  const conditions: string[] = [];
  if (span.from) conditions.push(`${sqlIdentifier(column.name)} >= ${literal(span.from)}`);
  if (span.to) conditions.push(`${sqlIdentifier(column.name)} < ${literal(span.to)}`);
  return conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
}

/** DuckDB's message for unreadable input; anything else (I/O, memory) is not the data's fault. */
const CORRUPT_INPUT = /^(Invalid Input Error|Conversion Error|Invalid Error|Parser Error: (?!syntax))/;
const TYPE_GUESS_FAILED = /^Conversion Error|Could not convert|Could not parse/;

async function writeSnapshot(
  plan: ReadPlan,
  span: { column: string; from: string | undefined; to: string | undefined } | undefined,
  output: string,
  readableDirs: readonly string[],
  workDir: string,
  display: string,
  options: ExtractOptions,
): Promise<{ rowCount: number; columns: SnapshotColumn[] }> {
  const progress = options.onProgress ?? (() => {});
  progress({ phase: 'snapshot' });
  const engine = await DataEngine.open({
    workDir,
    readableDirs,
    ...(options.engine?.threads ? { threads: options.engine.threads } : {}),
    ...(options.engine?.memoryLimit ? { memoryLimit: options.engine.memoryLimit } : {}),
  });
  const interrupt = () => engine.connection.interrupt();
  options.signal?.addEventListener('abort', interrupt, { once: true });
  // DuckDB reports no progress of its own here; a periodic call keeps heartbeats flowing during a long COPY.
  const ticker = setInterval(() => progress({ phase: 'snapshot' }), options.progressIntervalMs ?? 2_000);
  try {
    // CSV and JSON types are guessed from a sample; a value later in the file that does not fit (text in a numeric
    // column) fails the read. Reading again with the whole file as the sample makes that column VARCHAR instead:
    // validation, not extraction, decides whether it is acceptable.
    for (const sampleAll of plan.format === 'parquet' || plan.declaredColumns ? [false] : [false, true]) {
      try {
        const source = readExpression(plan, sampleAll);
        const described = await engine.rows<{ column_name: string; column_type: string }>(
          `DESCRIBE SELECT * FROM ${source}`,
        );
        if (described.length === 0) throw new ExtractError('empty_source', display, 'the inputs hold no columns');
        const where = span
          ? spanCondition(
              span,
              described.map((c) => ({ name: c.column_name, type: c.column_type })),
              display,
            )
          : '';
        // Default insertion order is kept, so the same input and settings give the same row groups and bytes.
        const copied = await engine.rows<{ Count: number }>(
          `COPY (SELECT * FROM ${source} ${where}) TO ${sqlString(output)} ` +
            `(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${ROW_GROUP_SIZE})`,
        );
        const rowCount = Number(copied[0]?.Count ?? 0);
        if (rowCount === 0) {
          if (!span) throw new ExtractError('empty_source', display, 'the inputs hold no rows');
          const [total] = await engine.rows<{ n: number }>(`SELECT count(*) AS n FROM ${source}`);
          if (!total || total.n === 0) throw new ExtractError('empty_source', display, 'the inputs hold no rows');
          throw new ExtractError(
            'empty_span',
            display,
            `none of its ${total.n} rows has ${span.column} in [${span.from ?? '-inf'}, ${span.to ?? '+inf'})`,
          );
        }
        const columns = await engine.rows<{ column_name: string; column_type: string }>(
          `DESCRIBE SELECT * FROM read_parquet(${sqlString(output)})`,
        );
        return { rowCount, columns: columns.map((c) => ({ name: c.column_name, type: c.column_type })) };
      } catch (error) {
        if (error instanceof ExtractError) throw error;
        options.signal?.throwIfAborted();
        const message = error instanceof Error ? error.message : String(error);
        if (!sampleAll && plan.format !== 'parquet' && !plan.declaredColumns && TYPE_GUESS_FAILED.test(message)) {
          await rm(output, { force: true });
          continue;
        }
        if (CORRUPT_INPUT.test(message)) {
          throw new ExtractError('corrupt_input', display, cleanDuckdbMessage(message, plan.displayNames), {
            cause: error,
          });
        }
        throw error;
      }
    }
    throw new Error('unreachable: the last read attempt either returns or throws');
  } finally {
    clearInterval(ticker);
    options.signal?.removeEventListener('abort', interrupt);
    engine.close();
  }
}

/** DuckDB's first lines, with cache file names replaced by the object URIs the user knows. */
function cleanDuckdbMessage(message: string, displayNames: ReadonlyMap<string, string>): string {
  let text = message.split('\n\n')[0] ?? message;
  for (const [file, name] of displayNames) text = text.replaceAll(file, name);
  return text.trim();
}
