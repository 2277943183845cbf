/**
 * ExampleValidator: checks a snapshot against its schema and, for drift, against the statistics of the previous
 * training snapshot. Counts that need the rows (values outside a domain or range, a histogram on the previous
 * snapshot's edges) are computed by DuckDB: one scan for all numeric columns and one grouped scan per categorical
 * column.
 */
import { type DataEngine, sqlIdentifier, sqlString } from './engine.js';
import { histogramDrift, lInfinityDistance, lInfinityDistanceOfCounts } from './drift.js';
import { thresholdsFor } from './schema.js';
import {
  binIndexSql,
  describeSource,
  histogramMapCounts,
  numericValueSql,
  type SourceColumn,
  sqlDouble,
} from './statistics.js';
import type {
  Anomaly,
  ColumnSchema,
  ColumnStatistics,
  DatasetSchema,
  DatasetStatistics,
  DriftMeasure,
  ValidationReport,
  ValueCount,
} from './types.js';

export interface ValidationInput {
  readonly schema: DatasetSchema;
  /** Statistics of the snapshot being validated (from `computeStatistics` on the same source). */
  readonly statistics: DatasetStatistics;
  /** Statistics of the previous training snapshot: the reference for drift. Without it, no drift is measured. */
  readonly previous?: DatasetStatistics;
}

/** Unseen values an anomaly lists, most frequent first. */
const MAX_UNSEEN_VALUES = 1000;

/** What a categorical column's query found. */
interface CategoryCounts {
  readonly unseenRows: number;
  readonly unseenDistinct: number;
  readonly unseenValues: ValueCount[];
  /** Counts in this snapshot of the previous snapshot's tracked values (absent values: 0). */
  readonly tracked: Map<string, number>;
  readonly total: number;
}

/**
 * Validates the snapshot `source` against `schema`, and its drift against `previous`.
 *
 * Checks, per schema column, in order (a column that fails one of the first three is not checked further):
 * `missing_column` (absent from the data); `type_changed` (its kind differs, e.g. a numeric column that arrives as
 * VARCHAR; a type change within a kind, such as INTEGER to BIGINT, is accepted); `all_null` (required, rows present,
 * every value missing); `missing_rate` (missing fraction > `maxMissingFraction` + `missingRateIncrease`);
 * `unseen_categories` (fraction of non-missing values outside the domain > `unseenCategoryFraction`);
 * `out_of_range` (fraction of non-missing values outside the range > `outOfRangeFraction`); and `drift` against
 * `previous`: numeric features by the Jensen-Shannon divergence between the previous histogram and this snapshot
 * counted on the previous edges plus an underflow and an overflow bin (the previous snapshot has no mass there, so
 * values beyond its range count fully as drift); categorical and boolean features by the L-infinity distance of
 * value frequencies, exact when both snapshots carry complete frequencies, otherwise over the previous snapshot's
 * known values (its complete frequencies or its top-k) plus one bucket for every other value. Missing values take no
 * part in drift (the missing rate is checked on its own). An empty dataset is one `empty_dataset` anomaly (schema
 * presence and types are still checked). Every comparison is strict: a value equal to its threshold passes.
 * Columns in the data but not in the schema are ignored. `ok` is true exactly when there is no anomaly; each drift
 * measure above its threshold is also an anomaly. Read-only and deterministic for the same inputs.
 *
 * Throws when `statistics` do not describe `source` (a column of the data missing from them, or of another type).
 */
