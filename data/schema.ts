/**
 * SchemaGen: a dataset schema inferred from the statistics of a first snapshot, and the explicit action that widens
 * it to accept anomalies a person has reviewed. Pure functions: the caller stores the result and records who
 * accepted what and why.
 */
import type { Anomaly, ColumnSchema, DatasetSchema, DatasetStatistics, ValidationThresholds } from './types.js';

/** The documented defaults of `ValidationThresholds`. */
export const DEFAULT_THRESHOLDS: ValidationThresholds = Object.freeze({
  unseenCategoryFraction: 0.01,
  outOfRangeFraction: 0.01,
  missingRateIncrease: 0,
  jensenShannon: 0.1,
  lInfinity: 0.1,
});

/** Largest categorical domain a schema keeps; a column with more distinct values gets no domain check. */
export const DEFAULT_MAX_DOMAIN_SIZE = 1000;

export interface SchemaInferenceOptions {
  /**
   * Added to the observed missing fraction to form `maxMissingFraction` (absolute, in fraction points; the result is
   * capped at 1). Default 0.01: a column seen complete tolerates up to 1 % missing values. Pass 0 for TFDV's strict
   * behaviour.
   */
  readonly missingMargin?: number;
  /** Columns with at most this many distinct values get their full value set as domain. Default 1000. */
  readonly maxDomainSize?: number;
  /**
   * Widens the observed numeric range by this fraction of its span on each side (0.1 on [0, 100] gives [-10, 110]).
   * Default 0: the observed range; the `outOfRangeFraction` threshold already tolerates a few values beyond it.
   */
  readonly rangeMargin?: number;
  /** Overrides of the default thresholds. */
  readonly thresholds?: Partial<ValidationThresholds>;
  /** Per-feature overrides; unset fields fall back to the (overridden) defaults. */
  readonly featureThresholds?: Readonly<Record<string, Partial<ValidationThresholds>>>;
}

/**
 * Infers a schema from statistics (usually of the first training snapshot). Per column: DuckDB type and kind;
 * `required` when the column has rows and no missing value; `maxMissingFraction` = observed missing fraction +
 * `missingMargin` (capped at 1); for categorical columns (not booleans, whose type already bounds them) a domain of
 * every observed value, sorted, when the statistics carry complete frequencies and there are between 1 and
 * `maxDomainSize` of them (a column never seen with a value gets no domain); for numeric columns the observed [min, max] widened by `rangeMargin`. Timestamps get no
 * range (time moves on). Deterministic and pure.
 */
export function inferSchema(statistics: DatasetStatistics, options: SchemaInferenceOptions = {}): DatasetSchema {
  const missingMargin = options.missingMargin ?? 0.01;
  const maxDomainSize = options.maxDomainSize ?? DEFAULT_MAX_DOMAIN_SIZE;
  const rangeMargin = options.rangeMargin ?? 0;
  if (!(missingMargin >= 0)) throw new RangeError('missingMargin must be non-negative');
  if (!(rangeMargin >= 0)) throw new RangeError('rangeMargin must be non-negative');
  const columns = statistics.columns.map((c): ColumnSchema => {
    const missingFraction = statistics.rowCount > 0 ? c.missing / statistics.rowCount : 0;
    const column: ColumnSchema = {
      name: c.name,
      kind: c.kind,
      type: c.type,
      required: statistics.rowCount > 0 && c.missing === 0,
      maxMissingFraction: Math.min(1, missingFraction + missingMargin),
    };
    const frequencies = c.categorical?.frequencies;
    if (c.kind === 'categorical' && frequencies && frequencies.length > 0 && frequencies.length <= maxDomainSize) {
      return { ...column, domain: frequencies.map((f) => f.value).sort(compareText) };
    }
    if (c.kind === 'numeric' && c.numeric) {
      const pad = (c.numeric.max - c.numeric.min) * rangeMargin;
      return { ...column, range: { min: c.numeric.min - pad, max: c.numeric.max + pad } };
    }
    return column;
  });
  return {
    version: 1,
    columns,
    thresholds: { ...DEFAULT_THRESHOLDS, ...options.thresholds },
    featureThresholds: { ...options.featureThresholds },
  };
}

