/**
 * The Evaluator: metrics of an exported graph on a prepared eval file agree with the in-memory model's predictions
 * (the graph's float32 probabilities rounded the same way), per slice as well; macro metrics on a hand-computed
 * example; typed errors for bad labels, a graph without the task's output, unknown slice features.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlIdentifier, sqlString } from '../../../data/engine.js';
import type { FittedTransform, LabelTask } from '../../../data/transform.js';
import { computeMetrics, evaluateOnnxModel, EvaluationError, type EvaluationReport } from '../../../models/evaluate.js';
import {
  argmaxRows,
  accuracy,
  brierScore,
  logLoss,
  mae,
  multiclassLogLoss,
  r2,
  rmse,
  rocAuc,
  thresholdMetrics,
} from '../../../models/metrics.js';
import { exportOnnx } from '../../../models/onnx/index.js';
import { predictRows } from '../../../models/predict.js';
import type { TrainedModel } from '../../../models/types.js';
import { CLASSIFICATION_METRICS, REGRESSION_METRICS } from '../../../pipelines/definition.js';
import { makeTransform, randomLinear, randomTrees, rng, type Row } from './onnx-fixtures.js';

const N = 3000;
/** Per 50 rows: 20 ORD, 12 ATL, 8 DFW, 5 unseen, 4 missing, 1 RARE → RARE has 60 rows, below minSliceRows 100. */
const ORIGIN_PATTERN: readonly (string | null)[] = [
  ...Array<string>(20).fill('ORD'),
  ...Array<string>(12).fill('ATL'),
  ...Array<string>(8).fill('DFW'),
  ...Array<string>(5).fill('unseen'),
  ...Array<null>(4).fill(null),
  'RARE',
];

let tmp: string;
let engine: DataEngine;
let files = 0;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'evaluate-test-'));
  engine = await DataEngine.open({ workDir: path.join(tmp, 'work'), threads: 1 });
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

/** Prepared-file rows: numeric values finite or null, categorical strings or null. */
function makeRows(count: number, seed: number): Row[] {
  const random = rng(seed);
  const rows: Row[] = [];
  for (let i = 0; i < count; i++) {
    const u = random();
    rows.push({
      hour: random() < 0.08 ? null : Math.round(random() * 2400) / 100,
      origin: ORIGIN_PATTERN[i % ORIGIN_PATTERN.length]!,
      distance: random() < 0.05 ? null : 30 + random() * 2470,
      carrier: random() < 0.5 ? 'AA' : null,
      day_of_week: i % 8 === 0 ? null : i % 8,
      dest: u < 0.2 ? 'SFO' : u < 0.7 ? 'LAX' : u < 0.9 ? 'JFK' : null,
    });
  }
  return rows;
}

/** Labels drawn from the model's own probabilities (so AUC is well above 0.5); rows to SFO are always class 0. */
function drawLabels(task: LabelTask, model: TrainedModel, transform: FittedTransform, rows: Row[], seed: number) {
  const random = rng(seed);
  const predicted = predictRows(model, transform, rows);
  const labels = new Float64Array(rows.length);
  const k = task === 'regression' ? 1 : transform.label.classes!.length;
  for (let i = 0; i < rows.length; i++) {
    if (task === 'regression') labels[i] = predicted[i]! + (random() - 0.5) * 50;
    else if (rows[i]!['dest'] === 'SFO') labels[i] = 0;
    else {
      let u = random();
      let c = 0;
      while (c < k - 1 && u >= predicted[i * k + c]!) u -= predicted[i * k + c++]!;
      labels[i] = c;
    }
  }
  return labels;
}

