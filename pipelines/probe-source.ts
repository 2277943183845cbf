/**
 * Probes a pipeline definition's source without reading it in full: the first matching file's header (or Parquet
 * metadata), the head (CSV, JSON lines) or footer (Parquet) of the first matching object, or a Postgres query
 * wrapped in `LIMIT 0`. The probe creates an empty table `t` with exactly the source's columns and types, over which
 * validate-definition.ts checks the expressions. The data access policy is checked before anything is listed or
 * read: a source outside it is a 403 (SourceNotAllowedError), never an issue that could quote its content.
 */
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { DomainError } from '../core/errors.js';
import { DENY_ALL_POLICY, SourceNotAllowedError, type DataAccessPolicy } from '../data/access-policy.js';
import { sqlIdentifier, sqlString, type DataEngine } from '../data/engine.js';
import { ExtractError } from '../data/extract-errors.js';
import { exportPostgresQuery, whyNotSingleSelect } from '../data/postgres-source.js';
import {
  dataExtension,
  listLocalFiles,
  parseSourceSpec,
  resolveObjects,
  type DataFormat,
  type SourceSpec,
} from '../data/sources.js';
import { ConnectionNotFoundError } from '../storage/connection-store.js';
import type { ObjectInfo, ObjectSource } from '../storage/object-source.js';
import type { PipelineDefinition } from './definition.js';
import type { DefinitionIssue, DefinitionValidationDeps } from './validate-definition.js';

/**
 * Thrown when the source could not be reached to check it (S3 or Postgres down, an object changed while it was
 * fetched): nothing is known about the definition's columns, and trying again later may succeed.
 */
export class SourceProbeError extends DomainError {
  override readonly name = 'SourceProbeError';
  constructor(problem: string, options?: ErrorOptions) {
    super('unavailable', `The definition's source could not be checked: ${problem}`, options);
  }
}

/** A column of the source as DuckDB reads it. */
export interface SourceColumn {
  readonly name: string;
  readonly type: string;
}

/** Where a problem with the source is reported: `source.uri` or `source.query`. */
export function sourcePath(definition: PipelineDefinition): string {
  return 'uri' in definition.source ? 'source.uri' : 'source.query';
}

export interface Probe {
  /** Folders the engine must be able to read. */
  readonly readableDirs: string[];
  /** Creates the empty table `t` with the source's columns and returns them. */
  createTable(engine: DataEngine): Promise<SourceColumn[]>;
}

/** Finds what to read (without reading it), or the issue that says why there is nothing. */
export async function probeSource(
  definition: PipelineDefinition,
  deps: DefinitionValidationDeps,
  workDir: string,
): Promise<Probe | { issue: DefinitionIssue }> {
  const { source } = definition;
  const uriSource = 'uri' in source ? source : undefined;
  let spec: SourceSpec;
  try {
    spec = parseSourceSpec('uri' in source ? source.uri : source);
  } catch (error) {
    if (error instanceof ExtractError) return { issue: { path: sourcePath(definition), message: error.message } };
    throw error;
  }
  const requested = uriSource?.format;
  const policy = deps.policy ?? DENY_ALL_POLICY;
  const pgSource = 'kind' in source ? source : undefined;
  try {
    switch (spec.kind) {
      case 'file': {
        const { file, format } = await firstLocalFile(spec, requested, policy);
        return fileProbe(file, format, [path.dirname(file)]);
      }
      case 's3': {
        if (!deps.objects) {
          return { issue: { path: 'source.uri', message: 's3:// sources cannot be checked here: no S3 client' } };
        }
        const { objects, format } = await resolveObjects(spec, deps.objects, requested, policy).catch(
          rethrowUnlessExtract,
        );
        const first = objects[0]!;
        const file = await fetchForProbe(deps.objects, first, format, path.join(workDir, 'objects')).catch(
          (error: unknown) => {
            if (error instanceof DomainError && !error.retryable) throw error;
            const reason = error instanceof Error ? error.message : String(error);
            throw new SourceProbeError(`could not fetch s3://${first.bucket}/${first.key}: ${reason}`, {
              cause: error,
            });
          },
        );
        return fileProbe(file, format, [workDir]);
      }
      case 'postgres':
        return await postgresProbe(spec, deps, workDir);
    }
  } catch (error) {
    if (error instanceof ConnectionNotFoundError) {
      return { issue: { path: 'source.connection', message: error.message } };
    }
    if (!(error instanceof ExtractError)) throw error;
    if (error.retryable) {
      if (pgSource?.connection && error.code === 'query_failed')
        return { issue: { path: 'source.connection', message: error.message } };
      throw new SourceProbeError(error.message, { cause: error });
    }
    const at =
      error.code === 'unknown_format'
        ? 'source.format'
        : pgSource && error.code === 'invalid_request'
          ? 'source.connection'
          : sourcePath(definition);
    return { issue: { path: at, message: error.message } };
  }
}

/** The most of an object's head a CSV or JSON-lines probe reads: enough rows for DuckDB to sniff the columns. */
const PROBE_HEAD_BYTES = 1_048_576;
/** The largest Parquet footer a probe reads. */
const PROBE_MAX_FOOTER_BYTES = 64 * 1_048_576;
/** The largest object a probe downloads whole (a compressed file, whose head alone cannot be decompressed). */
const PROBE_MAX_DOWNLOAD_BYTES = 256 * 1_048_576;

/**
 * A local file DuckDB can probe the object's columns from, reading only what that needs: the head of a CSV or JSON
 * object cut at its last full line, or a sparse file holding only a Parquet object's footer (its metadata) at the
 * right offset. Compressed objects, and stores that cannot read ranges, are downloaded whole up to a bound.
 */