export async function validateDataset(
  engine: DataEngine,
  source: string,
  input: ValidationInput,
): Promise<ValidationReport> {
  const { schema, statistics, previous } = input;
  const actual = new Map((await describeSource(engine, source)).map((c) => [c.name, c]));
  const stats = new Map(statistics.columns.map((c) => [c.name, c]));
  for (const column of actual.values()) {
    if (stats.get(column.name)?.type !== column.type) {
      throw new Error(`The statistics do not describe ${source}: column "${column.name}" (${column.type}) differs`);
    }
  }
  const previousStats = new Map((previous?.columns ?? []).map((c) => [c.name, c]));
  const rowCount = statistics.rowCount;
  const anomalies: Anomaly[] = [];
  const drift: DriftMeasure[] = [];
  if (rowCount === 0) anomalies.push({ column: null, type: 'empty_dataset', message: 'The dataset has no rows.' });

  // Columns whose data is checked, after the presence and type checks.
  const checked: { schema: ColumnSchema; actual: SourceColumn; stats: ColumnStatistics; nonNull: number }[] = [];
  for (const column of schema.columns) {
    const found = actual.get(column.name);
    const columnStats = stats.get(column.name);
    if (!found || !columnStats) {
      anomalies.push({
        column: column.name,
        type: 'missing_column',
        message: `Column "${column.name}" is missing: the schema expects a ${describeType(column)} column.`,
      });
      continue;
    }
    if (found.kind !== column.kind) {
      anomalies.push({
        column: column.name,
        type: 'type_changed',
        message: `Column "${column.name}" changed type: the schema expects ${describeType(column)}, the data has ${describeType(found)}.`,
        observedType: found.type,
        observedKind: found.kind,
      });
      continue;
    }
    if (rowCount === 0) continue;
    const nonNull = rowCount - columnStats.missing;
    if (column.required && nonNull === 0) {
      anomalies.push({
        column: column.name,
        type: 'all_null',
        message: `Column "${column.name}" is required but all ${count(rowCount)} values are missing.`,
        value: 1,
        threshold: column.maxMissingFraction,
      });
      continue;
    }
    const limits = thresholdsFor(schema, column.name);
    const missingRate = columnStats.missing / rowCount;
    const allowance = column.maxMissingFraction + limits.missingRateIncrease;
    if (missingRate > allowance) {
      anomalies.push({
        column: column.name,
        type: 'missing_rate',
        message: `Column "${column.name}" has ${percent(missingRate)} missing values (${count(columnStats.missing)} of ${count(rowCount)} rows), above the allowance of ${percent(allowance)}.`,
        value: missingRate,
        threshold: allowance,
      });
    }
    if (nonNull > 0) checked.push({ schema: column, actual: found, stats: columnStats, nonNull });
  }

  const numeric = checked.filter((c) => c.actual.kind === 'numeric');
  const numericCounts = await countNumeric(
    engine,
    source,
    numeric.map((c) => ({ column: c.actual, range: c.schema.range, previous: previousStats.get(c.schema.name) })),
  );
  const categorical = new Map<string, CategoryCounts>();
  for (const c of checked) {
    if (c.actual.kind !== 'categorical' && c.actual.kind !== 'boolean') continue;
    const prev = previousStats.get(c.schema.name)?.categorical;
    const exact = prev?.frequencies !== undefined && c.stats.categorical?.frequencies !== undefined;
    const tracked = prev && !exact ? (prev.frequencies ?? prev.topK).map((v) => v.value) : [];
    if (!c.schema.domain && tracked.length === 0) continue;
    categorical.set(c.schema.name, await countCategories(engine, source, c.actual, c.schema.domain, tracked));
  }

  for (const c of checked) {
    const name = c.schema.name;
    const limits = thresholdsFor(schema, name);
    const prev = previousStats.get(name);
    if (c.actual.kind === 'numeric') {
      const counts = numericCounts.get(name);
      const range = c.schema.range;
      if (range && counts && counts.outOfRange / c.nonNull > limits.outOfRangeFraction) {
        const fraction = counts.outOfRange / c.nonNull;
        const observed = c.stats.numeric ? { min: c.stats.numeric.min, max: c.stats.numeric.max } : undefined;
        anomalies.push({
          column: name,
          type: 'out_of_range',
          message:
            `Column "${name}" has ${percent(fraction)} of its values (${count(counts.outOfRange)} of ${count(c.nonNull)}) outside [${num(range.min)}, ${num(range.max)}], above the threshold of ${percent(limits.outOfRangeFraction)}` +
            (observed ? `; observed range [${num(observed.min)}, ${num(observed.max)}].` : '.'),
          value: fraction,
          threshold: limits.outOfRangeFraction,
          ...(observed ? { observedRange: observed } : {}),
        });
      }
      const reference = prev?.kind === 'numeric' ? prev.numeric?.histogram : undefined;
      if (reference && counts?.histogram && reference.counts.some((n) => n > 0)) {
        const value = histogramDrift(reference, counts.histogram);
        drift.push(measure(name, 'jensen_shannon', value, limits.jensenShannon));
      }
      continue;
    }
    const counts = categorical.get(name);
    const domain = c.schema.domain;
    if (domain && counts && counts.unseenRows / c.nonNull > limits.unseenCategoryFraction) {
      const fraction = counts.unseenRows / c.nonNull;
      const examples = counts.unseenValues
        .slice(0, 5)
        .map((v) => `"${v.value}" (${count(v.count)})`)
        .join(', ');
      anomalies.push({
        column: name,
        type: 'unseen_categories',
        message: `Column "${name}" has ${percent(fraction)} of its values (${count(counts.unseenRows)} of ${count(c.nonNull)}, ${count(counts.unseenDistinct)} distinct) outside its domain of ${count(domain.length)} values, above the threshold of ${percent(limits.unseenCategoryFraction)}; most frequent: ${examples}.`,
        value: fraction,
        threshold: limits.unseenCategoryFraction,
        unseenValues: counts.unseenValues,
        unseenDistinct: counts.unseenDistinct,
      });
    }
    const prevCategorical = prev && prev.kind === c.actual.kind ? prev.categorical : undefined;
    const reference = prevCategorical ? (prevCategorical.frequencies ?? prevCategorical.topK) : undefined;
    if (!prevCategorical || !reference) continue;
    const referenceTotal = (prev?.count ?? 0) - (prev?.missing ?? 0);
    if (referenceTotal <= 0) continue;
    const current = c.stats.categorical?.frequencies;
    let value: number;
    if (prevCategorical.frequencies && current) {
      value = lInfinityDistance(toRecord(prevCategorical.frequencies), toRecord(current));
    } else if (counts) {
      // Bucketed: the previous snapshot's known values, then one bucket for everything else on both sides.
      const known = reference.map((v) => v.count);
      const currentKnown = reference.map((v) => counts.tracked.get(v.value) ?? 0);
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      value = lInfinityDistanceOfCounts(
        [...known, referenceTotal - sum(known)],
        [...currentKnown, counts.total - sum(currentKnown)],
      );
    } else continue;
    drift.push(measure(name, 'l_infinity', value, limits.lInfinity));
  }

  for (const d of drift) {
    if (!d.drifted) continue;
    const metric = d.metric === 'jensen_shannon' ? 'Jensen-Shannon divergence' : 'L-infinity distance';
    anomalies.push({
      column: d.column,
      type: 'drift',
      message: `Column "${d.column}" drifted: ${metric} ${num(d.value)} from the previous snapshot, above the threshold of ${num(d.threshold)}.`,
      value: d.value,
      threshold: d.threshold,
    });
  }
  const order = new Map(schema.columns.map((c, i) => [c.name, i]));
  const position = (a: Anomaly) => (a.column === null ? -1 : (order.get(a.column) ?? Infinity));
  anomalies.sort((a, b) => position(a) - position(b)); // stable: per column, in the order checked
  return { version: 1, ok: anomalies.length === 0, rowCount, anomalies, drift };
}

