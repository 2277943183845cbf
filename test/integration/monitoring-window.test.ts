/**
 * One monitoring window on the real stack: a deployment whose champion was trained by a (recorded) pipeline run with
 * statistics, prediction logs inserted directly, feedback for some of them. A window whose `distance` moved raises
 * skew and drift on `distance` only; live metrics equal those computed here by hand on the same rows; the estimate
 * is there without labels; computing a window again answers the same id and writes no second row.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlString } from '../../data/engine.js';
import { prepareDataset } from '../../data/prepare.js';
import { columnNames } from '../../data/transform.js';
import type { DatasetStatistics } from '../../data/types.js';
import { exportOnnx } from '../../models/onnx/index.js';
import { applyIsotonic } from '../../monitoring/calibration.js';
import type { StoredCalibration } from '../../monitoring/eval-calibration.js';
import { estimateBinaryPerformance } from '../../monitoring/performance-estimate.js';
import { computeMonitoringWindow, monitoringStoreOn, type WindowReport } from '../../monitoring/window.js';
import type { WindowSummary } from '../../monitoring/types.js';
import type { ArtifactRef } from '../../storage/artifact-store.js';
import {
  deployMonitoredVersion,
  insertFeedback,
  insertPredictionLogs,
  random,
  type LoggedPrediction,
} from '../support/monitored-deployment.js';
import { connectTestPlatform, type TestPlatform } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

let platform: TestPlatform;
const suffix = randomUUID().slice(0, 8);
const pipeline = `monitored-${suffix}`;
const deployment = `monitored-${suffix}`;
const ROWS = 400;
const T0 = new Date('2026-03-01T00:00:00Z');
const HOUR = 3_600_000;
const ORIGINS = ['PIT', 'SEA', 'ORD', 'ATL'];

/** Uniform on [0, 1000) for distance, [0, 24) for hour, four equally frequent origins: what training saw. */
function statistics(): DatasetStatistics {
  const uniform = (name: string, max: number, bins: number) => ({
    name,
    type: 'DOUBLE',
    kind: 'numeric' as const,
    count: 10_000,
    missing: 0,
    numeric: {
      min: 0,
      max,
      mean: max / 2,
      std: max / Math.sqrt(12),
      zeros: 0,
      quantiles: [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99].map((q) => ({ q, value: q * max })),
      histogram: {
        edges: Array.from({ length: bins + 1 }, (_, i) => (max * i) / bins),
        counts: new Array<number>(bins).fill(10_000 / bins),
      },
    },
  });
  const categorical = (name: string, values: readonly string[]) => ({
    name,
    type: 'VARCHAR',
    kind: 'categorical' as const,
    count: 10_000,
    missing: 0,
    categorical: {
      unique: values.length,
      topK: values.map((value) => ({ value, count: 10_000 / values.length })),
      frequencies: values.map((value) => ({ value, count: 10_000 / values.length })),
    },
  });
  return {
    version: 1,
    rowCount: 10_000,
    columns: [
      uniform('distance', 1000, 20),
      uniform('hour', 24, 24),
      categorical('origin', ORIGINS),
      categorical('delayed', ['no', 'yes']),
    ],
  };
}

/** `ROWS` predictions in the hour from `start`; `shifted` moves distance to [1000, 2000). */
function window(start: Date, seed: number, shifted: boolean): LoggedPrediction[] {
  const next = random(seed);
  return Array.from({ length: ROWS }, (_, i) => ({
    requestId: `${suffix}-${seed}-${i}`,
    loggedAt: new Date(start.getTime() + Math.floor((i * HOUR) / ROWS)),
    features: {
      distance: Math.round(next() * 1000 + (shifted ? 1000 : 0)),
      hour: Math.floor(next() * 24),
      origin: ORIGINS[Math.floor(next() * ORIGINS.length)]!,
    },
    p: Math.round(next() * 1000) / 1000,
  }));
}

