/**
 * Monitoring actions on the real stack, through the API as a user calls it: deployments whose champions were trained
 * by (recorded) pipeline runs, prediction logs inserted directly with a shifted `distance`, feedback for some rows.
 * A breached window alerts (signed, a 500 retried and every attempt recorded; pending until delivered or given up)
 * and starts exactly one run, however often the window or its retrain activity runs; a second incident within the
 * cooldown starts none, and with the default cooldown neither does the next hourly window of the same incident; a
 * live metric under its floor rolls back to the previous champion as a revision naming the window, but never over a
 * champion deployed since the window; the schedule a deploy creates can be deleted and created again and still
 * computes windows, and one set by hand is kept by later deploys; `/metrics` shows the latest distances.
 */
import { random } from '../support/monitored-deployment.js';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { Registry } from 'prom-client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The app first: it loads @hono/zod-openapi, which must extend zod before the pipeline definition's schemas are built.
import { createApp } from '../../server/app.js';
import { createActivities } from '../../activities/index.js';
import type { MonitoringActionOutcome } from '../../activities/index.js';
import type { DatasetStatistics } from '../../data/types.js';
import { latestMonitoringWindows, registerMonitoringGauges } from '../../monitoring/gauges.js';
import { SIGNATURE_HEADER, verifyAlertSignature } from '../../monitoring/alert-webhook.js';
import type { WindowSummary } from '../../monitoring/types.js';
import { pipelineDefinitionSchema, type PipelineDefinitionInput } from '../../pipelines/definition.js';
import { describeMonitorSchedule, monitorScheduleId } from '../../pipelines/monitoring-schedule.js';
import { ChampionChangedError, DEPLOYMENTS_CHANNEL } from '../../storage/deployment-store.js';
import { ALERT_DELIVERY_FAILED } from '../../activities/monitoring-actions.js';
import type { ActivityDeps } from '../../activities/deps.js';
import { testLogger, type TestPlatform } from '../support/platform.js';
import { startTestPlatform, type RunningTestPlatform } from '../support/running-platform.js';

let started: RunningTestPlatform;
let platform: TestPlatform;
let app: ReturnType<typeof createApp>;
let hooks: http.Server;
const suffix = randomUUID().slice(0, 8);
const SECRET_ENV = `MLOPS_ALERT_TEST_${suffix.toUpperCase()}`;
const SECRET = `secret-${suffix}`;
const HOUR = 3_600_000;
const ROWS = 200;
/** Whole hours, well in the past: the logs' windows. */
const T0 = new Date(Math.floor((Date.now() - 8 * HOUR) / HOUR) * HOUR);
const ORIGINS = ['PIT', 'SEA', 'ORD', 'ATL'];

/** What the alert receiver got, and what it answers next (then 200). */
const received: { signature: string | undefined; body: string }[] = [];
const answers: number[] = [];

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
      {
        name: 'delayed',
        type: 'VARCHAR',
        kind: 'categorical',
        count: 10_000,
        missing: 0,
        categorical: {
          unique: 2,
          topK: ['no', 'yes'].map((value) => ({ value, count: 5000 })),
          frequencies: ['no', 'yes'].map((value) => ({ value, count: 5000 })),
        },
      },
    ],
  };
}

interface Monitored {
  readonly name: string;
  readonly pipelineVersionId: string;
  readonly workflowId: string;
  readonly versions: { id: string; version: number }[];
}

