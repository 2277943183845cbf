import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  applyTransform,
  columnNames,
  fitNumeric,
  type FittedNumericFeature,
  type FittedTransform,
} from '../../../data/transform.js';

const transform: FittedTransform = {
  version: 1,
  scaling: 'standard',
  features: [
    {
      name: 'distance',
      expression: 'distance',
      sql: 'distance',
      sourceType: 'BIGINT',
      kind: 'numeric',
      numeric: { imputeValue: 2, mean: 2, std: 0.5 },
    },
    {
      name: 'origin',
      expression: 'origin',
      sql: 'origin',
      sourceType: 'VARCHAR',
      kind: 'categorical',
      categorical: { vocabulary: ['ORD', 'ATL'], unknownIndex: 2 },
    },
    {
      name: 'hour',
      expression: 'hour(date)',
      sql: '"hour"(date)',
      sourceType: 'BIGINT',
      kind: 'categorical',
      categorical: { vocabulary: ['7'], unknownIndex: 1 },
    },
  ],
  label: { name: 'delayed', expression: 'delay > 15', sql: '(delay > 15)', task: 'binary', classes: [false, true] },
};

describe('applyTransform', () => {
  it('orders columns by feature, vocabulary order, then the unknown bucket', () => {
    expect(columnNames(transform)).toEqual([
      'distance',
      'origin=ORD',
      'origin=ATL',
      'origin=<unknown>',
      'hour=7',
      'hour=<unknown>',
    ]);
  });

  it('standardises, imputes, one-hot encodes and sends unseen and missing categories to the unknown bucket', () => {
    const matrix = applyTransform(transform, [
      { distance: 3, origin: 'ATL', hour: '7' },
      { distance: null, origin: 'SFO', hour: 7 },
      { distance: Number.NaN, origin: null, hour: undefined },
      { distance: Number.POSITIVE_INFINITY, origin: 'ORD', hour: 8n },
      { distance: 1n, hour: '7', extra: 'ignored' },
    ]);
    expect(matrix.rows).toBe(5);
    expect(matrix.columns).toBe(6);
    expect(matrix.columnNames).toEqual(columnNames(transform));
    expect(Array.from(matrix.data)).toEqual(
      [
        [2, 0, 1, 0, 1, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 1, 0, 1],
        [0, 1, 0, 0, 0, 1],
        [-2, 0, 0, 1, 1, 0],
      ].flat(),
    );
  });

  it('applies scaling none as plain mean imputation', () => {
    const distance: FittedNumericFeature = {
      name: 'distance',
      expression: 'distance',
      sql: 'distance',
      sourceType: 'DOUBLE',
      kind: 'numeric',
      numeric: { imputeValue: 2.5, mean: 0, std: 1 },
    };
    const none: FittedTransform = { ...transform, scaling: 'none', features: [distance] };
    expect(Array.from(applyTransform(none, [{ distance: 7 }, { distance: null }]).data)).toEqual([7, 2.5]);
  });

  it('refuses values of the wrong type instead of guessing', () => {
    expect(() => applyTransform(transform, [{ distance: '3' }])).toThrow(TypeError);
    expect(() => applyTransform(transform, [{ distance: 1, origin: { code: 'ORD' } }])).toThrow(TypeError);
  });

  it('is deterministic and row-independent: the same inputs always give the same matrix', () => {
    const value = fc.oneof(fc.double(), fc.integer(), fc.constant(null), fc.constantFrom('ORD', 'ATL', 'X', '7'));
    const row = fc.record({
      distance: fc.oneof(fc.double(), fc.constant(null)),
      origin: value.map((v) => (typeof v === 'number' ? String(v) : v)),
      hour: fc.oneof(fc.integer({ min: 0, max: 23 }), fc.constant(null)),
    });
    fc.assert(
      fc.property(fc.array(row, { maxLength: 30 }), (rows) => {
        const a = applyTransform(transform, rows);
        const b = applyTransform(transform, structuredClone(rows));
        expect(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer))).toBe(true);
        // Each row's output depends on that row only.
        rows.forEach((r, i) => {
          const single = applyTransform(transform, [r]).data;
          expect(Array.from(single)).toEqual(Array.from(a.data.subarray(i * a.columns, (i + 1) * a.columns)));
        });
        // One-hot blocks have exactly one 1.
        for (let i = 0; i < a.rows; i++) {
          const r = a.data.subarray(i * a.columns, (i + 1) * a.columns);
          expect(r[1]! + r[2]! + r[3]!).toBe(1);
          expect(r[4]! + r[5]!).toBe(1);
        }
      }),
    );
  });
});

describe('fitNumeric', () => {
  it('standardises with the statistics of the mean-imputed column (SimpleImputer + StandardScaler)', () => {
    // Observed 1, 2, 3 and one missing: mean 2, population variance 2/3; imputed column 1, 2, 3, 2 has variance 1/2.
    expect(fitNumeric(3, 2, 2 / 3, 4, 'standard')).toEqual({ imputeValue: 2, mean: 2, std: Math.sqrt(0.5) });
    expect(fitNumeric(3, 2, 2 / 3, 4, 'none')).toEqual({ imputeValue: 2, mean: 0, std: 1 });
  });

  it('uses std 1 for constant columns and zeros for columns without observations', () => {
    expect(fitNumeric(5, 4, 0, 5, 'standard')).toEqual({ imputeValue: 4, mean: 4, std: 1 });
    expect(fitNumeric(0, null, null, 5, 'standard')).toEqual({ imputeValue: 0, mean: 0, std: 1 });
  });
});
