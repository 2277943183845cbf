/**
 * The platform's own metrics on the real stack: `GET /metrics` shows runs, stage durations, trigger events and
 * monitoring windows and actions read from Postgres, beside the serving and process metrics, as one valid Prometheus
 * page; and a worker process serves the Temporal SDK's `temporal_*` metrics on WORKER_METRICS_PORT.
 *
 * Rows are inserted under names of this file's own (a pipeline, a deployment and a stage name), so their series
 * have exact values however many runs the other test files make at the same time.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  monitoringActions,
  monitoringWindows,
  pipelineRuns,
  pipelineRunStages,
  pipelines,
  pipelineTriggers,
  pipelineVersions,
} from '../../schema/index.js';
import { createApp } from '../../server/app.js';
import type { AppEnv } from '../../server/context.js';
import { PlatformMetrics } from '../../server/platform-metrics.js';
import { createServing, type Serving } from '../../serving/index.js';
import { findFreePort } from '../../stack/ports.js';
import { openStorage, type PlatformStorage } from '../../storage/open-storage.js';
import { startWorkerChild } from '../../workers/worker-child.js';
import { testLogger } from '../support/platform.js';
import { parsePrometheusText, sampleValue, type PrometheusFamily } from '../support/prometheus-text.js';
import { testConfig, testEndpoints } from '../support/stack.js';

const suffix = randomUUID().slice(0, 8);
const pipeline = `metrics-${suffix}`;
const deployment = `metrics-${suffix}`;
const stage = `stage-${suffix}`;

let storage: PlatformStorage;
let serving: Serving;
let pipelineVersionId: string;

/** An app serving `/metrics` as the API does: serving's registry (with process metrics), then the platform's. */
function appWith(platformMetrics: PlatformMetrics): OpenAPIHono<AppEnv> {
  return createApp({
    logger: testLogger,
    readiness: [],
    auth: { kind: 'open' },
    version: 'test',
    bodyLimitBytes: 64 * 1024,
    serving: { ...serving, maxInstances: 100 },
    metricsRegistries: [platformMetrics.registry],
  });
}

async function scrape(app: OpenAPIHono<AppEnv>): Promise<Map<string, PrometheusFamily>> {
  const response = await app.request('/metrics');
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await response.text());
}

const at = (seconds: number) => new Date(Date.UTC(2026, 0, 1) + seconds * 1000);

async function insertRun(trigger: string, status: string, outcome: string | null): Promise<string> {
  const [run] = await storage.database.db
    .insert(pipelineRuns)
    .values({
      pipelineVersionId,
      workflowId: `metrics-${randomUUID()}`,
      trigger,
      status: status as 'succeeded',
      outcome,
      startedAt: at(0),
      finishedAt: ['succeeded', 'failed', 'cancelled'].includes(status) ? at(600) : null,
    })
    .returning({ id: pipelineRuns.id });
  return run!.id;
}

