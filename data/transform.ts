/**
 * The fitted preprocessing of a prepared dataset (TFX Transform's output): its record, its reference implementation
 * ({@link applyTransform}, pure TypeScript, no DuckDB at run time) and the set-based SQL that fits it (used by
 * prepare.ts).
 *
 * The Transform stage writes RAW feature values (after the SQL expressions, before imputation and scaling) and this
 * record; the model graph applies the record, so serving and training cannot disagree. {@link applyTransform} is the
 * executable definition of the semantics below: the ONNX export must reproduce it, and trainers and tests may use it.
 *
 * Semantics (version 1):
 * - Numeric feature: the raw value is a DOUBLE; `null`, NaN and ±Infinity are missing. Missing → `imputeValue` (the
 *   training mean of the observed values). Output: one column, `(value - mean) / std`. With scaling `'standard'`,
 *   `mean` is the training mean and `std` the population standard deviation of the training values AFTER imputation
 *   (what scikit-learn's SimpleImputer(mean) + StandardScaler fit), and 1 when that is 0 or undefined. With scaling
 *   `'none'`, `mean` = 0 and `std` = 1. A feature with no observed training value has imputeValue 0, mean 0, std 1.
 * - Categorical feature: the raw value is a string (DuckDB's `CAST(value AS VARCHAR)`). The vocabulary holds the most
 *   frequent training values (at most `maxCategories`, each seen at least `minCategoryCount` times), ordered by
 *   count descending, then value ascending (DuckDB's byte order). A value's index is its position in the vocabulary;
 *   unseen values AND missing values (null) share `unknownIndex` = `vocabulary.length`. Output: one-hot over
 *   `vocabulary.length + 1` columns, vocabulary order first and the unknown bucket last.
 * - Column order of the matrix: features in the order of `features`, each expanded as above (see {@link columnNames}).
 */
// Type only: trainers and serving import this module without loading DuckDB.
import type { DataEngine } from './engine.js';

/** How a feature is encoded. */
export type FeatureKind = 'numeric' | 'categorical';

/** The learning task, which fixes the label's encoding. */
export type LabelTask = 'binary' | 'multiclass' | 'regression';

/** A class of a classification label, as the label expression produced it. */
export type LabelValue = string | number | boolean;

/** Parameters of a numeric feature, fitted on the training split. */
export interface NumericTransform {
  /** Replaces a missing value (null, NaN, ±Infinity). */
  readonly imputeValue: number;
  readonly mean: number;
  /** Never 0. */
  readonly std: number;
}

/** Parameters of a categorical feature, fitted on the training split. */
export interface CategoricalTransform {
  /** Known values, most frequent first; a value's position is its index. */
  readonly vocabulary: readonly string[];
  /** Index of unseen and missing values: always `vocabulary.length`. */
  readonly unknownIndex: number;
}

interface FittedFeatureBase {
  readonly name: string;
  /** The expression as the user wrote it. */
  readonly expression: string;
  /** The validated SQL that was evaluated (see expressions.ts). */
  readonly sql: string;
  /** DuckDB's type of the expression's result before the stage's cast (DOUBLE for numeric, VARCHAR for categorical). */
  readonly sourceType: string;
}

export interface FittedNumericFeature extends FittedFeatureBase {
  readonly kind: 'numeric';
  readonly numeric: NumericTransform;
}

export interface FittedCategoricalFeature extends FittedFeatureBase {
  readonly kind: 'categorical';
  readonly categorical: CategoricalTransform;
}

export type FittedFeature = FittedNumericFeature | FittedCategoricalFeature;

export interface FittedLabel {
  readonly name: string;
  readonly expression: string;
  readonly sql: string;
  readonly task: LabelTask;
  /**
   * Classification: the classes in ascending order; the encoded label is the index in this list (binary: 0 and 1).
   * Absent for regression (the label is the value as a DOUBLE).
   */
  readonly classes?: readonly LabelValue[];
}

/** The fitted preprocessing, stored as JSON next to the prepared dataset. */
export interface FittedTransform {
  readonly version: 1;
  readonly scaling: 'standard' | 'none';
  readonly features: readonly FittedFeature[];
  readonly label: FittedLabel;
}