function measure(column: string, metric: DriftMeasure['metric'], value: number, threshold: number): DriftMeasure {
  return { column, metric, value, threshold, drifted: value > threshold };
}

interface NumericCounts {
  readonly outOfRange: number;
  readonly histogram?: { underflow: number; counts: number[]; overflow: number };
}

/** One scan for every numeric column: values outside the schema's range, and a histogram on the previous edges. */
async function countNumeric(
  engine: DataEngine,
  source: string,
  columns: readonly {
    column: SourceColumn;
    range: ColumnSchema['range'];
    previous: ColumnStatistics | undefined;
  }[],
): Promise<Map<string, NumericCounts>> {
  const select: string[] = [];
  columns.forEach(({ column, range, previous }, i) => {
    const x = numericValueSql(column);
    if (range) select.push(`count_if(${x} < ${sqlDouble(range.min)} OR ${x} > ${sqlDouble(range.max)}) AS r${i}`);
    const edges = previous?.kind === 'numeric' ? previous.numeric?.histogram.edges : undefined;
    if (edges) select.push(`histogram(${binIndexSql(x, edges, true)}) AS h${i}`);
  });
  const out = new Map<string, NumericCounts>();
  if (select.length === 0) return out;
  const [row = {}] = await engine.rows(`SELECT ${select.join(', ')} FROM ${source}`);
  columns.forEach(({ column, previous }, i) => {
    const edges = previous?.kind === 'numeric' ? previous.numeric?.histogram.edges : undefined;
    let histogram: NumericCounts['histogram'];
    if (edges) {
      const bins = edges.length - 1;
      const all = histogramMapCounts(
        row[`h${i}`],
        Array.from({ length: bins + 2 }, (_, k) => k - 1),
      );
      histogram = { underflow: all[0] ?? 0, counts: all.slice(1, bins + 1), overflow: all[bins + 1] ?? 0 };
    }
    out.set(column.name, { outOfRange: Number(row[`r${i}`] ?? 0), ...(histogram ? { histogram } : {}) });
  });
  return out;
}

/**
 * One grouped scan of a categorical column: rows and distinct values outside `domain` (with the most frequent of
 * them), and this snapshot's counts of the `tracked` values. Grouping first keeps the domain tests to one per
 * distinct value; the domain and tracked lists are joined as tables (hash joins), so large lists stay cheap.
 */
