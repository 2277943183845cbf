/**
 * The Transform stage's pure core (TFX Transform): evaluate the label and feature expressions, split, encode the
 * label, fit the feature transform on the training split and write the prepared Parquet files. Everything is
 * set-based SQL in DuckDB (one pass to evaluate, one aggregate query, one vocabulary query, two COPYs); no row loops.
 * Uploading, lineage and retries belong to the activity that calls this.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { DataEngine } from './engine.js';
import { sqlIdentifier, sqlString } from './engine.js';
import { ExpressionError, validateExpression, type ValidatedExpression } from './expressions.js';
import { SPLIT_EVAL, SPLIT_TRAIN, SplitError, hashSplitSql, timeSplitSql, type SplitSpec } from './split.js';
import {
  fitLabelClasses,
  fitNumeric,
  fitVocabularies,
  type EvaluatedTable,
  type FeatureKind,
  type FittedFeature,
  type FittedTransform,
  type LabelTask,
  type LabelClass,
  type LabelValue,
} from './transform.js';
import { DomainError } from '../core/errors.js';

/** Most classes a classification label may have (the encoding is a list lookup per row). */
export const MAX_CLASSES = 1000;

export interface LabelSpec {
  /** Recorded in the transform; the prepared files call the encoded column `label`. */
  readonly name: string;
  readonly expression: string;
  readonly task: LabelTask;
}

export interface FeatureSpec {
  /** A column name of the prepared files: letters, digits and `_`, not starting with `__`, not `label`. */
  readonly name: string;
  readonly expression: string;
  /** Inferred when absent: numeric result types → numeric; VARCHAR and BOOLEAN → categorical. */
  readonly kind?: FeatureKind;
}

export interface PrepareOptions {
  /** Largest vocabulary per categorical feature; default 1000. */
  readonly maxCategories?: number;
  /** Fewest training rows a category needs to enter the vocabulary; default 1. */
  readonly minCategoryCount?: number;
  /** Default 'standard'. */
  readonly scaling?: 'standard' | 'none';
}

export interface PrepareSpec {
  /** A local Parquet file the engine may read. */
  readonly input: string;
  readonly label: LabelSpec;
  readonly features: readonly FeatureSpec[];
  readonly split: SplitSpec;
  readonly options?: PrepareOptions;
}

export interface LabelInfo {
  readonly name: string;
  readonly task: LabelTask;
  /** DuckDB type of the label expression. */
  readonly sourceType: string;
  /** Classification: the classes, ascending; the encoded label is the index. */
  readonly classes?: readonly LabelValue[];
  /** Classification: rows per class, in class order. */
  readonly classCounts?: { readonly train: readonly number[]; readonly eval: readonly number[] };
  /** Regression: mean and population standard deviation of the training labels. */
  readonly trainStats?: { readonly mean: number; readonly std: number };
}

export interface PreparedDataset {
  readonly train: { readonly path: string; readonly rows: number };
  readonly eval: { readonly path: string; readonly rows: number };
  /** Rows of either split dropped because the label was null (or NaN/Infinity for regression). */
  readonly droppedNullLabels: number;
  /** Input rows in neither split (null time, after `evalBefore`). */
  readonly rowsOutsideSplit: number;
  readonly transform: FittedTransform;
  readonly labelInfo: LabelInfo;
}

export type PrepareErrorCode =
  | 'invalid_spec'
  | 'input_unreadable'
  | 'invalid_expression'
  | 'unknown_column'
  | 'invalid_split'
  | 'evaluation_failed'
  | 'feature_type'
  | 'label_type'
  | 'label_null'
  | 'empty_split'
  | 'single_class'
  | 'label_classes';

/** Thrown when the data or the specification cannot be prepared; retrying will not help. `field` names the culprit. */
export class PrepareError extends DomainError {
  override readonly name = 'PrepareError';
  override readonly code: PrepareErrorCode;
  constructor(
    code: PrepareErrorCode,
    message: string,
    readonly field?: string,
    options?: ErrorOptions,
  ) {
    // A bad specification is the caller's input; anything else is what the data holds.
    super(SPEC_PROBLEMS.has(code) ? 'invalid' : 'invalid_data', message, {
      ...options,
      code,
      details: { code, field },
    });
    this.code = code;
  }
}

