/**
 * The InfraValidator: a good graph loads and answers; garbage bytes, a graph without the serving outputs, an input
 * the data lacks, non-finite outputs and an unmeetable latency bound give passed: false with a reason, never an
 * exception; an unreadable eval file is the one thing that throws.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlIdentifier, sqlString } from '../../../data/engine.js';
import type { FittedTransform } from '../../../data/transform.js';
import { infraValidate } from '../../../models/infra-validation.js';
import { exportOnnx, ONNX_IR_VERSION, ONNX_OPSET } from '../../../models/onnx/index.js';
import { GraphBuilder } from '../../../models/onnx/graph.js';
import type { LinearModel } from '../../../models/types.js';
import { makeTransform, randomLinear, randomTrees } from './onnx-fixtures.js';

const ROWS = 40;

let tmp: string;
let engine: DataEngine;
let evalPath: string;

/** A prepared eval file for makeTransform's features: DOUBLE and VARCHAR columns with some nulls, then label. */
async function writeEvalFile(transform: FittedTransform): Promise<string> {
  const file = path.join(engine.workDir, 'eval.parquet');
  const columns = transform.features.map((f, c) => {
    const sql =
      f.kind === 'numeric'
        ? `CASE WHEN i % 7 = ${c} THEN NULL ELSE CAST(i * 1.5 + ${c} AS DOUBLE) END`
        : `CASE WHEN i % 5 = 0 THEN NULL ELSE (['ORD', 'ATL', 'LAX', 'zz'])[i % 4 + 1] END`;
    return `${sql} AS ${sqlIdentifier(f.name)}`;
  });
  await engine.run(
    `COPY (SELECT ${columns.join(', ')}, CAST(i % 2 AS INTEGER) AS label FROM range(${ROWS}) t(i))
     TO ${sqlString(file)} (FORMAT parquet)`,
  );
  return file;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'infra-validation-test-'));
  engine = await DataEngine.open({ workDir: path.join(tmp, 'work'), threads: 1 });
  evalPath = await writeEvalFile(makeTransform('binary'));
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('infraValidate', () => {
  it('passes a good classifier and a good regressor, reporting load and request times', async () => {
    for (const model of [
      randomLinear('binary', makeTransform('binary'), 1),
      randomTrees('regression', makeTransform('regression'), 2),
    ]) {
      const { bytes } = exportOnnx(model, makeTransform(model.task));
      const result = await infraValidate({ onnx: bytes, evalPath, engine, sampleRows: 25, maxLatencyMs: 60_000 });
      expect(result).toMatchObject({ passed: true, rows: 25, maxLatencyMs: 60_000 });
      expect(result.error).toBeUndefined();
      expect(result.loadMs).toBeGreaterThan(0);
      expect(result.latencyMs).toBeGreaterThan(0);
    }
  });

  it('sends the whole file when it has fewer rows than the sample', async () => {
    const { bytes } = exportOnnx(
      randomLinear('multiclass', makeTransform('multiclass'), 3),
      makeTransform('multiclass'),
    );
    const result = await infraValidate({ onnx: bytes, evalPath, engine, sampleRows: 10_000, maxLatencyMs: 60_000 });
    expect(result).toMatchObject({ passed: true, rows: ROWS });
  });

  it('fails garbage bytes without throwing', async () => {
    const garbage = new TextEncoder().encode('this is not an ONNX model');
    const result = await infraValidate({ onnx: garbage, evalPath, engine, sampleRows: 10, maxLatencyMs: 60_000 });
    expect(result.passed).toBe(false);
    expect(result.error).toMatch(/\S/);
    expect(result).toMatchObject({ loadMs: 0, latencyMs: 0, rows: 0 });
  });

  it('fails a request slower than the bound (0 ms cannot be met)', async () => {
    const { bytes } = exportOnnx(randomLinear('binary', makeTransform('binary'), 1), makeTransform('binary'));
    const result = await infraValidate({ onnx: bytes, evalPath, engine, sampleRows: 10, maxLatencyMs: 0 });
    expect(result.passed).toBe(false);
    expect(result.latencyMs).toBeGreaterThan(0);
    expect(result.error).toMatch(/the sample request of 10 rows took .* ms; the bound is 0 ms/);
  });

  it('fails non-finite outputs', async () => {
    const transform = makeTransform('regression', 'none');
    const base = randomLinear('regression', transform, 4);
    const model: LinearModel = { ...base, weights: base.weights.map((row) => row.map(() => 1e308)) };
    const result = await infraValidate({
      onnx: exportOnnx(model, transform).bytes,
      evalPath,
      engine,
      sampleRows: 10,
      maxLatencyMs: 60_000,
    });
    expect(result.passed).toBe(false);
    expect(result.error).toMatch(/prediction has the non-finite value/);
  });

  it('fails a graph without the serving outputs, and one whose input the data lacks', async () => {
    const g = new GraphBuilder();
    const hour = g.input('hour', 'double', ['N', 1]);
    g.node('Identity', [hour], {}, { outputs: ['scores'] });
    g.output('scores', 'double', ['N', 1]);
    const bytes = g.encode({
      producerName: 'test',
      producerVersion: '0',
      graphName: 'identity',
      irVersion: ONNX_IR_VERSION,
      opsets: [{ domain: '', version: ONNX_OPSET }],
    });
    const wrong = await infraValidate({ onnx: bytes, evalPath, engine, sampleRows: 10, maxLatencyMs: 60_000 });
    expect(wrong.passed).toBe(false);
    expect(wrong.error).toMatch(/outputs are \[scores\]; serving needs prediction, or label and probabilities/);

    const base = makeTransform('binary');
    const extra: FittedTransform = { ...base, features: [...base.features, { ...base.features[0]!, name: 'extra' }] };
    const model = randomLinear('binary', extra, 5);
    const missing = await infraValidate({
      onnx: exportOnnx(model, extra).bytes,
      evalPath,
      engine,
      sampleRows: 10,
      maxLatencyMs: 60_000,
    });
    expect(missing.passed).toBe(false);
    expect(missing.error).toMatch(/no column for input\(s\) extra/);
  });

  it('throws when the eval file cannot be read (not the model’s fault: worth a retry)', async () => {
    const { bytes } = exportOnnx(randomLinear('binary', makeTransform('binary'), 1), makeTransform('binary'));
    const missingFile = path.join(engine.workDir, 'missing.parquet');
    await expect(
      infraValidate({ onnx: bytes, evalPath: missingFile, engine, sampleRows: 10, maxLatencyMs: 60_000 }),
    ).rejects.toThrow();
  });
});
