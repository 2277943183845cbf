import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlString } from '../../../data/engine.js';
import { ExpressionError } from '../../../data/expressions.js';
import { PrepareError, prepareDataset, type PrepareSpec } from '../../../data/prepare.js';
import { evalThreshold, hashBucket } from '../../../data/split.js';
import { applyTransform, type FittedFeature } from '../../../data/transform.js';

let tmp: string;
let engine: DataEngine;
let flights: string;
let outCount = 0;

/** A fresh output folder inside the engine's work folder. */
const outDir = () => path.join(engine.workDir, `out-${++outCount}`);

async function writeParquet(name: string, select: string): Promise<string> {
  const file = path.join(engine.workDir, 'input', `${name}.parquet`);
  await engine.run(`COPY (${select}) TO ${sqlString(file)} (FORMAT parquet)`);
  return file;
}

async function readParquet(file: string): Promise<Record<string, unknown>[]> {
  return engine.rows(`SELECT * FROM read_parquet(${sqlString(file)})`);
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'prepare-test-'));
  engine = await DataEngine.open({ workDir: path.join(tmp, 'work') });
  await mkdir(path.join(engine.workDir, 'input'), { recursive: true });
  // Train: ts < 2001-02-01 (rows 1-10; row 10 has a null label). Eval: [2001-02-01, 2001-03-01) (rows 12, 13; row 12
  // sits exactly on the cut-off). Neither: row 14 (exactly evalBefore) and row 15 (null time).
  flights = await writeParquet(
    'flights',
    `SELECT * FROM (VALUES
      (1,  TIMESTAMP '2001-01-01 07:00:00', 20,   1.0,    'b',  'x',  1.5),
      (2,  TIMESTAMP '2001-01-02 08:00:00', 5,    2.0,    'a',  'y',  2.5),
      (3,  TIMESTAMP '2001-01-03 09:00:00', 30,   3.0,    'b',  'z',  3.5),
      (4,  TIMESTAMP '2001-01-04 10:00:00', 0,    NULL,   'c',  'x',  4.5),
      (5,  TIMESTAMP '2001-01-05 11:00:00', 16,   1.0,    'a',  'y',  5.5),
      (6,  TIMESTAMP '2001-01-06 12:00:00', 1,    2.0,    'c',  'z',  6.5),
      (7,  TIMESTAMP '2001-01-07 13:00:00', 40,   3.0,    'b',  'x',  7.5),
      (8,  TIMESTAMP '2001-01-08 14:00:00', 2,    NULL,   'd',  'y',  8.5),
      (9,  TIMESTAMP '2001-01-31 23:59:59', 25,   2.0,    NULL, 'z',  9.5),
      (10, TIMESTAMP '2001-01-10 15:00:00', NULL, 1000.0, 'zz', NULL, NULL),
      (12, TIMESTAMP '2001-02-01 00:00:00', 50,   100.0,  'e',  'w',  10.0),
      (13, TIMESTAMP '2001-02-15 00:00:00', 1,    4.0,    'a',  'x',  11.0),
      (14, TIMESTAMP '2001-03-01 00:00:00', 1,    4.0,    'a',  'x',  12.0),
      (15, NULL,                            1,    4.0,    'a',  'x',  13.0)
    ) v(id, ts, delay, distance, origin, grade, score)`,
  );
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

function spec(overrides: Partial<PrepareSpec> = {}): PrepareSpec {
  return {
    input: flights,
    label: { name: 'delayed', expression: 'delay > 15', task: 'binary' },
    features: [
      { name: 'id', expression: 'id' },
      { name: 'distance', expression: 'distance' },
      { name: 'origin', expression: 'origin' },
    ],
    split: { kind: 'time', column: 'ts', trainBefore: '2001-02-01', evalBefore: '2001-03-01' },
    ...overrides,
  };
}

async function prepareError(s: PrepareSpec, out = outDir()): Promise<PrepareError> {
  try {
    await prepareDataset(engine, s, out);
  } catch (error) {
    expect(error).toBeInstanceOf(PrepareError);
    return error as PrepareError;
  }
  throw new Error('expected prepareDataset to fail');
}

