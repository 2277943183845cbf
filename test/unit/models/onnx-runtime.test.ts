/**
 * Feeding raw values to exported graphs (the serving path) and the pre-registration parity check.
 */
import { describe, expect, it } from 'vitest';
import {
  columnsToOnnxFeeds,
  exportOnnx,
  OnnxParityError,
  toOnnxFeeds,
  verifyOnnx,
} from '../../../models/onnx/index.js';
import type { ModelSignature } from '../../../schema/registry.js';
import { makeTransform, randomLinear, randomRows, randomTrees, reference, toColumns } from './onnx-fixtures.js';

const signature: ModelSignature = {
  inputs: [
    { name: 'x', type: 'double', shape: [null, 1] },
    { name: 'f', type: 'float', shape: [null, 1] },
    { name: 'c', type: 'string', shape: [null, 1] },
  ],
  outputs: [],
};

describe('toOnnxFeeds', () => {
  it('builds one [rows, 1] tensor per input; null and absent become NaN or ""', () => {
    const feeds = toOnnxFeeds(signature, [
      { x: 1.5, f: 2, c: 'a', extra: 'ignored' },
      { x: null, f: undefined, c: null },
      {},
      { x: true, f: 10n, c: 7 },
      { x: Infinity, f: Number.NaN, c: false },
    ]);
    expect(Object.keys(feeds)).toEqual(['x', 'f', 'c']);
    expect(feeds['x']!.type).toBe('float64');
    expect(feeds['f']!.type).toBe('float32');
    expect(feeds['c']!.type).toBe('string');
    for (const t of Object.values(feeds)) expect(t.dims).toEqual([5, 1]);
    expect(Array.from(feeds['x']!.data as Float64Array)).toEqual([1.5, NaN, NaN, 1, Infinity]);
    expect(Array.from(feeds['f']!.data as Float32Array)).toEqual([2, NaN, NaN, 10, NaN]);
    expect(feeds['c']!.data).toEqual(['a', '', '', '7', 'false']);
  });

  it('rejects values a feature cannot take', () => {
    expect(() => toOnnxFeeds(signature, [{ x: '1.5' }])).toThrow(TypeError);
    expect(() => toOnnxFeeds(signature, [{ c: { a: 1 } }])).toThrow(TypeError);
    expect(() => toOnnxFeeds({ inputs: [{ name: 'i', type: 'int64' }] }, [{ i: 1 }])).toThrow(TypeError);
  });

  it('columnsToOnnxFeeds matches toOnnxFeeds and checks the columns', () => {
    const rows = [
      { x: 1, f: 2, c: 'a' },
      { x: null, f: 3, c: undefined },
    ];
    const { feeds, rows: count } = columnsToOnnxFeeds(signature, {
      x: [1, null],
      f: [2, 3],
      c: ['a', undefined],
    });
    expect(count).toBe(2);
    const byRows = toOnnxFeeds(signature, rows);
    for (const name of ['x', 'f', 'c']) expect(feeds[name]!.data).toEqual(byRows[name]!.data);
    expect(() => columnsToOnnxFeeds(signature, { x: [1], f: [2] })).toThrow(/no column for input c/);
    expect(() => columnsToOnnxFeeds(signature, { x: [1], f: [2, 3], c: ['a'] })).toThrow(/2 values; 1 expected/);
  });
});

describe('verifyOnnx', () => {
  const transform = makeTransform('binary');
  const model = randomLinear('binary', transform, 1);
  const { bytes } = exportOnnx(model, transform);
  const rows = randomRows(transform, 120, 3);
  const inputs = toColumns(transform, rows);
  const expected = reference(model, transform, rows);

  it('reports the largest difference and the rows it compared', async () => {
    const parity = await verifyOnnx(bytes, { inputs, expected });
    expect(parity).toMatchObject({ rows: 120, output: 'probabilities' });
    expect(parity.maxAbsDiff).toBeLessThanOrEqual(1e-6);
  });

  it('throws OnnxParityError, with the row, when a difference exceeds the tolerance', async () => {
    const wrong = Float64Array.from(expected);
    wrong[2 * 37 + 1]! += 1e-3;
    const error = await verifyOnnx(bytes, { inputs, expected: wrong }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OnnxParityError);
    expect(error).toMatchObject({ row: 37, tolerance: 1e-5, output: 'probabilities' });
    expect((error as OnnxParityError).maxAbsDiff).toBeCloseTo(1e-3, 5);
    // A looser tolerance accepts it.
    await expect(verifyOnnx(bytes, { inputs, expected: wrong, tolerance: 2e-3 })).resolves.toMatchObject({ rows: 120 });
    // NaN where a number is expected is a difference, not a pass.
    wrong[0] = Number.NaN;
    await expect(verifyOnnx(bytes, { inputs, expected: wrong, tolerance: 1 })).rejects.toThrow(OnnxParityError);
  });

  it('compares the prediction of a regression graph, with an optional relative tolerance', async () => {
    const t = makeTransform('regression');
    const trees = randomTrees('regression', t, 2, { trees: 25 });
    const sample = randomRows(t, 100, 4);
    const want = reference(trees, t, sample);
    const graph = exportOnnx(trees, t).bytes;
    await expect(
      verifyOnnx(graph, { inputs: toColumns(t, sample), expected: want, relativeTolerance: 1e-6 }),
    ).resolves.toMatchObject({ rows: 100, output: 'prediction' });
  });

  it('rejects expected values of the wrong size', async () => {
    await expect(verifyOnnx(bytes, { inputs, expected: expected.subarray(1) })).rejects.toThrow(TypeError);
  });
});
