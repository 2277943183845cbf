/**
 * StatisticsGen: per-column statistics of a relation, computed by DuckDB in three set-based queries (one aggregate
 * scan, one histogram scan, one grouped scan of the categorical columns), never by a row loop in JavaScript.
 */
import { NUMERIC_TYPE_NAMES, sqlIdentifier, type DataEngine } from './engine.js';
import type {
  ColumnComparison,
  ColumnKind,
  ColumnStatistics,
  DatasetStatistics,
  Histogram,
  StatisticsComparison,
  ValueCount,
} from './types.js';

export interface StatisticsOptions {
  /** Most frequent values kept per categorical column. Default 20. */
  readonly topK?: number;
  /** Equal-width bins between min and max of each numeric column. Default 20. */
  readonly histogramBins?: number;
  /** Keep every value's count (`frequencies`) when a column has at most this many distinct values. Default 1000. */
  readonly frequencyLimit?: number;
  /**
   * Exact quantiles (default) hold every value of a column in memory while they sort; `false` uses DuckDB's
   * `approx_quantile` (a T-Digest, bounded memory, a few tenths of a percent off in rank) for tables far beyond memory.
   */
  readonly exactQuantiles?: boolean;
}

export const DEFAULT_TOP_K = 20;
export const DEFAULT_HISTOGRAM_BINS = 20;
export const DEFAULT_FREQUENCY_LIMIT = 1000;

/** The quantiles every numeric column reports, as fractions. */
export const QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99] as const;

/** A column of a relation as DuckDB describes it. */
export interface SourceColumn {
  readonly name: string;
  readonly type: string;
  readonly kind: ColumnKind;
}

const NUMERIC_TYPES = new Set(NUMERIC_TYPE_NAMES);
const FLOATING_TYPES = new Set(['FLOAT', 'DOUBLE']);
const TIMESTAMP_TYPES = new Set([
  'DATE',
  'TIMESTAMP',
  'TIMESTAMP WITH TIME ZONE',
  'TIMESTAMP_S',
  'TIMESTAMP_MS',
  'TIMESTAMP_NS',
]);

/**
 * The kind of a DuckDB type. Integers, floats and decimals are numeric; BOOLEAN is boolean; DATE and TIMESTAMP
 * variants are timestamps; everything else (VARCHAR, ENUM, UUID, lists, ...) is categorical over its text form.
 */
export function columnKind(type: string): ColumnKind {
  if (NUMERIC_TYPES.has(type) || type.startsWith('DECIMAL')) return 'numeric';
  if (type === 'BOOLEAN') return 'boolean';
  if (TIMESTAMP_TYPES.has(type)) return 'timestamp';
  return 'categorical';
}

/** The columns of `source` (a table name or a relation such as `read_parquet('...')`), in order. */
export async function describeSource(engine: DataEngine, source: string): Promise<SourceColumn[]> {
  const rows = await engine.rows<{ column_name: string; column_type: string }>(`DESCRIBE SELECT * FROM ${source}`);
  return rows.map((r) => ({ name: r.column_name, type: r.column_type, kind: columnKind(r.column_type) }));
}

/**
 * SQL for a numeric column's usable value: the column itself, or NULL for NaN and ±Infinity in FLOAT/DOUBLE columns
 * (so that statistics and validation agree on what counts as missing). Integers keep their type: DuckDB's exact
 * quantile is twice as fast on BIGINT as on a cast to DOUBLE.
 */
export function numericValueSql(column: SourceColumn | { name: string; type: string }): string {
  const id = sqlIdentifier(column.name);
  return FLOATING_TYPES.has(column.type) ? `(CASE WHEN isfinite(${id}) THEN ${id} END)` : id;
}

/** A JavaScript number as a DuckDB DOUBLE literal that parses back to the same double. */
export function sqlDouble(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`Not a finite number: ${value}`);
  // A plain literal such as 0.1 parses as DECIMAL; a string cast goes through a correctly rounded parser.
  return `'${String(value)}'::DOUBLE`;
}

/**
 * Equal-width edges from `min` to `max` (`bins + 1` of them; the last is exactly `max`). A constant column
 * (`min === max`) gets a single bin [min, max].
 */
