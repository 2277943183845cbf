/**
 * Prepared Parquet → the trainers' typed arrays. DuckDB reads the file and does the per-row work that needs strings
 * (casts, vocabulary lookups), so JavaScript only copies numbers out of result chunks column by column: no row
 * objects. The encodings are exactly those of `applyTransform` (data/transform.ts); the tests check it.
 *
 * Three layouts: dense ({@link loadEncodedDataset}, the contract's `EncodedDataset`), sparse CSR
 * ({@link loadSparseEncodedDataset}: the same matrix with only the numeric columns and the one hot column of each
 * categorical feature stored, what the linear trainers want for one-hot data) and the trees' raw columns
 * ({@link loadTreeDataset}).
 */
import {
  DuckDBDoubleVector,
  DuckDBIntegerVector,
  type DuckDBMaterializedResult,
  type DuckDBVector,
} from '@duckdb/node-api';
import type { DataEngine } from '../data/engine.js';
import { sqlIdentifier, sqlString } from '../data/engine.js';
import { columnNames, type FittedFeature, type FittedTransform } from '../data/transform.js';
import type { DenseMatrix, EncodedDataset, TreeDataset, TreeFeature } from './types.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

/**
 * Compressed sparse row matrix: row r's entries are `indices[k]`/`values[k]` for `indptr[r] <= k < indptr[r + 1]`,
 * column indexes ascending within a row. Entries may be explicit zeros; absent entries are 0.
 */
export interface SparseMatrix {
  readonly rows: number;
  readonly cols: number;
  /** `rows + 1` offsets into `indices` and `values`; `indptr[0] = 0`, non-decreasing. */
  readonly indptr: Int32Array;
  readonly indices: Int32Array;
  readonly values: Float64Array;
}

/** {@link EncodedDataset} with its matrix in CSR form: same columns, same values, same labels. */
export interface SparseEncodedDataset {
  readonly x: SparseMatrix;
  readonly y: Float64Array;
  readonly weights?: Float64Array;
}

/** Thrown when a prepared file does not fit its transform (missing column, wrong type, null label). */
export class DatasetError extends DomainError {
  override readonly name = 'DatasetError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('invalid_data', message, options);
  }
}

/** Vocabularies up to this size are looked up with `list_position` (a linear scan, fastest when short); larger ones
 * with a cast to an ENUM (a hash lookup). Exported for tests only. */
export const LIST_LOOKUP_MAX = 512;

/** One feature's column as read: numeric raw value (NaN when missing) or vocabulary code (unknown included). */
type RawColumn = { kind: 'numeric'; values: Float64Array } | { kind: 'categorical'; codes: Int32Array };

interface RawColumns {
  readonly rows: number;
  readonly columns: readonly RawColumn[];
  readonly y: Float64Array;
}

/**
 * The prepared file as the transform's dense model input: `columnNames(transform)` columns, values exactly as
 * `applyTransform` computes them (bit for bit), the `label` column as `y` (class index or regression target), rows
 * in file order.
 *
 * Memory: `rows × columns × 8` bytes (the flights train split with two ~220-value categorical features would need
 * 3.5 GB: use {@link loadSparseEncodedDataset} for one-hot heavy data).
 *
 * @throws DatasetError when a feature or the label is missing or mistyped, or a label is null.
 * @throws RangeError when the matrix would exceed 2^32 values.
 */
