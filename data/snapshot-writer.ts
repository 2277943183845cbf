/**
 * The DuckDB half of the extract stage: reads the resolved inputs (files, cached objects or a Postgres export) with a
 * sandboxed engine, keeps the rows of the span, and writes them as one zstd Parquet file. Deterministic: the same
 * input and settings give the same bytes.
 */
import { rm } from 'node:fs/promises';
import { DataEngine, sqlIdentifier, sqlString } from './engine.js';
import { ExtractError } from './extract-errors.js';
import type { ExtractOptions, SnapshotColumn } from './extract.js';
import type { ExportedColumn } from './postgres-source.js';
import type { DataFormat } from './sources.js';

/** What DuckDB reads: the files, their format, and how to show each in messages. */
export interface ReadPlan {
  readonly format: DataFormat;
  readonly files: readonly string[];
  /** Local file → the name the user knows it by (an `s3://` URI for a cached object). */
  readonly displayNames: ReadonlyMap<string, string>;
  /** A Postgres export: NDJSON read with these declared types. */
  readonly declaredColumns?: readonly ExportedColumn[];
}

const ROW_GROUP_SIZE = 122_880;

/** The table function call that reads the plan's files (`sampleAll`: type CSV and JSON from every row). */
export function readExpression(plan: ReadPlan, sampleAll: boolean): string {
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

/**
 * Reads the plan's files with DuckDB (readable: `readableDirs`; writable: `workDir`), keeps the span and writes the
 * rows to `output` as Parquet.
 *
 * @throws ExtractError for input that cannot be read (`corrupt_input`), no rows (`empty_source`, `empty_span`) or a
 *   bad span column (`invalid_span`).
 */
export async function writeSnapshot(
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