export function histogramEdges(min: number, max: number, bins: number): number[] {
  if (!(bins >= 1) || !Number.isInteger(bins)) throw new RangeError(`histogram bins must be a positive integer`);
  if (min === max) return [min, max];
  const width = max - min;
  // (width · i) / bins is exact more often than i · (width / bins); the split form only serves spans beyond DOUBLE.
  const edge = Number.isFinite(width)
    ? (i: number) => min + (width * i) / bins
    : (i: number) => min + (max / bins - min / bins) * i;
  return Array.from({ length: bins + 1 }, (_, i) => (i === bins ? max : edge(i)));
}

/**
 * SQL giving the bin index of `value` for `edges` under the `Histogram` convention: bin i holds
 * [edges[i], edges[i+1]), the last bin is closed; NULL stays NULL. Values below the first edge get -1 and above the
 * last edge get `bins` when `outer` is true, otherwise they fall into the first or last bin. Comparing against the
 * edges themselves (not dividing by the width) keeps SQL's bins identical to the edges stored in JSON.
 */
export function binIndexSql(value: string, edges: readonly number[], outer = false): string {
  const bins = edges.length - 1;
  const parts = [`CASE WHEN ${value} IS NULL THEN NULL`];
  if (outer) {
    parts.push(`WHEN ${value} < ${sqlDouble(edges[0] ?? 0)} THEN -1`);
    parts.push(`WHEN ${value} > ${sqlDouble(edges[bins] ?? 0)} THEN ${bins}`);
  }
  for (let i = 1; i < bins; i++) parts.push(`WHEN ${value} < ${sqlDouble(edges[i] ?? 0)} THEN ${i - 1}`);
  parts.push(`ELSE ${bins - 1} END`);
  return parts.join(' ');
}

/** DuckDB's `histogram()` aggregate arrives as `[{ key, value }]` (or null when it saw no value). */
export function histogramMapCounts(map: unknown, keys: readonly number[]): number[] {
  const byKey = new Map<number, number>();
  if (Array.isArray(map)) {
    for (const entry of map as { key: unknown; value: unknown }[]) byKey.set(Number(entry.key), Number(entry.value));
  }
  return keys.map((k) => byKey.get(k) ?? 0);
}

/**
 * Statistics of every column of `source`, comparable between snapshots.
 *
 * Guarantees: counts, missing, min, max, zeros, distinct counts, top-k and frequencies are exact; mean and sample
 * std are DuckDB's in double precision (parallel aggregation may change their last bits between runs); quantiles are
 * exact unless `exactQuantiles: false`, by linear interpolation between order statistics (`quantile_cont`, the
 * default of numpy and R's type 7); histograms have `histogramBins` equal-width bins from min to max. Top-k ties are
 * ordered by value (byte order of the text form). Read-only.
 *
 * `source` is spliced into SQL: pass a table name or a relation built by our own code, never user input.
 */
export async function computeStatistics(
  engine: DataEngine,
  source: string,
  options: StatisticsOptions = {},
): Promise<DatasetStatistics> {
  const topK = options.topK ?? DEFAULT_TOP_K;
  const bins = options.histogramBins ?? DEFAULT_HISTOGRAM_BINS;
  const frequencyLimit = options.frequencyLimit ?? DEFAULT_FREQUENCY_LIMIT;
  if (!(topK >= 0) || !Number.isInteger(topK)) throw new RangeError('topK must be a non-negative integer');
  if (!(frequencyLimit >= 0) || !Number.isInteger(frequencyLimit)) {
    throw new RangeError('frequencyLimit must be a non-negative integer');
  }
  histogramEdges(0, 1, bins); // validates `bins` before any query runs

  const columns = await describeSource(engine, source);
  const aggregate = await engine.rows(aggregateSql(source, columns, options.exactQuantiles ?? true));
  const agg = aggregate[0] ?? {};
  const rowCount = Number(agg['row_count'] ?? 0);

  const numericSummaries = new Map<number, NumericSummary>();
  columns.forEach((column, i) => {
    if (column.kind !== 'numeric' || Number(agg[`c${i}_count`]) === 0) return;
    const min = Number(agg[`c${i}_min`]);
    const max = Number(agg[`c${i}_max`]);
    numericSummaries.set(i, { min, max, edges: histogramEdges(min, max, bins) });
  });
  const histograms = await computeHistograms(engine, source, columns, numericSummaries);
  const categories = await computeCategories(engine, source, columns, Math.max(topK, frequencyLimit));

  const out = columns.map((column, i): ColumnStatistics => {
    const nonNull = Number(agg[`c${i}_count`] ?? 0);
    const base = {
      name: column.name,
      type: column.type,
      kind: column.kind,
      count: rowCount,
      missing: rowCount - nonNull,
    };
    const summary = numericSummaries.get(i);
    if (column.kind === 'numeric') {
      if (!summary) return base;
      const quantiles = (agg[`c${i}_q`] as unknown[]).map((value, j) => ({
        q: QUANTILES[j] ?? 0,
        value: Number(value),
      }));
      const histogram: Histogram = { edges: summary.edges, counts: histograms.get(i) ?? [] };
      return {
        ...base,
        numeric: {
          min: summary.min,
          max: summary.max,
          mean: Number(agg[`c${i}_mean`]),
          // DuckDB's stddev_samp is NULL for a single value; the record promises 0.
          std: Number(agg[`c${i}_std`] ?? 0),
          zeros: Number(agg[`c${i}_zeros`]),
          quantiles,
          histogram,
        },
      };
    }
    if (column.kind === 'timestamp') {
      if (nonNull === 0) return base;
      return { ...base, timestamp: { min: isoFromMicros(agg[`c${i}_min`]), max: isoFromMicros(agg[`c${i}_max`]) } };
    }
    const values = categories.get(i) ?? { unique: 0, values: [] };
    return {
      ...base,
      categorical: {
        unique: values.unique,
        topK: values.values.slice(0, topK),
        ...(values.unique <= frequencyLimit ? { frequencies: values.values.slice(0, values.unique) } : {}),
      },
    };
  });
  return { version: 1, rowCount, columns: out };
}

