/**
 * Probes a pipeline definition's source without reading it in full: the first matching file's header (or Parquet
 * metadata), the first matching object, or a Postgres query wrapped in `LIMIT 0`. The probe creates an empty table
 * `t` with exactly the source's columns and types, over which validate-definition.ts checks the expressions.
 */
import path from 'node:path';
import { DomainError } from '../core/errors.js';
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
  try {
    switch (spec.kind) {
      case 'file': {
        const { file, format } = await firstLocalFile(spec, requested);
        return fileProbe(file, format, [path.dirname(file)]);
      }
      case 's3': {
        if (!deps.objects) {
          return { issue: { path: 'source.uri', message: 's3:// sources cannot be checked here: no S3 client' } };
        }
        const { objects, format } = await resolveObjects(spec, deps.objects, requested).catch(rethrowUnlessExtract);
        const first = objects[0]!;
        const downloaded = await deps.objects
          .download(first, path.join(workDir, 'objects'), { extension: dataExtension(first.key) || `.${format}` })
          .catch((error: unknown) => {
            const reason = error instanceof Error ? error.message : String(error);
            throw new SourceProbeError(`could not fetch s3://${first.bucket}/${first.key}: ${reason}`, {
              cause: error,
            });
          });
        return fileProbe(downloaded.path, format, [workDir]);
      }
      case 'postgres':
        return await postgresProbe(spec, deps, workDir);
    }
  } catch (error) {
    if (!(error instanceof ExtractError)) throw error;
    const pgSource = 'kind' in source ? source : undefined;
    if (error.retryable) {
      if (pgSource?.url && error.code === 'query_failed')
        return { issue: { path: 'source.url', message: error.message } };
      throw new SourceProbeError(error.message, { cause: error });
    }
    const at =
      error.code === 'unknown_format'
        ? 'source.format'
        : pgSource && error.code === 'invalid_request'
          ? 'source.url'
          : sourcePath(definition);
    return { issue: { path: at, message: error.message } };
  }
}

/** Listing failures other than "nothing there" are service failures: the source could not be checked. */
function rethrowUnlessExtract(error: unknown): never {
  if (error instanceof ExtractError) throw error;
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
  const exported = await exportPostgresQuery({
    spec: probe,
    pool: deps.pgPool,
    file: path.join(workDir, 'postgres-probe.ndjson'),
    batchRows: 1,
    statementTimeoutMs: deps.queryTimeoutMs ?? 10_000,
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
): Promise<{ file: string; format: DataFormat }> {
  const { paths, format } = await listLocalFiles(spec, requested);
  return { file: paths[0]!, format };
}
