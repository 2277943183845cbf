import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlString } from '../../../data/engine.js';
import {
  QUANTILES,
  columnKind,
  compareStatistics,
  computeStatistics,
  histogramEdges,
} from '../../../data/statistics.js';
import type { ColumnStatistics, DatasetStatistics } from '../../../data/types.js';

let tmp: string;
let engine: DataEngine;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'statistics-test-'));
  engine = await DataEngine.open({ workDir: tmp });
  // 11 rows: i = 0..9 and one NULL; s has ties (a, b, c twice, d once) and one NULL.
  await engine.run(`CREATE TABLE t AS SELECT * FROM (VALUES
    (0, 'b', true,  TIMESTAMP '2001-01-01 00:00:00', DATE '2001-03-01'),
    (1, 'a', false, TIMESTAMP '2001-01-02 12:30:00', DATE '2001-03-05'),
    (2, 'b', true,  NULL,                            NULL),
    (3, 'a', true,  TIMESTAMP '2001-01-03 00:00:00', DATE '2001-02-28'),
    (4, 'c', NULL,  TIMESTAMP '2000-12-31 23:59:59', DATE '2001-03-02'),
    (5, NULL, true, TIMESTAMP '2001-01-01 00:00:00', DATE '2001-03-01'),
    (6, 'c', false, TIMESTAMP '2001-01-01 00:00:00', DATE '2001-03-01'),
    (7, 'd', true,  TIMESTAMP '2001-01-01 00:00:00', DATE '2001-03-01'),
    (8, 'b', true,  TIMESTAMP '2001-01-01 00:00:00', DATE '2001-03-01'),
    (9, 'a', false, TIMESTAMP '2001-01-01 00:00:00', DATE '2001-03-01'),
    (NULL, 'c', true, TIMESTAMP '2001-01-01 00:00:00', DATE '2001-03-01')
  ) v(i, s, b, ts, d)`);
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

function column(stats: DatasetStatistics, name: string): ColumnStatistics {
  const found = stats.columns.find((c) => c.name === name);
  if (!found) throw new Error(`no column ${name}`);
  return found;
}