/** Writes a prepared eval file: raw features in transform order (DOUBLE / VARCHAR, null when missing), then label. */
async function writeEvalFile(transform: FittedTransform, rows: readonly Row[], labels: ArrayLike<number>) {
  const file = path.join(engine.workDir, `eval-${++files}.parquet`);
  const labelType = transform.label.task === 'regression' ? 'DOUBLE' : 'INTEGER';
  const tuples = rows.map((row, i) => {
    const values = transform.features.map((f) => {
      const v = row[f.name];
      if (f.kind === 'numeric')
        return v === null || v === undefined ? 'NULL::DOUBLE' : `${sqlString(String(v))}::DOUBLE`;
      return v === null || v === undefined ? 'NULL::VARCHAR' : sqlString(String(v));
    });
    return `(${[...values, `${sqlString(String(labels[i]))}::${labelType}`].join(', ')})`;
  });
  const names = [...transform.features.map((f) => sqlIdentifier(f.name)), 'label'].join(', ');
  await engine.run(
    `COPY (SELECT * FROM (VALUES ${tuples.join(', ')}) v(${names})) TO ${sqlString(file)} (FORMAT parquet)`,
  );
  return file;
}

/** The in-memory model's outputs as the graph reports them: classification probabilities rounded to float32. */
function referenceOutputs(model: TrainedModel, transform: FittedTransform, rows: readonly Row[]): Float64Array {
  const out = predictRows(model, transform, rows);
  return model.task === 'regression' ? out : Float64Array.from(Float32Array.from(out));
}

function pick(values: Float64Array, width: number, indexes: readonly number[]): Float64Array {
  const out = new Float64Array(indexes.length * width);
  indexes.forEach((row, i) => out.set(values.subarray(row * width, (row + 1) * width), i * width));
  return out;
}

/** Binary metrics computed straight from metrics.ts. */
function binaryExpected(y: Float64Array, probabilities: Float64Array, threshold: number): Record<string, number> {
  const p = Float64Array.from({ length: y.length }, (_, i) => probabilities[2 * i + 1]!);
  const at = thresholdMetrics(y, p, threshold);
  const both = y.some((v) => v === 1) && y.some((v) => v === 0);
  return {
    ...(both ? { auc: rocAuc(y, p) } : {}),
    log_loss: logLoss(y, p),
    accuracy: at.accuracy,
    precision: at.precision,
    recall: at.recall,
    f1: at.f1,
    brier: brierScore(y, p),
  };
}

function expectMetricsClose(actual: Record<string, number>, expected: Record<string, number>, tolerance = 1e-9) {
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  for (const [name, value] of Object.entries(expected)) {
    const scale = Math.max(1, Math.abs(value));
    expect({ name, diff: Math.abs(actual[name]! - value) <= tolerance * scale }).toEqual({ name, diff: true });
  }
}

function expectFinite(report: EvaluationReport): void {
  const all = [report.metrics, ...report.slices.map((s) => s.metrics)].flatMap((m) => Object.values(m));
  expect(all.every(Number.isFinite)).toBe(true);
  expect(JSON.parse(JSON.stringify(report))).toEqual(report);
}