/** A dense, row-major model input matrix. */
export interface FeatureMatrix {
  /** `rows * columns` values; row r, column c at `r * columns + c`. */
  readonly data: Float64Array;
  readonly rows: number;
  readonly columns: number;
  /** One name per column (see {@link columnNames}). */
  readonly columnNames: readonly string[];
}

/** Marks the unknown bucket's column: `origin=<unknown>`. */
export const UNKNOWN_CATEGORY_LABEL = '<unknown>';

/**
 * Names of the matrix columns, in order: a numeric feature's name; for a categorical feature `name=value` per
 * vocabulary entry, then `name=<unknown>`.
 */
export function columnNames(transform: FittedTransform): string[] {
  const names: string[] = [];
  for (const feature of transform.features) {
    if (feature.kind === 'numeric') names.push(feature.name);
    else {
      for (const value of feature.categorical.vocabulary) names.push(`${feature.name}=${value}`);
      names.push(`${feature.name}=${UNKNOWN_CATEGORY_LABEL}`);
    }
  }
  return names;
}

/**
 * Applies a fitted transform to raw feature rows (keyed by feature name; extra keys are ignored) and returns the
 * model's input matrix. Pure and deterministic: the same transform and rows always give the same matrix, bit for
 * bit (plain float64 arithmetic, `(value - mean) / std`).
 *
 * Numeric inputs may be numbers, bigints or booleans (1/0); `null`, `undefined`, NaN and ±Infinity are missing.
 * Categorical inputs are matched as strings: strings as they are, numbers, bigints and booleans through `String()`
 * (which agrees with DuckDB's VARCHAR cast for integers and booleans); `null` and `undefined` are missing.
 *
 * @throws TypeError when a value has a type the feature cannot take (a string for a numeric feature, an object).
 */
export function applyTransform(
  transform: FittedTransform,
  rows: readonly Readonly<Record<string, unknown>>[],
): FeatureMatrix {
  const names = columnNames(transform);
  const width = names.length;
  const data = new Float64Array(rows.length * width);
  const plan = planColumns(transform);
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    const base = r * width;
    for (const step of plan) {
      const raw = row[step.name];
      if (step.kind === 'numeric') {
        const value = numericValue(step.name, raw);
        const x = value === null ? step.imputeValue : value;
        data[base + step.offset] = (x - step.mean) / step.std;
      } else {
        const key = categoryValue(step.name, raw);
        const index = key === null ? step.unknownIndex : (step.index.get(key) ?? step.unknownIndex);
        data[base + step.offset + index] = 1;
      }
    }
  }
  return { data, rows: rows.length, columns: width, columnNames: names };
}

type Step =
  | { kind: 'numeric'; name: string; offset: number; imputeValue: number; mean: number; std: number }
  | { kind: 'categorical'; name: string; offset: number; index: Map<string, number>; unknownIndex: number };

function planColumns(transform: FittedTransform): Step[] {
  const steps: Step[] = [];
  let offset = 0;
  for (const feature of transform.features) {
    if (feature.kind === 'numeric') {
      steps.push({ kind: 'numeric', name: feature.name, offset, ...feature.numeric });
      offset += 1;
    } else {
      const { vocabulary, unknownIndex } = feature.categorical;
      if (unknownIndex !== vocabulary.length) {
        throw new TypeError(`feature ${feature.name}: unknownIndex must equal the vocabulary's length`);
      }
      steps.push({
        kind: 'categorical',
        name: feature.name,
        offset,
        index: new Map(vocabulary.map((value, i) => [value, i])),
        unknownIndex,
      });
      offset += vocabulary.length + 1;
    }
  }
  return steps;
}

function numericValue(feature: string, raw: unknown): number | null {
  if (raw === null || raw === undefined) return null;
  if (typeof raw === 'number') return Number.isFinite(raw) ? raw : null;
  if (typeof raw === 'bigint') return Number(raw);
  if (typeof raw === 'boolean') return raw ? 1 : 0;
  throw new TypeError(`feature ${feature} is numeric; got ${typeof raw}`);
}