export async function loadEncodedDataset(
  engine: DataEngine,
  parquetPath: string,
  transform: FittedTransform,
): Promise<EncodedDataset> {
  const raw = await readColumns(engine, parquetPath, transform);
  const width = columnNames(transform).length;
  if (raw.rows * width > 2 ** 32) {
    throw new RangeError(`${raw.rows} × ${width} values is too large for a dense matrix; load it sparse`);
  }
  // Scaled numeric columns first, then the matrix row by row (in memory order: far fewer page and TLB misses than
  // writing it column by column).
  const numeric: { at: number; values: Float64Array }[] = [];
  const categorical: { at: number; codes: Int32Array }[] = [];
  let offset = 0;
  for (const [f, feature] of transform.features.entries()) {
    const column = raw.columns[f]!;
    if (feature.kind === 'numeric' && column.kind === 'numeric') {
      const { imputeValue, mean, std } = feature.numeric;
      const values = new Float64Array(raw.rows);
      for (let r = 0; r < raw.rows; r++) {
        const v = column.values[r]!;
        values[r] = ((v === v ? v : imputeValue) - mean) / std;
      }
      numeric.push({ at: offset, values });
      offset += 1;
    } else if (feature.kind === 'categorical' && column.kind === 'categorical') {
      categorical.push({ at: offset, codes: column.codes });
      offset += feature.categorical.vocabulary.length + 1;
    }
  }
  const data = new Float64Array(raw.rows * width);
  for (let r = 0, base = 0; r < raw.rows; r++, base += width) {
    for (const { at, values } of numeric) data[base + at] = values[r]!;
    for (const { at, codes } of categorical) data[base + at + codes[r]!] = 1;
  }
  return { x: { rows: raw.rows, cols: width, data }, y: raw.y };
}

/**
 * The same matrix as {@link loadEncodedDataset}, in CSR form: one entry per feature and row (the numeric column,
 * even when its value is 0, and the categorical feature's one hot column, value 1), so `indptr[r] = r × features`.
 * Converting it with {@link sparseToDense} gives exactly `loadEncodedDataset`'s matrix.
 *
 * @throws DatasetError as {@link loadEncodedDataset}.
 */
export async function loadSparseEncodedDataset(
  engine: DataEngine,
  parquetPath: string,
  transform: FittedTransform,
): Promise<SparseEncodedDataset> {
  const raw = await readColumns(engine, parquetPath, transform);
  const perRow = transform.features.length;
  const nnz = raw.rows * perRow;
  if (nnz >= 2 ** 31) throw new RangeError(`${nnz} entries exceed a CSR matrix's 2^31 limit`);
  const indptr = new Int32Array(raw.rows + 1);
  for (let r = 0; r <= raw.rows; r++) indptr[r] = r * perRow;
  const indices = new Int32Array(nnz);
  const values = new Float64Array(nnz);
  let offset = 0;
  for (const [f, feature] of transform.features.entries()) {
    const column = raw.columns[f]!;
    if (feature.kind === 'numeric' && column.kind === 'numeric') {
      const { imputeValue, mean, std } = feature.numeric;
      const source = column.values;
      for (let r = 0, at = f; r < raw.rows; r++, at += perRow) {
        const v = source[r]!;
        indices[at] = offset;
        values[at] = ((v === v ? v : imputeValue) - mean) / std;
      }
      offset += 1;
    } else if (feature.kind === 'categorical' && column.kind === 'categorical') {
      const codes = column.codes;
      for (let r = 0, at = f; r < raw.rows; r++, at += perRow) {
        indices[at] = offset + codes[r]!;
        values[at] = 1;
      }
      offset += feature.categorical.vocabulary.length + 1;
    }
  }
  return { x: { rows: raw.rows, cols: offset, indptr, indices, values }, y: raw.y };
}

/**
 * The prepared file as the trees see it: numeric features as float32 raw values (NaN for null, NaN and ±Infinity),
 * categorical features as vocabulary indexes (unseen and missing: `unknownIndex`), `cardinality` =
 * vocabulary length + 1; features in transform order, rows in file order.
 *
 * @throws DatasetError as {@link loadEncodedDataset}.
 */