describe('evaluateOnnxModel: binary', () => {
  const transform = makeTransform('binary');
  const model = randomLinear('binary', transform, 7);
  const rows = makeRows(N, 1);
  const labels = drawLabels('binary', model, transform, rows, 2);
  const expectedOutputs = referenceOutputs(model, transform, rows);
  let file: string;
  let onnx: Uint8Array;

  beforeAll(async () => {
    file = await writeEvalFile(transform, rows, labels);
    onnx = exportOnnx(model, transform).bytes;
  });

  it('reports every classification metric, equal to the in-memory model’s at the given threshold', async () => {
    const report = await evaluateOnnxModel({ onnx, evalPath: file, transform, engine, threshold: 0.4 });
    expect(report.task).toBe('binary');
    expect(report.rows).toBe(N);
    expect(report.threshold).toBe(0.4);
    expect(Object.keys(report.metrics).sort()).toEqual([...CLASSIFICATION_METRICS].sort());
    expectMetricsClose(report.metrics, binaryExpected(labels, expectedOutputs, 0.4));
    expect(report.metrics['auc']).toBeGreaterThan(0.65);
    expect(report.slices).toEqual([]);
    expect(report.skippedSlices).toBe(0);
    expect(report.seconds).toBeGreaterThan(0);
    expectFinite(report);
  });

  it('gives the same figures whatever the batch size (one DuckDB chunk per request, or everything at once)', async () => {
    const small = await evaluateOnnxModel({ onnx, evalPath: file, transform, engine, batchRows: 1 });
    const large = await evaluateOnnxModel({ onnx, evalPath: file, transform, engine, batchRows: 1_000_000 });
    expect(small.metrics).toEqual(large.metrics);
    expect(large.threshold).toBe(0.5);
  });

  it('scores slices per value: categorical strings, numbers, null; small values skipped; rows add up', async () => {
    const report = await evaluateOnnxModel({
      onnx,
      evalPath: file,
      transform,
      engine,
      slices: ['origin', 'day_of_week', 'dest'],
    });
    const of = (feature: string) => report.slices.filter((s) => s.feature === feature);

    // origin: RARE (60 rows) is counted, not scored; the rest add up to every other row.
    expect(of('origin').map((s) => [s.value, s.rows])).toEqual([
      ['ORD', 1200],
      ['ATL', 720],
      ['DFW', 480],
      ['unseen', 300],
      [null, 240],
    ]);
    // day_of_week: 1..7 and missing, 375 rows each, all scored; ties ordered by value, missing last.
    expect(of('day_of_week').map((s) => s.value)).toEqual([1, 2, 3, 4, 5, 6, 7, null]);
    expect(of('day_of_week').reduce((sum, s) => sum + s.rows, 0)).toBe(N);
    expect(of('dest').reduce((sum, s) => sum + s.rows, 0)).toBe(N);
    expect(report.skippedSlices).toBe(1);

    // Each slice's metrics are those of its rows.
    for (const slice of report.slices) {
      const indexes = rows.flatMap((row, i) => ((row[slice.feature] ?? null) === slice.value ? [i] : []));
      expect(indexes.length).toBe(slice.rows);
      const expected = binaryExpected(pick(labels, 1, indexes), pick(expectedOutputs, 2, indexes), 0.5);
      expectMetricsClose(slice.metrics, expected);
    }
    // SFO rows are all class 0: AUC is undefined there, so absent (not NaN); the rest is reported.
    const sfo = of('dest').find((s) => s.value === 'SFO')!;
    expect(sfo.metrics['auc']).toBeUndefined();
    expect(sfo.metrics['log_loss']).toBeGreaterThan(0);
    expectFinite(report);
  });

  it('scores only the maxSliceValues most frequent values and counts the rest as skipped', async () => {
    const report = await evaluateOnnxModel({
      onnx,
      evalPath: file,
      transform,
      engine,
      slices: ['origin'],
      maxSliceValues: 2,
      minSliceRows: 1,
    });
    expect(report.slices.map((s) => s.value)).toEqual(['ORD', 'ATL']);
    expect(report.skippedSlices).toBe(4); // DFW, unseen, null, RARE
  });

  it('uses a session it is given, and leaves it open', async () => {
    const session = await ort.InferenceSession.create(onnx);
    try {
      const given = await evaluateOnnxModel({ onnx: new Uint8Array(), evalPath: file, transform, engine, session });
      const loaded = await evaluateOnnxModel({ onnx, evalPath: file, transform, engine });
      expect(given.metrics).toEqual(loaded.metrics);
      expect(session.outputNames).toContain('probabilities');
      await expect(session.run({})).rejects.toThrow(); // still usable: it complains about feeds, not a released session
    } finally {
      await session.release();
    }
  });

  it('agrees with a tree ensemble’s graph too (float32 sums in the graph: 1e-5)', async () => {
    const trees = randomTrees('binary', transform, 3);
    const treeLabels = drawLabels('binary', trees, transform, rows, 4);
    const treeFile = await writeEvalFile(transform, rows, treeLabels);
    const onnxTrees = exportOnnx(trees, transform).bytes;
    const report = await evaluateOnnxModel({ onnx: onnxTrees, evalPath: treeFile, transform, engine });
    expectMetricsClose(report.metrics, binaryExpected(treeLabels, referenceOutputs(trees, transform, rows), 0.5), 1e-5);
  });
});

