import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine } from '../../../data/engine.js';
import { DEFAULT_THRESHOLDS, acceptAnomalies, inferSchema, thresholdsFor } from '../../../data/schema.js';
import { computeStatistics } from '../../../data/statistics.js';
import type { Anomaly, DatasetSchema, DatasetStatistics } from '../../../data/types.js';

let tmp: string;
let engine: DataEngine;
let stats: DatasetStatistics;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'schema-test-'));
  engine = await DataEngine.open({ workDir: tmp });
  // 10 rows: x complete 0..9; y has 2 missing; s has 3 values; u has 10 distinct; b boolean; t timestamps; n all null.
  await engine.run(`CREATE TABLE t AS SELECT
      r::INTEGER AS x,
      CASE WHEN r < 2 THEN NULL ELSE r * 1.5 END::DOUBLE AS y,
      ['red', 'green', 'blue'][r % 3 + 1] AS s,
      'id-' || r AS u,
      r % 2 = 0 AS b,
      TIMESTAMP '2001-01-01' + INTERVAL (r) DAY AS t,
      NULL::VARCHAR AS n
    FROM range(10) AS g(r)`);
  stats = await computeStatistics(engine, 't');
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

function col(schema: DatasetSchema, name: string) {
  const found = schema.columns.find((c) => c.name === name);
  if (!found) throw new Error(`no column ${name}`);
  return found;
}

describe('inferSchema', () => {
  it('infers types, required, missing allowance, domains and ranges with the default margins', () => {
    const schema = inferSchema(stats);
    expect(schema.version).toBe(1);
    expect(schema.columns.map((c) => c.name)).toEqual(['x', 'y', 's', 'u', 'b', 't', 'n']);
    expect(col(schema, 'x')).toEqual({
      name: 'x',
      kind: 'numeric',
      type: 'INTEGER',
      required: true,
      maxMissingFraction: 0.01,
      range: { min: 0, max: 9 },
    });
    expect(col(schema, 'y')).toMatchObject({ required: false, range: { min: 3, max: 13.5 } });
    expect(col(schema, 'y').maxMissingFraction).toBeCloseTo(0.21, 15);
    // Domains are sorted by value, whatever the frequency order.
    expect(col(schema, 's')).toMatchObject({ kind: 'categorical', required: true, domain: ['blue', 'green', 'red'] });
    expect(col(schema, 'u').domain).toHaveLength(10);
    // A boolean's type already bounds its values: no domain.
    expect(col(schema, 'b')).toEqual({
      name: 'b',
      kind: 'boolean',
      type: 'BOOLEAN',
      required: true,
      maxMissingFraction: 0.01,
    });
    expect(col(schema, 't')).toEqual({
      name: 't',
      kind: 'timestamp',
      type: 'TIMESTAMP',
      required: true,
      maxMissingFraction: 0.01,
    });
    expect(col(schema, 'n')).toEqual({
      name: 'n',
      kind: 'categorical',
      type: 'VARCHAR',
      required: false,
      maxMissingFraction: 1,
    });
    expect(schema.thresholds).toEqual({
      unseenCategoryFraction: 0.01,
      outOfRangeFraction: 0.01,
      missingRateIncrease: 0,
      jensenShannon: 0.1,
      lInfinity: 0.1,
    });
    expect(schema.featureThresholds).toEqual({});
  });

  it('honours the margins, the domain size limit and threshold overrides', () => {
    const schema = inferSchema(stats, {
      missingMargin: 0,
      rangeMargin: 0.1,
      maxDomainSize: 5,
      thresholds: { jensenShannon: 0.2 },
      featureThresholds: { s: { lInfinity: 0.3 } },
    });
    expect(col(schema, 'x')).toMatchObject({
      maxMissingFraction: 0,
      range: { min: expect.closeTo(-0.9, 12), max: expect.closeTo(9.9, 12) },
    });
    expect(col(schema, 'y').maxMissingFraction).toBe(0.2);
    expect(col(schema, 's').domain).toEqual(['blue', 'green', 'red']);
    expect(col(schema, 'u').domain).toBeUndefined();
    expect(schema.thresholds).toEqual({ ...DEFAULT_THRESHOLDS, jensenShannon: 0.2 });
    expect(thresholdsFor(schema, 's')).toEqual({ ...DEFAULT_THRESHOLDS, jensenShannon: 0.2, lInfinity: 0.3 });
    expect(thresholdsFor(schema, 'x')).toEqual(schema.thresholds);
    expect(thresholdsFor(schema, 'constructor')).toEqual(schema.thresholds);
  });

  it('gives no domain when the statistics lack complete frequencies', async () => {
    const few = await computeStatistics(engine, 't', { frequencyLimit: 2 });
    expect(col(inferSchema(few), 's').domain).toBeUndefined();
  });

  it('makes nothing required from an empty snapshot', async () => {
    const empty = inferSchema(await computeStatistics(engine, '(SELECT * FROM t WHERE false)'));
    expect(empty.columns.every((c) => !c.required && c.maxMissingFraction === 0.01 && !c.range)).toBe(true);
  });
});

