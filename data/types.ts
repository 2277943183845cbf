/**
 * The data plane's records: what the statistics, schema, validation and preparation stages produce. They are
 * stored as JSON artifacts in S3 (never passed through Temporal), so they may be large; keep them plain data.
 */

/** How a column is treated by the stages. */
export type ColumnKind = 'numeric' | 'categorical' | 'timestamp' | 'boolean';

export interface Histogram {
  /** Bin edges, ascending; `counts[i]` counts values in [edges[i], edges[i+1]) (the last bin is closed). */
  readonly edges: readonly number[];
  readonly counts: readonly number[];
}

export interface NumericStatistics {
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  /** Sample standard deviation; 0 for fewer than two values. */
  readonly std: number;
  readonly zeros: number;
  /** Quantiles at 1, 5, 25, 50, 75, 95, 99 %. */
  readonly quantiles: readonly { readonly q: number; readonly value: number }[];
  readonly histogram: Histogram;
}

export interface CategoricalStatistics {
  /** Distinct non-null values (exact). */
  readonly unique: number;
  /** The most frequent values, most frequent first (ties by value). */
  readonly topK: readonly ValueCount[];
  /**
   * Every distinct value with its count, in `topK`'s order, when `unique` is at most the statistics' frequency limit
   * (default 1000); absent above it. Schema inference takes a categorical domain from it, and drift compares exact
   * frequencies when both snapshots have it.
   */
  readonly frequencies?: readonly ValueCount[];
}

/** A value (in its text form: `true`/`false` for booleans) and the number of rows holding it. */
export interface ValueCount {
  readonly value: string;
  readonly count: number;
}

export interface TimestampStatistics {
  /** ISO 8601. */
  readonly min: string;
  readonly max: string;
}

export interface ColumnStatistics {
  readonly name: string;
  /** DuckDB's type name (BIGINT, DOUBLE, VARCHAR, TIMESTAMP, ...). */
  readonly type: string;
  readonly kind: ColumnKind;
  /** Rows (nulls included). */
  readonly count: number;
  /** Null values; in FLOAT/DOUBLE columns NaN and ±Infinity count as missing too (they have no place in a histogram). */
  readonly missing: number;
  /** Numeric columns with at least one value. */
  readonly numeric?: NumericStatistics;
  /** Categorical and boolean columns. */
  readonly categorical?: CategoricalStatistics;
  /** Timestamp and date columns with at least one value. */
  readonly timestamp?: TimestampStatistics;
}

export interface DatasetStatistics {
  readonly version: 1;
  readonly rowCount: number;
  readonly columns: readonly ColumnStatistics[];
}

export interface ColumnSchema {
  readonly name: string;
  readonly kind: ColumnKind;
  readonly type: string;
  /** A required column may not be all null and must be present. */
  readonly required: boolean;
  /** Largest accepted fraction of missing values (the observed rate plus a margin, at inference). */
  readonly maxMissingFraction: number;
  /** Categorical: the known values. */
  readonly domain?: readonly string[];
  /** Numeric: the accepted range. */
  readonly range?: { readonly min: number; readonly max: number };
}

/** Thresholds of validation; per-feature overrides fall back to the defaults. */
export interface ValidationThresholds {
  /** Fraction of rows with a category outside the domain above which it is an anomaly. Default 0.01. */
  readonly unseenCategoryFraction: number;
  /** Fraction of numeric values outside the range above which it is an anomaly. Default 0.01. */
  readonly outOfRangeFraction: number;
  /** Increase of the missing rate over the schema's allowance that is an anomaly. Default 0 (allowance is final). */
  readonly missingRateIncrease: number;
  /** Jensen-Shannon divergence (base 2, in [0, 1]) of numeric features above which it is drift. Default 0.1. */
  readonly jensenShannon: number;
  /** L-infinity distance of categorical frequencies above which it is drift. Default 0.1. */
  readonly lInfinity: number;
}

export interface DatasetSchema {
  readonly version: 1;
  readonly columns: readonly ColumnSchema[];
  readonly thresholds: ValidationThresholds;
  readonly featureThresholds: Readonly<Record<string, Partial<ValidationThresholds>>>;
}

export type AnomalyType =
  | 'missing_column'
  | 'type_changed'
  | 'all_null'
  | 'missing_rate'
  | 'unseen_categories'
  | 'out_of_range'
  | 'drift'
  | 'empty_dataset';

export interface Anomaly {
  readonly column: string | null;
  readonly type: AnomalyType;
  /** One readable sentence: what was expected and what was found. */
  readonly message: string;
  /** The measured quantity the threshold applies to (a fraction, a divergence). */
  readonly value?: number;
  readonly threshold?: number;
  /** `type_changed`: the type and kind the column arrived with. */
  readonly observedType?: string;
  readonly observedKind?: ColumnKind;
  /** `unseen_categories`: the most frequent values outside the domain (at most 1000), most frequent first. */
  readonly unseenValues?: readonly ValueCount[];
  /** `unseen_categories`: how many distinct values lie outside the domain (may exceed `unseenValues.length`). */
  readonly unseenDistinct?: number;
  /** `out_of_range`: the smallest and largest value observed in this snapshot. */
  readonly observedRange?: { readonly min: number; readonly max: number };
}

export interface DriftMeasure {
  readonly column: string;
  readonly metric: 'jensen_shannon' | 'l_infinity';
  readonly value: number;
  readonly threshold: number;
  readonly drifted: boolean;
}

export interface ValidationReport {
  readonly version: 1;
  readonly ok: boolean;
  readonly rowCount: number;
  readonly anomalies: readonly Anomaly[];
  readonly drift: readonly DriftMeasure[];
}

/** What changed between two statistics snapshots (`before` is the older one); see `compareStatistics`. */
export interface StatisticsComparison {
  readonly rowCount: {
    readonly before: number;
    readonly after: number;
    /** (after - before) / before; null when `before` is 0. */
    readonly relativeChange: number | null;
  };
  /** The columns of `after`, in its order, then those only in `before` (status `removed`). */
  readonly columns: readonly ColumnComparison[];
}

export interface ColumnComparison {
  readonly name: string;
  /** `retyped`: present in both with a different kind; `common`: same kind (the DuckDB type may still differ). */
  readonly status: 'common' | 'added' | 'removed' | 'retyped';
  readonly typeBefore?: string;
  readonly typeAfter?: string;
  /** Missing fraction of the rows; null where the column is absent or the snapshot empty. */
  readonly missingRate: { readonly before: number | null; readonly after: number | null };
  /** Numeric in both: the means and their difference, also in units of the older standard deviation (null if 0). */
  readonly meanShift?: {
    readonly before: number;
    readonly after: number;
    readonly difference: number;
    readonly inStd: number | null;
  };
  /** Categorical in both: values that entered or left the top-k. */
  readonly newTopValues?: readonly string[];
  readonly vanishedTopValues?: readonly string[];
}