let versionId: string;
const first = window(T0, 1, false);
const second = window(new Date(T0.getTime() + HOUR), 2, true);
/** Feedback for every other row of the second window: label yes with probability p (calibrated). */
const feedback = (() => {
  const next = random(99);
  return second.filter((_, i) => i % 2 === 0).map((r) => ({ row: r, label: next() < r.p ? 'yes' : 'no' }));
})();

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
  const deps = platform.activityDeps;
  const statisticsRef = await deps.artifacts.put(JSON.stringify(statistics()), {
    kind: 'statistics.json',
    contentType: 'application/json',
  });
  const monitored = await deployMonitoredVersion(deps, {
    deployment,
    definition: {
      name: pipeline,
      source: { uri: '/tmp/monitoring-test.csv' },
      label: { name: 'delayed', expression: 'delayed', task: 'binary' },
      features: [
        { name: 'distance', expression: 'distance', kind: 'numeric' },
        { name: 'hour', expression: 'hour', kind: 'numeric' },
        { name: 'origin', expression: 'origin' },
      ],
      split: { kind: 'hash', key: 'distance', evalFraction: 0.3 },
      trainer: { kind: 'logistic_regression', params: {} },
      monitoring: {
        minRows: 50,
        thresholds: { skew: 0.1, drift: 0.1 },
        rollback: { metric: 'accuracy', min: 0.99, minLabelledRows: 20 },
      },
    },
    stages: {
      statistics: { statistics: { ...statisticsRef }, rowCount: 10_000 },
      prepare: { classes: ['no', 'yes'] },
    },
  });
  versionId = monitored.versionId;
  await insertPredictionLogs(deps.pgPool, monitored, [...first, ...second]);
  await insertFeedback(
    deps.pgPool,
    feedback.map((f) => ({ requestId: f.row.requestId, label: f.label })),
  );
}, 120_000);

afterAll(async () => {
  await platform?.close();
});

const compute = (end: Date) =>
  computeMonitoringWindow(platform.activityDeps, {
    deployment,
    windowEnd: end.toISOString(),
    windowSeconds: 3600,
  });

/** Accuracy, log loss and AUC of the labelled rows, the plain way (pairs for AUC). */
function byHand(rows: readonly { p: number; y: number }[]) {
  const accuracy = rows.filter((r) => (r.p >= 0.5 ? 1 : 0) === r.y).length / rows.length;
  const clip = (p: number) => Math.min(1 - 1e-15, Math.max(1e-15, p));
  const logLoss =
    -rows.reduce((s, r) => s + (r.y === 1 ? Math.log(clip(r.p)) : Math.log(1 - clip(r.p))), 0) / rows.length;
  const positives = rows.filter((r) => r.y === 1);
  const negatives = rows.filter((r) => r.y === 0);
  let pairs = 0;
  for (const a of positives) for (const b of negatives) pairs += a.p > b.p ? 1 : a.p === b.p ? 0.5 : 0;
  const tp = rows.filter((r) => r.y === 1 && r.p >= 0.5).length;
  const fp = rows.filter((r) => r.y === 0 && r.p >= 0.5).length;
  const fn = rows.filter((r) => r.y === 1 && r.p < 0.5).length;
  return {
    accuracy,
    log_loss: logLoss,
    auc: pairs / (positives.length * negatives.length),
    f1: (2 * tp) / (2 * tp + fp + fn),
  };
}