/** A pipeline with a recorded run (statistics, classes) and `count` blessed versions from it, the last deployed. */
async function monitoredPipeline(
  name: string,
  monitoring: PipelineDefinitionInput['monitoring'],
  count: number,
): Promise<Monitored> {
  const deps = platform.activityDeps;
  const definition = pipelineDefinitionSchema.parse({
    name,
    source: { uri: '/tmp/monitoring-actions-test-missing.csv' },
    label: { name: 'delayed', expression: 'delayed', task: 'binary' },
    features: [
      { name: 'distance', expression: 'distance', kind: 'numeric' },
      { name: 'origin', expression: 'origin' },
    ],
    split: { kind: 'hash', key: 'distance', evalFraction: 0.3 },
    trainer: { kind: 'logistic_regression', params: {} },
    retry: { maximumAttempts: 1 },
    monitoring,
  } satisfies PipelineDefinitionInput);
  const { version: pipelineVersion } = await deps.pipelines.saveDefinition(definition, 'test');
  const workflowId = `monitoring-actions-${name}`;
  const { run } = await deps.pipelines.createRun({
    pipelineVersionId: pipelineVersion.id,
    workflowId,
    trigger: 'manual',
  });
  const statisticsRef = await deps.artifacts.put(JSON.stringify(statistics()), {
    kind: 'statistics.json',
    contentType: 'application/json',
  });
  await deps.pipelines.startStage(workflowId, 'statistics', 1);
  await deps.pipelines.finishStage(workflowId, 'statistics', {
    status: 'succeeded',
    outputs: { statistics: { ...statisticsRef }, rowCount: 10_000 },
  });
  await deps.pipelines.startStage(workflowId, 'prepare', 1);
  await deps.pipelines.finishStage(workflowId, 'prepare', { status: 'succeeded', outputs: { classes: ['no', 'yes'] } });
  // The recorded run is over: a run in progress would make the monitoring trigger skip.
  await deps.pipelines.setRunStatus(workflowId, 'succeeded');
  const versions: { id: string; version: number }[] = [];
  for (let i = 0; i < count; i++) {
    const sha256 = randomUUID().replace(/-/g, '').padEnd(64, '0');
    const { version } = await deps.registry.registerVersion({
      modelName: name,
      onnxUri: `s3://${deps.artifacts.bucket}/artifacts/sha256/${sha256.slice(0, 2)}/${sha256}`,
      sha256,
      signature: { inputs: [], outputs: [] },
      metrics: { auc: 0.8, accuracy: 0.75 },
      params: {},
      blessing: { blessed: true, reason: 'test', evaluatedAt: new Date().toISOString() },
      sourceRunId: run.id,
      actor: 'test',
      reason: 'monitoring actions test',
    });
    versions.push({ id: version.id, version: version.version });
  }
  return { name, pipelineVersionId: pipelineVersion.id, workflowId, versions };
}

/** `ROWS` champion predictions of `versionId` in the hour from `start`, distance moved to [1000, 2000). */
async function logShiftedHour(m: Monitored, start: Date, seed: number, labelled: boolean): Promise<void> {
  const next = random(seed);
  const rows = Array.from({ length: ROWS }, (_, i) => ({
    requestId: `${m.name}-${seed}-${i}`,
    loggedAt: new Date(start.getTime() + Math.floor((i * HOUR) / ROWS)),
    features: { distance: Math.round(1000 + next() * 1000), origin: ORIGINS[i % 4]! },
    p: Math.round(next() * 1000) / 1000,
  }));
  const champion = m.versions.at(-1)!;
  await platform.activityDeps.pgPool.query(
    `insert into prediction_logs
       (request_id, logged_at, deployment, model, version_id, version, role, features, outputs, latency_ms)
     select r, t, $5, $5, $6, $7, 'champion', f, o, 1
     from unnest($1::text[], $2::timestamptz[], $3::json[], $4::jsonb[]) as u(r, t, f, o)`,
    [
      rows.map((r) => r.requestId),
      rows.map((r) => r.loggedAt),
      rows.map((r) => JSON.stringify(r.features)),
      rows.map((r) => JSON.stringify({ label: r.p >= 0.5 ? 'yes' : 'no', probabilities: [1 - r.p, r.p] })),
      m.name,
      champion.id,
      champion.version,
    ],
  );
  if (labelled) {
    const labels = rows.map((r) => (next() < r.p ? 'yes' : 'no'));
    await platform.activityDeps.pgPool.query(
      `insert into prediction_feedback (request_id, label, actor)
       select r, to_jsonb(l), 'test' from unnest($1::text[], $2::text[]) as u(r, l)`,
      [rows.map((r) => r.requestId), labels],
    );
  }
}

async function deployAll(m: Monitored): Promise<void> {
  for (const v of m.versions) {
    await platform.storage.deployments.deploy({
      deploymentName: m.name,
      modelName: m.name,
      versionId: v.id,
      actor: 'test',
      reason: `version ${v.version} deployed by the test`,
    });
  }
}

type Computed = WindowSummary & { actions: MonitoringActionOutcome[]; workflowId: string };

async function call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const res = await app.request(path, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as T };
}