interface NumericSummary {
  readonly min: number;
  readonly max: number;
  readonly edges: number[];
}

/** One scan: row count, per-column non-null count, numeric moments and exact quantiles, timestamp bounds. */
function aggregateSql(source: string, columns: readonly SourceColumn[], exactQuantiles: boolean): string {
  const quantile = exactQuantiles ? 'quantile_cont' : 'approx_quantile';
  const select = ['count(*) AS row_count'];
  columns.forEach((column, i) => {
    const id = sqlIdentifier(column.name);
    if (column.kind === 'numeric') {
      const x = numericValueSql(column);
      select.push(
        `count(${x}) AS c${i}_count`,
        `min(${x})::DOUBLE AS c${i}_min`,
        `max(${x})::DOUBLE AS c${i}_max`,
        `avg(${x})::DOUBLE AS c${i}_mean`,
        `stddev_samp(${x})::DOUBLE AS c${i}_std`,
        `count_if(${x} = 0) AS c${i}_zeros`,
        `${quantile}(${x}, [${QUANTILES.join(', ')}])::DOUBLE[] AS c${i}_q`,
      );
    } else if (column.kind === 'timestamp') {
      // Microseconds since the epoch (UTC for TIMESTAMP WITH TIME ZONE; naive timestamps are read as UTC) avoid
      // depending on the session's time zone, which the sandbox locks.
      const ts = column.type === 'DATE' ? (agg: string) => `${agg}::TIMESTAMP` : (agg: string) => agg;
      select.push(
        `count(${id}) AS c${i}_count`,
        `epoch_us(${ts(`min(${id})`)}) AS c${i}_min`,
        `epoch_us(${ts(`max(${id})`)}) AS c${i}_max`,
      );
    } else {
      select.push(`count(${id}) AS c${i}_count`);
    }
  });
  return `SELECT ${select.join(', ')} FROM ${source}`;
}

/** One scan for every numeric column: DuckDB's `histogram()` over each column's bin index. */
async function computeHistograms(
  engine: DataEngine,
  source: string,
  columns: readonly SourceColumn[],
  summaries: ReadonlyMap<number, NumericSummary>,
): Promise<Map<number, number[]>> {
  const select: string[] = [];
  for (const [i, summary] of summaries) {
    select.push(`histogram(${binIndexSql(numericValueSql(columns[i]!), summary.edges)}) AS h${i}`);
  }
  const out = new Map<number, number[]>();
  if (select.length === 0) return out;
  const [row] = await engine.rows(`SELECT ${select.join(', ')} FROM ${source}`);
  for (const [i, summary] of summaries) {
    const keys = Array.from({ length: summary.edges.length - 1 }, (_, k) => k);
    out.set(i, histogramMapCounts(row?.[`h${i}`], keys));
  }
  return out;
}

