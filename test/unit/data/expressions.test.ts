import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlString } from '../../../data/engine.js';
import {
  ExpressionError,
  MAX_EXPRESSION_LENGTH,
  validateExpression,
  validateExpressions,
  type ExpressionErrorCode,
} from '../../../data/expressions.js';

const COLUMNS = ['date', 'delay', 'distance', 'origin', 'destination', 'x', 'a'] as const;

let tmp: string;
let engine: DataEngine;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'expressions-test-'));
  engine = await DataEngine.open({ workDir: path.join(tmp, 'work') });
  await engine.run(`CREATE TABLE t AS SELECT * FROM (VALUES
    (TIMESTAMP '2001-01-01 07:30:00', 20, 500, 'ORD', 'SFO', -1.5, NULL),
    (TIMESTAMP '2001-01-06 18:05:00', 3, 0, 'SFO', 'ORD', 2.0, 4)
  ) v(${COLUMNS.join(', ')})`);
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

async function rejection(expression: string, columns: readonly string[] = COLUMNS): Promise<ExpressionError> {
  try {
    await validateExpression(engine, expression, columns);
  } catch (error) {
    expect(error).toBeInstanceOf(ExpressionError);
    return error as ExpressionError;
  }
  throw new Error(`expected \`${expression}\` to be rejected`);
}

describe('validateExpression accepts row-wise expressions', () => {
  const accepted: [expression: string, columns: string[], row0: unknown][] = [
    ['delay > 15', ['delay'], true],
    ['hour(date)', ['date'], 7],
    ['dayofweek(date)', ['date'], 1],
    ['distance', ['distance'], 500],
    ['origin', ['origin'], 'ORD'],
    ["CASE WHEN x > 0 THEN 'a' ELSE 'b' END", ['x'], 'b'],
    ['coalesce(a, 0)', ['a'], 0],
    ['CAST(x AS DOUBLE)', ['x'], -1.5],
    ['ln(distance + 1)', ['distance'], Math.log(501)],
    ['extract(hour from date)', ['date'], 7],
    ["date_part('minute', date)", ['date'], 30],
    ["date_trunc('day', date) = DATE '2001-01-01'", ['date'], true],
    ['if(delay > 15, 1, 0)', ['delay'], 1],
    ["origin IN ('ORD', 'SFO')", ['origin'], true],
    ['delay BETWEEN 10 AND 30 AND NOT (x IS NULL)', ['delay', 'x'], true],
    ["regexp_matches(origin, '^O')", ['origin'], true],
    ["lower(origin) || '-' || upper(destination)", ['origin', 'destination'], 'ord-SFO'],
    ['round(greatest(abs(x), sqrt(4)), 1)', ['x'], 2],
    ['nullif(delay, 20)', ['delay'], null],
    ['Delay * 2', ['delay'], 40],
    ['delay > 15 -- a trailing comment cannot swallow anything', ['delay'], true],
  ];

  it.each(accepted)('%s', async (expression, columns, row0) => {
    const validated = await validateExpression(engine, expression, COLUMNS);
    expect(validated.expression).toBe(expression);
    expect(validated.columns).toEqual(columns);
    // The normalised SQL is what runs; it computes what the user wrote.
    const [row] = await engine.rows<{ v: unknown }>(`SELECT ${validated.sql} AS v FROM t ORDER BY date LIMIT 1`);
    const value = row?.v instanceof Date ? row.v.toISOString() : row?.v;
    if (typeof row0 === 'number') expect(value).toBeCloseTo(row0, 12);
    else expect(value).toEqual(row0);
  });

  it('returns DuckDB-normalised SQL and the functions it calls', async () => {
    await expect(validateExpression(engine, 'delay>15', COLUMNS)).resolves.toMatchObject({ sql: '(delay > 15)' });
    const extract = await validateExpression(engine, 'extract(hour from date) + hour(date)', COLUMNS);
    expect(extract.functions).toEqual(['date_part', 'hour']);
    const quoted = await validateExpression(engine, "origin = 'it''s'", COLUMNS);
    expect(quoted.sql).toBe("(origin = 'it''s')");
  });

  it('names dataset columns as the dataset spells them', async () => {
    const validated = await validateExpression(engine, 'DISTANCE + "Delay"', ['Distance', 'delay']);
    expect(validated.columns).toEqual(['Distance', 'delay']);
  });

  it('validates a record of named expressions', async () => {
    const validated = await validateExpressions(engine, { label: 'delay > 15', hour: 'hour(date)' }, COLUMNS);
    expect(validated.label.columns).toEqual(['delay']);
    expect(validated.hour.sql).toContain('hour');
    await expect(validateExpressions(engine, { ok: 'delay', bad: 'sum(delay)' }, COLUMNS)).rejects.toThrow(
      /sum\(delay\)/,
    );
  });
});