export async function loadTreeDataset(
  engine: DataEngine,
  parquetPath: string,
  transform: FittedTransform,
): Promise<TreeDataset> {
  const raw = await readColumns(engine, parquetPath, transform);
  const features = transform.features.map((feature, f): TreeFeature => {
    const column = raw.columns[f]!;
    if (column.kind === 'numeric') {
      return { kind: 'numeric', name: feature.name, values: Float32Array.from(column.values) };
    }
    const cardinality = feature.kind === 'categorical' ? feature.categorical.vocabulary.length + 1 : 0;
    return { kind: 'categorical', name: feature.name, codes: column.codes, cardinality };
  });
  return { rows: raw.rows, features, y: raw.y };
}

/**
 * Up to `n` rows of the file as plain objects (every column: raw feature values by name, and `label`), in file
 * order: DOUBLE → number (null when missing), VARCHAR → string, integers → number. The choice depends only on the
 * file's row count, `n` and `seed` (a hash of the row position), so it is repeatable.
 *
 * @param seed an integer; different seeds give different samples.
 */
export async function sampleRows(
  engine: DataEngine,
  parquetPath: string,
  n: number,
  seed: number,
): Promise<Record<string, unknown>[]> {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`n must be a non-negative integer, got ${n}`);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const file = sqlString(parquetPath);
  const columns = await describeFile(engine, file);
  if (columns.has('file_row_number')) throw new DatasetError('a column named file_row_number cannot be sampled');
  const rows = await engine.rows(
    `SELECT * EXCLUDE (file_row_number) FROM (
       SELECT * FROM read_parquet(${file}, file_row_number = true)
       ORDER BY hash(file_row_number, ${seed}), file_row_number LIMIT ${n}
     ) ORDER BY file_row_number`,
  );
  return rows;
}

/** CSR form of a dense matrix: every non-zero entry (NaN included), in row-major order. */
export function denseToSparse(x: DenseMatrix): SparseMatrix {
  let nnz = 0;
  for (let i = 0; i < x.data.length; i++) if (x.data[i] !== 0) nnz++;
  const indptr = new Int32Array(x.rows + 1);
  const indices = new Int32Array(nnz);
  const values = new Float64Array(nnz);
  let k = 0;
  for (let r = 0; r < x.rows; r++) {
    const base = r * x.cols;
    for (let c = 0; c < x.cols; c++) {
      const v = x.data[base + c]!;
      if (v !== 0) {
        indices[k] = c;
        values[k++] = v;
      }
    }
    indptr[r + 1] = k;
  }
  return { rows: x.rows, cols: x.cols, indptr, indices, values };
}

/** Dense form of a CSR matrix (explicit entries written, the rest 0). */
export function sparseToDense(x: SparseMatrix): DenseMatrix {
  const data = new Float64Array(x.rows * x.cols);
  for (let r = 0; r < x.rows; r++) {
    const base = r * x.cols;
    for (let k = x.indptr[r]!; k < x.indptr[r + 1]!; k++) data[base + x.indices[k]!] = x.values[k]!;
  }
  return { rows: x.rows, cols: x.cols, data };
}

// ---------------------------------------------------------------------------------------------------------------

const NUMERIC_SOURCE =
  /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|BOOLEAN|DECIMAL(\(\d+,\s*\d+\))?)$/;

async function describeFile(engine: DataEngine, file: string): Promise<Map<string, string>> {
  const rows = await engine.rows<{ column_name: string; column_type: string }>(
    `DESCRIBE SELECT * FROM read_parquet(${file})`,
  );
  return new Map(rows.map((r) => [r.column_name, r.column_type]));
}