/** Problems of the specification rather than of the data. */
const SPEC_PROBLEMS: ReadonlySet<PrepareErrorCode> = new Set([
  'invalid_spec',
  'invalid_expression',
  'unknown_column',
  'invalid_split',
  'feature_type',
  'label_type',
]);

const nameSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'use letters, digits and _ (at most 64), not starting with a digit')
  .refine((n) => !n.startsWith('__'), 'names starting with __ are reserved');

/** The specification's schema; {@link prepareDataset} applies it first. */
export const prepareSpecSchema = z
  .strictObject({
    input: z.string().min(1),
    label: z.strictObject({
      name: nameSchema,
      expression: z.string(),
      task: z.enum(['binary', 'multiclass', 'regression']),
    }),
    features: z
      .array(
        z.strictObject({
          name: nameSchema,
          expression: z.string(),
          kind: z.enum(['numeric', 'categorical']).optional(),
        }),
      )
      .min(1)
      .max(1000),
    split: z.discriminatedUnion('kind', [
      z.strictObject({
        kind: z.literal('time'),
        column: z.string().min(1),
        trainBefore: z.string(),
        evalBefore: z.string().optional(),
      }),
      z.strictObject({
        kind: z.literal('hash'),
        key: z.string().min(1),
        evalFraction: z.number().gt(0).lt(1),
        seed: z.union([z.string().max(200), z.number().int()]).optional(),
      }),
    ]),
    options: z
      .strictObject({
        maxCategories: z.number().int().min(1).max(100_000).optional(),
        minCategoryCount: z.number().int().min(1).optional(),
        scaling: z.enum(['standard', 'none']).optional(),
      })
      .optional(),
  })
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    for (const [i, f] of spec.features.entries()) {
      const key = f.name.toLowerCase();
      if (key === 'label')
        ctx.addIssue({ code: 'custom', path: ['features', i, 'name'], message: '`label` is reserved' });
      if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['features', i, 'name'], message: 'duplicate name' });
      seen.add(key);
    }
  });

const NUMERIC_TYPE =
  /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|DECIMAL(\(\d+,\d+\))?)$/;
const CATEGORICAL_TYPE = /^(VARCHAR|BOOLEAN|DATE|TIME|TIMESTAMP.*)$/;

/**
 * Prepares a dataset for training: see the module comment and transform.ts for the exact semantics.
 *
 * Guarantees: every expression is validated before any data is read; the transform is fitted on training rows only;
 * `train.parquet` and `eval.parquet` in `outDir` hold the raw feature values (numeric as DOUBLE with null for
 * missing/NaN/Infinity, categorical as VARCHAR), in spec order, then the encoded `label` (INTEGER class index or
 * DOUBLE), rows in input order. Deterministic for the same input and spec; files are written under temporary names
 * and renamed, so a retry after a crash overwrites cleanly (idempotent).
 *
 * @param outDir a folder inside the engine's work folder (the only place it may write).
 * @throws PrepareError with a stable `code` for bad specifications and data.
 * @example
 * await prepareDataset(engine, {
 *   input: '/cache/flights.parquet',
 *   label: { name: 'delayed', expression: 'delay > 15', task: 'binary' },
 *   features: [{ name: 'hour', expression: 'hour(date)' }, { name: 'origin', expression: 'origin' }],
 *   split: { kind: 'time', column: 'date', trainBefore: '2001-03-01', evalBefore: '2001-04-01' },
 * }, path.join(engine.workDir, 'prepared'));
 */