describe('computeStatistics on hand-made data', () => {
  it('pins count, missing, moments, zeros, quantiles and histogram of a numeric column', async () => {
    const stats = await computeStatistics(engine, 't', { histogramBins: 5 });
    expect(stats.version).toBe(1);
    expect(stats.rowCount).toBe(11);
    const i = column(stats, 'i');
    expect(i).toMatchObject({ type: 'INTEGER', kind: 'numeric', count: 11, missing: 1 });
    const n = i.numeric!;
    expect(n.min).toBe(0);
    expect(n.max).toBe(9);
    expect(n.mean).toBe(4.5);
    // Sample std: sqrt(Σ(k - 4.5)² / 9) = sqrt(82.5 / 9).
    expect(n.std).toBeCloseTo(Math.sqrt(82.5 / 9), 12);
    expect(n.zeros).toBe(1);
    // Linear interpolation at position q·(n-1) = 9q over the sorted values 0..9.
    expect(n.quantiles).toEqual(QUANTILES.map((q) => ({ q, value: expect.closeTo(9 * q, 12) as unknown as number })));
    expect(n.histogram.edges).toEqual([0, 9 / 5, 18 / 5, 27 / 5, 36 / 5, 9]);
    expect(n.histogram.counts).toEqual([2, 2, 2, 2, 2]);
  });

  it('puts a value on an interior edge into the upper bin and the maximum into the closed last bin', async () => {
    const stats = await computeStatistics(engine, '(SELECT * FROM (VALUES (0), (0), (5), (10), (NULL)) v(x))', {
      histogramBins: 2,
    });
    const x = column(stats, 'x').numeric!;
    expect(x.histogram).toEqual({ edges: [0, 5, 10], counts: [2, 2] });
    expect(x.zeros).toBe(2);
    expect(x.quantiles.find((q) => q.q === 0.5)?.value).toBe(2.5);
  });

  it('gives a constant column a single bin and std 0, and a single value std 0', async () => {
    const constant = await computeStatistics(engine, '(SELECT 7.5::DOUBLE AS x FROM range(4))');
    expect(column(constant, 'x').numeric).toMatchObject({
      min: 7.5,
      max: 7.5,
      std: 0,
      histogram: { edges: [7.5, 7.5], counts: [4] },
    });
    const single = await computeStatistics(engine, '(SELECT 3 AS x)');
    expect(column(single, 'x').numeric?.std).toBe(0);
  });

  it('counts NaN and ±Infinity in floating columns as missing', async () => {
    const stats = await computeStatistics(
      engine,
      `(SELECT * FROM (VALUES (1.5::DOUBLE), ('nan'::DOUBLE), ('inf'::DOUBLE), ('-inf'::DOUBLE), (NULL), (2.5::DOUBLE)) v(x))`,
    );
    const x = column(stats, 'x');
    expect(x).toMatchObject({ type: 'DOUBLE', count: 6, missing: 4 });
    expect(x.numeric).toMatchObject({ min: 1.5, max: 2.5, mean: 2 });
    expect(x.numeric?.histogram.counts.reduce((a, b) => a + b, 0)).toBe(2);
  });

  it('orders top-k by count then value, keeps complete frequencies up to the limit, counts distinct exactly', async () => {
    const stats = await computeStatistics(engine, 't', { topK: 2 });
    const s = column(stats, 's');
    expect(s).toMatchObject({ kind: 'categorical', count: 11, missing: 1 });
    expect(s.categorical).toEqual({
      unique: 4,
      topK: [
        { value: 'a', count: 3 },
        { value: 'b', count: 3 },
      ],
      frequencies: [
        { value: 'a', count: 3 },
        { value: 'b', count: 3 },
        { value: 'c', count: 3 },
        { value: 'd', count: 1 },
      ],
    });
    const limited = await computeStatistics(engine, 't', { topK: 10, frequencyLimit: 3 });
    expect(column(limited, 's').categorical).toEqual({
      unique: 4,
      topK: [
        { value: 'a', count: 3 },
        { value: 'b', count: 3 },
        { value: 'c', count: 3 },
        { value: 'd', count: 1 },
      ],
    });
  });

  it('treats booleans as their own kind with categorical statistics', async () => {
    const stats = await computeStatistics(engine, 't');
    expect(column(stats, 'b')).toMatchObject({
      kind: 'boolean',
      missing: 1,
      categorical: {
        unique: 2,
        topK: [
          { value: 'true', count: 7 },
          { value: 'false', count: 3 },
        ],
      },
    });
  });

  it('reports timestamp and date bounds as ISO strings', async () => {
    const stats = await computeStatistics(engine, 't');
    expect(column(stats, 'ts')).toMatchObject({
      kind: 'timestamp',
      missing: 1,
      timestamp: { min: '2000-12-31T23:59:59.000Z', max: '2001-01-03T00:00:00.000Z' },
    });
    expect(column(stats, 'd')).toMatchObject({
      type: 'DATE',
      kind: 'timestamp',
      timestamp: { min: '2001-02-28T00:00:00.000Z', max: '2001-03-05T00:00:00.000Z' },
    });
  });

  it('describes an empty relation without inventing numbers', async () => {
    const stats = await computeStatistics(engine, '(SELECT * FROM t WHERE false)');
    expect(stats.rowCount).toBe(0);
    expect(column(stats, 'i')).toEqual({ name: 'i', type: 'INTEGER', kind: 'numeric', count: 0, missing: 0 });
    expect(column(stats, 's').categorical).toEqual({ unique: 0, topK: [], frequencies: [] });
    expect(column(stats, 'ts').timestamp).toBeUndefined();
  });

  it('reads a Parquet file through read_parquet and survives awkward column names', async () => {
    const file = path.join(tmp, 'awkward.parquet');
    await engine.run(`COPY (SELECT i AS "we""ird col", s AS "it's" FROM t) TO ${sqlString(file)} (FORMAT parquet)`);
    const stats = await computeStatistics(engine, `read_parquet(${sqlString(file)})`);
    expect(stats.columns.map((c) => c.name)).toEqual(['we"ird col', "it's"]);
    expect(column(stats, 'we"ird col').numeric?.mean).toBe(4.5);
    expect(column(stats, "it's").categorical?.unique).toBe(4);
  });

  it('offers approximate quantiles in bounded memory, monotone and close on a uniform column', async () => {
    const stats = await computeStatistics(engine, '(SELECT r::DOUBLE AS x FROM range(10001) AS g(r))', {
      exactQuantiles: false,
    });
    const values = column(stats, 'x').numeric!.quantiles.map((q) => q.value);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    QUANTILES.forEach((q, k) => expect(Math.abs(values[k]! - q * 10000)).toBeLessThanOrEqual(50));
  });

  it('rejects nonsensical options before querying', async () => {
    await expect(computeStatistics(engine, 't', { histogramBins: 0 })).rejects.toThrow(RangeError);
    await expect(computeStatistics(engine, 't', { topK: -1 })).rejects.toThrow(RangeError);
  });
});