describe('computeMonitoringWindow', () => {
  let firstWindow: WindowSummary;
  let secondWindow: WindowSummary;

  it('measures the first window against the baseline only, and estimates performance without labels', async () => {
    firstWindow = await compute(new Date(T0.getTime() + HOUR));
    expect(firstWindow).toMatchObject({ deployment, versionId, rows: ROWS, labelledRows: 0, belowMinRows: false });
    expect(firstWindow.features.map((f) => f.feature)).toEqual(['distance', 'hour', 'origin']);
    for (const f of firstWindow.features) {
      expect(f.skew?.breached, f.feature).toBe(false);
      expect(f.drift).toBeUndefined();
    }
    expect(firstWindow.breached).toBe(false);
    expect(firstWindow.live).toBeUndefined();
    expect(firstWindow.estimated?.accuracy).toBeGreaterThan(0.6);
    expect(firstWindow.estimated?.auc).toBeGreaterThan(0.7);
    expect(firstWindow.evaluation).toEqual({ auc: 0.8, accuracy: 0.75 });
    expect(firstWindow.prediction?.skew?.method).toBe('l_infinity');
  });

  it('raises skew and drift on the shifted feature only', async () => {
    secondWindow = await compute(new Date(T0.getTime() + 2 * HOUR));
    const byName = new Map(secondWindow.features.map((f) => [f.feature, f]));
    expect(byName.get('distance')?.skew).toMatchObject({ method: 'jensen_shannon', breached: true });
    expect(byName.get('distance')?.drift).toMatchObject({ method: 'jensen_shannon', breached: true });
    // Every shifted value lies over the baseline's max or in its top bin: far apart.
    expect(byName.get('distance')!.skew!.distance).toBeGreaterThan(0.5);
    for (const name of ['hour', 'origin']) {
      expect(byName.get(name)?.skew?.breached, name).toBe(false);
      expect(byName.get(name)?.drift?.breached, name).toBe(false);
    }
    expect(byName.get('origin')?.skew?.method).toBe('l_infinity');
    expect(byName.get('origin')?.unseenCategories).toEqual([]);
    const distanceBreaches = secondWindow.breaches.filter((b) => b.kind !== 'performance');
    expect(distanceBreaches.map((b) => [b.kind, b.subject])).toEqual([
      ['skew', 'distance'],
      ['drift', 'distance'],
    ]);
  });

  it('computes live metrics equal to those computed by hand on the same rows, beside the estimate', () => {
    const rows = feedback.map((f) => ({ p: f.row.p, y: f.label === 'yes' ? 1 : 0 }));
    const expected = byHand(rows);
    expect(secondWindow.labelledRows).toBe(feedback.length);
    for (const [metric, value] of Object.entries(expected)) {
      expect(secondWindow.live?.[metric], metric).toBeCloseTo(value, 12);
    }
    expect(secondWindow.estimated?.accuracy).toBeDefined();
    expect(secondWindow.estimateGap?.accuracy).toBeDefined();
    // The rollback floor (accuracy 0.99 on at least 20 labelled rows) is crossed.
    expect(secondWindow.breaches).toContainEqual({
      kind: 'performance',
      subject: 'accuracy',
      value: expected.accuracy,
      threshold: 0.99,
    });
  });

  it('stores a report with the bins the next window needs', async () => {
    const report = JSON.parse((await platform.artifacts.get(secondWindow.reportUri!)).toString('utf8')) as {
      features: { feature: string; counts?: number[]; edges?: number[]; topShifted: { skew: unknown[] } }[];
      previousWindowId?: string;
      calibration?: WindowReport['calibration'];
    };
    expect(report.previousWindowId).toBe(firstWindow.windowId);
    // Its run recorded no eval split: the estimate reads the logged probabilities, and says so.
    expect(report.calibration).toEqual({
      calibrated: false,
      reason: 'the training run recorded no eval split to calibrate on',
    });
    const distance = report.features.find((f) => f.feature === 'distance')!;
    expect(distance.counts!.reduce((a, b) => a + b, 0)).toBe(ROWS);
    expect(distance.counts![distance.counts!.length - 1]).toBeGreaterThan(ROWS / 2);
    expect(distance.topShifted.skew.length).toBeGreaterThan(0);
  });

  it('answers the same id when a window is computed again, and writes no second row', async () => {
    const again = await compute(new Date(T0.getTime() + 2 * HOUR));
    expect(again.windowId).toBe(secondWindow.windowId);
    expect(again.features).toEqual(secondWindow.features);
    const store = monitoringStoreOn(platform.activityDeps.pgPool);
    const windows = await store.listWindows(deployment, { limit: 10, offset: 0 });
    expect(windows.map((w) => w.id)).toEqual([secondWindow.windowId, firstWindow.windowId]);
    expect(await store.getWindow(deployment, firstWindow.windowId)).toMatchObject({ rows: ROWS, breached: false });
    expect(await store.getWindow(deployment, 'not-a-uuid')).toBeUndefined();
    const { rows } = await platform.activityDeps.pgPool.query<{ n: string }>(
      'select count(*) as n from monitoring_windows where deployment = $1',
      [deployment],
    );
    expect(Number(rows[0]!.n)).toBe(2);
  });

  it('refuses an unknown deployment as not found', async () => {
    await expect(
      computeMonitoringWindow(platform.activityDeps, {
        deployment: `missing-${suffix}`,
        windowEnd: T0.toISOString(),
        windowSeconds: 60,
      }),
    ).rejects.toMatchObject({ kind: 'not_found' });
  });
});

/**
 * A version whose run recorded no snapshot statistics but a real prepared train split (data/prepare.ts over a
 * snapshot written here), with `hour` computed by `hour(ts)`: every feature gets skew against the train split, the
 * predictions against its labels, and the split's statistics are computed once and reused by the next window. Its
 * graph (a linear model on distance, deliberately underconfident) scores the eval split once, and the estimates read
 * the probabilities through the isotonic calibration fitted there.
 */
