/**
 * User SQL expressions (labels, features, split keys), validated before DuckDB evaluates them.
 *
 * The expression is parsed by DuckDB itself (`json_serialize_sql` of `SELECT <expr>\nFROM t`) and the syntax tree is
 * walked with an allow-list (expression-allow-list.ts): one statement, one select item, no clauses, and only column
 * references, constants, comparisons, AND/OR/NOT, IS NULL, IN over constants, BETWEEN, CASE, casts to scalar types
 * and the row-wise functions in {@link ALLOWED_FUNCTIONS}. Everything else (table functions, subqueries, settings,
 * aggregates, windows, lambdas, parameters, several statements) is refused. The text that callers splice into SQL is DuckDB's own rendering of the
 * accepted tree (re-parsed and checked again), never the user's text, so comments and quoting tricks cannot change
 * what runs.
 *
 * This is the first wall; the {@link DataEngine} sandbox is the second: an expression that slipped through still
 * cannot read or write files outside the engine's folders, open connections or change settings.
 */
import type { DataEngine } from './engine.js';
import { DomainError } from '../core/errors.js';
import {
  ALLOWED_FUNCTIONS,
  ALLOWED_OPERATORS,
  COMPARISONS,
  functionRefusal,
  SCALAR_TYPES,
  SELECT_NODE_KEYS,
} from './expression-allow-list.js';

/** Longest accepted expression, in characters. */
export const MAX_EXPRESSION_LENGTH = 1000;

/** Why an expression was refused; stable strings that callers may match on. */
export type ExpressionErrorCode = 'empty' | 'too_long' | 'syntax' | 'unknown_column' | 'not_allowed';

/** Thrown when a user expression is not a single, allowed, row-wise SQL expression over the dataset's columns. */
export class ExpressionError extends DomainError {
  override readonly name = 'ExpressionError';
  override readonly code: ExpressionErrorCode;
  constructor(
    readonly expression: string,
    readonly reason: string,
    code: ExpressionErrorCode = 'not_allowed',
  ) {
    super('invalid', `expression \`${expression}\` rejected: ${reason}`, { code });
    this.code = code;
  }
}

/** An expression that passed validation. */
export interface ValidatedExpression {
  /** The expression as the user wrote it. */
  readonly expression: string;
  /**
   * DuckDB's canonical rendering of the accepted syntax tree, for example `(delay > 15)`: safe to place in a select
   * list over a relation that has the dataset's columns. Column references are unqualified.
   */
  readonly sql: string;
  /** Dataset columns it reads (their names as the dataset spells them), in order of first use. */
  readonly columns: readonly string[];
  /** Named functions it calls (lower case, canonical names: `extract` is `date_part`), in order of first use. */
  readonly functions: readonly string[];
}

/**
 * Validates one expression against the dataset's columns.
 *
 * Guarantees: the result's `sql` is a single row-wise scalar expression that reads only `columns`, calls only
 * {@link ALLOWED_FUNCTIONS} and has no side effects; it was re-parsed and re-checked after normalisation. Pure apart
 * from two parse-only queries on `engine` (nothing is read or written).
 *
 * @param columns the dataset's column names; matched case-insensitively, as DuckDB resolves identifiers.
 * @throws ExpressionError with a readable reason when the expression is refused.
 * @example
 * const { sql, columns } = await validateExpression(engine, 'hour(date)', ['date', 'delay']);
 * // sql: '"hour"(date)', columns: ['date']
 */
export async function validateExpression(
  engine: DataEngine,
  expression: string,
  columns: readonly string[],
): Promise<ValidatedExpression> {
  if (expression.trim() === '') throw new ExpressionError(expression, 'the expression is empty', 'empty');
  if (expression.length > MAX_EXPRESSION_LENGTH) {
    throw new ExpressionError(
      expression,
      `the expression has ${expression.length} characters; at most ${MAX_EXPRESSION_LENGTH} are allowed`,
      'too_long',
    );
  }
  // Control characters have no business in an expression and NUL could truncate the text in C code.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(expression)) {
    throw new ExpressionError(expression, 'the expression contains control characters', 'syntax');
  }
  const known = new Map(columns.map((c) => [c.toLowerCase(), c]));
  try {
    const first = await parseSelectItem(engine, expression);
    checkTree(first.item, known);
    const normalized = await render(engine, first.json);
    // Check what will actually run: DuckDB's rendering, parsed and walked again.
    const second = await parseSelectItem(engine, normalized);
    const walk = checkTree(second.item, known);
    return { expression, sql: normalized, columns: walk.columns, functions: walk.functions };
  } catch (error) {
    if (error instanceof Rejection) throw new ExpressionError(expression, error.message, error.code);
    throw error;
  }
}