function feature(features: readonly FittedFeature[], name: string): FittedFeature {
  const found = features.find((f) => f.name === name);
  if (!found) throw new Error(`no feature ${name}`);
  return found;
}

describe('prepareDataset on hand-made data', () => {
  it('splits by time: a row exactly at the cut-off is eval, rows at evalBefore or without a time are neither', async () => {
    const prepared = await prepareDataset(engine, spec(), outDir());
    expect(prepared.train.rows).toBe(9);
    expect(prepared.eval.rows).toBe(2);
    expect(prepared.droppedNullLabels).toBe(1);
    expect(prepared.rowsOutsideSplit).toBe(2);
    const train = await readParquet(prepared.train.path);
    const evalRows = await readParquet(prepared.eval.path);
    // Input order is kept.
    expect(train.map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(evalRows.map((r) => r.id)).toEqual([12, 13]);
  });

  it('writes raw feature values (numeric DOUBLE, categorical VARCHAR) in spec order, then the encoded label', async () => {
    const prepared = await prepareDataset(engine, spec(), outDir());
    const types = await engine.rows<{ column_name: string; column_type: string }>(
      `DESCRIBE SELECT * FROM read_parquet(${sqlString(prepared.train.path)})`,
    );
    expect(types.map((t) => [t.column_name, t.column_type])).toEqual([
      ['id', 'DOUBLE'],
      ['distance', 'DOUBLE'],
      ['origin', 'VARCHAR'],
      ['label', 'INTEGER'],
    ]);
    const train = await readParquet(prepared.train.path);
    expect(train[3]).toEqual({ id: 4, distance: null, origin: 'c', label: 0 });
    expect(train[8]).toEqual({ id: 9, distance: 2, origin: null, label: 1 });
  });

  it('fits mean imputation and standardisation on the labelled training rows only', async () => {
    const { transform } = await prepareDataset(engine, spec(), outDir());
    // Observed training distances 1,2,3,1,2,3,2 (two missing; 1000 has a null label, 100 is eval): mean 2, population
    // variance 4/7; after imputing the two missing with 2, the variance over 9 rows is 4/9, std 2/3.
    const distance = feature(transform.features, 'distance');
    expect(distance.kind).toBe('numeric');
    if (distance.kind !== 'numeric') return;
    expect(distance.numeric.imputeValue).toBeCloseTo(2, 14);
    expect(distance.numeric.mean).toBeCloseTo(2, 14);
    expect(distance.numeric.std).toBeCloseTo(2 / 3, 14);
    expect(distance.sourceType).toBe('DECIMAL(5,1)');
    expect(transform.scaling).toBe('standard');
    expect(transform.version).toBe(1);
  });

  it('orders the vocabulary by training count, then value; eval-only and dropped-row categories are unknown', async () => {
    const { transform } = await prepareDataset(engine, spec(), outDir());
    // Training origins: b×3, a×2, c×2, d×1, one null; 'e' only in eval, 'zz' only on the null-label row.
    expect(feature(transform.features, 'origin')).toMatchObject({
      kind: 'categorical',
      categorical: { vocabulary: ['b', 'a', 'c', 'd'], unknownIndex: 4 },
    });
    const limited = await prepareDataset(engine, spec({ options: { maxCategories: 2 } }), outDir());
    expect(feature(limited.transform.features, 'origin')).toMatchObject({
      categorical: { vocabulary: ['b', 'a'], unknownIndex: 2 },
    });
    const frequent = await prepareDataset(engine, spec({ options: { minCategoryCount: 2 } }), outDir());
    expect(feature(frequent.transform.features, 'origin')).toMatchObject({
      categorical: { vocabulary: ['b', 'a', 'c'], unknownIndex: 3 },
    });
  });

  it('produces the model input from the written rows with applyTransform', async () => {
    const prepared = await prepareDataset(engine, spec({ features: spec().features.slice(1) }), outDir());
    const evalRows = await readParquet(prepared.eval.path);
    const matrix = applyTransform(prepared.transform, evalRows);
    expect(matrix.columnNames).toEqual([
      'distance',
      'origin=b',
      'origin=a',
      'origin=c',
      'origin=d',
      'origin=<unknown>',
    ]);
    // Row 12: distance 100 → (100 - 2) / (2/3) = 147; origin 'e' was never seen in training → unknown.
    expect(matrix.data[0]).toBeCloseTo(147, 10);
    expect(Array.from(matrix.data.subarray(1, 6))).toEqual([0, 0, 0, 0, 1]);
    // Row 13: distance 4 → 3; origin 'a'.
    expect(matrix.data[6]).toBeCloseTo(3, 10);
    expect(Array.from(matrix.data.subarray(7, 12))).toEqual([0, 1, 0, 0, 0]);
  });

  it('infers kinds from result types and honours an explicit kind', async () => {
    const prepared = await prepareDataset(
      engine,
      spec({
        features: [
          { name: 'hour', expression: 'hour(ts)', kind: 'categorical' },
          { name: 'late_start', expression: 'hour(ts) >= 12' },
          { name: 'log_distance', expression: 'ln(distance + 1)' },
          { name: 'when', expression: 'ts', kind: 'categorical' },
        ],
        options: { scaling: 'none' },
      }),
      outDir(),
    );
    const [hour, late, log, when] = prepared.transform.features;
    expect(hour).toMatchObject({ kind: 'categorical', sourceType: 'BIGINT' });
    expect(late).toMatchObject({ kind: 'categorical', sourceType: 'BOOLEAN' });
    expect(log).toMatchObject({ kind: 'numeric', sourceType: 'DOUBLE', numeric: { mean: 0, std: 1 } });
    expect(when).toMatchObject({ kind: 'categorical', sourceType: 'TIMESTAMP' });
    const train = await readParquet(prepared.train.path);
    expect(train[0]).toMatchObject({ hour: '7', late_start: 'false', when: '2001-01-01 07:00:00' });
    if (late?.kind === 'categorical') expect([...late.categorical.vocabulary].sort()).toEqual(['false', 'true']);
  });
});

describe('label encodings', () => {
  it('binary boolean → 0/1 with classes [false, true] and class counts per split', async () => {
    const prepared = await prepareDataset(engine, spec(), outDir());
    expect(prepared.labelInfo).toEqual({
      name: 'delayed',
      task: 'binary',
      sourceType: 'BOOLEAN',
      classes: [false, true],
      classCounts: { train: [4, 5], eval: [1, 1] },
    });
    expect(prepared.transform.label).toEqual({
      name: 'delayed',
      expression: 'delay > 15',
      sql: '(delay > 15)',
      task: 'binary',
      classes: [false, true],
    });
    expect((await readParquet(prepared.train.path)).map((r) => r.label)).toEqual([1, 0, 1, 0, 1, 0, 1, 0, 1]);
  });

  it('binary with other values maps the sorted classes to 0/1 and records them', async () => {
    const strings = await prepareDataset(
      engine,
      spec({ label: { name: 'l', expression: "CASE WHEN delay > 15 THEN 'late' ELSE 'on time' END", task: 'binary' } }),
      outDir(),
    );
    expect(strings.labelInfo.classes).toEqual(['late', 'on time']);
    // Row 10 (null delay) has a label here: the CASE's ELSE makes it 'on time'.
    expect((await readParquet(strings.train.path)).map((r) => r.label)).toEqual([0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    expect(strings.droppedNullLabels).toBe(0);
    const numbers = await prepareDataset(
      engine,
      spec({ label: { name: 'l', expression: 'if(delay > 15, 1, 0)', task: 'binary' } }),
      outDir(),
    );
    expect(numbers.labelInfo.classes).toEqual([0, 1]);
    expect((await readParquet(numbers.train.path)).map((r) => r.label)).toEqual([1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
  });

  it('multiclass → index of the sorted classes of both splits', async () => {
    const prepared = await prepareDataset(
      engine,
      spec({ label: { name: 'grade', expression: 'grade', task: 'multiclass' } }),
      outDir(),
    );
    // 'w' occurs only in eval: it still has an index, so eval rows are never unlabelled.
    expect(prepared.labelInfo.classes).toEqual(['w', 'x', 'y', 'z']);
    expect(prepared.labelInfo.classCounts).toEqual({ train: [0, 3, 3, 3], eval: [1, 1, 0, 0] });
    expect((await readParquet(prepared.train.path)).map((r) => r.label)).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3]);
    expect((await readParquet(prepared.eval.path)).map((r) => r.label)).toEqual([0, 1]);
    expect(prepared.droppedNullLabels).toBe(1);
  });

  it('regression → DOUBLE value, with training mean and std', async () => {
    const prepared = await prepareDataset(
      engine,
      spec({ label: { name: 'score', expression: 'score * 2', task: 'regression' } }),
      outDir(),
    );
    expect(prepared.labelInfo).toMatchObject({ task: 'regression', sourceType: expect.stringMatching(/^DECIMAL/) });
    expect(prepared.labelInfo.classes).toBeUndefined();
    expect(prepared.labelInfo.trainStats?.mean).toBeCloseTo(11, 12);
    expect(prepared.labelInfo.trainStats?.std).toBeCloseTo(Math.sqrt(80 / 12) * 2, 12);
    expect((await readParquet(prepared.eval.path)).map((r) => r.label)).toEqual([20, 22]);
  });
});

describe('refusals', () => {
  it('a single class in the training split', async () => {
    const error = await prepareError(spec({ label: { name: 'l', expression: 'delay >= 0', task: 'binary' } }));
    expect(error.code).toBe('single_class');
    expect(error.message).toMatch(/single class in the training split/);
    const multi = await prepareError(spec({ label: { name: 'l', expression: "'same'", task: 'multiclass' } }));
    expect(multi.code).toBe('single_class');
  });

  it('a binary label with more than two values', async () => {
    const error = await prepareError(spec({ label: { name: 'l', expression: 'grade', task: 'binary' } }));
    expect(error.code).toBe('label_classes');
    expect(error.message).toMatch(/exactly 2 values; `grade` has 4/);
  });

  it('a label that is always null, an empty split, a label of the wrong type', async () => {
    const nulls = await prepareError(
      spec({ label: { name: 'l', expression: 'nullif(delay, delay)', task: 'binary' } }),
    );
    expect(nulls.code).toBe('label_null');
    const empty = await prepareError(spec({ split: { kind: 'time', column: 'ts', trainBefore: '2000-01-01' } }));
    expect(empty.code).toBe('empty_split');
    expect(empty.message).toMatch(/0 training/);
    const type = await prepareError(spec({ label: { name: 'l', expression: 'origin', task: 'regression' } }));
    expect(type.code).toBe('label_type');
  });

  it('unknown columns, in expressions and as the split column', async () => {
    const inFeature = await prepareError(spec({ features: [{ name: 'f', expression: 'nope + 1' }] }));
    expect(inFeature.code).toBe('unknown_column');
    expect(inFeature.field).toBe('features[0] (f)');
    expect(inFeature.message).toMatch(/unknown column `nope`/);
    const inSplit = await prepareError(spec({ split: { kind: 'time', column: 'nope', trainBefore: '2001-02-01' } }));
    expect(inSplit.code).toBe('unknown_column');
  });

  it('a hostile expression, before any work is done', async () => {
    const out = outDir();
    const hostile = spec({
      features: [...spec().features, { name: 'leak', expression: "(SELECT * FROM read_csv('/etc/passwd'))" }],
    });
    const error = await prepareError(hostile, out);
    expect(error.code).toBe('invalid_expression');
    expect(error.cause).toBeInstanceOf(ExpressionError);
    expect(error.message).toMatch(/subqueries are not allowed/);
    expect(existsSync(out)).toBe(false);
    const tables = await engine.rows(`SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__prepare_%'`);
    expect(tables).toEqual([]);
    const key = await prepareError(spec({ split: { kind: 'hash', key: "getenv('HOME')", evalFraction: 0.5 } }));
    expect(key.code).toBe('invalid_expression');
    expect(key.field).toBe('split.key');
  });

  it('features that are neither numbers nor categories, and a numeric kind on text', async () => {
    const time = await prepareError(spec({ features: [{ name: 'when', expression: 'ts' }] }));
    expect(time.code).toBe('feature_type');
    expect(time.message).toMatch(/TIMESTAMP/);
    const text = await prepareError(spec({ features: [{ name: 'o', expression: 'origin', kind: 'numeric' }] }));
    expect(text.code).toBe('feature_type');
  });

  it('an expression that fails on the data, and cleans up after it', async () => {
    const error = await prepareError(spec({ features: [{ name: 'f', expression: 'ln(distance - 1)' }] }));
    expect(error.code).toBe('evaluation_failed');
    expect(error.message).toMatch(/logarithm of zero/);
    const tables = await engine.rows(`SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__prepare_%'`);
    expect(tables).toEqual([]);
  });

  it('invalid specifications', async () => {
    const duplicate = await prepareError(
      spec({
        features: [
          { name: 'a', expression: 'id' },
          { name: 'A', expression: 'delay' },
        ],
      }),
    );
    expect(duplicate.code).toBe('invalid_spec');
    expect(duplicate.message).toMatch(/duplicate name/);
    const reserved = await prepareError(spec({ features: [{ name: 'label', expression: 'id' }] }));
    expect(reserved.message).toMatch(/reserved/);
    const internal = await prepareError(spec({ features: [{ name: '__f0', expression: 'id' }] }));
    expect(internal.code).toBe('invalid_spec');
    const fraction = await prepareError(spec({ split: { kind: 'hash', key: 'id', evalFraction: 1.5 } }));
    expect(fraction.code).toBe('invalid_spec');
    const cutoffs = await prepareError(
      spec({ split: { kind: 'time', column: 'ts', trainBefore: '2001-03-01', evalBefore: '2001-02-01' } }),
    );
    expect(cutoffs.code).toBe('invalid_split');
    const outside = await prepareError(spec(), path.join(tmp, 'elsewhere'));
    expect(outside.code).toBe('invalid_spec');
    const missing = await prepareError(spec({ input: path.join(engine.workDir, 'input', 'missing.parquet') }));
    expect(missing.code).toBe('input_unreadable');
  });
});

describe('hash split', () => {
  let rows10k: string;
  let shuffled: string;

  beforeAll(async () => {
    rows10k = await writeParquet('rows10k', 'SELECT i AS id, i % 3 = 0 AS flag FROM range(10000) r(i)');
    shuffled = await writeParquet(
      'rows10k-shuffled',
      `SELECT id, flag FROM read_parquet(${sqlString(rows10k)}) ORDER BY md5(CAST(id AS VARCHAR) || 'shuffle')`,
    );
  });

  const hashSpec = (input: string, seed?: number): PrepareSpec => ({
    input,
    label: { name: 'flag', expression: 'flag', task: 'binary' },
    features: [{ name: 'id', expression: 'id' }],
    split: { kind: 'hash', key: 'id', evalFraction: 0.25, ...(seed === undefined ? {} : { seed }) },
  });

  async function evalIds(input: string, seed?: number): Promise<number[]> {
    const prepared = await prepareDataset(engine, hashSpec(input, seed), outDir());
    const rows = await readParquet(prepared.eval.path);
    return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
  }

  it('honours the fraction within sampling error on 10k rows', async () => {
    const prepared = await prepareDataset(engine, hashSpec(rows10k), outDir());
    expect(prepared.train.rows + prepared.eval.rows).toBe(10_000);
    // σ = sqrt(0.25 · 0.75 / 10000) ≈ 0.0043; allow 4σ.
    expect(Math.abs(prepared.eval.rows / 10_000 - 0.25)).toBeLessThan(0.0175);
  });

  it('is stable: the same rows land in the same split across runs, row orders and implementations', async () => {
    const first = await evalIds(rows10k);
    expect(await evalIds(rows10k)).toEqual(first);
    expect(await evalIds(shuffled)).toEqual(first);
    // The split is md5-defined, so an independent implementation agrees row for row.
    const expected = [...Array(10_000).keys()].filter((id) => hashBucket(String(id), 0) < evalThreshold(0.25));
    expect(first).toEqual(expected);
    // Another seed gives another assignment.
    expect(await evalIds(rows10k, 42)).not.toEqual(first);
  });
});
