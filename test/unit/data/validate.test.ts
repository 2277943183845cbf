import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jensenShannonDivergence } from '../../../data/drift.js';
import { DataEngine } from '../../../data/engine.js';
import { acceptAnomalies, inferSchema } from '../../../data/schema.js';
import { computeStatistics, type StatisticsOptions } from '../../../data/statistics.js';
import type { AnomalyType, DatasetSchema, DatasetStatistics, ValidationReport } from '../../../data/types.js';
import { formatValidationReport, validateDataset } from '../../../data/validate.js';

let tmp: string;
let engine: DataEngine;
let reference: DatasetStatistics;
let schema: DatasetSchema;

/**
 * The training snapshot: 100 rows. x = r % 10 (0..9, ten of each); s = a ×50, b ×30, c ×20; req always 'k';
 * opt = r / 2 except 10 NULLs (missing 0.10, so the allowance is 0.11); flag true for r % 4 = 0.
 */
const COLUMNS = {
  x: '(r % 10)::INTEGER',
  s: "CASE WHEN r < 50 THEN 'a' WHEN r < 80 THEN 'b' ELSE 'c' END",
  req: "'k'",
  opt: 'CASE WHEN r % 10 = 9 THEN NULL ELSE r / 2 END::DOUBLE',
  flag: 'r % 4 = 0',
};
type Column = keyof typeof COLUMNS;

/** The reference snapshot's SELECT with some column expressions replaced (null: column left out). */
function snapshotSql(overrides: Partial<Record<Column, string | null>> = {}, rows = 100): string {
  const select = Object.entries({ ...COLUMNS, ...overrides })
    .filter((entry): entry is [string, string] => entry[1] !== null)
    .map(([name, sql]) => `${sql} AS ${name}`);
  return `SELECT ${select.join(', ')} FROM range(${rows}) AS g(r)`;
}

let tableCount = 0;
async function validate(
  sql: string,
  options: { schema?: DatasetSchema; previous?: DatasetStatistics | null; stats?: StatisticsOptions } = {},
): Promise<ValidationReport> {
  const table = `snapshot_${tableCount++}`;
  await engine.run(`CREATE TABLE ${table} AS ${sql}`);
  const statistics = await computeStatistics(engine, table, options.stats);
  return validateDataset(engine, table, {
    schema: options.schema ?? schema,
    statistics,
    ...(options.previous === null ? {} : { previous: options.previous ?? reference }),
  });
}

