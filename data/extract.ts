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
import type { DataAccessPolicy } from './access-policy.js';
import { ExtractError } from './extract-errors.js';
import { CONNECTION_NAME_PATTERN, exportPostgresQuery, type ConnectionResolver } from './postgres-source.js';
import { writeSnapshot, type ReadPlan } from './snapshot-writer.js';
import {
  dataExtension,
  objectIdentity,
  parseSourceSpec,
  resolveLocalFiles,
  resolveObjects,
  type DataFormat,
  type ResolvedInput,
  type SourceSpec,
} from './sources.js';

export { ExtractError, ExtractErrorCode, isExtractError } from './extract-errors.js';
export type { ExtractErrorCodeName } from './extract-errors.js';
export type { DataFormat } from './sources.js';

/**
 * The extract stage (TFX's ExampleGen): reads a source (local files, S3 objects, a Postgres query) with DuckDB,
 * keeps the rows of an optional time span, and stores them as one Parquet snapshot in the artifact store. This file
 * resolves the inputs and fingerprints them; snapshot-writer.ts reads them with DuckDB and writes the Parquet file.
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
  /**
   * The named connection to query (resolved by `connections` when the query runs, so no secret travels with the
   * source); default: the platform database's read-only connection, or the `pgPool` given to the call.
   */
  readonly connection?: string;
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
  /**
   * What the source may read: local roots, buckets. Checked before anything is listed or read; the caps on files
   * and depth bound resolving a glob or a prefix.
   */
  readonly policy: DataAccessPolicy;
  /** Resolves named Postgres connections (and the platform's read-only one, for sources that name none). */
  readonly connections?: ConnectionResolver;
  /** Without `connections`: the database Postgres sources that name no connection query (tests, library use). */
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
    /** Bound on connecting to a named connection; default 10 000. */
    readonly connectTimeoutMs?: number;
  };
  readonly engine?: { readonly threads?: number; readonly memoryLimit?: string };
}

/** Changing how snapshots are made (writer options, type mapping) changes this, so old fingerprints stop matching. */
const FINGERPRINT_SCHEME = 'mlops-extract/1';
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
      connection: z
        .string()
        .regex(CONNECTION_NAME_PATTERN, 'expected a connection name (lowercase letters, digits, - and _)')
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

/** What resolving and downloading a source's inputs needs of {@link ExtractOptions}. */
export type InputOptions = Pick<
  ExtractOptions,
  'policy' | 'onProgress' | 'connections' | 'pgPool' | 'postgres' | 'signal' | 'objectSource' | 's3Client'
>;

/** A source's inputs, listed and identified (not read): local files ready to read, or objects still to download. */
export interface ResolvedSource {
  readonly format: DataFormat;
  /** Content identity of every input, in read order. */
  readonly identities: readonly Readonly<Record<string, string | number>>[];
  /** Set when the inputs are local already; objects still to download otherwise. */
  readonly plan: ReadPlan | undefined;
  readonly objects: Awaited<ReturnType<typeof resolveObjects>>['objects'];
  readonly summary: string;
}

/** Lists a source's inputs within the data access policy; a Postgres source is exported to NDJSON in `workDir`. */
export async function resolveInputs(
  spec: SourceSpec,
  requested: DataFormat | undefined,
  options: InputOptions,
  workDir: string,
  temporary: string[],
): Promise<ResolvedSource> {
  const progress = options.onProgress ?? (() => {});
  switch (spec.kind) {
    case 'file': {
      const { files, format } = await resolveLocalFiles(spec, requested, options.policy);
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
      const { objects, format } = await resolveObjects(
        spec,
        objectSourceOf(options, spec.display),
        requested,
        options.policy,
      );
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
        connections: options.connections,
        pool: options.pgPool,
        connectTimeoutMs: options.postgres?.connectTimeoutMs ?? 10_000,
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

function objectSourceOf(options: InputOptions, display: string): ObjectSource {
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
        : // Not the connection: the rows' sha256 is in the inputs, and the same rows make the same snapshot.
          { kind: 'postgres', query: spec.query };
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
export async function downloadObjects(
  resolved: ResolvedSource,
  options: InputOptions,
  cacheDir: string,
): Promise<ReadPlan> {
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
