/**
 * A monitoring window over days whose prediction-log partition was exported to the serving-log warehouse and dropped,
 * on the real stack: the window spans an exported day and a live one and counts every row once, with its feedback,
 * exactly as it did while both days were in Postgres. A database of this file's own on the test server (exporting
 * drops a partition, which other files must never see), and a warehouse prefix of its own in the bucket.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActivityDeps } from '../../activities/deps.js';
import { addDays, dayStart } from '../../core/days.js';
import type { DatasetStatistics } from '../../data/types.js';
import type { WindowSummary } from '../../monitoring/types.js';
import { computeMonitoringWindow, type WindowReport } from '../../monitoring/window.js';
import { createDatabase, runMigrations } from '../../storage/database.js';
import { exportPredictionLogPartition } from '../../storage/prediction-log-export.js';
import { ensurePredictionLogPartition } from '../../storage/prediction-log-partitions.js';
import { PredictionLogWarehouse } from '../../storage/prediction-log-warehouse.js';
import {
  deployMonitoredVersion,
  insertFeedback,
  insertPredictionLogs,
  random,
  type LoggedPrediction,
  type MonitoredVersion,
} from '../support/monitored-deployment.js';
import { connectTestPlatform, type TestPlatform } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

const HOUR = 3_600_000;
const ORIGINS = ['PIT', 'SEA', 'ORD', 'ATL'];
const EXPORTED = '2026-02-10';
const LIVE = addDays(EXPORTED, 1);
/** Eight hours across midnight: four on the exported day, four on the live one. */
const WINDOW_END = new Date(dayStart(LIVE).getTime() + 4 * HOUR);
const WINDOW_SECONDS = 8 * 3600;
const ROWS = 300;

let admin: pg.Pool;
let database: string;
let platform: TestPlatform;
let deps: ActivityDeps;
let monitored: MonitoredVersion;
const suffix = randomUUID().slice(0, 8);
const deployment = `exported-${suffix}`;

/** Training saw distance uniform on [0, 1000) and four equally frequent origins. */
function statistics(): DatasetStatistics {
  return {
    version: 1,
    rowCount: 10_000,
    columns: [
      {
        name: 'distance',
        type: 'DOUBLE',
        kind: 'numeric',
        count: 10_000,
        missing: 0,
        numeric: {
          min: 0,
          max: 1000,
          mean: 500,
          std: 1000 / Math.sqrt(12),
          zeros: 0,
          quantiles: [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99].map((q) => ({ q, value: q * 1000 })),
          histogram: { edges: Array.from({ length: 21 }, (_, i) => i * 50), counts: new Array<number>(20).fill(500) },
        },
      },
      {
        name: 'origin',
        type: 'VARCHAR',
        kind: 'categorical',
        count: 10_000,
        missing: 0,
        categorical: {
          unique: 4,
          topK: ORIGINS.map((value) => ({ value, count: 2500 })),
          frequencies: ORIGINS.map((value) => ({ value, count: 2500 })),
        },
      },
    ],
  };
}

/** `count` predictions evenly spread over [start, start + span). */
function predictions(prefix: string, start: Date, span: number, count: number, seed: number): LoggedPrediction[] {
  const next = random(seed);
  return Array.from({ length: count }, (_, i) => ({
    requestId: `${deployment}-${prefix}-${i}`,
    loggedAt: new Date(start.getTime() + Math.floor((i * span) / count)),
    features: { distance: Math.floor(next() * 1000), origin: ORIGINS[Math.floor(next() * ORIGINS.length)]! },
    p: Math.round(next() * 1000) / 1000,
  }));
}

const inWindow = predictions(
  'w',
  new Date(WINDOW_END.getTime() - WINDOW_SECONDS * 1000),
  WINDOW_SECONDS * 1000,
  ROWS,
  1,
);
/** Rows of the same two days outside the window. */
const outside = [
  ...predictions('early', new Date(dayStart(EXPORTED).getTime() + 10 * HOUR), HOUR, 20, 2),
  ...predictions('late', new Date(WINDOW_END.getTime() + HOUR), HOUR, 20, 3),
];
/** Rows of the window that do not count: one failed, one answered as a shadow (one on each day). */
const failed = [inWindow[3]!.requestId, inWindow[ROWS - 3]!.requestId];
const shadow = [inWindow[5]!.requestId, inWindow[ROWS - 5]!.requestId];
const counted = inWindow.filter((r) => !failed.includes(r.requestId) && !shadow.includes(r.requestId));
const labelled = inWindow
  .filter((_, i) => i % 3 === 0)
  .map((r) => ({ requestId: r.requestId, label: r.p > 0.4 ? 'yes' : 'no' }));