async function countCategories(
  engine: DataEngine,
  source: string,
  column: SourceColumn,
  domain: readonly string[] | undefined,
  tracked: readonly string[],
): Promise<CategoryCounts> {
  const id = sqlIdentifier(column.name);
  const list = (values: readonly string[]) => `[${values.map(sqlString).join(', ')}]::VARCHAR[]`;
  const unseen = domain ? `v NOT IN (SELECT unnest(${list(domain)}))` : 'false';
  const rows = await engine.rows<{ part: number; v: string | null; c: number; n: number; d: number }>(
    `WITH g AS (SELECT v::VARCHAR AS v, c FROM (SELECT ${id} AS v, count(*) AS c FROM ${source} WHERE ${id} IS NOT NULL GROUP BY 1)),
          f AS (SELECT v, c, ${unseen} AS unseen, v IN (SELECT unnest(${list(tracked)})) AS tracked FROM g)
     SELECT 0 AS part, NULL AS v, coalesce(sum(c), 0)::BIGINT AS c, coalesce(sum(c) FILTER (WHERE unseen), 0)::BIGINT AS n,
            count(*) FILTER (WHERE unseen) AS d FROM f
     UNION ALL SELECT 1, v, c, 0, 0 FROM f WHERE tracked
     UNION ALL (SELECT 2, v, c, 0, 0 FROM f WHERE unseen ORDER BY c DESC, v LIMIT ${MAX_UNSEEN_VALUES})
     ORDER BY part`,
  );
  const summary = rows.find((r) => r.part === 0);
  return {
    total: Number(summary?.c ?? 0),
    unseenRows: Number(summary?.n ?? 0),
    unseenDistinct: Number(summary?.d ?? 0),
    unseenValues: rows.filter((r) => r.part === 2).map((r) => ({ value: r.v ?? '', count: r.c })),
    tracked: new Map(rows.filter((r) => r.part === 1).map((r) => [r.v ?? '', r.c])),
  };
}

function toRecord(values: readonly ValueCount[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v.value] = v.count;
  return out;
}

function describeType(column: { type: string; kind: string }): string {
  return column.kind === column.type.toLowerCase() ? column.type : `${column.type} (${column.kind})`;
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** A fraction as a percentage with up to 2 decimals (0.0101 → "1.01%"). */
function percent(fraction: number): string {
  return `${Number((fraction * 100).toFixed(2))}%`;
}

/** A number with at most 4 significant decimals, without trailing zeros. */
function num(x: number): string {
  return Number.isInteger(x) ? count(x) : String(Number(x.toPrecision(4)));
}

/**
 * A Markdown report of a validation: the verdict, the anomalies (column, type, message) and the drift measures.
 * Deterministic; meant to be stored as an artifact next to the report's JSON.
 */
export function formatValidationReport(report: ValidationReport, options: { readonly title?: string } = {}): string {
  const title = options.title ?? 'Data validation';
  const drifted = report.drift.filter((d) => d.drifted).length;
  const lines = [
    `# ${title}: ${report.ok ? 'passed' : 'FAILED'}`,
    '',
    `${count(report.rowCount)} rows; ${report.anomalies.length} ${report.anomalies.length === 1 ? 'anomaly' : 'anomalies'}; ${report.drift.length} drift ${report.drift.length === 1 ? 'check' : 'checks'}, ${drifted} above threshold.`,
    '',
    '## Anomalies',
    '',
  ];
  if (report.anomalies.length === 0) lines.push('None.');
  else {
    lines.push('| Column | Anomaly | Details |', '| --- | --- | --- |');
    for (const a of report.anomalies)
      lines.push(`| ${cell(a.column ?? '(dataset)')} | ${a.type} | ${cell(a.message)} |`);
  }
  lines.push('', '## Drift', '');
  if (report.drift.length === 0) lines.push('Not measured (no previous snapshot, or no comparable column).');
  else {
    lines.push('| Column | Metric | Value | Threshold | Drifted |', '| --- | --- | ---: | ---: | --- |');
    for (const d of report.drift) {
      const metric = d.metric === 'jensen_shannon' ? 'Jensen-Shannon' : 'L-infinity';
      lines.push(
        `| ${cell(d.column)} | ${metric} | ${d.value.toFixed(4)} | ${d.threshold} | ${d.drifted ? 'yes' : 'no'} |`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Markdown table cell text: pipes escaped, line breaks flattened. */
function cell(text: string): string {
  return text.replaceAll('|', '\\|').replace(/\r?\n/g, ' ');
}