function categoryValue(feature: string, raw: unknown): string | null {
  if (raw === null || raw === undefined) return null;
  if (typeof raw === 'string') return raw;
  if (typeof raw === 'number' || typeof raw === 'bigint' || typeof raw === 'boolean') return String(raw);
  throw new TypeError(`feature ${feature} is categorical; got ${typeof raw}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Fitting (the Transform stage): set-based SQL over the table of evaluated rows that prepare.ts builds.

/**
 * The Transform stage's table of evaluated rows: feature `i` in column `__f<i>` (DOUBLE or VARCHAR), the label in
 * `__label`; `trainWhere` and `evalWhere` select the rows of each split that have a label.
 */
export interface EvaluatedTable {
  readonly engine: DataEngine;
  /** Quoted table name. */
  readonly table: string;
  readonly trainWhere: string;
  readonly evalWhere: string;
}

/**
 * A numeric feature's parameters from its training statistics: mean imputation, then standardisation with the
 * statistics of the imputed column. The mean is unchanged by imputation and the population variance shrinks by
 * observed/total (imputed values sit at the mean), which is what SimpleImputer(mean) + StandardScaler fit.
 *
 * @param observed non-missing training values; `mean` and `variance` (population) are theirs; `total` training rows.
 */
export function fitNumeric(
  observed: number,
  mean: number | null,
  variance: number | null,
  total: number,
  scaling: 'standard' | 'none',
): NumericTransform {
  if (observed === 0 || mean === null || !Number.isFinite(mean)) return { imputeValue: 0, mean: 0, std: 1 };
  if (scaling === 'none') return { imputeValue: mean, mean: 0, std: 1 };
  const std = Math.sqrt(((variance ?? 0) * observed) / total);
  return { imputeValue: mean, mean, std: Number.isFinite(std) && std > 0 ? std : 1 };
}

/**
 * Vocabularies of the categorical features `indexes`, on the training rows, in one query: values seen at least
 * `minCount` times, most frequent first, ties by value (DuckDB's byte order), at most `max` per feature.
 */
export async function fitVocabularies(
  source: EvaluatedTable,
  indexes: readonly number[],
  max: number,
  minCount: number,
): Promise<Map<number, string[]>> {
  const vocabularies = new Map<number, string[]>(indexes.map((i) => [i, []]));
  if (indexes.length === 0) return vocabularies;
  const branches = indexes.map(
    (i) =>
      `SELECT ${i} AS feature, __f${i} AS value, count(*) AS n FROM ${source.table}
       WHERE ${source.trainWhere} AND __f${i} IS NOT NULL GROUP BY __f${i}`,
  );
  const rows = await source.engine.rows<{ feature: number; value: string }>(
    `SELECT feature, value FROM (
       SELECT feature, value, row_number() OVER (PARTITION BY feature ORDER BY n DESC, value ASC) AS rank
       FROM (${branches.join(' UNION ALL ')}) WHERE n >= ${minCount}
     ) WHERE rank <= ${max} ORDER BY feature, rank`,
  );
  for (const row of rows) vocabularies.get(row.feature)?.push(row.value);
  return vocabularies;
}

/** A class of a classification label, with its text form (DuckDB's VARCHAR cast) and rows per split. */
export interface LabelClass {
  readonly value: LabelValue;
  readonly text: string;
  readonly train: number;
  readonly eval: number;
}

/** The label's classes over both splits, ascending (DuckDB's order of the label's type). */
export async function fitLabelClasses(source: EvaluatedTable): Promise<LabelClass[]> {
  const rows = await source.engine.rows<{ value: unknown; text: string; train: number; eval: number }>(
    `SELECT __label AS value, CAST(__label AS VARCHAR) AS text,
            count(*) FILTER (WHERE ${source.trainWhere}) AS train, count(*) FILTER (WHERE ${source.evalWhere}) AS eval
     FROM ${source.table} WHERE __label IS NOT NULL GROUP BY __label ORDER BY __label`,
  );
  return rows.map((r) => ({
    // Plain JSON values for the record; other types (DECIMAL, HUGEINT) are kept as their text.
    value:
      typeof r.value === 'string' || typeof r.value === 'number' || typeof r.value === 'boolean' ? r.value : r.text,
    text: r.text,
    train: r.train,
    eval: r.eval,
  }));
}