export async function prepareDataset(engine: DataEngine, spec: PrepareSpec, outDir: string): Promise<PreparedDataset> {
  const parsed = prepareSpecSchema.safeParse(spec);
  if (!parsed.success) throw new PrepareError('invalid_spec', z.prettifyError(parsed.error));
  const { label, features, split, options } = parsed.data;
  const scaling = options?.scaling ?? 'standard';
  const out = path.resolve(outDir);
  if (out !== engine.workDir && !out.startsWith(`${engine.workDir}${path.sep}`)) {
    throw new PrepareError('invalid_spec', `outDir ${out} is outside the engine's work folder ${engine.workDir}`);
  }
  const source = `read_parquet(${sqlString(path.resolve(parsed.data.input))})`;
  const inputColumns = await guard('input_unreadable', 'input', () => describe(engine, `SELECT * FROM ${source}`));

  // 1. Validate every expression before any data is read.
  const check = (field: string, expression: string) => checkExpression(engine, field, expression, inputColumns);
  const labelExpr = await check('label', label.expression);
  const featureExprs: ValidatedExpression[] = [];
  for (const [i, f] of features.entries()) featureExprs.push(await check(`features[${i}] (${f.name})`, f.expression));
  let splitSql: string;
  if (split.kind === 'hash') {
    splitSql = hashSplitSql((await check('split.key', split.key)).sql, split.evalFraction, split.seed);
  } else {
    const column = inputColumns.find((c) => c.name.toLowerCase() === split.column.toLowerCase());
    if (!column) throw new PrepareError('unknown_column', `split.column: unknown column \`${split.column}\``, 'split');
    splitSql = await guard('invalid_split', 'split', () =>
      timeSplitSql(engine, column.name, column.type, split.trainBefore, split.evalBefore),
    );
  }

  // 2. Result types, from binding only (nothing is evaluated yet).
  const exprList = [`${labelExpr.sql} AS __label`, ...featureExprs.map((e, i) => `${e.sql} AS __f${i}`)].join(', ');
  const types = await guard('evaluation_failed', 'expressions', () =>
    describe(engine, `SELECT ${exprList} FROM ${source}`),
  );
  const labelType = types[0]!.type;
  checkLabelType(label.task, labelType);
  const kinds = features.map((f, i) => featureKind(f, types[i + 1]!.type));

  // 3. One pass: split, evaluate, cast, only on rows inside a split. Internal names start with __: feature names
  // cannot, and user expressions are evaluated a level below, where only the input's columns are visible.
  const table = sqlIdentifier(`__prepare_${randomUUID().replaceAll('-', '')}`);
  const finite = (x: string) => `CASE WHEN isfinite(CAST(${x} AS DOUBLE)) THEN CAST(${x} AS DOUBLE) END`;
  const labelFinal = label.task === 'regression' ? finite('__label') : '__label';
  const featureFinal = kinds.map((k, i) => (k === 'numeric' ? finite(`__f${i}`) : `CAST(__f${i} AS VARCHAR)`));
  const evaluated: EvaluatedTable = {
    engine,
    table,
    trainWhere: `__prepare_split = ${SPLIT_TRAIN} AND __label IS NOT NULL`,
    evalWhere: `__prepare_split = ${SPLIT_EVAL} AND __label IS NOT NULL`,
  };
  try {
    await guard('evaluation_failed', 'expressions', () =>
      engine.run(
        `CREATE TEMP TABLE ${table} AS
         SELECT __prepare_split, ${labelFinal} AS __label, ${featureFinal.map((f, i) => `${f} AS __f${i}`).join(', ')}
         FROM (SELECT __prepare_split, ${exprList}
               FROM (SELECT *, ${splitSql} AS __prepare_split FROM ${source}) WHERE __prepare_split IS NOT NULL)`,
      ),
    );

    // 4. Counts and statistics in one query; refuse data that cannot train a model.
    const stats = await readStatistics(evaluated, source, label.task, kinds);
    checkCounts(stats, label);

    // 5. Fit on the training rows: label classes, vocabularies, numeric parameters.
    const classes = label.task === 'regression' ? undefined : await fitLabelClasses(evaluated);
    const categorical = kinds.flatMap((k, i) => (k === 'categorical' ? [i] : []));
    const vocabularies = await fitVocabularies(
      evaluated,
      categorical,
      options?.maxCategories ?? 1000,
      options?.minCategoryCount ?? 1,
    );
    const fitted = features.map((f, i): FittedFeature => {
      const base = {
        name: f.name,
        expression: f.expression,
        sql: featureExprs[i]!.sql,
        sourceType: types[i + 1]!.type,
      };
      const vocabulary = vocabularies.get(i);
      if (vocabulary)
        return { ...base, kind: 'categorical', categorical: { vocabulary, unknownIndex: vocabulary.length } };
      const numeric = fitNumeric(
        stats.get(`n${i}`),
        stats.nullable(`mean${i}`),
        stats.nullable(`var${i}`),
        stats.get('train_rows'),
        scaling,
      );
      return { ...base, kind: 'numeric', numeric };
    });

    // 6. Write the splits: raw features in spec order, then the encoded label.
    const labelOut = classes ? labelEncodingSql(classes, labelType) : '__label';
    const columns = [...features.map((f, i) => `__f${i} AS ${sqlIdentifier(f.name)}`), `${labelOut} AS label`];
    fs.mkdirSync(out, { recursive: true });
    const write = async (name: string, where: string): Promise<string> => {
      const target = path.join(out, `${name}.parquet`);
      const temporary = `${target}.${randomUUID()}.tmp`;
      const query = `SELECT ${columns.join(', ')} FROM ${table} WHERE ${where}`;
      await guard('evaluation_failed', name, () =>
        engine.run(`COPY (${query}) TO ${sqlString(temporary)} (FORMAT parquet)`),
      );
      fs.renameSync(temporary, target);
      return target;
    };
    const trainPath = await write('train', evaluated.trainWhere);
    const evalPath = await write('eval', evaluated.evalWhere);

    const classValues = classes?.map((c) => c.value);
    return {
      train: { path: trainPath, rows: stats.get('train_rows') },
      eval: { path: evalPath, rows: stats.get('eval_rows') },
      droppedNullLabels: stats.get('null_labels'),
      rowsOutsideSplit: stats.get('input_rows') - stats.get('split_rows'),
      transform: {
        version: 1,
        scaling,
        features: fitted,
        label: { ...label, sql: labelExpr.sql, ...(classValues ? { classes: classValues } : {}) },
      },
      labelInfo: {
        name: label.name,
        task: label.task,
        sourceType: labelType,
        ...(classes
          ? {
              classes: classValues,
              classCounts: { train: classes.map((c) => c.train), eval: classes.map((c) => c.eval) },
            }
          : { trainStats: { mean: stats.get('label_mean'), std: stats.get('label_std') } }),
      },
    };
  } finally {
    await engine.run(`DROP TABLE IF EXISTS ${table}`);
  }
}