beforeAll(async () => {
  storage = openStorage(testEndpoints(), { logger: testLogger, applicationName: 'mlops-test-metrics', poolSize: 4 });
  serving = createServing({
    registry: storage.registry,
    deployments: storage.deployments,
    artifacts: storage.artifacts,
    logger: testLogger,
    options: { inferenceThread: false },
  });
  const { db } = storage.database;
  const [created] = await db.insert(pipelines).values({ name: pipeline }).returning();
  const [version] = await db
    .insert(pipelineVersions)
    .values({ pipelineId: created!.id, version: 1, definition: {}, definitionSha256: suffix, createdBy: 'test' })
    .returning();
  pipelineVersionId = version!.id;

  const deployed = await insertRun('http', 'succeeded', 'deployed');
  const notBlessed = await insertRun('schedule', 'succeeded', 'not_blessed');
  const failed = await insertRun('schedule', 'failed', null);
  const running = await insertRun('schedule', 'running', null);
  const waiting = await insertRun('new_data', 'waiting_approval', null);
  // Stage durations: 0.05 s, 3 s and exactly 10 s succeeded; 45 s failed; one still running (not counted).
  const stages: [string, string, number | undefined][] = [
    [deployed, 'succeeded', 0.05],
    [notBlessed, 'succeeded', 3],
    [waiting, 'succeeded', 10],
    [failed, 'failed', 45],
    [running, 'running', undefined],
  ];
  await db.insert(pipelineRunStages).values(
    stages.map(([runId, status, seconds]) => ({
      runId,
      stage,
      status: status as 'succeeded',
      startedAt: at(0),
      finishedAt: seconds === undefined ? null : at(seconds),
    })),
  );
  const triggers: [string, string][] = [
    ['schedule', 'started'],
    ['schedule', 'started'],
    ['schedule', 'skipped'],
    ['new_data', 'started'],
  ];
  await db.insert(pipelineTriggers).values(
    triggers.map(([kind, status]) => ({
      pipeline,
      kind: kind as 'schedule',
      status: status as 'started',
      source: 'test',
      dedupeKey: `metrics-${randomUUID()}`,
    })),
  );
  const windows = await db
    .insert(monitoringWindows)
    .values(
      [false, false, true].map((breached, i) => ({
        deployment,
        model: deployment,
        versionId: randomUUID(),
        version: 1,
        windowStart: at(i * 3600),
        windowEnd: at((i + 1) * 3600),
        rows: 100,
        breached,
        summary: {},
      })),
    )
    .returning({ id: monitoringWindows.id });
  await db.insert(monitoringActions).values([
    { windowId: windows[2]!.id, deployment, kind: 'retrain', status: 'done', reason: 'drift' },
    { windowId: windows[2]!.id, deployment, kind: 'alert', status: 'failed', reason: 'drift' },
  ]);
});

afterAll(async () => {
  await serving?.pool.close();
  await serving?.closeInference();
  await storage?.close();
});

describe('GET /metrics', () => {
  it("shows the platform's runs, stages, triggers and monitoring beside serving's, as valid Prometheus text", async () => {
    const page = await scrape(appWith(new PlatformMetrics({ pool: storage.database.pool, logger: testLogger })));
    // Serving's families and Node's process metrics are still there, each family once (the parser checks).
    expect(page.has('mlops_serving_requests_total')).toBe(true);
    expect(page.has('process_cpu_user_seconds_total')).toBe(true);

    const started = 'mlops_pipeline_runs_started_total';
    expect(page.get(started)?.type).toBe('counter');
    expect(sampleValue(page, started, { pipeline, trigger: 'http' })).toBe(1);
    expect(sampleValue(page, started, { pipeline, trigger: 'schedule' })).toBe(3);
    expect(sampleValue(page, started, { pipeline, trigger: 'new_data' })).toBe(1);

    const finished = 'mlops_pipeline_runs_finished_total';
    const ours = page.get(finished)?.samples.filter((s) => s.labels.pipeline === pipeline);
    expect(ours?.map((s) => [s.labels.trigger, s.labels.status, s.labels.outcome, s.value]).sort()).toEqual([
      ['http', 'succeeded', 'deployed', 1],
      ['schedule', 'failed', '', 1],
      ['schedule', 'succeeded', 'not_blessed', 1],
    ]);

    const inProgress = 'mlops_pipeline_runs_in_progress';
    expect(page.get(inProgress)?.type).toBe('gauge');
    expect(sampleValue(page, inProgress, { pipeline, status: 'running' })).toBe(1);
    expect(sampleValue(page, inProgress, { pipeline, status: 'waiting_approval' })).toBe(1);
    expect(sampleValue(page, inProgress, { pipeline, status: 'pending' })).toBeUndefined();

    const durations = 'mlops_pipeline_stage_duration_seconds';
    expect(page.get(durations)?.type).toBe('histogram');
    const bucket = (status: string, le: string) =>
      sampleValue(page, durations, { stage, status, le }, `${durations}_bucket`);
    expect(
      ['0.1', '2.5', '5', '10', '+Inf'].map((le) => bucket('succeeded', le)),
      'a stage of exactly 10 s is in le="10"',
    ).toEqual([1, 1, 2, 3, 3]);
    expect(sampleValue(page, durations, { stage, status: 'succeeded' }, `${durations}_sum`)).toBeCloseTo(13.05, 6);
    expect(sampleValue(page, durations, { stage, status: 'succeeded' }, `${durations}_count`)).toBe(3);
    expect(['30', '60', '+Inf'].map((le) => bucket('failed', le))).toEqual([0, 1, 1]);
    expect(bucket('running', '+Inf'), 'an unfinished stage has no duration').toBeUndefined();

    const triggers = 'mlops_trigger_events_total';
    expect(sampleValue(page, triggers, { pipeline, kind: 'schedule', status: 'started' })).toBe(2);
    expect(sampleValue(page, triggers, { pipeline, kind: 'schedule', status: 'skipped' })).toBe(1);
    expect(sampleValue(page, triggers, { pipeline, kind: 'new_data', status: 'started' })).toBe(1);

    const windows = 'mlops_monitoring_windows';
    expect(sampleValue(page, windows, { deployment, breached: 'false' })).toBe(2);
    expect(sampleValue(page, windows, { deployment, breached: 'true' })).toBe(1);
    const actions = 'mlops_monitoring_actions';
    expect(sampleValue(page, actions, { deployment, kind: 'retrain', status: 'done' })).toBe(1);
    expect(sampleValue(page, actions, { deployment, kind: 'alert', status: 'failed' })).toBe(1);

    expect(sampleValue(page, 'mlops_platform_metrics_refresh_failures_total', {})).toBe(0);
    const refreshed = sampleValue(page, 'mlops_platform_metrics_last_refresh_timestamp_seconds', {});
    expect(Math.abs(refreshed! - Date.now() / 1000)).toBeLessThan(60);
  });

  it('answers a burst of scrapes from one read, and a later scrape with the new rows', async () => {
    const cached = appWith(new PlatformMetrics({ pool: storage.database.pool, logger: testLogger, cacheMs: 60_000 }));
    const http = (page: Map<string, PrometheusFamily>) =>
      sampleValue(page, 'mlops_pipeline_runs_started_total', { pipeline, trigger: 'http' });
    const before = http(await scrape(cached));
    await insertRun('http', 'pending', null);
    const burst = await Promise.all(Array.from({ length: 5 }, () => scrape(cached)));
    expect(burst.map(http)).toEqual(Array(5).fill(before));

    const fresh = appWith(new PlatformMetrics({ pool: storage.database.pool, logger: testLogger, cacheMs: 0 }));
    const page = await scrape(fresh);
    expect(http(page)).toBe(before! + 1);
    expect(sampleValue(page, 'mlops_pipeline_runs_in_progress', { pipeline, status: 'pending' })).toBe(1);
  });
});

