/**
 * The newest value of a time column in a source: what a sliding window with `relativeTo: 'data'` is measured back
 * from. Read through the extract stage's own machinery (the data access policy, the object cache, the sandboxed
 * engine), so it reads nothing an extraction could not; a Postgres source runs `max()` on the server, one row back.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { DataEngine, sqlIdentifier } from './engine.js';
import { ExtractError } from './extract-errors.js';
import { downloadObjects, resolveInputs, type InputOptions, type PostgresSource } from './extract.js';
import { whyNotSingleSelect } from './postgres-source.js';
import { readExpression } from './snapshot-writer.js';
import { parseSourceSpec, type DataFormat, type SourceSpec } from './sources.js';

export interface NewestTimeOptions extends InputOptions {
  readonly source: string | PostgresSource;
  readonly format?: DataFormat;
  /** A DATE or TIMESTAMP (with or without time zone) column of the source. */
  readonly column: string;
  /** Scratch folder: the only place the engine writes. */
  readonly workDir: string;
  /** Where `s3://` objects are cached; give it the extract stage's, so the extraction that follows reuses them. */
  readonly cacheDir?: string;
}

/** Column types a window may be measured on; naive timestamps and dates are read as UTC. */
const NAIVE_TIME_TYPES = new Set(['DATE', 'TIMESTAMP', 'TIMESTAMP_S', 'TIMESTAMP_MS', 'TIMESTAMP_NS']);
const ZONED_TIME_TYPES = new Set(['TIMESTAMP WITH TIME ZONE', 'TIMESTAMPTZ']);
// As snapshot-writer.ts tells them: a type guessed from a sample that a later value breaks, and unreadable input.
const TYPE_GUESS_FAILED = /^Conversion Error|Could not convert|Could not parse/;
const CORRUPT_INPUT = /^(Invalid Input Error|Conversion Error|Invalid Error|Parser Error: (?!syntax))/;

/**
 * The largest value of `column` in the source, at millisecond precision (truncated), a naive timestamp read as UTC.
 * Reads the column only (Parquet: only its column chunks); no snapshot is written. Retriable: it changes nothing but
 * the object cache.
 *
 * @throws ExtractError `invalid_span` for a missing or non-time column, `empty_source` when the column has no value,
 *   and the extract stage's errors for a source it cannot read.
 */
export async function newestTime(options: NewestTimeOptions): Promise<Date> {
  let spec: SourceSpec = parseSourceSpec(options.source);
  const display = spec.display;
  if (spec.kind === 'postgres') {
    const refused = whyNotSingleSelect(spec.query);
    if (refused) throw new ExtractError('invalid_query', display, refused);
    // One row comes back: the server computes the maximum. The newline ends a trailing `--` comment of the query.
    const column = `"${options.column.replaceAll('"', '""')}"`;
    spec = { ...spec, query: `SELECT max(${column}) AS ${column} FROM (${spec.query}\n) AS q` };
  }
  const workDir = path.resolve(options.workDir);
  const temporary: string[] = [];
  try {
    const resolved = await resolveInputs(spec, options.format, options, workDir, temporary);
    const plan =
      resolved.plan ??
      (await downloadObjects(resolved, options, path.resolve(options.cacheDir ?? path.join(workDir, 'object-cache'))));
    options.signal?.throwIfAborted();
    const engine = await DataEngine.open({
      workDir,
      readableDirs: [...new Set(plan.files.map((f) => path.dirname(f)))],
    });
    const interrupt = () => engine.connection.interrupt();
    options.signal?.addEventListener('abort', interrupt, { once: true });
    try {
      for (const sampleAll of plan.format === 'parquet' || plan.declaredColumns ? [false] : [false, true]) {
        const source = readExpression(plan, sampleAll);
        try {
          const described = await engine.rows<{ column_name: string; column_type: string }>(
            `DESCRIBE SELECT * FROM ${source}`,
          );
          const found =
            described.find((c) => c.column_name === options.column) ??
            described.find((c) => c.column_name.toLowerCase() === options.column.toLowerCase());
          if (!found) {
            throw new ExtractError(
              'invalid_span',
              display,
              `window column ${JSON.stringify(options.column)} does not exist; columns: ` +
                described.map((c) => c.column_name).join(', '),
            );
          }
          const zoned = ZONED_TIME_TYPES.has(found.column_type);
          if (!zoned && !NAIVE_TIME_TYPES.has(found.column_type)) {
            throw new ExtractError(
              'invalid_span',
              display,
              `window column ${JSON.stringify(found.column_name)} is ${found.column_type}; ` +
                'a window needs a TIMESTAMP, TIMESTAMPTZ or DATE column',
            );
          }
          const col = sqlIdentifier(found.column_name);
          // epoch_ms of a naive timestamp counts from 1970-01-01 00:00 as if it were UTC; of a TIMESTAMPTZ, in UTC.
          const newest = zoned ? `max(${col})` : `max(CAST(${col} AS TIMESTAMP))`;
          const [row] = await engine.rows<{ ms: number | null }>(`SELECT epoch_ms(${newest}) AS ms FROM ${source}`);
          if (row?.ms === null || row?.ms === undefined) {
            throw new ExtractError('empty_source', display, `window column ${found.column_name} has no value`);
          }
          return new Date(Number(row.ms));
        } catch (error) {
          if (error instanceof ExtractError) throw error;
          options.signal?.throwIfAborted();
          const message = error instanceof Error ? error.message : String(error);
          if (!sampleAll && plan.format !== 'parquet' && TYPE_GUESS_FAILED.test(message)) continue;
          if (CORRUPT_INPUT.test(message)) {
            throw new ExtractError('corrupt_input', display, message.split('\n\n')[0] ?? message, { cause: error });
          }
          throw error;
        }
      }
      throw new Error('unreachable: the last read attempt either returns or throws');
    } finally {
      options.signal?.removeEventListener('abort', interrupt);
      engine.close();
    }
  } finally {
    await Promise.all(temporary.map((f) => rm(f, { force: true })));
  }
}