describe('evaluateOnnxModel: multiclass and regression', () => {
  it('multiclass: one-vs-rest AUC, log loss, argmax accuracy, macro P/R/F1, Brier equal the reference', async () => {
    const transform = makeTransform('multiclass');
    const model = randomLinear('multiclass', transform, 17);
    const rows = makeRows(N, 5);
    const labels = drawLabels('multiclass', model, transform, rows, 6);
    const file = await writeEvalFile(transform, rows, labels);
    const report = await evaluateOnnxModel({
      onnx: exportOnnx(model, transform).bytes,
      evalPath: file,
      transform,
      engine,
      slices: ['dest'],
    });
    expect(report.task).toBe('multiclass');
    expect(report.threshold).toBeUndefined();
    const outputs = referenceOutputs(model, transform, rows);
    const expected = computeMetrics({ task: 'multiclass', labels, outputs, classCount: 3, threshold: 0.5 });
    expect(Object.keys(expected).sort()).toEqual([...CLASSIFICATION_METRICS].sort());
    expectMetricsClose(report.metrics, expected);
    // Independent figures for what metrics.ts defines.
    expect(report.metrics['log_loss']).toBeCloseTo(multiclassLogLoss(labels, outputs, 3), 12);
    expect(report.metrics['accuracy']).toBeCloseTo(accuracy(labels, argmaxRows(outputs, 3)), 12);
    expect(report.slices.reduce((sum, s) => sum + s.rows, 0)).toBe(N);
    expectFinite(report);
  });

  it('regression: rmse, mae and r2 of the prediction output equal the in-memory model’s', async () => {
    const transform = makeTransform('regression');
    const model = randomLinear('regression', transform, 27);
    const rows = makeRows(N, 8);
    const labels = drawLabels('regression', model, transform, rows, 9);
    const file = await writeEvalFile(transform, rows, labels);
    const report = await evaluateOnnxModel({
      onnx: exportOnnx(model, transform).bytes,
      evalPath: file,
      transform,
      engine,
      slices: ['origin'],
    });
    expect(report.task).toBe('regression');
    expect(Object.keys(report.metrics).sort()).toEqual([...REGRESSION_METRICS].sort());
    const predicted = predictRows(model, transform, rows);
    expectMetricsClose(report.metrics, {
      rmse: rmse(labels, predicted),
      mae: mae(labels, predicted),
      r2: r2(labels, predicted),
    });
    expect(report.metrics['rmse']).toBeGreaterThan(10); // uniform noise of width 50: about 14.4
    expect(report.metrics['rmse']).toBeLessThan(20);
    expect(report.slices.map((s) => s.value)).toEqual(['ORD', 'ATL', 'DFW', 'unseen', null]);
    expect(report.skippedSlices).toBe(1);
    expectFinite(report);
  });
});