/**
 * Validates a record of named expressions (see {@link validateExpression}); fails on the first refused one, whose
 * error names the expression.
 */
export async function validateExpressions<K extends string>(
  engine: DataEngine,
  expressions: Readonly<Record<K, string>>,
  columns: readonly string[],
): Promise<Record<K, ValidatedExpression>> {
  const out = {} as Record<K, ValidatedExpression>;
  for (const name of Object.keys(expressions) as K[]) {
    out[name] = await validateExpression(engine, expressions[name], columns);
  }
  return out;
}

/** A refusal inside the walk; turned into an ExpressionError naming the expression. */
class Rejection extends Error {
  constructor(
    message: string,
    readonly code: ExpressionErrorCode = 'not_allowed',
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isEmptyArray(value: unknown): boolean {
  return Array.isArray(value) && value.length === 0;
}

/** Parses `SELECT <expression>\nFROM t` with DuckDB and returns the one select item, after checking the query shape. */
async function parseSelectItem(engine: DataEngine, expression: string): Promise<{ json: string; item: unknown }> {
  // The newline ends a trailing `--` comment, so a comment cannot swallow the FROM clause.
  const sql = `SELECT ${expression}\nFROM t`;
  const [row] = await engine.rows<{ ast: string }>('SELECT CAST(json_serialize_sql($1::VARCHAR) AS VARCHAR) AS ast', [
    sql,
  ]);
  if (!row) throw new Error('json_serialize_sql returned no row');
  const parsed: unknown = JSON.parse(row.ast);
  if (!isObject(parsed)) throw new Rejection('DuckDB returned no syntax tree', 'syntax');
  if (parsed.error !== false) {
    const message = typeof parsed.error_message === 'string' ? parsed.error_message : 'unparseable';
    const hint = expression.includes(';') ? ' (one expression only: `;` cannot start another statement)' : '';
    throw new Rejection(`not a valid SQL expression: ${message}${hint}`, 'syntax');
  }
  const statements = parsed.statements;
  if (!Array.isArray(statements) || statements.length !== 1) {
    const n = Array.isArray(statements) ? statements.length : 0;
    throw new Rejection(`one expression expected, but it reads as ${n} statements`);
  }
  const statement: unknown = statements[0];
  if (!isObject(statement) || !isEmptyArray(statement.named_param_map))
    throw new Rejection('parameters are not allowed');
  const node = statement.node;
  if (!isObject(node) || node.type !== 'SELECT_NODE') throw new Rejection('not a plain expression');
  return { json: row.ast, item: checkSelectNode(node) };
}

/** Checks that the SELECT around the expression has nothing but the one item and `FROM t`. */
function checkSelectNode(node: Json): unknown {
  for (const key of Object.keys(node)) {
    if (!SELECT_NODE_KEYS.has(key)) throw new Rejection(`unsupported query part \`${key}\``);
  }
  if (!isEmptyArray(node.modifiers)) throw new Rejection('ORDER BY, LIMIT and DISTINCT are not allowed');
  if (!isObject(node.cte_map) || !isEmptyArray(node.cte_map.map)) throw new Rejection('WITH clauses are not allowed');
  const from = node.from_table;
  if (
    !isObject(from) ||
    from.type !== 'BASE_TABLE' ||
    from.table_name !== 't' ||
    from.schema_name !== '' ||
    from.catalog_name !== '' ||
    from.alias !== '' ||
    from.sample !== null ||
    from.at_clause !== null ||
    !isEmptyArray(from.column_name_alias)
  ) {
    throw new Rejection('FROM, JOIN and table functions are not allowed: write only the expression');
  }
  if (node.where_clause !== null) throw new Rejection('WHERE is not allowed');
  if (!isEmptyArray(node.group_expressions) || !isEmptyArray(node.group_sets)) {
    throw new Rejection('GROUP BY is not allowed');
  }
  if (node.having !== null) throw new Rejection('HAVING is not allowed');
  if (node.qualify !== null) throw new Rejection('QUALIFY is not allowed');
  if (node.sample !== null) throw new Rejection('USING SAMPLE is not allowed');
  if (node.aggregate_handling !== 'STANDARD_HANDLING') throw new Rejection('GROUP BY ALL is not allowed');
  const list = node.select_list;
  if (!Array.isArray(list) || list.length !== 1) {
    const n = Array.isArray(list) ? list.length : 0;
    throw new Rejection(`exactly one expression expected, found ${n} (separated by commas)`);
  }
  return list[0];
}

/** Renders the accepted tree back to SQL with DuckDB and strips the `SELECT ... FROM t` around it. */
async function render(engine: DataEngine, json: string): Promise<string> {
  const [row] = await engine.rows<{ sql: string }>('SELECT json_deserialize_sql($1::JSON) AS sql', [json]);
  const sql = row?.sql ?? '';
  const prefix = 'SELECT ';
  const suffix = ' FROM t';
  if (!sql.startsWith(prefix) || !sql.endsWith(suffix))
    throw new Error(`unexpected rendering of an expression: ${sql}`);
  return sql.slice(prefix.length, sql.length - suffix.length);
}

interface WalkResult {
  readonly columns: string[];
  readonly functions: string[];
}

/**
 * Walks one expression tree with the allow-list. Every node that has a `class` must be visited by a rule: a node
 * type this code does not know (a new DuckDB feature) is refused rather than skipped.
 */
function checkTree(item: unknown, known: ReadonlyMap<string, string>): WalkResult {
  const result: WalkResult = { columns: [], functions: [] };
  let visited = 0;

  const constant = (node: unknown): boolean => {
    if (!isObject(node)) return false;
    if (node.class === 'CONSTANT') return true;
    return node.class === 'CAST' && constant(node.child);
  };

  const visit = (node: unknown): void => {
    if (!isObject(node) || typeof node.class !== 'string') throw new Rejection('unsupported syntax');
    visited++;
    if (typeof node.alias === 'string' && node.alias !== '') {
      throw new Rejection(`unexpected name \`${node.alias}\`: an expression is one value, without AS or a second word`);
    }
    switch (node.class) {
      case 'COLUMN_REF': {
        const names = node.column_names;
        if (!Array.isArray(names) || names.length !== 1 || typeof names[0] !== 'string') {
          throw new Rejection(
            `qualified names and struct fields are not allowed (\`${Array.isArray(names) ? names.map(String).join('.') : '?'}\`)`,
          );
        }
        const column = known.get(names[0].toLowerCase());
        if (column === undefined) {
          const list = [...known.values()].slice(0, 30).join(', ');
          throw new Rejection(`unknown column \`${names[0]}\` (the dataset has: ${list})`, 'unknown_column');
        }
        if (!result.columns.includes(column)) result.columns.push(column);
        return;
      }
      case 'CONSTANT': {
        const value = node.value;
        const type = isObject(value) && isObject(value.type) ? value.type : undefined;
        if (!type || !(type.id === 'NULL' || SCALAR_TYPES.has(String(type.id)))) {
          throw new Rejection('only scalar constants are allowed');
        }
        return;
      }
      case 'COMPARISON':
        if (!COMPARISONS.has(String(node.type))) throw new Rejection(`comparison ${String(node.type)} is not allowed`);
        visit(node.left);
        visit(node.right);
        return;
      case 'CONJUNCTION':
        if (node.type !== 'CONJUNCTION_AND' && node.type !== 'CONJUNCTION_OR')
          throw new Rejection('unsupported AND/OR');
        children(node).forEach(visit);
        return;
      case 'OPERATOR':
        operator(node);
        return;
      case 'BETWEEN':
        visit(node.input);
        visit(node.lower);
        visit(node.upper);
        return;
      case 'CASE': {
        const checks = node.case_checks;
        if (!Array.isArray(checks) || checks.length === 0) throw new Rejection('CASE needs a WHEN');
        for (const check of checks) {
          if (!isObject(check)) throw new Rejection('unsupported CASE');
          visit(check.when_expr);
          visit(check.then_expr);
        }
        visit(node.else_expr);
        return;
      }
      case 'CAST':
        castType(node.cast_type);
        visit(node.child);
        return;
      case 'FUNCTION':
        func(node);
        return;
      case 'WINDOW':
        throw new Rejection('window functions (OVER) are not allowed: an expression computes one value per row');
      case 'SUBQUERY':
        throw new Rejection('subqueries are not allowed');
      case 'STAR':
        throw new Rejection('`*` and COLUMNS(...) are not allowed: name the columns');
      case 'PARAMETER':
        throw new Rejection('parameters are not allowed');
      case 'LAMBDA':
        throw new Rejection('lambda functions are not allowed');
      case 'COLLATE':
        throw new Rejection('COLLATE is not allowed');
      default:
        throw new Rejection(`${node.class.toLowerCase()} expressions are not allowed`);
    }
  };

  const operator = (node: Json): void => {
    const kids = children(node);
    switch (node.type) {
      case 'OPERATOR_NOT':
      case 'OPERATOR_IS_NULL':
      case 'OPERATOR_IS_NOT_NULL':
      case 'OPERATOR_COALESCE':
        kids.forEach(visit);
        return;
      case 'COMPARE_IN':
      case 'COMPARE_NOT_IN': {
        const [subject, ...list] = kids;
        visit(subject);
        for (const item of list) {
          if (!constant(item)) throw new Rejection('IN accepts a list of constants only');
          visit(item);
        }
        return;
      }
      default:
        throw new Rejection(`operator ${String(node.type)} is not allowed`);
    }
  };

  const func = (node: Json): void => {
    const name = typeof node.function_name === 'string' ? node.function_name.toLowerCase() : '';
    if ((node.schema !== '' && node.schema !== 'main') || node.catalog !== '') {
      throw new Rejection(`function \`${String(node.schema)}.${name}\` is not allowed`);
    }
    const table = node.is_operator === true ? ALLOWED_OPERATORS : ALLOWED_FUNCTIONS;
    // hasOwn: a name like `constructor` must not find Object.prototype's members.
    const rules = Object.hasOwn(table, name) ? table[name] : undefined;
    if (rules === undefined) throw new Rejection(functionRefusal(name, node.is_operator === true));
    if (node.filter !== null) throw new Rejection('FILTER is not allowed');
    if (!isObject(node.order_bys) || !isEmptyArray(node.order_bys.orders))
      throw new Rejection('ORDER BY is not allowed');
    if (node.distinct !== false) throw new Rejection('DISTINCT is not allowed');
    if (node.export_state !== false) throw new Rejection('EXPORT_STATE is not allowed');
    const kids = children(node);
    for (const position of rules) {
      const arg = kids[position];
      if (arg !== undefined && !constant(arg)) {
        throw new Rejection(`argument ${position + 1} of \`${name}\` must be a constant`);
      }
    }
    if (node.is_operator !== true && !result.functions.includes(name)) result.functions.push(name);
    kids.forEach(visit);
  };

  visit(item);
  const total = countClassNodes(item);
  if (total !== visited) throw new Rejection('unsupported syntax (a part of the expression was not recognised)');
  return result;
}

function children(node: Json): unknown[] {
  if (!Array.isArray(node.children)) throw new Rejection('unsupported syntax');
  return node.children;
}

function castType(type: unknown): void {
  const id = isObject(type) ? String(type.id) : '';
  const info = isObject(type) ? type.type_info : undefined;
  const scalar =
    SCALAR_TYPES.has(id) &&
    (info === null ||
      (id === 'DECIMAL' && isObject(info) && info.type === 'DECIMAL_TYPE_INFO' && info.extension_info === null));
  if (!scalar) {
    const name = isObject(info) && typeof info.name === 'string' ? info.name : id;
    throw new Rejection(`cast to ${name} is not allowed (scalar types only: ${[...SCALAR_TYPES].join(', ')})`);
  }
}

/** Counts the expression nodes (objects with a `class`) anywhere in a tree. */
function countClassNodes(value: unknown): number {
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + countClassNodes(v), 0);
  if (!isObject(value)) return 0;
  let n = typeof value.class === 'string' ? 1 : 0;
  for (const v of Object.values(value)) n += countClassNodes(v);
  return n;
}