describe('validateExpression refuses everything else, with a readable reason', () => {
  const hostile: [expression: string, code: ExpressionErrorCode, reason: RegExp][] = [
    ["read_csv('/etc/passwd')", 'not_allowed', /`read_csv` reads files/],
    ["(SELECT * FROM read_csv('/etc/passwd'))", 'not_allowed', /subqueries are not allowed/],
    ["1; COPY t TO '/tmp/x.csv'", 'syntax', /not a valid SQL expression.*`;`/],
    ["1); ATTACH '/tmp/x.db' AS x; SELECT (1", 'syntax', /not a valid SQL expression/],
    ['INSTALL httpfs', 'not_allowed', /unexpected name `httpfs`/],
    ["load_extension('x')", 'not_allowed', /`load_extension`/],
    ["current_setting('threads')", 'not_allowed', /`current_setting` reads settings/],
    ["getenv('HOME')", 'not_allowed', /`getenv` reads settings or the environment/],
    ['(SET threads=1)', 'syntax', /not a valid SQL expression/],
    ['sum(delay)', 'not_allowed', /aggregate function `sum`/],
    ['row_number() OVER ()', 'not_allowed', /window functions/],
    ['unknown_col > 1', 'unknown_column', /unknown column `unknown_col` \(the dataset has: date, delay/],
    ["'a' || (select 1)", 'not_allowed', /subqueries are not allowed/],
    ['delay > 15 FROM t; SELECT 1 --', 'not_allowed', /one expression expected, but it reads as 2 statements/],
    ["delay FROM read_csv('/etc/passwd') --", 'syntax', /not a valid SQL expression/],
    ["delay > 0 AND origin IN (SELECT column0 FROM read_csv('/etc/passwd'))", 'not_allowed', /subqueries/],
    ['delay, origin', 'not_allowed', /exactly one expression expected, found 2/],
    ['delay AS y', 'not_allowed', /unexpected name `y`/],
    ['t.delay', 'not_allowed', /qualified names/],
    ['*', 'not_allowed', /`\*`/],
    ["COLUMNS('d.*')", 'not_allowed', /COLUMNS/],
    ['$1', 'not_allowed', /parameters/],
    ['list_transform([1], v -> v + 1)', 'not_allowed', /`list_transform` is not allowed/],
    ['delay = ANY([1, 2])', 'not_allowed', /subqueries/],
    ['origin IN (destination)', 'not_allowed', /IN accepts a list of constants/],
    ['regexp_matches(origin, destination)', 'not_allowed', /argument 2 of `regexp_matches` must be a constant/],
    ['date_part(origin, date)', 'not_allowed', /argument 1 of `date_part` must be a constant/],
    ['x::JSON', 'not_allowed', /cast to JSON/],
    ['CAST(x AS INTEGER[])', 'not_allowed', /cast to LIST/],
    ['random()', 'not_allowed', /`random` is not allowed/],
    ['now()', 'not_allowed', /`now` is not allowed/],
    ['hour(DISTINCT date)', 'not_allowed', /DISTINCT/],
    ['pg_catalog.hour(date)', 'not_allowed', /`pg_catalog.hour`/],
    ['constructor(x)', 'not_allowed', /`constructor` is not allowed/],
    ['delay /* unterminated', 'syntax', /unterminated/],
  ];

  it.each(hostile)('%s', async (expression, code, reason) => {
    const error = await rejection(expression);
    expect(error.code).toBe(code);
    expect(error.reason).toMatch(reason);
    expect(error.expression).toBe(expression);
    expect(error.message).toBe(`expression \`${expression}\` rejected: ${error.reason}`);
  });

  it('refuses empty, over-long and control-character expressions', async () => {
    expect((await rejection('')).code).toBe('empty');
    expect((await rejection('  \n ')).code).toBe('empty');
    const long = `delay + ${'1 + '.repeat(MAX_EXPRESSION_LENGTH / 4)}1`;
    expect(long.length).toBeGreaterThan(MAX_EXPRESSION_LENGTH);
    const tooLong = await rejection(long);
    expect(tooLong.code).toBe('too_long');
    expect(tooLong.reason).toMatch(/at most 1000/);
    expect((await rejection('delay\u0000; DROP TABLE t')).reason).toMatch(/control characters/);
  });

  it('refuses columns that are not in the given list, even if the table has them', async () => {
    const error = await rejection('delay + distance', ['delay']);
    expect(error.code).toBe('unknown_column');
    expect(error.reason).toMatch(/`distance`/);
  });
});

describe('the DataEngine sandbox is the second wall', () => {
  it('refuses file access, extension installs and setting changes even when SQL reaches it directly', async () => {
    const outside = path.join(tmp, 'outside.csv');
    await writeFile(outside, 'secret\n1\n');
    const attempts = [
      `SELECT * FROM read_csv(${sqlString(outside)})`,
      "SELECT * FROM read_csv('/etc/passwd')",
      `COPY (SELECT 1) TO ${sqlString(path.join(tmp, 'leak.csv'))}`,
      `ATTACH ${sqlString(path.join(tmp, 'x.db'))} AS x`,
      "SELECT * FROM glob('/etc/*')",
    ];
    for (const sql of attempts) await expect(engine.run(sql), sql).rejects.toThrow(/Permission Error/);
    await expect(engine.run('INSTALL httpfs')).rejects.toThrow(/Permission Error/);
    await expect(engine.run('LOAD httpfs')).rejects.toThrow(/Permission Error|disabled/);
    await expect(engine.run("SET allowed_directories=['/']")).rejects.toThrow(/locked/);
    await expect(engine.run('SET enable_external_access=true')).rejects.toThrow(/locked|Cannot change/);
  });
});