describe('computeMetrics: multiclass by hand', () => {
  // 6 rows, 3 classes; predictions (argmax) 0, 1, 2, 1, 0, 0.
  const labels = Float64Array.from([0, 1, 2, 2, 1, 0]);
  const outputs = Float64Array.from(
    [
      [0.7, 0.2, 0.1],
      [0.1, 0.6, 0.3],
      [0.2, 0.3, 0.5],
      [0.1, 0.5, 0.4],
      [0.5, 0.3, 0.2],
      [0.6, 0.1, 0.3],
    ].flat(),
  );

  it('macro averages over classes, sum-of-squares Brier, one-vs-rest AUC', () => {
    const m = computeMetrics({ task: 'multiclass', labels, outputs, classCount: 3, threshold: 0.5 });
    expect(m['accuracy']).toBeCloseTo(4 / 6, 12);
    // Per class P / R / F1: 0: 2/3, 1, 0.8; 1: 1/2, 1/2, 1/2; 2: 1, 1/2, 2/3.
    expect(m['precision']).toBeCloseTo(13 / 18, 12);
    expect(m['recall']).toBeCloseTo(2 / 3, 12);
    expect(m['f1']).toBeCloseTo(59 / 90, 12);
    // Rows' Σ (p − y)²: 0.14, 0.26, 0.38, 0.62, 0.78, 0.26.
    expect(m['brier']).toBeCloseTo(2.44 / 6, 12);
    expect(m['log_loss']).toBeCloseTo(-[0.7, 0.6, 0.5, 0.4, 0.3, 0.6].reduce((s, p) => s + Math.log(p), 0) / 6, 12);
    // One-vs-rest: class 0 perfectly ranked, class 1 6.5 of 8 pairs (one tie), class 2 perfect.
    expect(m['auc']).toBeCloseTo((1 + 6.5 / 8 + 1) / 3, 12);
  });

  it('leaves out a class that is neither a label nor a prediction, and AUC where one class has no negatives', () => {
    // Class 2 never occurs; two rows of class 0, one of class 1 predicted as 0.
    const y = Float64Array.from([0, 0, 1]);
    const p = Float64Array.from([0.8, 0.1, 0.1, 0.6, 0.3, 0.1, 0.5, 0.4, 0.1]);
    const m = computeMetrics({ task: 'multiclass', labels: y, outputs: p, classCount: 3, threshold: 0.5 });
    // Class 0: P 2/3, R 1, F1 0.8; class 1: P 0 (never predicted), R 0, F1 0.
    expect(m['precision']).toBeCloseTo(1 / 3, 12);
    expect(m['recall']).toBeCloseTo(1 / 2, 12);
    expect(m['f1']).toBeCloseTo(0.4, 12);
    // AUC over classes 0 and 1 only: class 0 scores 0.8, 0.6 vs 0.5 → 1; class 1 scores 0.4 vs 0.1, 0.3 → 1.
    expect(m['auc']).toBeCloseTo(1, 12);

    const single = computeMetrics({
      task: 'multiclass',
      labels: Float64Array.from([1, 1]),
      outputs: p.subarray(0, 6),
      classCount: 3,
      threshold: 0.5,
    });
    expect(single['auc']).toBeUndefined();
    expect(single['accuracy']).toBe(0);
  });
});

describe('evaluateOnnxModel: errors', () => {
  const transform = makeTransform('binary');
  const model = randomLinear('binary', transform, 1);
  const rows = makeRows(50, 11);

  it('refuses a label that is not a class index', async () => {
    const file = await writeEvalFile(
      transform,
      rows,
      Array.from({ length: rows.length }, (_, i) => (i === 7 ? 2 : 0)),
    );
    const run = evaluateOnnxModel({ onnx: exportOnnx(model, transform).bytes, evalPath: file, transform, engine });
    await expect(run).rejects.toThrow(EvaluationError);
    await expect(run).rejects.toThrow(/row 7 has label 2/);
  });

  it('refuses a graph without the task’s output, and an unknown slice feature', async () => {
    const file = await writeEvalFile(transform, rows, new Float64Array(rows.length).fill(1));
    const regression = makeTransform('regression');
    const run = evaluateOnnxModel({
      onnx: exportOnnx(model, transform).bytes,
      evalPath: file,
      transform: regression,
      engine,
    });
    await expect(run).rejects.toThrow(/must have a prediction output/);
    const slice = evaluateOnnxModel({
      onnx: exportOnnx(model, transform).bytes,
      evalPath: file,
      transform,
      engine,
      slices: ['nope'],
    });
    await expect(slice).rejects.toThrow(EvaluationError);
  });
});