/** SQL giving a feature's column: DOUBLE raw value (null when missing) or INTEGER vocabulary code. */
function featureSql(feature: FittedFeature, type: string | undefined, listLookupMax: number): string {
  if (type === undefined) throw new DatasetError(`the file has no column for feature ${feature.name}`);
  const column = sqlIdentifier(feature.name);
  if (feature.kind === 'numeric') {
    // applyTransform refuses strings for numeric features; so do we (DuckDB would parse them).
    if (!NUMERIC_SOURCE.test(type)) throw new DatasetError(`numeric feature ${feature.name} is ${type} in the file`);
    return `CAST(${column} AS DOUBLE)`;
  }
  const { vocabulary, unknownIndex } = feature.categorical;
  const text = `CAST(${column} AS VARCHAR)`;
  if (vocabulary.length === 0) return `CAST(${unknownIndex} AS INTEGER)`;
  const literals = vocabulary.map(sqlString).join(', ');
  const position =
    vocabulary.length <= listLookupMax
      ? `list_position([${literals}]::VARCHAR[], ${text}) - 1`
      : `enum_code(TRY_CAST(${text} AS ENUM(${literals})))`;
  return `CAST(coalesce(${position}, ${unknownIndex}) AS INTEGER)`;
}

/**
 * Reads every feature (numeric: raw DOUBLE, NaN when missing; categorical: vocabulary code) and the label, column by
 * column from DuckDB's result chunks. Exported for tests (both lookup strategies).
 */
export async function readColumns(
  engine: DataEngine,
  parquetPath: string,
  transform: FittedTransform,
  listLookupMax = LIST_LOOKUP_MAX,
): Promise<RawColumns> {
  const file = sqlString(parquetPath);
  const types = await describeFile(engine, file);
  const labelType = types.get('label');
  if (labelType === undefined) throw new DatasetError('the file has no label column');
  if (!NUMERIC_SOURCE.test(labelType)) throw new DatasetError(`the label column is ${labelType}, not a number`);
  const select = transform.features.map((f, i) => `${featureSql(f, types.get(f.name), listLookupMax)} AS __c${i}`);
  const result: DuckDBMaterializedResult = await engine.connection.run(
    `SELECT ${[...select, 'CAST(label AS DOUBLE) AS __label'].join(', ')} FROM read_parquet(${file})`,
  );
  const rows = result.rowCount;
  const columns: RawColumn[] = transform.features.map((f) =>
    f.kind === 'numeric'
      ? { kind: 'numeric', values: new Float64Array(rows) }
      : { kind: 'categorical', codes: new Int32Array(rows) },
  );
  const y = new Float64Array(rows);
  const labelIndex = transform.features.length;
  let start = 0;
  for (let c = 0; c < result.chunkCount; c++) {
    const chunk = result.getChunk(c);
    const count = chunk.rowCount;
    for (const [i, column] of columns.entries()) {
      const vector = chunk.getColumnVector(i);
      if (column.kind === 'numeric') copyDoubles(doubles(vector), column.values, start, count, NaN);
      else copyIntegers(integers(vector), column.codes, start, count);
    }
    const labels = doubles(chunk.getColumnVector(labelIndex));
    for (let r = 0; r < count; r++) {
      const v = labels.getItem(r);
      if (v === null || !Number.isFinite(v)) throw new DatasetError(`row ${start + r} has no label`);
      y[start + r] = v;
    }
    start += count;
  }
  return { rows, columns, y };
}

function doubles(vector: DuckDBVector): DuckDBDoubleVector {
  if (vector instanceof DuckDBDoubleVector) return vector;
  throw new TypeError(`expected a DOUBLE vector, got ${vector.type.toString()}`);
}

function integers(vector: DuckDBVector): DuckDBIntegerVector {
  if (vector instanceof DuckDBIntegerVector) return vector;
  throw new TypeError(`expected an INTEGER vector, got ${vector.type.toString()}`);
}

/** Copies a chunk's DOUBLE column; null, NaN and ±Infinity become `missing`. */
function copyDoubles(vector: DuckDBDoubleVector, out: Float64Array, start: number, count: number, missing: number) {
  for (let r = 0; r < count; r++) {
    const v = vector.getItem(r);
    out[start + r] = v !== null && Number.isFinite(v) ? v : missing;
  }
}

function copyIntegers(vector: DuckDBIntegerVector, out: Int32Array, start: number, count: number) {
  for (let r = 0; r < count; r++) out[start + r] = vector.getItem(r) ?? -1;
}