describe("a worker's Temporal SDK metrics", () => {
  it('are served on WORKER_METRICS_PORT as valid Prometheus text', { timeout: 180_000 }, async () => {
    const port = await findFreePort();
    const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-metrics-'));
    const env = {
      WORKER_METRICS_PORT: String(port),
      // A queue of its own: this worker must not take another file's training tasks.
      TEMPORAL_TRAINING_TASK_QUEUE: `test-metrics-${suffix}`,
      LOG_LEVEL: 'info',
    };
    const child = await startWorkerChild({
      config: testConfig(env),
      endpoints: testEndpoints(),
      logger: testLogger,
      logTo: { file: path.join(logDir, 'worker.log') },
      roles: ['training'],
      env,
    });
    try {
      // The exporter answers once the runtime is installed; the worker's series appear once it polls.
      let page = new Map<string, PrometheusFamily>();
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const response = await fetch(`http://127.0.0.1:${port}/metrics`);
        expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
        page = parsePrometheusText(await response.text());
        if ([...page.keys()].some((name) => name.startsWith('temporal_worker'))) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      const names = [...page.keys()];
      expect(names.length).toBeGreaterThan(0);
      expect(names.every((name) => name.startsWith('temporal_'))).toBe(true);
      expect(names).toEqual(
        expect.arrayContaining(['temporal_worker_task_slots_available', 'temporal_request_latency_seconds']),
      );
      // Prometheus's naming, as runtime.ts asks for: counters end in _total, durations are in seconds.
      const counters = [...page.values()].filter((f) => f.type === 'counter').map((f) => f.name);
      expect(counters.length).toBeGreaterThan(0);
      expect(counters.filter((name) => !name.endsWith('_total'))).toEqual([]);
      const slots = page.get('temporal_worker_task_slots_available')!.samples;
      expect(slots.some((s) => s.labels.task_queue === env.TEMPORAL_TRAINING_TASK_QUEUE)).toBe(true);
    } finally {
      await child.stop();
      fs.rmSync(logDir, { recursive: true, force: true });
    }
  });
});