describe('computeStatistics against a JavaScript reference', () => {
  // The reference definitions: sample std, linear-interpolation quantiles, bins by comparison with the edges.
  function quantile(sorted: number[], q: number): number {
    const pos = q * (sorted.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
  }

  it('matches on random integer columns with nulls', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.option(fc.integer({ min: -1000, max: 1000 }), { nil: null }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 12 }),
        async (values, bins) => {
          const source = `(SELECT * FROM (VALUES ${values.map((v) => `(${v ?? 'NULL'}::INTEGER)`).join(', ')}) v(x))`;
          const stats = await computeStatistics(engine, source, { histogramBins: bins });
          const x = column(stats, 'x');
          const present = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
          expect(x.count).toBe(values.length);
          expect(x.missing).toBe(values.length - present.length);
          if (present.length === 0) {
            expect(x.numeric).toBeUndefined();
            return;
          }
          const n = x.numeric!;
          const mean = present.reduce((a, b) => a + b, 0) / present.length;
          const variance =
            present.length > 1 ? present.reduce((a, b) => a + (b - mean) ** 2, 0) / (present.length - 1) : 0;
          expect(n.min).toBe(present[0]);
          expect(n.max).toBe(present.at(-1));
          expect(n.mean).toBeCloseTo(mean, 9);
          expect(n.std).toBeCloseTo(Math.sqrt(variance), 9);
          expect(n.zeros).toBe(present.filter((v) => v === 0).length);
          for (const { q, value } of n.quantiles) expect(value).toBeCloseTo(quantile(present, q), 9);
          const edges = histogramEdges(n.min, n.max, bins);
          expect(n.histogram.edges).toEqual(edges);
          const counts = new Array<number>(edges.length - 1).fill(0);
          for (const v of present) {
            let b = 0;
            while (b < counts.length - 1 && v >= edges[b + 1]!) b++;
            counts[b]!++;
          }
          expect(n.histogram.counts).toEqual(counts);
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('columnKind', () => {
  it('maps DuckDB types to kinds', () => {
    expect(['INTEGER', 'BIGINT', 'UBIGINT', 'HUGEINT', 'DOUBLE', 'FLOAT', 'DECIMAL(10,2)'].map(columnKind)).toEqual(
      Array(7).fill('numeric'),
    );
    expect(['DATE', 'TIMESTAMP', 'TIMESTAMP WITH TIME ZONE', 'TIMESTAMP_NS'].map(columnKind)).toEqual(
      Array(4).fill('timestamp'),
    );
    expect(columnKind('BOOLEAN')).toBe('boolean');
    expect(['VARCHAR', "ENUM('a', 'b')", 'UUID', 'INTEGER[]'].map(columnKind)).toEqual(Array(4).fill('categorical'));
  });
});

describe('compareStatistics', () => {
  it('summarizes row count, missing rates, mean shift and top-k churn between snapshots', async () => {
    const before = await computeStatistics(engine, '(SELECT i, s, b FROM t)');
    const after = await computeStatistics(
      engine,
      `(SELECT i + 3 AS i, CASE WHEN s = 'd' THEN 'e' ELSE s END AS s, i::VARCHAR AS b, 1 AS extra FROM t WHERE i < 9)`,
    );
    const diff = compareStatistics(before, after);
    expect(diff.rowCount).toEqual({ before: 11, after: 9, relativeChange: -2 / 11 });
    const byName = new Map(diff.columns.map((c) => [c.name, c]));
    expect(byName.get('i')).toMatchObject({
      status: 'common',
      missingRate: { before: 1 / 11, after: 0 },
      meanShift: { before: 4.5, after: 7, difference: 2.5, inStd: expect.closeTo(2.5 / Math.sqrt(82.5 / 9), 12) },
    });
    expect(byName.get('s')).toMatchObject({ status: 'common', newTopValues: ['e'], vanishedTopValues: ['d'] });
    expect(byName.get('b')).toMatchObject({ status: 'retyped', typeBefore: 'BOOLEAN', typeAfter: 'VARCHAR' });
    expect(byName.get('extra')).toMatchObject({ status: 'added', missingRate: { before: null, after: 0 } });
    expect(diff.columns.map((c) => c.name)).toEqual(['i', 's', 'b', 'extra']);
    const reverse = compareStatistics(after, before);
    expect(reverse.columns.find((c) => c.name === 'extra')).toMatchObject({ status: 'removed' });
  });
});