/** The thresholds that apply to `column`: its overrides, falling back to the schema's defaults field by field. */
export function thresholdsFor(schema: DatasetSchema, column: string): ValidationThresholds {
  const own = Object.hasOwn(schema.featureThresholds, column) ? schema.featureThresholds[column] : undefined;
  return { ...schema.thresholds, ...own };
}

/**
 * Widens a schema so that the data that raised `anomalies` passes: the explicit, reviewed action (TFDV's "update
 * the schema"). Returns a new schema; the input is not modified. Per anomaly type:
 * - `unseen_categories`: the unseen values join the domain; when they were truncated in the anomaly or the domain
 *   would exceed `maxDomainSize`, the domain is dropped (no domain check) instead.
 * - `out_of_range`: the range grows to include the observed range.
 * - `missing_rate`: `maxMissingFraction` rises to the observed fraction.
 * - `all_null`: the column stops being required and may be entirely missing.
 * - `type_changed`: the column takes the observed type and kind; its domain and range are dropped.
 * - `missing_column`: the column leaves the schema (with its feature thresholds).
 * - `drift`: the feature's threshold for that metric rises to the observed value, so the same comparison passes;
 *   that stays until edited, which is usually less useful than moving the reference snapshot forward.
 * - `empty_dataset`: nothing to widen; ignored.
 */
export function acceptAnomalies(
  schema: DatasetSchema,
  anomalies: readonly Anomaly[],
  options: { readonly maxDomainSize?: number } = {},
): DatasetSchema {
  const maxDomainSize = options.maxDomainSize ?? DEFAULT_MAX_DOMAIN_SIZE;
  const columns = new Map(schema.columns.map((c) => [c.name, c]));
  const featureThresholds: Record<string, Partial<ValidationThresholds>> = { ...schema.featureThresholds };
  for (const anomaly of anomalies) {
    const name = anomaly.column;
    const column = name === null ? undefined : columns.get(name);
    if (name === null || !column) continue;
    switch (anomaly.type) {
      case 'unseen_categories': {
        if (!column.domain) break;
        const values = anomaly.unseenValues ?? [];
        const domain = new Set([...column.domain, ...values.map((v) => v.value)]);
        const complete = anomaly.unseenDistinct === undefined || anomaly.unseenDistinct <= values.length;
        const { domain: _old, ...withoutDomain } = column;
        columns.set(
          name,
          complete && domain.size <= maxDomainSize
            ? { ...withoutDomain, domain: [...domain].sort(compareText) }
            : withoutDomain,
        );
        break;
      }
      case 'out_of_range': {
        if (!column.range || !anomaly.observedRange) break;
        const range = {
          min: Math.min(column.range.min, anomaly.observedRange.min),
          max: Math.max(column.range.max, anomaly.observedRange.max),
        };
        columns.set(name, { ...column, range });
        break;
      }
      case 'missing_rate':
        if (anomaly.value !== undefined) {
          columns.set(name, {
            ...column,
            maxMissingFraction: Math.min(1, Math.max(column.maxMissingFraction, anomaly.value)),
          });
        }
        break;
      case 'all_null':
        columns.set(name, { ...column, required: false, maxMissingFraction: 1 });
        break;
      case 'type_changed':
        if (anomaly.observedType && anomaly.observedKind) {
          // The old type's domain or range says nothing about values of the new type.
          const { domain: _domain, range: _range, ...rest } = column;
          columns.set(name, { ...rest, type: anomaly.observedType, kind: anomaly.observedKind });
        }
        break;
      case 'missing_column':
        columns.delete(name);
        delete featureThresholds[name];
        break;
      case 'drift': {
        if (anomaly.value === undefined) break;
        const key = column.kind === 'numeric' ? 'jensenShannon' : 'lInfinity';
        featureThresholds[name] = { ...featureThresholds[name], [key]: anomaly.value };
        break;
      }
      case 'empty_dataset':
        break;
    }
  }
  return { ...schema, columns: [...columns.values()], featureThresholds };
}

/** Code-unit order, the same on every machine (localeCompare is not). */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