async function fetchForProbe(
  objects: ObjectSource,
  object: ObjectInfo,
  format: DataFormat,
  dir: string,
): Promise<string> {
  const extension = dataExtension(object.key) || `.${format}`;
  const compressed = /\.(gz|zst)$/.test(extension);
  if (!objects.readRange || compressed) {
    if (object.size > PROBE_MAX_DOWNLOAD_BYTES) {
      throw new ExtractError(
        'source_too_broad',
        `s3://${object.bucket}/${object.key}`,
        `it is compressed and larger than ${PROBE_MAX_DOWNLOAD_BYTES} bytes, too large to check on a request; ` +
          'store it uncompressed or as Parquet',
      );
    }
    return (await objects.download(object, dir, { extension })).path;
  }
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `probe${extension}`);
  const handle = await open(file, 'wx');
  try {
    if (format === 'parquet') {
      const tail = await objects.readRange(object, Math.max(0, object.size - 8), 8);
      const footerLength = tail.length === 8 ? tail.readUInt32LE(0) : 0;
      if (tail.length < 8 || tail.subarray(4).toString('latin1') !== 'PAR1' || footerLength + 12 > object.size) {
        throw new ExtractError('corrupt_input', `s3://${object.bucket}/${object.key}`, 'not a Parquet file');
      }
      if (footerLength > PROBE_MAX_FOOTER_BYTES) {
        throw new ExtractError(
          'source_too_broad',
          `s3://${object.bucket}/${object.key}`,
          `its Parquet metadata is larger than ${PROBE_MAX_FOOTER_BYTES} bytes`,
        );
      }
      const footer = await objects.readRange(object, object.size - 8 - footerLength, footerLength + 8);
      // The same size and layout as the object, with only its leading magic and its footer written: sparse.
      await handle.truncate(object.size);
      await handle.write(Buffer.from('PAR1', 'latin1'), 0, 4, 0);
      await handle.write(footer, 0, footer.length, object.size - footer.length);
    } else {
      const head = await objects.readRange(object, 0, PROBE_HEAD_BYTES);
      const lastNewline = head.length < object.size ? head.lastIndexOf(0x0a) : -1;
      const whole = lastNewline > 0 ? head.subarray(0, lastNewline + 1) : head;
      await handle.write(whole, 0, whole.length, 0);
    }
  } finally {
    await handle.close();
  }
  return file;
}

/** Listing failures other than "nothing there" are service failures: the source could not be checked. */
function rethrowUnlessExtract(error: unknown): never {
  if (error instanceof ExtractError || error instanceof SourceNotAllowedError) throw error;
  const reason = error instanceof Error ? error.message : String(error);
  throw new SourceProbeError(`could not list the source: ${reason}`, { cause: error });
}

function fileProbe(file: string, format: DataFormat, readableDirs: string[]): Probe {
  const list = `[${sqlString(file)}]`;
  // As data/extract.ts reads them; DuckDB samples CSV and JSON to type the columns and reads only Parquet metadata.
  const read =
    format === 'parquet'
      ? `read_parquet(${list})`
      : format === 'csv'
        ? `read_csv(${list}, header = true, skip = 0)`
        : `read_json_auto(${list})`;
  return {
    readableDirs,
    createTable: async (engine) => {
      await engine.run(`CREATE TABLE t AS SELECT * FROM ${read} LIMIT 0`);
      return describeTable(engine);
    },
  };
}

async function postgresProbe(
  spec: Extract<SourceSpec, { kind: 'postgres' }>,
  deps: DefinitionValidationDeps,
  workDir: string,
): Promise<Probe> {
  const refused = whyNotSingleSelect(spec.query);
  if (refused) throw new ExtractError('invalid_query', spec.display, refused);
  // The newline ends a trailing `--` comment of the user's query. The export runs it read-only and maps the types.
  const probe = { ...spec, query: `SELECT * FROM (${spec.query}\n) AS q LIMIT 0` };
  const timeoutMs = deps.queryTimeoutMs ?? 10_000;
  const exported = await exportPostgresQuery({
    spec: probe,
    // Never the platform's own pool: a source that names no connection uses the read-only `platform` one.
    connections: deps.connections,
    file: path.join(workDir, 'postgres-probe.ndjson'),
    batchRows: 1,
    statementTimeoutMs: timeoutMs,
    connectTimeoutMs: Math.min(timeoutMs, deps.connectTimeoutMs ?? timeoutMs),
  });
  return {
    readableDirs: [],
    createTable: async (engine) => {
      const columns = exported.columns.map((c) => `${sqlIdentifier(c.name)} ${c.duckdbType}`);
      await engine.run(`CREATE TABLE t (${columns.join(', ')})`);
      return describeTable(engine);
    },
  };
}

async function describeTable(engine: DataEngine): Promise<SourceColumn[]> {
  const rows = await engine.rows<{ column_name: string; column_type: string }>('DESCRIBE t');
  return rows.map((r) => ({ name: r.column_name, type: r.column_type }));
}

/**
 * The first file (by path) a local path, folder or glob matches, and the format of the matches.
 *
 * @throws ExtractError `source_not_found` when nothing matches; `unknown_format` when the format cannot be told.
 */
async function firstLocalFile(
  spec: Extract<SourceSpec, { kind: 'file' }>,
  requested: DataFormat | undefined,
  policy: DataAccessPolicy,
): Promise<{ file: string; format: DataFormat }> {
  const { paths, format } = await listLocalFiles(spec, requested, policy);
  return { file: paths[0]!, format };
}
