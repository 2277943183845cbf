import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlString } from '../../../data/engine.js';
import { applyTransform, type FittedTransform } from '../../../data/transform.js';
import {
  DatasetError,
  denseToSparse,
  loadEncodedDataset,
  loadSparseEncodedDataset,
  loadTreeDataset,
  readColumns,
  sampleRows,
  sparseToDense,
} from '../../../models/dataset.js';

let tmp: string;
let engine: DataEngine;
let files = 0;

const ORIGINS = ['ORD', "O'HARE", 'zürich', ''];

/** Numeric `distance` (standardized), categorical `origin` (VARCHAR), categorical `hour` stored as an INTEGER. */
const transform: FittedTransform = {
  version: 1,
  scaling: 'standard',
  features: [
    {
      name: 'distance',
      expression: 'distance',
      sql: 'distance',
      sourceType: 'DOUBLE',
      kind: 'numeric',
      numeric: { imputeValue: 2.5, mean: 2, std: 0.3 },
    },
    {
      name: 'origin',
      expression: 'origin',
      sql: 'origin',
      sourceType: 'VARCHAR',
      kind: 'categorical',
      categorical: { vocabulary: ORIGINS, unknownIndex: ORIGINS.length },
    },
    {
      name: 'hour',
      expression: 'hour(date)',
      sql: 'hour(date)',
      sourceType: 'BIGINT',
      kind: 'categorical',
      categorical: { vocabulary: ['7', '13'], unknownIndex: 2 },
    },
    {
      name: 'delay',
      expression: 'delay',
      sql: 'delay',
      sourceType: 'BIGINT',
      kind: 'numeric',
      numeric: { imputeValue: 0, mean: 0, std: 1 },
    },
  ],
  label: { name: 'delayed', expression: 'delay > 15', sql: '(delay > 15)', task: 'binary', classes: [false, true] },
};

type Row = { distance: number | null; origin: string | null; hour: number | null; delay: number | null; label: number };

function doubleSql(v: number | null): string {
  if (v === null) return 'NULL::DOUBLE';
  return `${sqlString(Number.isNaN(v) ? 'nan' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : String(v))}::DOUBLE`;
}

async function writeRows(rows: readonly Row[]): Promise<string> {
  const file = path.join(engine.workDir, `rows-${++files}.parquet`);
  const values = rows
    .map(
      (r) =>
        `(${doubleSql(r.distance)}, ${r.origin === null ? 'NULL::VARCHAR' : sqlString(r.origin)}, ` +
        `${r.hour === null ? 'NULL::INTEGER' : `${r.hour}::INTEGER`}, ` +
        `${r.delay === null ? 'NULL::BIGINT' : `${r.delay}::BIGINT`}, ${r.label}::INTEGER)`,
    )
    .join(', ');
  await engine.run(
    `COPY (SELECT * FROM (VALUES ${values}) v(distance, origin, hour, delay, label)) TO ${sqlString(file)} (FORMAT parquet)`,
  );
  return file;
}

const FIXED: Row[] = [
  { distance: 2, origin: 'ORD', hour: 7, delay: 3, label: 1 },
  { distance: null, origin: "O'HARE", hour: 13, delay: null, label: 0 },
  { distance: NaN, origin: null, hour: null, delay: -4, label: 1 },
  { distance: Infinity, origin: 'unseen', hour: 8, delay: 0, label: 0 },
  { distance: -Infinity, origin: 'zürich', hour: 7, delay: 2 ** 40, label: 1 },
  { distance: 0.1, origin: '', hour: 13, delay: 1, label: 0 },
  { distance: 1e300, origin: 'ord', hour: 0, delay: -1, label: 1 },
];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'dataset-test-'));
  engine = await DataEngine.open({ workDir: path.join(tmp, 'work') });
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

/** The reference: applyTransform on the file's rows as plain objects. */
async function reference(file: string) {
  const rows = await engine.rows(`SELECT * FROM read_parquet(${sqlString(file)})`);
  return { matrix: applyTransform(transform, rows), rows };
}

function expectSameBits(actual: Float64Array, expected: Float64Array): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i]))
      expect({ index: i, value: actual[i] }).toEqual({ index: i, value: expected[i] });
  }
}