beforeAll(async () => {
  const endpoints = testEndpoints();
  admin = new pg.Pool({ connectionString: endpoints.databaseUrl, max: 1 });
  database = `monitoring_exported_${suffix}`;
  await admin.query(`create database "${database}"`);
  const url = new URL(endpoints.databaseUrl);
  url.pathname = `/${database}`;
  const migrating = createDatabase(url.toString(), { max: 1 });
  try {
    await runMigrations(migrating.db);
  } finally {
    await migrating.close();
  }
  platform = await connectTestPlatform({ ...endpoints, databaseUrl: url.toString() });
  const warehouse = new PredictionLogWarehouse(
    platform.artifacts.client,
    platform.artifacts.bucket,
    `test-${suffix}/prediction_logs/`,
  );
  deps = { ...platform.activityDeps, predictionLogWarehouse: warehouse };
  const statisticsRef = await deps.artifacts.put(JSON.stringify(statistics()), {
    kind: 'statistics.json',
    contentType: 'application/json',
  });
  monitored = await deployMonitoredVersion(deps, {
    deployment,
    definition: {
      name: deployment,
      source: { uri: '/tmp/monitoring-exported-test.csv' },
      label: { name: 'delayed', expression: 'delayed', task: 'binary' },
      features: [
        { name: 'distance', expression: 'distance', kind: 'numeric' },
        { name: 'origin', expression: 'origin' },
      ],
      split: { kind: 'hash', key: 'distance', evalFraction: 0.3 },
      trainer: { kind: 'logistic_regression', params: {} },
      monitoring: { minRows: 50, thresholds: { skew: 0.1, drift: 0.1 } },
    },
    stages: {
      statistics: { statistics: { ...statisticsRef }, rowCount: 10_000 },
      prepare: { classes: ['no', 'yes'] },
    },
  });
  for (const day of [EXPORTED, LIVE]) await ensurePredictionLogPartition(deps.pgPool, day);
  await insertPredictionLogs(deps.pgPool, monitored, [...inWindow, ...outside]);
  await deps.pgPool.query(`update prediction_logs set error = 'failed' where request_id = any($1::text[])`, [failed]);
  await deps.pgPool.query(`update prediction_logs set role = 'shadow' where request_id = any($1::text[])`, [shadow]);
  await insertFeedback(deps.pgPool, labelled);
}, 180_000);

afterAll(async () => {
  await platform?.close();
  if (database) await admin?.query(`drop database if exists "${database}" with (force)`);
  await admin?.end();
});

const compute = (with_: ActivityDeps) =>
  computeMonitoringWindow(with_, { deployment, windowEnd: WINDOW_END.toISOString(), windowSeconds: WINDOW_SECONDS });

describe('a monitoring window over an exported day and a live one', () => {
  let allLive: WindowSummary;

  it('counts every row once, from Postgres and the warehouse, as it did before the day was exported', async () => {
    allLive = await compute(deps);
    expect(allLive.rows).toBe(counted.length);
    const labelledCounted = labelled.filter((l) => counted.some((r) => r.requestId === l.requestId));
    expect(allLive.labelledRows).toBe(labelledCounted.length);

    const exported = await exportPredictionLogPartition(
      { pool: deps.pgPool, warehouse: deps.predictionLogWarehouse!, scratchDir: deps.scratchDir },
      EXPORTED,
    );
    expect(exported).toMatchObject({ status: 'exported', rows: inWindow.length / 2 + 20 });

    const again = await compute(deps);
    expect(again.windowId).toBe(allLive.windowId);
    expect(again.rows).toBe(allLive.rows);
    expect(again.labelledRows).toBe(allLive.labelledRows);
    expect(again.features).toEqual(allLive.features);
    expect(again.prediction).toEqual(allLive.prediction);
    for (const [metric, value] of Object.entries(allLive.live ?? {})) {
      expect(again.live?.[metric], metric).toBeCloseTo(value, 12);
    }
    for (const [metric, value] of Object.entries(allLive.estimated ?? {})) {
      expect(again.estimated?.[metric], metric).toBeCloseTo(value, 12);
    }
    const report = JSON.parse((await deps.artifacts.get(again.reportUri!)).toString('utf8')) as WindowReport;
    const fromWarehouse = counted.filter((r) => r.loggedAt < dayStart(LIVE)).length;
    expect(report.notes).toContain(
      `${fromWarehouse} rows read from the serving-log warehouse (exported days: ${EXPORTED})`,
    );
  });

  it('refuses a window over exported days on a worker without the warehouse, rather than miss rows', async () => {
    const { predictionLogWarehouse: _, ...withoutWarehouse } = deps;
    await expect(compute(withoutWarehouse)).rejects.toThrow(
      /exported days \(2026-02-10\).*no prediction log warehouse/,
    );
  });
});