describe('acceptAnomalies', () => {
  const base = inferSchema({
    version: 1,
    rowCount: 4,
    columns: [
      {
        name: 'x',
        type: 'BIGINT',
        kind: 'numeric',
        count: 4,
        missing: 0,
        numeric: {
          min: 0,
          max: 10,
          mean: 5,
          std: 1,
          zeros: 1,
          quantiles: [],
          histogram: { edges: [0, 10], counts: [4] },
        },
      },
      {
        name: 's',
        type: 'VARCHAR',
        kind: 'categorical',
        count: 4,
        missing: 0,
        categorical: {
          unique: 2,
          topK: [
            { value: 'a', count: 2 },
            { value: 'b', count: 2 },
          ],
          frequencies: [
            { value: 'a', count: 2 },
            { value: 'b', count: 2 },
          ],
        },
      },
      { name: 'gone', type: 'VARCHAR', kind: 'categorical', count: 4, missing: 4 },
    ],
  });
  const a = (anomaly: Omit<Anomaly, 'message'>): Anomaly => ({ message: 'm', ...anomaly });

  it('widens domain, range and missing allowance, and is pure', () => {
    const frozen = structuredClone(base);
    const next = acceptAnomalies(base, [
      a({ column: 's', type: 'unseen_categories', unseenValues: [{ value: 'c', count: 3 }], unseenDistinct: 1 }),
      a({ column: 'x', type: 'out_of_range', observedRange: { min: -5, max: 8 } }),
      a({ column: 'x', type: 'missing_rate', value: 0.25, threshold: 0.01 }),
    ]);
    expect(base).toEqual(frozen);
    expect(col(next, 's').domain).toEqual(['a', 'b', 'c']);
    expect(col(next, 'x')).toMatchObject({ range: { min: -5, max: 10 }, maxMissingFraction: 0.25 });
  });

  it('drops the domain when unseen values were truncated or the domain would grow too large', () => {
    const truncated = acceptAnomalies(base, [
      a({ column: 's', type: 'unseen_categories', unseenValues: [{ value: 'c', count: 3 }], unseenDistinct: 2 }),
    ]);
    expect(col(truncated, 's').domain).toBeUndefined();
    const tooLarge = acceptAnomalies(
      base,
      [a({ column: 's', type: 'unseen_categories', unseenValues: [{ value: 'c', count: 3 }], unseenDistinct: 1 })],
      { maxDomainSize: 2 },
    );
    expect(col(tooLarge, 's').domain).toBeUndefined();
  });

  it('adopts a changed type, relaxes an all-null column, removes a missing column, raises drift thresholds', () => {
    const next = acceptAnomalies({ ...base, featureThresholds: { gone: { lInfinity: 0.5 } } }, [
      a({ column: 'x', type: 'type_changed', observedType: 'VARCHAR', observedKind: 'categorical' }),
      a({ column: 's', type: 'all_null', value: 1 }),
      a({ column: 's', type: 'drift', value: 0.4, threshold: 0.1 }),
      a({ column: 'gone', type: 'missing_column' }),
      a({ column: null, type: 'empty_dataset' }),
      a({ column: 'unknown', type: 'missing_rate', value: 1 }),
    ]);
    expect(col(next, 'x')).toEqual({
      name: 'x',
      kind: 'categorical',
      type: 'VARCHAR',
      required: true,
      maxMissingFraction: 0.01,
    });
    expect(col(next, 's')).toMatchObject({ required: false, maxMissingFraction: 1, domain: ['a', 'b'] });
    expect(next.columns.map((c) => c.name)).toEqual(['x', 's']);
    expect(next.featureThresholds).toEqual({ s: { lInfinity: 0.4 } });
    const numericDrift = acceptAnomalies(base, [a({ column: 'x', type: 'drift', value: 0.3 })]);
    expect(thresholdsFor(numericDrift, 'x')).toMatchObject({ jensenShannon: 0.3, lInfinity: 0.1 });
  });
});
