import fs from 'node:fs';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection, type DuckDBValue } from '@duckdb/node-api';

export interface DataEngineOptions {
  /** Scratch folder of this piece of work: the only place the engine may write (snapshots, splits). */
  readonly workDir: string;
  /** Further folders it may read (materialized inputs, a local source's folder). */
  readonly readableDirs?: readonly string[];
  /** DuckDB worker threads; default: every core. */
  readonly threads?: number;
  /** DuckDB memory limit, for example '2GB'; spills to `workDir` beyond it. */
  readonly memoryLimit?: string;
}

/**
 * A DuckDB database in a sandbox: it reads only the folders it was given, writes only its work folder, cannot
 * open connections, install or load extensions, attach databases or change its settings (the configuration is
 * locked before any user-supplied SQL runs). User expressions are validated as well (see expressions.ts); this is
 * the second wall.
 */
export class DataEngine {
  private constructor(
    private readonly instance: DuckDBInstance,
    readonly connection: DuckDBConnection,
    readonly workDir: string,
  ) {}

  static async open(options: DataEngineOptions): Promise<DataEngine> {
    fs.mkdirSync(options.workDir, { recursive: true });
    const workDir = path.resolve(options.workDir);
    const instance = await DuckDBInstance.create(':memory:', {
      threads: String(options.threads ?? 2),
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      temp_directory: path.join(workDir, '.duckdb-tmp'),
      ...(options.memoryLimit ? { memory_limit: options.memoryLimit } : {}),
    });
    const connection = await instance.connect();
    const dirs = [workDir, ...(options.readableDirs ?? []).map((d) => path.resolve(d))].map((d) =>
      d.endsWith(path.sep) ? d : `${d}${path.sep}`,
    );
    await connection.run(`SET allowed_directories=[${dirs.map(sqlString).join(', ')}]`);
    await connection.run('SET enable_external_access=false');
    await connection.run('SET lock_configuration=true');
    return new DataEngine(instance, connection, workDir);
  }

  /** Runs a statement whose result is not needed. */
  async run(sql: string, params?: readonly DuckDBValue[]): Promise<void> {
    await this.connection.run(sql, params ? [...params] : undefined);
  }

  /** Rows as plain objects; BIGINTs become JavaScript numbers (our counts stay far below 2^53). */
  async rows<T extends Record<string, unknown>>(sql: string, params?: readonly DuckDBValue[]): Promise<T[]> {
    const reader = await this.connection.runAndReadAll(sql, params ? [...params] : undefined);
    return reader.getRowObjectsJS().map((row) => normalizeRow(row)) as T[];
  }

  close(): void {
    this.connection.closeSync();
    this.instance.closeSync();
  }
}

function normalizeRow(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) out[key] = typeof value === 'bigint' ? Number(value) : value;
  return out;
}

/** DuckDB's integer and floating-point type names (DECIMAL aside, which carries its precision in the name). */
export const NUMERIC_TYPE_NAMES: readonly string[] = [
  'TINYINT',
  'SMALLINT',
  'INTEGER',
  'BIGINT',
  'HUGEINT',
  'UTINYINT',
  'USMALLINT',
  'UINTEGER',
  'UBIGINT',
  'UHUGEINT',
  'FLOAT',
  'DOUBLE',
];

/** A SQL string literal. */
export function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** A SQL identifier, quoted. */
export function sqlIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