/**
 * One statement for every categorical and boolean column: exact value counts grouped per column (on the native
 * type, cast to text after grouping), the first `keep` by count then value, each with the column's distinct count.
 * A top-N per column (ORDER BY ... LIMIT) is cheaper than ranking every group with a window: a column of 300,000
 * distinct values costs a heap of `keep` entries, not a sort.
 */
async function computeCategories(
  engine: DataEngine,
  source: string,
  columns: readonly SourceColumn[],
  keep: number,
): Promise<Map<number, { unique: number; values: ValueCount[] }>> {
  const parts: string[] = [];
  columns.forEach((column, i) => {
    if (column.kind !== 'categorical' && column.kind !== 'boolean') return;
    const id = sqlIdentifier(column.name);
    parts.push(
      `(SELECT ${i} AS col, v::VARCHAR AS txt, c, count(*) OVER () AS n
        FROM (SELECT ${id} AS v, count(*) AS c FROM ${source} WHERE ${id} IS NOT NULL GROUP BY 1)
        ORDER BY c DESC, txt LIMIT ${keep})`,
    );
  });
  const out = new Map<number, { unique: number; values: ValueCount[] }>();
  if (parts.length === 0) return out;
  const rows = await engine.rows<{ col: number; txt: string; c: number; n: number }>(
    `SELECT col, txt, c, n FROM (${parts.join(' UNION ALL ')}) ORDER BY col, c DESC, txt`,
  );
  for (const row of rows) {
    let entry = out.get(row.col);
    if (!entry) out.set(row.col, (entry = { unique: row.n, values: [] }));
    entry.values.push({ value: row.txt, count: row.c });
  }
  return out;
}

function isoFromMicros(value: unknown): string {
  const micros = Number(value);
  const date = new Date(Math.floor(micros / 1000));
  // DuckDB's ±infinity timestamps (and dates beyond JavaScript's range) have no ISO form: keep DuckDB's number.
  return Number.isNaN(date.getTime()) ? String(value) : date.toISOString();
}

/**
 * What changed between two snapshots (`before` the older): row count, per-column presence, kind, missing rate, mean
 * shift (also in units of the older standard deviation) and values that entered or left the top-k. Pure.
 */
export function compareStatistics(before: DatasetStatistics, after: DatasetStatistics): StatisticsComparison {
  const rate = (s: DatasetStatistics, c: ColumnStatistics | undefined) =>
    c && s.rowCount > 0 ? c.missing / s.rowCount : null;
  const beforeByName = new Map(before.columns.map((c) => [c.name, c]));
  const afterNames = new Set(after.columns.map((c) => c.name));
  const columns: ColumnComparison[] = after.columns.map((a) => {
    const b = beforeByName.get(a.name);
    const missingRate = { before: rate(before, b), after: rate(after, a) };
    if (!b) return { name: a.name, status: 'added', typeAfter: a.type, missingRate };
    const base = { name: a.name, typeBefore: b.type, typeAfter: a.type, missingRate };
    if (a.kind !== b.kind) return { ...base, status: 'retyped' };
    const comparison: ColumnComparison = { ...base, status: 'common' };
    if (a.numeric && b.numeric) {
      const difference = a.numeric.mean - b.numeric.mean;
      return {
        ...comparison,
        meanShift: {
          before: b.numeric.mean,
          after: a.numeric.mean,
          difference,
          inStd: b.numeric.std > 0 ? difference / b.numeric.std : null,
        },
      };
    }
    if (a.categorical && b.categorical) {
      const beforeTop = new Set(b.categorical.topK.map((v) => v.value));
      const afterTop = new Set(a.categorical.topK.map((v) => v.value));
      return {
        ...comparison,
        newTopValues: [...afterTop].filter((v) => !beforeTop.has(v)),
        vanishedTopValues: [...beforeTop].filter((v) => !afterTop.has(v)),
      };
    }
    return comparison;
  });
  for (const b of before.columns) {
    if (afterNames.has(b.name)) continue;
    columns.push({
      name: b.name,
      status: 'removed',
      typeBefore: b.type,
      missingRate: { before: rate(before, b), after: null },
    });
  }
  return {
    rowCount: {
      before: before.rowCount,
      after: after.rowCount,
      relativeChange: before.rowCount > 0 ? (after.rowCount - before.rowCount) / before.rowCount : null,
    },
    columns,
  };
}