const types = (report: ValidationReport) => report.anomalies.map((a) => `${a.column ?? '-'}:${a.type}`);
function only(report: ValidationReport, type: AnomalyType) {
  const found = report.anomalies.filter((a) => a.type === type);
  expect(found).toHaveLength(1);
  return found[0]!;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'validate-test-'));
  engine = await DataEngine.open({ workDir: tmp });
  await engine.run(`CREATE TABLE reference AS ${snapshotSql()}`);
  reference = await computeStatistics(engine, 'reference');
  schema = inferSchema(reference);
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('validateDataset', () => {
  it('passes the training snapshot itself with zero drift everywhere, in schema order', async () => {
    const report = await validate(snapshotSql());
    expect(report).toMatchObject({ version: 1, ok: true, rowCount: 100, anomalies: [] });
    expect(report.drift.map((d) => [d.column, d.metric, d.value, d.drifted])).toEqual([
      ['x', 'jensen_shannon', 0, false],
      ['s', 'l_infinity', 0, false],
      ['req', 'l_infinity', 0, false],
      ['opt', 'jensen_shannon', 0, false],
      ['flag', 'l_infinity', 0, false],
    ]);
  });

  it('ignores columns that the schema does not know', async () => {
    expect((await validate(`SELECT *, 'new' AS extra FROM (${snapshotSql()})`)).ok).toBe(true);
  });

  it('reports an empty dataset once (and still checks presence and types)', async () => {
    const report = await validate(`${snapshotSql({ opt: null })} LIMIT 0`);
    expect(report.ok).toBe(false);
    expect(report.rowCount).toBe(0);
    expect(types(report)).toEqual(['-:empty_dataset', 'opt:missing_column']);
    expect(report.drift).toEqual([]);
  });

  it('reports a missing column', async () => {
    const report = await validate(snapshotSql({ opt: null }));
    expect(types(report)).toEqual(['opt:missing_column']);
    expect(report.anomalies[0]?.message).toBe('Column "opt" is missing: the schema expects a DOUBLE (numeric) column.');
  });

  it('reports text in a numeric column as a type change and checks nothing else there', async () => {
    const report = await validate(snapshotSql({ x: "CASE WHEN r = 0 THEN 'n/a' ELSE (r % 10)::VARCHAR END" }));
    expect(types(report)).toEqual(['x:type_changed']);
    expect(report.anomalies[0]).toMatchObject({ observedType: 'VARCHAR', observedKind: 'categorical' });
    expect(report.anomalies[0]?.message).toContain('the data has VARCHAR (categorical)');
    expect(report.drift.map((d) => d.column)).not.toContain('x');
    // A type change within a kind is accepted.
    expect((await validate(snapshotSql({ x: '(r % 10)::BIGINT' }))).ok).toBe(true);
  });

  it('reports a required column that is entirely null', async () => {
    const report = await validate(snapshotSql({ req: 'NULL::VARCHAR' }));
    expect(types(report)).toEqual(['req:all_null']);
    expect(report.anomalies[0]?.message).toBe('Column "req" is required but all 100 values are missing.');
  });

  it('reports a missing rate above the allowance, not at it, and honours the configured increase', async () => {
    // 11 missing of 100 = the allowance 0.10 + 0.01: passes. 12 missing: fires.
    const at = await validate(snapshotSql({ opt: 'CASE WHEN r % 10 = 9 OR r = 0 THEN NULL ELSE r / 2 END::DOUBLE' }));
    expect(at.ok).toBe(true);
    const above = await validate(
      snapshotSql({ opt: 'CASE WHEN r % 10 = 9 OR r IN (0, 1) THEN NULL ELSE r / 2 END::DOUBLE' }),
    );
    const anomaly = only(above, 'missing_rate');
    expect(anomaly).toMatchObject({ column: 'opt', value: 0.12, threshold: expect.closeTo(0.11, 12) });
    expect(anomaly.message).toBe('Column "opt" has 12% missing values (12 of 100 rows), above the allowance of 11%.');
    // Allowance 0.11 + 0.05: 16 missing pass, 17 fire.
    const relaxed = { ...schema, featureThresholds: { opt: { missingRateIncrease: 0.05 } } };
    const sixteen = await validate(snapshotSql({ opt: 'CASE WHEN r < 16 THEN NULL ELSE r % 40 END::DOUBLE' }), {
      schema: relaxed,
      previous: null,
    });
    expect(sixteen.ok).toBe(true);
    const tooMany = await validate(snapshotSql({ opt: 'CASE WHEN r < 17 THEN NULL ELSE r % 40 END::DOUBLE' }), {
      schema: relaxed,
      previous: null,
    });
    expect(types(tooMany)).toEqual(['opt:missing_rate']);
  });

  it('reports unseen categories above the fraction, not at it, counting rows in SQL', async () => {
    // One row of 100 outside the domain = 1 %: passes; two rows: fires.
    const at = await validate(
      snapshotSql({ s: "CASE WHEN r = 0 THEN 'z' WHEN r < 50 THEN 'a' WHEN r < 80 THEN 'b' ELSE 'c' END" }),
    );
    expect(at.ok).toBe(true);
    const above = await validate(
      snapshotSql({
        s: "CASE WHEN r = 0 THEN 'z' WHEN r = 1 THEN 'y''s' WHEN r < 50 THEN 'a' WHEN r < 80 THEN 'b' ELSE 'c' END",
      }),
    );
    const anomaly = only(above, 'unseen_categories');
    expect(anomaly).toMatchObject({
      column: 's',
      value: 0.02,
      threshold: 0.01,
      unseenDistinct: 2,
      unseenValues: [
        { value: "y's", count: 1 },
        { value: 'z', count: 1 },
      ],
    });
    expect(anomaly.message).toBe(
      'Column "s" has 2% of its values (2 of 100, 2 distinct) outside its domain of 3 values, above the threshold of 1%; most frequent: "y\'s" (1), "z" (1).',
    );
  });

  it('reports numeric values out of range above the fraction, not at it', async () => {
    const at = await validate(snapshotSql({ x: 'CASE WHEN r = 0 THEN 10 ELSE r % 10 END::INTEGER' }));
    expect(at.anomalies.filter((a) => a.type === 'out_of_range')).toEqual([]);
    const above = await validate(
      snapshotSql({ x: 'CASE WHEN r = 0 THEN 10 WHEN r = 1 THEN -3 ELSE r % 10 END::INTEGER' }),
    );
    const anomaly = only(above, 'out_of_range');
    expect(anomaly).toMatchObject({ column: 'x', value: 0.02, threshold: 0.01, observedRange: { min: -3, max: 10 } });
    expect(anomaly.message).toBe(
      'Column "x" has 2% of its values (2 of 100) outside [0, 9], above the threshold of 1%; observed range [-3, 10].',
    );
  });

  it('ignores NaN and infinities in range checks: they count as missing', async () => {
    // 10 NULLs + NaN + Infinity = 12 missing of 100; neither non-finite value is out of range.
    const report = await validate(
      snapshotSql({
        opt: "CASE WHEN r % 10 = 9 THEN NULL WHEN r = 0 THEN 'nan'::DOUBLE WHEN r = 1 THEN 'inf'::DOUBLE ELSE r / 2 END",
      }),
      { previous: null },
    );
    expect(types(report)).toEqual(['opt:missing_rate']);
    expect(report.anomalies[0]?.value).toBe(0.12);
  });

  it('measures numeric drift on the previous edges with an overflow bin (a hand-computed value)', async () => {
    // Half the rows keep the reference distribution, half move to 100, beyond the previous maximum:
    // P = (0, p…, 0) and Q = (0, p/2…, ½), which gives the same divergence as P' = (1, 0) against Q' = (½, ½).
    const report = await validate(snapshotSql({ x: 'CASE WHEN r < 50 THEN r % 10 ELSE 100 END::INTEGER' }));
    const measure = report.drift.find((d) => d.column === 'x')!;
    expect(measure.value).toBeCloseTo(jensenShannonDivergence([1, 0], [1, 1]), 12);
    expect(measure.value).toBeCloseTo(0.31127812445913283, 12);
    expect(measure).toMatchObject({ metric: 'jensen_shannon', threshold: 0.1, drifted: true });
    expect(types(report)).toEqual(['x:out_of_range', 'x:drift']);
    expect(report.anomalies[1]?.message).toBe(
      'Column "x" drifted: Jensen-Shannon divergence 0.3113 from the previous snapshot, above the threshold of 0.1.',
    );
    // A per-feature threshold above the value silences it; the others keep the default.
    const lenient = { ...schema, featureThresholds: { x: { jensenShannon: 0.5, outOfRangeFraction: 0.5 } } };
    const relaxed = await validate(snapshotSql({ x: 'CASE WHEN r < 50 THEN r % 10 ELSE 100 END::INTEGER' }), {
      schema: lenient,
    });
    expect(relaxed.ok).toBe(true);
    expect(relaxed.drift.find((d) => d.column === 'x')).toMatchObject({ threshold: 0.5, drifted: false });
  });

  it('counts values below the previous minimum in an underflow bin', async () => {
    const report = await validate(snapshotSql({ x: 'CASE WHEN r < 50 THEN r % 10 ELSE -100 END::INTEGER' }), {
      schema: { ...schema, featureThresholds: { x: { outOfRangeFraction: 1 } } },
    });
    expect(report.drift.find((d) => d.column === 'x')?.value).toBeCloseTo(0.31127812445913283, 12);
  });

  it('measures categorical drift by L-infinity, exact from complete frequencies, firing above and not below', async () => {
    // a 30, b 30, c 40 against a 50, b 30, c 20: max |Δ| = 0.2.
    const shifted = "CASE WHEN r < 30 THEN 'a' WHEN r < 60 THEN 'b' ELSE 'c' END";
    const report = await validate(snapshotSql({ s: shifted }));
    expect(report.drift.find((d) => d.column === 's')).toMatchObject({ metric: 'l_infinity', drifted: true });
    expect(report.drift.find((d) => d.column === 's')?.value).toBeCloseTo(0.2, 12);
    expect(types(report)).toEqual(['s:drift']);
    // a 41, b 30, c 29: max |Δ| = 0.09 < 0.1.
    const slight = await validate(snapshotSql({ s: "CASE WHEN r < 41 THEN 'a' WHEN r < 71 THEN 'b' ELSE 'c' END" }));
    expect(slight.ok).toBe(true);
    expect(slight.drift.find((d) => d.column === 's')?.value).toBeCloseTo(0.09, 12);
  });

  it('falls back to the previous top-k plus an "other" bucket without complete frequencies', async () => {
    const topOnly = await computeStatistics(engine, 'reference', { topK: 1, frequencyLimit: 0 });
    const noDomain = inferSchema(topOnly);
    // Buckets (a, other): reference (0.5, 0.5); current a 30, b 30, c 40 → (0.3, 0.7): 0.2.
    const report = await validate(snapshotSql({ s: "CASE WHEN r < 30 THEN 'a' WHEN r < 60 THEN 'b' ELSE 'c' END" }), {
      schema: noDomain,
      previous: topOnly,
    });
    expect(report.drift.find((d) => d.column === 's')?.value).toBeCloseTo(0.2, 12);
    // Only the current side incomplete: the reference's complete frequencies are the buckets.
    const current = await validate(snapshotSql({ s: "CASE WHEN r < 30 THEN 'a' WHEN r < 60 THEN 'b' ELSE 'c' END" }), {
      stats: { frequencyLimit: 0 },
    });
    expect(current.drift.find((d) => d.column === 's')?.value).toBeCloseTo(0.2, 12);
  });

  it('measures boolean drift by L-infinity over true/false', async () => {
    // Reference: 25 true of 100. Current: 50 true.
    const report = await validate(snapshotSql({ flag: 'r % 2 = 0' }));
    expect(report.drift.find((d) => d.column === 'flag')?.value).toBeCloseTo(0.25, 12);
    expect(types(report)).toEqual(['flag:drift']);
  });

  it('measures no drift without a previous snapshot', async () => {
    const report = await validate(snapshotSql({ s: "'a'" }), { previous: null });
    expect(report.drift).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('refuses statistics of another relation', async () => {
    await engine.run(`CREATE TABLE other AS ${snapshotSql({ x: 'r::VARCHAR' })}`);
    await expect(validateDataset(engine, 'other', { schema, statistics: reference })).rejects.toThrow(
      /statistics do not describe/,
    );
  });

  it('passes the same data after acceptAnomalies', async () => {
    const bad = snapshotSql({
      x: "CASE WHEN r < 3 THEN 'n/a' ELSE r::VARCHAR END",
      s: "CASE WHEN r < 5 THEN 'z' || r WHEN r < 30 THEN 'a' WHEN r < 60 THEN 'b' ELSE 'c' END",
      req: 'NULL::VARCHAR',
      opt: 'CASE WHEN r < 40 THEN NULL ELSE r * 10 END::DOUBLE',
      flag: null,
    });
    const before = await validate(bad);
    expect(types(before)).toEqual([
      'x:type_changed',
      's:unseen_categories',
      's:drift',
      'req:all_null',
      'opt:missing_rate',
      'opt:out_of_range',
      'opt:drift',
      'flag:missing_column',
    ]);
    const widened = acceptAnomalies(schema, before.anomalies);
    const after = await validate(bad, { schema: widened });
    expect(after.anomalies).toEqual([]);
    expect(after.ok).toBe(true);
  });
});

describe('formatValidationReport', () => {
  it('renders the verdict, the anomalies and the drift as Markdown', async () => {
    const report = await validate(snapshotSql({ s: "CASE WHEN r < 30 THEN 'a|b' WHEN r < 60 THEN 'b' ELSE 'c' END" }));
    const text = formatValidationReport(report, { title: 'Validation of run 7' });
    expect(text.startsWith('# Validation of run 7: FAILED\n')).toBe(true);
    expect(text).toContain('100 rows; 2 anomalies; 5 drift checks, 1 above threshold.');
    expect(text).toContain('| s | unseen_categories | Column "s" has 30% of its values');
    expect(text).toContain('"a\\|b" (30)');
    expect(text).toContain('| s | L-infinity | 0.5000 | 0.1 | yes |');
    expect(text).toContain('| x | Jensen-Shannon | 0.0000 | 0.1 | no |');
    const passed = formatValidationReport(await validate(snapshotSql(), { previous: null }));
    expect(passed).toBe(
      '# Data validation: passed\n\n100 rows; 0 anomalies; 0 drift checks, 0 above threshold.\n\n## Anomalies\n\nNone.\n\n## Drift\n\nNot measured (no previous snapshot, or no comparable column).\n',
    );
  });
});