describe('computeMonitoringWindow with features computed by expressions', () => {
  const computed = `computed-${suffix}`;
  const T1 = new Date('2026-03-05T00:00:00Z');
  const reportOf = async (summary: WindowSummary) =>
    JSON.parse((await platform.artifacts.get(summary.reportUri!)).toString('utf8')) as WindowReport;

  /** `ROWS` predictions in the hour from `start`; `earlyHours` serves only hours 0 to 5. */
  function served(start: Date, seed: number, earlyHours: boolean): LoggedPrediction[] {
    const next = random(seed);
    return Array.from({ length: ROWS }, (_, i) => ({
      requestId: `${computed}-${seed}-${i}`,
      loggedAt: new Date(start.getTime() + Math.floor((i * HOUR) / ROWS)),
      features: {
        distance: Math.floor(next() * 1000),
        hour: Math.floor(next() * (earlyHours ? 6 : 24)),
        origin: ORIGINS[Math.floor(next() * ORIGINS.length)]!,
      },
      p: Math.round(next() * 1000) / 1000,
    }));
  }

  const firstServed = served(T1, 11, false);
  const secondServed = served(new Date(T1.getTime() + HOUR), 12, true);
  /** Every fourth row of the second window gets feedback. */
  const labelledServed = secondServed.filter((_, i) => i % 4 === 0);
  let evalSplit: ArtifactRef;
  let evalRows: number;
  let onnx: ArtifactRef;

  beforeAll(async () => {
    const deps = platform.activityDeps;
    const workDir = fs.mkdtempSync(path.join(deps.scratchDir, 'computed-'));
    const engine = await DataEngine.open({ workDir });
    let stages: Record<string, Record<string, unknown>>;
    try {
      // Training saw every hour of the day, distance uniform on [0, 1000), four origins, half of the flights late:
      // those with distance plus a noise uniform on [−200, 200) over 500.
      const snapshot = path.join(workDir, 'snapshot.parquet');
      await engine.run(
        `COPY (SELECT TIMESTAMP '2026-01-01 00:00:00' + to_minutes(i * 37) AS ts,
            ((i * 7919) % 1000)::DOUBLE AS distance, ['PIT', 'SEA', 'ORD', 'ATL'][(i % 4) + 1] AS origin,
            CASE WHEN (i * 7919) % 1000 + CAST(hash(i) % 400 AS DOUBLE) - 200 >= 500 THEN 'yes' ELSE 'no' END AS delayed
          FROM range(4000) t(i)) TO ${sqlString(snapshot)} (FORMAT parquet)`,
      );
      const prepared = await prepareDataset(
        engine,
        {
          input: snapshot,
          label: { name: 'delayed', expression: 'delayed', task: 'binary' },
          features: [
            { name: 'distance', expression: 'distance' },
            { name: 'hour', expression: 'hour(ts)' },
            { name: 'origin', expression: 'origin' },
          ],
          split: { kind: 'hash', key: 'distance', evalFraction: 0.3 },
        },
        path.join(workDir, 'out'),
      );
      const train = await deps.artifacts.putFile(prepared.train.path, { kind: 'train.parquet' });
      evalSplit = await deps.artifacts.putFile(prepared.eval.path, { kind: 'eval.parquet' });
      evalRows = prepared.eval.rows;
      const transform = await deps.artifacts.put(JSON.stringify(prepared.transform), { kind: 'transform.json' });
      // P(yes) = sigmoid(0.5 z) of the standardised distance: about 0.3 to 0.7 where the truth goes from 0 to 1.
      const weights = columnNames(prepared.transform).map((column) => (column === 'distance' ? 0.5 : 0));
      const graph = exportOnnx(
        { kind: 'linear', task: 'binary', weights: [weights], intercepts: [0] },
        prepared.transform,
      );
      onnx = await deps.artifacts.put(Buffer.from(graph.bytes), { kind: 'model.onnx' });
      stages = {
        prepare: {
          train: { ...train },
          eval: { ...evalSplit },
          transform: { ...transform },
          classes: prepared.labelInfo.classes,
        },
      };
    } finally {
      engine.close();
      fs.rmSync(workDir, { recursive: true, force: true });
    }
    const monitored = await deployMonitoredVersion(deps, {
      deployment: computed,
      definition: {
        name: computed,
        source: { uri: '/tmp/monitoring-computed-test.parquet' },
        label: { name: 'delayed', expression: 'delayed', task: 'binary' },
        features: [
          { name: 'distance', expression: 'distance' },
          { name: 'hour', expression: 'hour(ts)' },
          { name: 'origin', expression: 'origin' },
        ],
        split: { kind: 'hash', key: 'distance', evalFraction: 0.3 },
        trainer: { kind: 'logistic_regression', params: {} },
        monitoring: { minRows: 50, thresholds: { skew: 0.1, drift: 0.1 } },
      },
      stages,
      onnx,
    });
    await insertPredictionLogs(deps.pgPool, monitored, [...firstServed, ...secondServed]);
    await insertFeedback(
      deps.pgPool,
      labelledServed.map((r, i) => ({ requestId: r.requestId, label: i % 3 === 0 ? 'yes' : 'no' })),
    );
  }, 120_000);

  const computeComputed = (end: Date) =>
    computeMonitoringWindow(platform.activityDeps, {
      deployment: computed,
      windowEnd: end.toISOString(),
      windowSeconds: 3600,
    });

  let before: WindowSummary;
  let after: WindowSummary;

  it('measures skew of every feature, the computed one included, and a shift in it is flagged', async () => {
    before = await computeComputed(new Date(T1.getTime() + HOUR));
    expect(before.rows).toBe(ROWS);
    for (const f of before.features) {
      expect(f.skew, f.feature).toBeDefined();
      expect(f.skew?.breached, f.feature).toBe(false);
    }
    expect(before.features.find((f) => f.feature === 'hour')?.skew?.method).toBe('jensen_shannon');
    expect(before.features.find((f) => f.feature === 'origin')?.unseenCategories).toEqual([]);
    // The predicted classes against the training labels, as classes (not their indexes in the prepared file).
    expect(before.prediction?.skew).toMatchObject({ method: 'l_infinity', breached: false });
    expect(before.prediction?.unseenCategories).toEqual([]);
    const beforeReport = await reportOf(before);
    expect(beforeReport.baseline?.features?.uri).toMatch(/^s3:\/\//);
    expect(beforeReport.notes.some((n) => n.startsWith("computed the train split's statistics"))).toBe(true);

    after = await computeComputed(new Date(T1.getTime() + 2 * HOUR));
    const byName = new Map(after.features.map((f) => [f.feature, f]));
    expect(byName.get('hour')?.skew).toMatchObject({ method: 'jensen_shannon', breached: true });
    expect(byName.get('hour')?.drift?.breached).toBe(true);
    for (const name of ['distance', 'origin']) expect(byName.get(name)?.skew?.breached, name).toBe(false);
    expect(after.breaches.filter((b) => b.kind === 'skew').map((b) => b.subject)).toEqual(['hour']);

    // The next window of the same version read the statistics the first one stored.
    const afterReport = await reportOf(after);
    expect(afterReport.baseline?.features).toEqual(beforeReport.baseline?.features);
    expect(afterReport.notes.some((n) => n.startsWith("computed the train split's statistics"))).toBe(false);
  });

  it('estimates through the calibration fitted once on the eval split, on every row and on the labelled ones', async () => {
    const [beforeReport, afterReport] = await Promise.all([reportOf(before), reportOf(after)]);
    expect(beforeReport.calibration).toMatchObject({
      calibrated: true,
      artifact: { eval: evalSplit.uri, model: onnx.sha256 },
      evalRows,
    });
    const ece = beforeReport.calibration!.ece!;
    expect(ece.after!).toBeLessThan(ece.before / 2);
    expect(beforeReport.notes).toContain(`calibrated on the eval split: ${beforeReport.calibration!.artifact!.uri}`);
    // The next window read it back instead of scoring the eval split again.
    expect(afterReport.calibration).toEqual(beforeReport.calibration);
    expect(afterReport.notes.some((n) => n.startsWith('calibrated on the eval split'))).toBe(false);

    const stored = JSON.parse(
      (await platform.artifacts.get(beforeReport.calibration!.artifact!)).toString('utf8'),
    ) as StoredCalibration;
    const map = stored.calibration!.maps[0]!;
    const logged = (rows: readonly LoggedPrediction[]) => Float64Array.from(rows, (r) => r.p);
    const calibrated = (rows: readonly LoggedPrediction[]) =>
      estimateBinaryPerformance(
        logged(rows).map((p) => applyIsotonic(map, p)),
        0.5,
        logged(rows),
      );
    const expectClose = (actual: Readonly<Record<string, number>> | undefined, expected: Record<string, number>) => {
      for (const [metric, value] of Object.entries(expected)) expect(actual?.[metric], metric).toBeCloseTo(value, 9);
    };
    expectClose(before.estimated, calibrated(firstServed));
    expectClose(after.estimated, calibrated(secondServed));
    expectClose(afterReport.estimatedOnLabelled, calibrated(labelledServed));
    // Not what the logged probabilities say at face value.
    const faceValue = estimateBinaryPerformance(logged(firstServed)).accuracy!;
    expect(Math.abs(before.estimated!.accuracy! - faceValue)).toBeGreaterThan(0.02);
    // The gap is still realized minus estimated, on the labelled rows.
    expect(after.labelledRows).toBe(labelledServed.length);
    expect(after.estimateGap?.accuracy).toBeCloseTo(
      after.live!.accuracy! - afterReport.estimatedOnLabelled!.accuracy!,
      12,
    );
  });
});
