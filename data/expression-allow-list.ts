/**
 * What a user SQL expression may contain (expressions.ts walks DuckDB's syntax tree against these lists): the row-wise
 * functions and operators, the scalar types of casts and constants, the comparisons, and the parts of the SELECT
 * around the expression; with the reason given for a refused function.
 */
import { NUMERIC_TYPE_NAMES } from './engine.js';

/**
 * Row-wise scalar functions an expression may call. Values say which arguments must be constants (by position):
 * a constant date part keeps the expression's type fixed, and a constant pattern keeps regular expressions out of
 * the data's control.
 */
export const ALLOWED_FUNCTIONS: Readonly<Record<string, readonly number[]>> = {
  // date and time parts
  hour: [],
  minute: [],
  dayofweek: [],
  isodow: [],
  dayofyear: [],
  day: [],
  month: [],
  year: [],
  quarter: [],
  week: [],
  date_part: [0],
  date_trunc: [0],
  // math
  abs: [],
  ln: [],
  log: [],
  log2: [],
  log10: [],
  sqrt: [],
  exp: [],
  pow: [],
  power: [],
  round: [],
  floor: [],
  ceil: [],
  greatest: [],
  least: [],
  sign: [],
  // null handling (coalesce and ifnull parse as the COALESCE operator)
  nullif: [],
  // strings
  lower: [],
  upper: [],
  trim: [],
  length: [],
  substring: [],
  substr: [],
  concat: [],
  left: [],
  right: [],
  replace: [],
  starts_with: [],
  contains: [],
  regexp_matches: [1, 2],
};

/** Infix operators that parse as functions: arithmetic, string concatenation and LIKE/ILIKE (constant pattern). */
export const ALLOWED_OPERATORS: Readonly<Record<string, readonly number[]>> = {
  '+': [],
  '-': [],
  '*': [],
  '/': [],
  '//': [],
  '%': [],
  '^': [],
  '**': [],
  '||': [],
  '~~': [1],
  '!~~': [1],
  '~~*': [1],
  '!~~*': [1],
};

/** Scalar types a CAST may produce and a constant may have. */
export const SCALAR_TYPES = new Set([
  'BOOLEAN',
  ...NUMERIC_TYPE_NAMES,
  'DECIMAL',
  'VARCHAR',
  'DATE',
  'TIME',
  'TIMESTAMP',
  'TIMESTAMP WITH TIME ZONE',
  'INTERVAL',
]);

export const COMPARISONS = new Set([
  'COMPARE_EQUAL',
  'COMPARE_NOTEQUAL',
  'COMPARE_LESSTHAN',
  'COMPARE_GREATERTHAN',
  'COMPARE_LESSTHANOREQUALTO',
  'COMPARE_GREATERTHANOREQUALTO',
  'COMPARE_DISTINCT_FROM',
  'COMPARE_NOT_DISTINCT_FROM',
]);

const AGGREGATES = new Set([
  'sum',
  'avg',
  'mean',
  'count',
  'count_star',
  'min',
  'max',
  'median',
  'mode',
  'stddev',
  'stddev_pop',
  'stddev_samp',
  'variance',
  'var_pop',
  'var_samp',
  'quantile',
  'quantile_cont',
  'quantile_disc',
  'string_agg',
  'list',
  'array_agg',
  'first',
  'last',
  'any_value',
  'arg_max',
  'arg_min',
  'bool_and',
  'bool_or',
  'approx_count_distinct',
  'histogram',
]);

/** Top-level fields of the one SELECT node we accept, with the value each must have (an empty clause). */
export const SELECT_NODE_KEYS = new Set([
  'type',
  'modifiers',
  'cte_map',
  'select_list',
  'from_table',
  'where_clause',
  'group_expressions',
  'group_sets',
  'aggregate_handling',
  'having',
  'sample',
  'qualify',
]);

/** A readable reason for a refused function, with the category of the usual offenders. */
export function functionRefusal(name: string, isOperator: boolean): string {
  if (isOperator) return `operator \`${name}\` is not allowed`;
  if (AGGREGATES.has(name))
    return `aggregate function \`${name}\` is not allowed: an expression computes one value per row`;
  if (/^(read_|parquet_|glob$|sniff_csv|query|query_table|load_extension)/.test(name)) {
    return `function \`${name}\` reads files or tables and is not allowed`;
  }
  if (/^(current_setting|getenv|getvariable|duckdb_|pragma_|which_secret)/.test(name)) {
    return `function \`${name}\` reads settings or the environment and is not allowed`;
  }
  return `function \`${name}\` is not allowed (see ALLOWED_FUNCTIONS: date parts, math, null handling, strings)`;
}