/**
 * SQL that maps `__label` to its class index (INTEGER). The classes are written as literals of the label's own type
 * (DuckDB's text forms cast back, which round-trip exactly), so the lookup stays a projection and keeps row order.
 */
function labelEncodingSql(classes: readonly LabelClass[], labelType: string): string {
  const list = classes.map((c) => `CAST(${sqlString(c.text)} AS ${labelType})`).join(', ');
  return `CAST(list_position([${list}], __label) - 1 AS INTEGER)`;
}

async function checkExpression(
  engine: DataEngine,
  field: string,
  expression: string,
  columns: readonly { name: string }[],
): Promise<ValidatedExpression> {
  try {
    return await validateExpression(
      engine,
      expression,
      columns.map((c) => c.name),
    );
  } catch (error) {
    if (!(error instanceof ExpressionError)) throw error;
    const code = error.code === 'unknown_column' ? 'unknown_column' : 'invalid_expression';
    throw new PrepareError(code, `${field}: ${error.message}`, field, { cause: error });
  }
}

interface Statistics {
  get(key: string): number;
  nullable(key: string): number | null;
}

/** Row counts, label statistics and the numeric features' training statistics: one aggregate query. */
async function readStatistics(
  source: EvaluatedTable,
  input: string,
  task: LabelTask,
  kinds: readonly FeatureKind[],
): Promise<Statistics> {
  const train = `FILTER (WHERE ${source.trainWhere})`;
  const aggregates = [
    `(SELECT count(*) FROM ${input}) AS input_rows`,
    'count(*) AS split_rows',
    'count(*) FILTER (WHERE __label IS NULL) AS null_labels',
    `count(*) ${train} AS train_rows`,
    `count(*) FILTER (WHERE ${source.evalWhere}) AS eval_rows`,
    ...(task === 'regression'
      ? [`avg(__label) ${train} AS label_mean`, `stddev_pop(__label) ${train} AS label_std`]
      : ['count(DISTINCT __label) AS classes', `count(DISTINCT __label) ${train} AS train_classes`]),
    ...kinds.flatMap((k, i) =>
      k === 'numeric'
        ? [
            `count(__f${i}) ${train} AS n${i}`,
            `avg(__f${i}) ${train} AS mean${i}`,
            `var_pop(__f${i}) ${train} AS var${i}`,
          ]
        : [],
    ),
  ];
  const [row] = await source.engine.rows<Record<string, number | null>>(
    `SELECT ${aggregates.join(', ')} FROM ${source.table}`,
  );
  const nullable = (key: string): number | null => {
    const value = row?.[key];
    return value === null || value === undefined ? null : Number(value);
  };
  return { nullable, get: (key) => nullable(key) ?? 0 };
}