const computeWindow = (deployment: string, end: Date) =>
  call<Computed>('POST', `/v1/deployments/${deployment}/monitoring/windows`, {
    windowEnd: end.toISOString(),
    windowSeconds: 3600,
  });

let alerted: Monitored;
let rolledBack: Monitored;
let defaultCooldown: Monitored;
let raced: Monitored;
let hookUrl: string;

beforeAll(async () => {
  process.env[SECRET_ENV] = SECRET;
  hooks = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        signature: req.headers[SIGNATURE_HEADER] as string | undefined,
        body: Buffer.concat(chunks).toString(),
      });
      res.writeHead(answers.shift() ?? 200).end();
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  hookUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`;

  started = await startTestPlatform();
  platform = started.platform;
  app = createApp({
    logger: testLogger,
    readiness: [],
    version: 'test',
    bodyLimitBytes: 1024 * 1024,
    auth: { kind: 'open' },
    stores: platform.storage,
    runner: started.runner,
  });

  alerted = await monitoredPipeline(
    `mon-alert-${suffix}`,
    {
      everySeconds: 3600,
      minRows: 50,
      alert: { url: hookUrl, secretEnv: SECRET_ENV },
      retrain: { cooldownSeconds: 3600 },
    },
    1,
  );
  rolledBack = await monitoredPipeline(
    `mon-rollback-${suffix}`,
    { everySeconds: 3600, minRows: 50, rollback: { metric: 'accuracy', min: 0.99, minLabelledRows: 20 } },
    2,
  );
  // The default cooldown (6 h) with the default hourly interval.
  defaultCooldown = await monitoredPipeline(`mon-cooldown-${suffix}`, { minRows: 50, retrain: {} }, 1);
  raced = await monitoredPipeline(
    `mon-raced-${suffix}`,
    { everySeconds: 3600, minRows: 50, rollback: { metric: 'accuracy', min: 0.99, minLabelledRows: 20 } },
    3,
  );
  await deployAll(alerted);
  await deployAll(rolledBack);
  await deployAll(defaultCooldown);
  await logShiftedHour(alerted, new Date(T0.getTime() + HOUR), 1, false);
  await logShiftedHour(alerted, new Date(T0.getTime() + 2 * HOUR), 2, false);
  await logShiftedHour(rolledBack, new Date(T0.getTime() + HOUR), 3, true);
  for (const hour of [1, 2, 3])
    await logShiftedHour(defaultCooldown, new Date(T0.getTime() + hour * HOUR), 3 + hour, false);
}, 180_000);

afterAll(async () => {
  delete process.env[SECRET_ENV];
  for (const m of [alerted, rolledBack, defaultCooldown, raced]) {
    if (m)
      await platform.client.schedule
        .getHandle(monitorScheduleId(m.name))
        .delete()
        .catch(() => undefined);
  }
  await started?.stop();
  await new Promise((resolve) => hooks?.close(resolve));
});

const monitoringRuns = async (key: string) =>
  (
    await platform.activityDeps.pgPool.query<{ id: string }>(
      'select id from pipeline_runs where idempotency_key = $1',
      [key],
    )
  ).rows;

describe('monitoring actions', () => {
  let breached: Computed;

  it('alerts (signed, a 500 retried, each attempt recorded) and starts one run on a breached window', async () => {
    answers.push(500);
    const first = await computeWindow(alerted.name, new Date(T0.getTime() + 2 * HOUR));
    expect(first.status).toBe(200);
    breached = first.json;
    expect(breached.breached).toBe(true);
    expect(breached.breaches).toContainEqual(expect.objectContaining({ kind: 'skew', subject: 'distance' }));
    const byKind = Object.fromEntries(breached.actions.map((a) => [a.kind, a]));
    expect(byKind.alert).toMatchObject({ status: 'done', reason: expect.stringContaining('attempt 2') });
    expect(byKind.retrain).toMatchObject({ status: 'done', details: { dedupeKey: `monitoring:${breached.windowId}` } });
    expect(byKind.rollback).toBeUndefined();

    // Two deliveries, both signed with the shared secret over the body as sent.
    expect(received).toHaveLength(2);
    for (const r of received) expect(verifyAlertSignature(r.body, SECRET, r.signature ?? '')).toBe(true);
    expect(JSON.parse(received[0]!.body)).toMatchObject({
      kind: 'monitoring_breach',
      deployment: alerted.name,
      window: { id: breached.windowId },
      summaryPath: `/v1/deployments/${alerted.name}/monitoring/${breached.windowId}`,
    });

    const detail = await call<{
      actions: { kind: string; status: string }[];
      deliveries: { attempt: number; status: number | null; error: string | null }[];
      report: unknown;
    }>('GET', `/v1/deployments/${alerted.name}/monitoring/${breached.windowId}`);
    expect(detail.status).toBe(200);
    expect(detail.json.report).toMatchObject({});
    expect(detail.json.deliveries.map((d) => [d.attempt, d.status])).toEqual([
      [1, 500],
      [2, 200],
    ]);
    expect(detail.json.deliveries[0]?.error).toBe('HTTP 500');
    expect(detail.json.actions.map((a) => `${a.kind}:${a.status}`).sort()).toEqual(['alert:done', 'retrain:done']);
    expect(await monitoringRuns(`monitoring:${breached.windowId}`)).toHaveLength(1);
  });

  it('starts no second run nor alert when the same window is computed again or its retrain activity retried', async () => {
    const again = await computeWindow(alerted.name, new Date(T0.getTime() + 2 * HOUR));
    expect(again.json.windowId).toBe(breached.windowId);
    const retrain = (r: Computed) => r.actions.find((a) => a.kind === 'retrain');
    expect(retrain(again.json)).toEqual(retrain(breached));
    expect(received).toHaveLength(2);

    // An attempt that fired the trigger but died before recording its action: the retry finds the same run.
    await platform.activityDeps.pgPool.query(
      `delete from monitoring_actions where window_id = $1 and kind = 'retrain'`,
      [breached.windowId],
    );
    const activity = createActivities(platform.activityDeps).retrainFromMonitoring;
    const input = { summary: breached, pipeline: alerted.name, cooldownSeconds: 3600 };
    const env = () => new MockActivityEnvironment({ attempt: 2 });
    const outcomes = (await Promise.all([
      env().run(activity, input),
      env().run(activity, input),
    ])) as MonitoringActionOutcome[];
    for (const o of outcomes) expect(o).toMatchObject({ status: 'done', details: retrain(breached)!.details });
    expect(await monitoringRuns(`monitoring:${breached.windowId}`)).toHaveLength(1);
    const triggers = await platform.activityDeps.pgPool.query(
      `select status from pipeline_triggers where pipeline = $1 and kind = 'monitoring'`,
      [alerted.name],
    );
    expect(triggers.rows).toEqual([{ status: 'started' }]);
  });

  it('skips the retrain of a second incident within the cooldown, with why', async () => {
    const next = await computeWindow(alerted.name, new Date(T0.getTime() + 3 * HOUR));
    expect(next.json.breached).toBe(true);
    expect(next.json.windowId).not.toBe(breached.windowId);
    const retrain = next.json.actions.find((a) => a.kind === 'retrain');
    expect(retrain).toMatchObject({ status: 'skipped', reason: expect.stringMatching(/^cooldown: .*within 3600 s$/) });
    expect(retrain?.reason).toContain(breached.windowId);
    expect(await monitoringRuns(`monitoring:${next.json.windowId}`)).toHaveLength(0);
  });

  it('rolls back to the previous champion when the live metric is under its floor', async () => {
    const listener = new pg.Client({ connectionString: platform.endpoints.databaseUrl });
    await listener.connect();
    const notes: { deployment: string; versionId: string }[] = [];
    listener.on('notification', (n) => notes.push(JSON.parse(n.payload ?? '{}') as (typeof notes)[number]));
    await listener.query(`listen ${DEPLOYMENTS_CHANNEL}`);
    try {
      const [v1, v2] = rolledBack.versions;
      const result = await computeWindow(rolledBack.name, new Date(T0.getTime() + 2 * HOUR));
      expect(result.status).toBe(200);
      const window = result.json;
      expect(window.versionId).toBe(v2!.id);
      expect(window.live?.accuracy).toBeLessThan(0.99);
      const rollback = window.actions.find((a) => a.kind === 'rollback');
      expect(rollback).toMatchObject({ status: 'done', details: { versionId: v1!.id, fromVersionId: v2!.id } });

      const active = await platform.storage.deployments.activeRevisions(rolledBack.name);
      expect(active.map((r) => [r.role, r.versionId])).toEqual([['champion', v1!.id]]);
      expect(active[0]?.reason).toMatch(
        new RegExp(`^rollback: monitoring window ${window.windowId}: accuracy 0\\.\\d+ < 0\\.99`),
      );
      expect((await platform.storage.registry.champion(rolledBack.name))?.id).toBe(v1!.id);
      // Serving follows the notification the deploy sends on commit.
      await expect.poll(() => notes.find((n) => n.deployment === rolledBack.name)?.versionId).toBe(v1!.id);

      // Once rolled back, the same window finds its action instead of rolling back again.
      const outcome = (await new MockActivityEnvironment().run(
        createActivities(platform.activityDeps).rollbackFromMonitoring,
        {
          summary: window,
          rollback: { metric: 'accuracy' as const, min: 0.99, minLabelledRows: 20 },
        },
      )) as MonitoringActionOutcome;
      expect(outcome).toEqual(rollback);
      expect((await platform.storage.deployments.activeRevisions(rolledBack.name))[0]?.id).toBe(active[0]?.id);
    } finally {
      await listener.end();
    }
  });

  it('starts one run for breached windows an interval apart with the default cooldown, however soon computed', async () => {
    // Window ends one interval (an hour) apart, computed seconds apart: the cooldown is measured on window ends.
    const first = await computeWindow(defaultCooldown.name, new Date(T0.getTime() + 3 * HOUR));
    const second = await computeWindow(defaultCooldown.name, new Date(T0.getTime() + 4 * HOUR));
    expect([first.json.breached, second.json.breached]).toEqual([true, true]);
    const retrain = (r: Computed) => r.actions.find((a) => a.kind === 'retrain');
    expect(retrain(first.json)).toMatchObject({ status: 'done' });
    expect(retrain(second.json)).toMatchObject({
      status: 'skipped',
      reason: expect.stringMatching(/^cooldown: .* ended 3600 s before this window, within 21600 s$/),
      details: { cooldownSeconds: 21_600, cooldownWindowId: first.json.windowId },
    });
    // An earlier window of the incident, computed afterwards, is within the cooldown of the later one too.
    const earlier = await computeWindow(defaultCooldown.name, new Date(T0.getTime() + 2 * HOUR));
    expect(earlier.json.breached).toBe(true);
    expect(retrain(earlier.json)).toMatchObject({ status: 'skipped', reason: expect.stringContaining('after this') });
    const triggers = await platform.activityDeps.pgPool.query<{ status: string; reason: string }>(
      `select status, reason from pipeline_triggers where pipeline = $1 and kind = 'monitoring' order by created_at`,
      [defaultCooldown.name],
    );
    expect(triggers.rows.map((r) => r.status)).toEqual(['started', 'skipped', 'skipped']);
    expect(triggers.rows[1]?.reason).toMatch(/^cooldown: /);
    const runs = await platform.activityDeps.pgPool.query(
      `select r.id from pipeline_runs r
       join pipeline_versions v on v.id = r.pipeline_version_id
       join pipelines p on p.id = v.pipeline_id
       where p.name = $1 and r.trigger = 'monitoring'`,
      [defaultCooldown.name],
    );
    expect(runs.rows).toHaveLength(1);
  });

  it('does not roll back over a champion deployed after the window read the history', async () => {
    const [v1, v2, v3] = raced.versions;
    const deployments = platform.storage.deployments;
    for (const v of [v1!, v2!]) {
      await deployments.deploy({
        deploymentName: raced.name,
        modelName: raced.name,
        versionId: v.id,
        actor: 'test',
        reason: `version ${v.version}`,
      });
    }
    const windowEnd = new Date(T0.getTime() + 2 * HOUR);
    const {
      rows: [row],
    } = await platform.activityDeps.pgPool.query<{ id: string }>(
      `insert into monitoring_windows
         (deployment, model, version_id, version, window_start, window_end, rows, labelled_rows, breached, summary)
       values ($1, $1, $2, $3, $4, $5, 200, 200, false, '{}') returning id`,
      [raced.name, v2!.id, v2!.version, new Date(windowEnd.getTime() - HOUR), windowEnd],
    );
    const summary: WindowSummary = {
      windowId: row!.id,
      deployment: raced.name,
      model: raced.name,
      version: v2!.version,
      versionId: v2!.id,
      windowStart: new Date(windowEnd.getTime() - HOUR).toISOString(),
      windowEnd: windowEnd.toISOString(),
      rows: 200,
      labelledRows: 200,
      features: [],
      live: { accuracy: 0.5 },
      breaches: [],
      breached: false,
      belowMinRows: false,
    } as unknown as WindowSummary;
    // The history as the activity read it, before a person deployed v3: v2 serves, v1 before it.
    const stale = await deployments.deploymentHistory(raced.name);
    await deployments.deploy({
      deploymentName: raced.name,
      modelName: raced.name,
      versionId: v3!.id,
      actor: 'person',
      reason: 'a fix, deployed by hand',
    });
    const lagging = Object.assign(Object.create(deployments) as typeof deployments, {
      deploymentHistory: async () => stale,
    });
    const deps: ActivityDeps = { ...platform.activityDeps, deployments: lagging };
    const outcome = (await new MockActivityEnvironment().run(createActivities(deps).rollbackFromMonitoring, {
      summary,
      rollback: { metric: 'accuracy' as const, min: 0.99, minLabelledRows: 20 },
    })) as MonitoringActionOutcome;
    expect(outcome).toMatchObject({
      kind: 'rollback',
      status: 'skipped',
      reason: expect.stringMatching(
        new RegExp(`no longer version ${v2!.version} of the window \\(now version ${v3!.version}\\)$`),
      ),
    });
    const active = await deployments.activeRevisions(raced.name);
    expect(active.map((r) => [r.role, r.versionId, r.actor])).toEqual([['champion', v3!.id, 'person']]);

    // The store's check itself: the expected champion is compared under the deployment's lock.
    await expect(
      deployments.deploy({
        deploymentName: raced.name,
        modelName: raced.name,
        versionId: v1!.id,
        actor: 'test',
        reason: 'expects v2',
        expectedChampionVersionId: v2!.id,
      }),
    ).rejects.toBeInstanceOf(ChampionChangedError);
    const deployed = await deployments.deploy({
      deploymentName: raced.name,
      modelName: raced.name,
      versionId: v1!.id,
      actor: 'test',
      reason: 'expects v3',
      expectedChampionVersionId: v3!.id,
    });
    expect(deployed).toMatchObject({ changed: true, previousVersionId: v3!.id });

    // An alert is pending while its attempts go on, and failed once the last attempt the policy allows failed.
    answers.push(500, 500);
    const before = received.length;
    const deliver = createActivities(platform.activityDeps).deliverMonitoringAlert;
    const attempt = (n: number) =>
      new MockActivityEnvironment({ attempt: n, retryPolicy: { maximumAttempts: 2 } }).run(deliver, {
        summary,
        alert: { url: hookUrl },
      });
    const status = async () =>
      (
        await platform.activityDeps.pgPool.query<{ status: string; reason: string }>(
          `select status, reason from monitoring_actions where window_id = $1 and kind = 'alert'`,
          [summary.windowId],
        )
      ).rows[0];
    await expect(attempt(1)).rejects.toMatchObject({ type: ALERT_DELIVERY_FAILED });
    expect(await status()).toEqual({ status: 'pending', reason: 'attempt 1: HTTP 500; retried' });
    await expect(attempt(2)).rejects.toMatchObject({ type: ALERT_DELIVERY_FAILED });
    expect(await status()).toEqual({ status: 'failed', reason: 'attempt 2: HTTP 500' });
    expect(received.length - before).toBe(2);
  });

  it('skips the rollback while a rollout holds the deployment: its own analysis decides', async () => {
    // After the test above: v1 serves (v3 before it); a rollout holds the deployment to canary v2.
    const [v1, v2] = raced.versions;
    const deployments = platform.storage.deployments;
    const windowEnd = new Date(T0.getTime() + 3 * HOUR);
    const windowStart = new Date(windowEnd.getTime() - HOUR);
    const {
      rows: [row],
    } = await platform.activityDeps.pgPool.query<{ id: string }>(
      `insert into monitoring_windows
         (deployment, model, version_id, version, window_start, window_end, rows, labelled_rows, breached, summary)
       values ($1, $1, $2, $3, $4, $5, 200, 200, false, '{}') returning id`,
      [raced.name, v1!.id, v1!.version, windowStart, windowEnd],
    );
    const summary = {
      windowId: row!.id,
      deployment: raced.name,
      model: raced.name,
      version: v1!.version,
      versionId: v1!.id,
      windowStart: windowStart.toISOString(),
      windowEnd: windowEnd.toISOString(),
      rows: 200,
      labelledRows: 200,
      features: [],
      live: { accuracy: 0.5 },
      breaches: [],
      breached: false,
      belowMinRows: false,
    } as unknown as WindowSummary;
    const workflowId = `rollout-${raced.name}-${randomUUID()}`;
    await deployments.reserveRollout({ deploymentName: raced.name, workflowId, versionId: v2!.id });
    const before = await deployments.deploymentHistory(raced.name);
    try {
      const outcome = (await new MockActivityEnvironment().run(
        createActivities(platform.activityDeps).rollbackFromMonitoring,
        {
          summary,
          rollback: { metric: 'accuracy' as const, min: 0.99, minLabelledRows: 20 },
        },
      )) as MonitoringActionOutcome;
      expect(outcome).toMatchObject({
        kind: 'rollback',
        status: 'skipped',
        reason: expect.stringMatching(new RegExp(`, but rollout ${workflowId} holds the deployment: its own analysis`)),
        details: { workflowId },
      });
      expect(await deployments.deploymentHistory(raced.name)).toEqual(before);
    } finally {
      await deployments.releaseRollout(raced.name, workflowId);
    }
  });

  it('lists windows by time and feature, and answers 404 for unknown deployments and windows', async () => {
    const list = await call<{ windows: { windowId: string; features: { feature: string }[] }[] }>(
      'GET',
      `/v1/deployments/${alerted.name}/monitoring?feature=distance&from=${new Date(T0.getTime() + HOUR).toISOString()}`,
    );
    expect(list.status).toBe(200);
    expect(list.json.windows.map((w) => w.windowId)).toContain(breached.windowId);
    for (const w of list.json.windows) expect(w.features.map((f) => f.feature)).toEqual(['distance']);
    const none = await call<{ windows: unknown[] }>(
      'GET',
      `/v1/deployments/${alerted.name}/monitoring?to=${T0.toISOString()}`,
    );
    expect(none.json.windows).toEqual([]);

    expect((await call('GET', `/v1/deployments/nope-${suffix}/monitoring`)).status).toBe(404);
    expect((await call('GET', `/v1/deployments/${alerted.name}/monitoring/${randomUUID()}`)).status).toBe(404);
    expect((await call('POST', `/v1/deployments/nope-${suffix}/monitoring/windows`, {})).status).toBe(404);
    expect((await call('PUT', `/v1/deployments/nope-${suffix}/monitoring/schedule`, { everySeconds: 60 })).status).toBe(
      404,
    );
    const zero = await call<{ error: { message: string } }>(
      'PUT',
      `/v1/deployments/${alerted.name}/monitoring/schedule`,
      { everySeconds: 0 },
    );
    expect(zero.status).toBe(400);
    expect(JSON.stringify(zero.json.error)).toContain('everySeconds');

    // A retrain cooldown shorter than the interval would let the next window of an incident start another run.
    const short = await call<{ error: unknown }>('POST', '/v1/pipelines', {
      name: `mon-short-${suffix}`,
      source: { uri: '/tmp/monitoring-actions-test-missing.csv' },
      label: { name: 'delayed', expression: 'delayed', task: 'binary' },
      features: [{ name: 'distance', expression: 'distance', kind: 'numeric' }],
      split: { kind: 'hash', key: 'distance', evalFraction: 0.3 },
      trainer: { kind: 'logistic_regression', params: {} },
      monitoring: { everySeconds: 7200, retrain: { cooldownSeconds: 3600 } },
    });
    expect(short.status).toBe(400);
    expect(JSON.stringify(short.json.error)).toContain('monitoring.retrain.cooldownSeconds');
  });

  it('exposes the latest distances and live metrics as gauges', async () => {
    const registry = new Registry();
    registerMonitoringGauges(registry, { read: () => latestMonitoringWindows(platform.storage.database.db) });
    const text = await registry.metrics();
    expect(text).toMatch(
      new RegExp(
        `mlops_monitoring_feature_distance\\{deployment="${alerted.name}",feature="distance",kind="skew",method="jensen_shannon"\\} 1\\n`,
      ),
    );
    expect(text).toMatch(
      new RegExp(`mlops_monitoring_live_metric\\{deployment="${rolledBack.name}",metric="accuracy"\\}`),
    );
    expect(text).toContain(`mlops_monitoring_window_breached{deployment="${alerted.name}"} 1`);
  });
});

describe('the monitoring schedule', () => {
  /** Fires the schedule's action now and waits for its window. */
  async function fireAndWait(deployment: string): Promise<unknown> {
    const handle = platform.client.schedule.getHandle(monitorScheduleId(deployment));
    const before = (await handle.describe()).info.recentActions.length;
    await handle.trigger();
    let workflowId: string | undefined;
    await expect
      .poll(
        async () => {
          const actions = (await handle.describe()).info.recentActions;
          workflowId = actions.length > before ? actions.at(-1)?.action.workflow.workflowId : undefined;
          return workflowId;
        },
        { timeout: 20_000, interval: 250 },
      )
      .toBeDefined();
    return platform.client.workflow.getHandle(workflowId!).result();
  }

  it('is created when a version with monitoring deploys, and keeps computing after being deleted and created again', async () => {
    // The deploy stage of the recorded run, as the pipeline runs it.
    const env = new MockActivityEnvironment({
      workflowExecution: { workflowId: alerted.workflowId, runId: randomUUID() },
    });
    await env.run(createActivities(platform.activityDeps).deployModel, {
      deploymentName: alerted.name,
      modelName: alerted.name,
      versionId: alerted.versions[0]!.id,
      actor: 'test',
      reason: 'deploy stage',
    });
    const created = await describeMonitorSchedule(platform.client, alerted.name);
    expect(created).toMatchObject({
      scheduleId: `monitor:${alerted.name}`,
      everySeconds: 3600,
      paused: false,
      setBy: 'definition',
    });
    const viaApi = await call<{ everySeconds: number }>('GET', `/v1/deployments/${alerted.name}/monitoring/schedule`);
    expect(viaApi).toMatchObject({ status: 200, json: { everySeconds: 3600 } });

    // The workers run on this file's task queue: point the schedule there (an update, 200).
    const updated = await call('PUT', `/v1/deployments/${alerted.name}/monitoring/schedule`, {
      everySeconds: 3600,
      windowSeconds: 600,
    });
    expect(updated).toMatchObject({ status: 200, json: { everySeconds: 3600, windowSeconds: 600 } });
    expect(await describeMonitorSchedule(platform.client, alerted.name)).toMatchObject({ setBy: 'api' });

    // A later deploy keeps the schedule set by hand as it is (it would otherwise reset the window to the definition's).
    await env.run(createActivities(platform.activityDeps).deployModel, {
      deploymentName: alerted.name,
      modelName: alerted.name,
      versionId: alerted.versions[0]!.id,
      actor: 'test',
      reason: 'deploy stage, again',
    });
    expect(await describeMonitorSchedule(platform.client, alerted.name)).toMatchObject({
      everySeconds: 3600,
      windowSeconds: 600,
      setBy: 'api',
    });
    expect(await fireAndWait(alerted.name)).toMatchObject({ summary: { deployment: alerted.name }, actions: [] });

    expect((await call('DELETE', `/v1/deployments/${alerted.name}/monitoring/schedule`)).status).toBe(200);
    expect((await call('GET', `/v1/deployments/${alerted.name}/monitoring/schedule`)).status).toBe(404);
    expect((await call('DELETE', `/v1/deployments/${alerted.name}/monitoring/schedule`)).status).toBe(404);

    const recreated = await call('PUT', `/v1/deployments/${alerted.name}/monitoring/schedule`, { everySeconds: 3600 });
    expect(recreated.status).toBe(201);
    const result = (await fireAndWait(alerted.name)) as { summary: WindowSummary };
    expect(result.summary.deployment).toBe(alerted.name);
    expect(Date.parse(result.summary.windowEnd) % 1000).toBe(0);
    expect(Date.parse(result.summary.windowEnd) - Date.parse(result.summary.windowStart)).toBe(3600_000);
  });
});