describe('loadEncodedDataset', () => {
  it('equals applyTransform bit for bit (missing, NaN, ±Infinity, unseen, quotes, integer categories)', async () => {
    const file = await writeRows(FIXED);
    const { matrix } = await reference(file);
    const loaded = await loadEncodedDataset(engine, file, transform);
    expect(loaded.x.rows).toBe(FIXED.length);
    expect(loaded.x.cols).toBe(matrix.columns);
    expectSameBits(loaded.x.data, matrix.data);
    expect(Array.from(loaded.y)).toEqual(FIXED.map((r) => r.label));
  });

  it('equals applyTransform on random rows', async () => {
    const numeric = fc.oneof(
      fc.constant(null),
      fc.constantFrom(NaN, Infinity, -Infinity, 0, -0),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
    );
    const row = fc.record({
      distance: numeric,
      origin: fc.oneof(fc.constant(null), fc.constantFrom(...ORIGINS), fc.string({ maxLength: 3 })),
      hour: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 23 })),
      delay: fc.oneof(fc.constant(null), fc.integer({ min: -1000, max: 1000 })),
      label: fc.constantFrom(0, 1),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(row, { minLength: 1, maxLength: 40 }), async (rows) => {
        const file = await writeRows(rows);
        const { matrix } = await reference(file);
        const loaded = await loadEncodedDataset(engine, file, transform);
        expectSameBits(loaded.x.data, matrix.data);
        const sparse = await loadSparseEncodedDataset(engine, file, transform);
        expectSameBits(sparseToDense(sparse.x).data, matrix.data);
      }),
      { numRuns: 25 },
    );
  });

  it('refuses files that do not fit the transform', async () => {
    const missing = path.join(engine.workDir, 'missing-feature.parquet');
    await engine.run(`COPY (SELECT 1.0 AS distance, 1 AS label) TO ${sqlString(missing)} (FORMAT parquet)`);
    await expect(loadEncodedDataset(engine, missing, transform)).rejects.toThrow(DatasetError);
    const text = path.join(engine.workDir, 'text-numeric.parquet');
    await engine.run(
      `COPY (SELECT 'x' AS distance, 'a' AS origin, 1 AS hour, 1 AS delay, 1 AS label) TO ${sqlString(text)} (FORMAT parquet)`,
    );
    await expect(loadEncodedDataset(engine, text, transform)).rejects.toThrow(/numeric feature distance/);
    const nullLabel = path.join(engine.workDir, 'null-label.parquet');
    await engine.run(
      `COPY (SELECT 1.0 AS distance, 'a' AS origin, 1 AS hour, 1 AS delay, NULL::INTEGER AS label) TO ${sqlString(nullLabel)} (FORMAT parquet)`,
    );
    await expect(loadTreeDataset(engine, nullLabel, transform)).rejects.toThrow(/no label/);
  });
});

describe('loadSparseEncodedDataset', () => {
  it('stores one entry per feature and row, the same matrix as the dense loader', async () => {
    const file = await writeRows(FIXED);
    const dense = await loadEncodedDataset(engine, file, transform);
    const sparse = await loadSparseEncodedDataset(engine, file, transform);
    expect(Array.from(sparse.x.indptr)).toEqual(FIXED.map((_, i) => i * 4).concat(FIXED.length * 4));
    expect(sparse.x.cols).toBe(dense.x.cols);
    expectSameBits(sparseToDense(sparse.x).data, dense.x.data);
    expect(Array.from(sparse.y)).toEqual(Array.from(dense.y));
  });
});

describe('loadTreeDataset', () => {
  it('keeps raw float32 values with NaN for missing and vocabulary codes with the unknown index', async () => {
    const file = await writeRows(FIXED);
    const tree = await loadTreeDataset(engine, file, transform);
    expect(tree.rows).toBe(FIXED.length);
    const [distance, origin, hour, delay] = tree.features;
    expect(distance).toMatchObject({ kind: 'numeric', name: 'distance' });
    expect(Array.from(distance?.kind === 'numeric' ? distance.values : [])).toEqual([
      2,
      NaN,
      NaN,
      NaN,
      NaN,
      Math.fround(0.1),
      Infinity, // 1e300 overflows float32; the value was finite, so it is not missing
    ]);
    expect(origin).toEqual({
      kind: 'categorical',
      name: 'origin',
      codes: Int32Array.from([0, 1, 4, 4, 2, 3, 4]),
      cardinality: 5,
    });
    expect(hour).toEqual({
      kind: 'categorical',
      name: 'hour',
      codes: Int32Array.from([0, 1, 2, 2, 0, 1, 2]),
      cardinality: 3,
    });
    expect(delay?.kind === 'numeric' ? Array.from(delay.values) : []).toEqual([3, NaN, -4, 0, 2 ** 40, 1, -1]);
    expect(Array.from(tree.y)).toEqual(FIXED.map((r) => r.label));
  });

  it('looks vocabularies up the same way by list position and by ENUM cast', async () => {
    const file = await writeRows(FIXED);
    const byList = await readColumns(engine, file, transform);
    const byEnum = await readColumns(engine, file, transform, 0);
    expect(byEnum).toEqual(byList);
  });
});

describe('sampleRows', () => {
  it('returns a repeatable sample of file rows, in file order', async () => {
    const rows = Array.from({ length: 200 }, (_, i) => ({
      distance: i,
      origin: ORIGINS[i % 4]!,
      hour: i % 24,
      delay: i,
      label: i % 2,
    }));
    const file = await writeRows(rows);
    const sample = await sampleRows(engine, file, 10, 7);
    expect(sample).toHaveLength(10);
    expect(await sampleRows(engine, file, 10, 7)).toEqual(sample);
    expect(await sampleRows(engine, file, 10, 8)).not.toEqual(sample);
    const positions = sample.map((r) => r.distance as number);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    for (const r of sample) expect(r).toEqual(rows[r.distance as number]);
    expect(await sampleRows(engine, file, 1000, 1)).toHaveLength(200);
    await expect(sampleRows(engine, file, -1, 1)).rejects.toThrow(RangeError);
  });
});

describe('dense and sparse conversions', () => {
  it('round-trip, dropping zeros', () => {
    const dense = { rows: 2, cols: 3, data: Float64Array.of(0, 1.5, 0, -2, 0, 3) };
    const sparse = denseToSparse(dense);
    expect(Array.from(sparse.indptr)).toEqual([0, 1, 3]);
    expect(Array.from(sparse.indices)).toEqual([1, 0, 2]);
    expect(Array.from(sparse.values)).toEqual([1.5, -2, 3]);
    expect(sparseToDense(sparse)).toEqual(dense);
  });
});