function checkCounts(stats: Statistics, label: LabelSpec): void {
  const [trainRows, evalRows] = [stats.get('train_rows'), stats.get('eval_rows')];
  if (stats.get('split_rows') > 0 && stats.get('null_labels') === stats.get('split_rows')) {
    throw new PrepareError('label_null', `the label \`${label.expression}\` is null on every row`, 'label');
  }
  if (trainRows === 0 || evalRows === 0) {
    const counts = `${trainRows} training and ${evalRows} evaluation rows with a label`;
    throw new PrepareError('empty_split', `the split leaves ${counts}; both need rows`, 'split');
  }
  if (label.task === 'regression') return;
  if (stats.get('train_classes') < 2) {
    const what = `the label \`${label.expression}\` has a single class in the training split`;
    throw new PrepareError('single_class', `${what}; a classifier needs two`, 'label');
  }
  const classes = stats.get('classes');
  if (label.task === 'binary' && classes !== 2) {
    const what = `a binary label needs exactly 2 values; \`${label.expression}\` has ${classes}`;
    throw new PrepareError('label_classes', what, 'label');
  }
  if (classes > MAX_CLASSES) {
    const what = `a multiclass label may have at most ${MAX_CLASSES} classes; \`${label.expression}\` has ${classes}`;
    throw new PrepareError('label_classes', what, 'label');
  }
}

/** Why a label of this DuckDB type cannot serve `task`, or undefined when it can. */
export function labelTypeProblem(task: LabelTask, type: string): string | undefined {
  const numeric = NUMERIC_TYPE.test(type) || type === 'BOOLEAN';
  if (task === 'regression' ? numeric : numeric || type === 'VARCHAR') return undefined;
  return `a ${task} label cannot be of type ${type}`;
}

function checkLabelType(task: LabelTask, type: string): void {
  const problem = labelTypeProblem(task, type);
  if (problem) throw new PrepareError('label_type', problem, 'label');
}

/**
 * The kind a feature of this DuckDB type takes (its declared kind, or the one inferred from the type), or why it can
 * take none.
 */
export function resolveFeatureKind(
  feature: Pick<FeatureSpec, 'name' | 'kind'>,
  type: string,
): { kind: FeatureKind } | { problem: string } {
  const numeric = NUMERIC_TYPE.test(type);
  const inferred = numeric ? 'numeric' : type === 'VARCHAR' || type === 'BOOLEAN' ? 'categorical' : undefined;
  const kind = feature.kind ?? inferred;
  if (kind === 'numeric' && (numeric || type === 'BOOLEAN')) return { kind };
  if (kind === 'categorical' && (numeric || CATEGORICAL_TYPE.test(type))) return { kind };
  const hint = 'derive a number or a category (for example hour(column))';
  return { problem: `feature \`${feature.name}\` is ${type}${kind ? `, which cannot be ${kind}` : ''}: ${hint}` };
}

function featureKind(feature: FeatureSpec, type: string): FeatureKind {
  const resolved = resolveFeatureKind(feature, type);
  if ('problem' in resolved) throw new PrepareError('feature_type', resolved.problem, feature.name);
  return resolved.kind;
}

async function describe(engine: DataEngine, sql: string): Promise<{ name: string; type: string }[]> {
  const rows = await engine.rows<{ column_name: string; column_type: string }>(`DESCRIBE ${sql}`);
  return rows.map((r) => ({ name: r.column_name, type: r.column_type }));
}

/** Runs a step, turning DuckDB and split errors into a PrepareError with the given code. */
async function guard<T>(code: PrepareErrorCode, field: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof PrepareError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    const actual = error instanceof SplitError ? 'invalid_split' : code;
    throw new PrepareError(actual, `${field}: ${reason}`, field, { cause: error });
  }
}
