/**
 * (About 600 lines: the strategies share one trained pair of versions and one serving stack, which take most of the
 * file's time to set up; split files would each set them up again.)
 *
 * Deployment strategies on the real stack: a canary run by the `deploymentRollout` workflow under live traffic is
 * promoted when the challenger is as good as the champion, and rolled back on its own when it is not (early, at a
 * check) or when the rollout is cancelled; a shadow is scored on copies of the traffic and logged with role shadow,
 * never answering; a sticky canary gives one key one version. Every change is kept in the deployment's history.
 * One rollout runs per deployment at a time (concurrent requests: one 202, the rest 409); a canary whose rollout
 * workflow was terminated is rolled back by the reconciler; versions not fit to serve (not blessed, approval
 * rejected) are refused unless the request allows them explicitly, and the override is recorded.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The app first: it loads @hono/zod-openapi, which must extend zod before the pipeline definition's schemas are built.
import { createApp } from '../../server/app.js';
import { startDeploymentRollout, type RolloutView } from '../../pipelines/rollouts.js';
import { ensureRolloutReconcilerSchedule } from '../../workers/schedules.js';
import { reconcileDeploymentRollouts, ROLLOUT_RECONCILER_SCHEDULE_ID } from '../../workflows/index.js';
import type { PipelineRunnerDeps } from '../../pipelines/runs.js';
import { startApiServer, type ApiServer } from '../../server/serve.js';
import { createServing, type Serving } from '../../serving/index.js';
import type { RevisionSummary } from '../../storage/deployment-store.js';
import type { DeploymentRolloutResult, TrainingPipelineResult } from '../../workflows/index.js';
import { anyNamedKey, keyOf } from '../support/auth.js';
import { testLogger, type TestPlatform } from '../support/platform.js';
import { runPipelineToEnd, syntheticCsv, syntheticDefinition } from '../support/pipelines.js';
import { startTestPlatform, type RunningTestPlatform } from '../support/running-platform.js';

let platform: TestPlatform;
let runner: PipelineRunnerDeps;
let started: RunningTestPlatform | undefined;
let serving: Serving | undefined;
let server: ApiServer | undefined;
let dir: string;
let url: string;

const name = `rollout-${randomUUID().slice(0, 8)}`;
let csv: string;
let v1: TrainingPipelineResult;
let v2: TrainingPipelineResult;

beforeAll(async () => {
  started = await startTestPlatform();
  ({ platform, runner } = started);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollout-'));
  csv = path.join(dir, 'events.csv');

  // Two blessed versions trained by the pipeline (each deployed as it is trained), then v1 the champion again.
  await platform.storage.pipelines.saveDefinition(syntheticDefinition(name, csv), 'test');
  writeData(18);
  v1 = await trainAndDeploy();
  writeData(16);
  v2 = await trainAndDeploy();
  await platform.storage.deployments.deploy({
    deploymentName: name,
    modelName: name,
    versionId: v1.model.versionId,
    actor: 'test',
    reason: 'v1 is the champion before the canary',
  });

  serving = createServing({
    registry: platform.storage.registry,
    deployments: platform.storage.deployments,
    artifacts: platform.artifacts,
    databaseUrl: platform.endpoints.databaseUrl,
    logger: testLogger,
    options: {
      defaultMetrics: false,
      pollIntervalMs: 600_000,
      listenerApplicationName: `rollout-test-${name}`,
      predictionLog: { flushMs: 50 },
    },
  });
  await serving.pool.start();
  const { storage } = platform;
  const app = createApp({
    logger: testLogger,
    readiness: [],
    auth: anyNamedKey,
    version: 'test',
    bodyLimitBytes: 64 * 1024,
    stores: {
      artifacts: storage.artifacts,
      metadata: storage.metadata,
      datasets: storage.datasets,
      pipelines: storage.pipelines,
      registry: storage.registry,
      deployments: storage.deployments,
    },
    runner,
    serving: { ...serving, maxInstances: 100 },
  });
  server = await startApiServer({ app, host: '127.0.0.1', port: 0, logger: testLogger });
  url = server.url;
}, 300_000);

afterAll(async () => {
  await server?.close();
  await serving?.pool.close();
  await serving?.predictionLog?.close(1_000);
  await started?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function writeData(threshold: number): void {
  fs.writeFileSync(csv, syntheticCsv({ threshold }));
}

async function trainAndDeploy(): Promise<TrainingPipelineResult> {
  const { result } = await runPipelineToEnd(runner, name);
  expect(result.outcome).toBe('deployed');
  return result;
}

interface PredictBody {
  model?: { name: string; version: number; versionId: string };
  requestId?: string;
  predictions?: { label?: unknown; probabilities?: number[] }[];
  error?: { code: string; message: string };
}

async function predict(body: unknown): Promise<{ status: number; body: PredictBody }> {
  const response = await fetch(`${url}/v1/models/${name}/predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...keyOf('client') },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as PredictBody };
}

/** A JSON answer of the API, loosely typed (the assertions check its shape). */
interface ApiBody {
  error?: { code: string; message: string };
  rolloutId?: string;
  status?: string;
  changed?: boolean;
  [key: string]: unknown;
}

async function api(method: string, route: string, body?: unknown): Promise<{ status: number; body: ApiBody }> {
  const response = await fetch(`${url}${route}`, {
    method,
    headers: { 'content-type': 'application/json', ...keyOf('alice') },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as ApiBody };
}

/** Requests from `concurrency` loops until stopped. */
function load(concurrency = 4) {
  const log: { status: number; version: number | undefined; requestId: string | undefined }[] = [];
  let stop = false;
  const loops = Array.from({ length: concurrency }, async (_, i) => {
    let n = i;
    while (!stop) {
      n += concurrency;
      const { status, body } = await predict({ instance: { x: n % 37, kind: `k${n % 3}` } });
      log.push({ status, version: body.model?.version, requestId: body.requestId });
    }
  });
  return {
    log,
    async stop() {
      stop = true;
      await Promise.all(loops);
      return log;
    },
  };
}

async function until<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function rolloutDone(id: string, timeoutMs: number): Promise<RolloutView> {
  return until(
    async () => {
      const { status, body } = await api('GET', `/v1/deployments/${name}/rollouts/${id}`);
      expect(status).toBe(200);
      return body.status !== 'running' ? (body as unknown as RolloutView) : undefined;
    },
    timeoutMs,
    `rollout ${id} to end`,
  );
}

function servingRoute() {
  return serving!.pool.status().find((d) => d.deployment === name);
}

async function logRows(where: string, params: unknown[]) {
  const { rows } = await platform.storage.database.pool.query<{
    request_id: string;
    role: string;
    version: number;
    outputs: unknown;
    error: string | null;
  }>(`select request_id, role, version, outputs, error from prediction_logs where deployment = $1 and ${where}`, [
    name,
    ...params,
  ]);
  return rows;
}

const shares = (revisions: readonly RevisionSummary[]) =>
  revisions.map((r) => `${r.role} v${r.version} ${r.trafficPercent}%`);

describe('deployment rollouts', () => {
  it('refuses canaries that cannot run: the champion itself, unknown versions and deployments', async () => {
    const self = await api('POST', `/v1/deployments/${name}/rollouts`, { version: 1, strategy: 'canary' });
    expect(self.status).toBe(409);
    expect(self.body.error?.message).toContain('already is the champion');
    expect((await api('POST', `/v1/deployments/${name}/rollouts`, { version: 99, strategy: 'canary' })).status).toBe(
      404,
    );
    expect(
      (await api('POST', `/v1/deployments/nope-${name}/rollouts`, { version: 1, strategy: 'canary' })).status,
    ).toBe(404);
    const bad = await api('POST', `/v1/deployments/${name}/rollouts`, {
      version: 2,
      strategy: 'canary',
      trafficPercent: 100,
    });
    expect(bad.status).toBe(400);
    // Probe: a check every millisecond would fill the rollout's history (issue 15).
    const tooOften = await api('POST', `/v1/deployments/${name}/rollouts`, {
      version: 2,
      strategy: 'canary',
      checkEverySeconds: 0.001,
    });
    expect(tooOften.status).toBe(400);
    expect(tooOften.body.error?.message).toContain('checkEverySeconds');
    expect((await api('GET', `/v1/deployments/${name}/rollouts/${randomUUID()}`)).status).toBe(404);
  });

  it('runs a canary under live traffic and promotes a challenger as good as the champion', async () => {
    const traffic = load();
    await until(() => traffic.log.length > 20, 10_000, 'traffic');
    const since = new Date();
    const started = await api('POST', `/v1/deployments/${name}/rollouts`, {
      version: 2,
      strategy: 'canary',
      trafficPercent: 40,
      durationSeconds: 5,
      checkEverySeconds: 2,
      minRequests: 20,
      thresholds: { maxErrorRateIncrease: 0.05, maxLatencyP99Ratio: 20, maxPredictionDivergence: 0.5 },
    });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ deployment: name, strategy: 'canary', version: 2 });

    // Both versions answer during the canary.
    await until(() => traffic.log.some((r) => r.version === 2), 10_000, 'the challenger to answer');
    const during = await api('GET', `/v1/deployments/${name}/rollouts/${started.body.rolloutId!}`);
    expect(during.body).toMatchObject({ status: 'running', state: { phase: 'canary', modelName: name } });

    const done = await rolloutDone(started.body.rolloutId!, 30_000);
    const state = done.state as DeploymentRolloutResult;
    expect(done.status, JSON.stringify(done)).toBe('completed');
    expect(state.outcome, state.reason).toBe('promoted');
    expect(state.steps.map((s) => s.step)).toEqual(
      expect.arrayContaining(['canary_started', 'checked', 'compared', 'promoted']),
    );
    const compared = state.steps.find((s) => s.step === 'compared')!.comparison!;
    expect(compared.verdict).toBe('pass');
    expect(compared.challenger.requests).toBeGreaterThanOrEqual(20);
    expect(compared.champion.requests).toBeGreaterThanOrEqual(20);
    expect(compared.errorRateIncrease).toBe(0);
    expect(compared.latencyP99Ratio).toBeGreaterThan(0);
    expect(compared.predictionDivergence).toBeGreaterThanOrEqual(0);
    expect(compared.labels?.values.length).toBeGreaterThan(0);
    expect(compared.scores?.edges).toHaveLength(11);

    // Then v2 answers everything.
    await until(() => servingRoute()?.targets.length === 1 && servingRoute()?.targets[0]?.version === 2, 10_000, 'v2');
    const mark = traffic.log.length;
    await until(() => traffic.log.length > mark + 20, 10_000, 'traffic after the promotion');
    const log = await traffic.stop();
    expect(log.filter((r) => r.status !== 200)).toEqual([]);
    expect(log.slice(mark).every((r) => r.version === 2)).toBe(true);
    expect((await platform.storage.registry.champion(name))?.id).toBe(v2.model.versionId);

    // Each answer was logged with the role that gave it.
    const byRole = await platform.storage.database.pool.query<{ role: string; version: number; n: number }>(
      `select role, version, count(*)::int as n from prediction_logs where deployment = $1 and logged_at >= $2
       group by 1, 2 order by 1, 2`,
      [name, since],
    );
    expect(byRole.rows).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ role: 'champion', version: 1 }),
        expect.objectContaining({ role: 'challenger', version: 2 }),
        expect.objectContaining({ role: 'champion', version: 2 }),
      ]),
    );

    // The history: v1 alone, then v1 60 % beside v2 40 % (the canary), then v2 alone (promoted), with reasons.
    const history = await platform.storage.deployments.deploymentHistory(name);
    const [promoted, ...rest] = history;
    expect(shares([promoted!])).toEqual(['champion v2 100%']);
    expect(promoted!.endedAt).toBeNull();
    expect(promoted!.reason).toMatch(/^canary passed, promoted by rollout /);
    expect(promoted!.actor).toMatch(/^workflow:rollout-/);
    const canary = rest.filter((r) => r.startedAt.getTime() === rest[0]!.startedAt.getTime());
    expect(shares(canary).sort()).toEqual(['challenger v2 40%', 'champion v1 60%']);
    for (const r of canary) {
      expect(r.endedAt?.getTime()).toBe(promoted!.startedAt.getTime());
      expect(r.reason).toContain('canary of version 2 requested by alice');
      expect(r.actor).toBe('alice');
    }
    const before = rest[canary.length]!;
    expect(shares([before])).toEqual(['champion v1 100%']);
    expect(before.endedAt?.getTime()).toBe(canary[0]!.startedAt.getTime());
    const deployment = await api('GET', `/v1/deployments/${name}`);
    expect(deployment.body).toMatchObject({ strategy: 'replace', active: [{ role: 'champion', version: 2 }] });
  });

  it('rolls a worse challenger back on its own at the first failing check', async () => {
    const traffic = load();
    await until(() => traffic.log.length > 20, 10_000, 'traffic');
    const startedAt = Date.now();
    const started = await api('POST', `/v1/deployments/${name}/rollouts`, {
      version: 1,
      strategy: 'canary',
      trafficPercent: 50,
      durationSeconds: 60,
      checkEverySeconds: 1,
      minRequests: 10,
      // A p99 ratio no challenger can meet.
      thresholds: { maxLatencyP99Ratio: 0.0001, maxPredictionDivergence: 1 },
    });
    expect(started.status).toBe(202);
    const done = await rolloutDone(started.body.rolloutId!, 30_000);
    const state = done.state as DeploymentRolloutResult;
    expect(state.outcome).toBe('rolled_back');
    expect(Date.now() - startedAt).toBeLessThan(30_000);
    const check = state.steps.find((s) => s.step === 'checked' && s.comparison?.verdict === 'fail');
    expect(check?.comparison?.checks.find((c) => c.name === 'latency_p99')?.passed).toBe(false);
    expect(state.reason).toMatch(/^canary failed \(early check\), rolled back by rollout .*: fail: p99 /);

    await until(() => servingRoute()?.targets.length === 1, 10_000, 'the rollback to reach serving');
    const mark = traffic.log.length;
    await until(() => traffic.log.length > mark + 20, 10_000, 'traffic after the rollback');
    const log = await traffic.stop();
    expect(log.filter((r) => r.status !== 200)).toEqual([]);
    expect(log.slice(mark).every((r) => r.version === 2)).toBe(true);
    expect((await platform.storage.registry.champion(name))?.id).toBe(v2.model.versionId);

    const [latest, ...rest] = await platform.storage.deployments.deploymentHistory(name);
    expect(shares([latest!])).toEqual(['champion v2 100%']);
    expect(latest!.reason).toBe(state.reason);
    const canary = rest.filter((r) => r.startedAt.getTime() === rest[0]!.startedAt.getTime());
    expect(shares(canary).sort()).toEqual(['challenger v1 50%', 'champion v2 50%']);
    expect(canary.every((r) => r.endedAt?.getTime() === latest!.startedAt.getTime())).toBe(true);
  });

  it('rolls back when the rollout is cancelled through the API', async () => {
    const { workflowId } = await startDeploymentRollout(
      { client: platform.client, taskQueue: platform.taskQueue },
      {
        deploymentName: name,
        versionId: v1.model.versionId,
        strategy: 'canary',
        trafficPercent: 5,
        durationSeconds: 3600,
        minRequests: 10,
        thresholds: { maxErrorRateIncrease: 0.01, maxLatencyP99Ratio: 2, maxPredictionDivergence: 0.5 },
      },
      name,
    );
    await until(
      async () => (await platform.storage.deployments.activeRevisions(name)).some((r) => r.role === 'challenger'),
      10_000,
      'the canary to start',
    );
    const rolloutId = workflowId.slice(`rollout-${name}-`.length);
    const cancel = `/v1/deployments/${name}/rollouts/${rolloutId}/cancel`;
    const requested = await api('POST', cancel);
    expect(requested.status).toBe(202);
    expect(requested.body.status).toBe('running');
    const handle = platform.client.workflow.getHandle(workflowId);
    await expect(handle.result()).rejects.toThrow();
    const active = await platform.storage.deployments.activeRevisions(name);
    expect(shares(active)).toEqual(['champion v2 100%']);
    expect(active[0]!.reason).toMatch(/^rolled back because the rollout was cancelled/);
    // The rollout now reads as cancelled, with the step recorded; it cannot be cancelled twice.
    const after = await api('GET', `/v1/deployments/${name}/rollouts/${rolloutId}`);
    expect(after.body.status).toBe('cancelled');
    expect(JSON.stringify(after.body.state)).toContain('cancelled');
    const again = await api('POST', cancel);
    expect(again.status).toBe(409);
    expect(again.body.error?.code).toBe('conflict');
    expect((await api('POST', `/v1/deployments/${name}/rollouts/${randomUUID()}/cancel`)).status).toBe(404);
  });

  it('routes a sticky canary by the key: one key, one version', async () => {
    const { deployments } = platform.storage;
    await deployments.startCanary({
      deploymentName: name,
      versionId: v1.model.versionId,
      trafficPercent: 50,
      stickyKey: 'x',
      actor: 'test',
      reason: 'sticky canary',
    });
    await until(() => servingRoute()?.stickyKey === 'x', 10_000, 'the sticky route');
    const versions = new Map<number, Set<number>>();
    for (let round = 0; round < 3; round++) {
      for (let x = 0; x < 37; x++) {
        const { status, body } = await predict({ instance: { x, kind: `k${round}` } });
        expect(status).toBe(200);
        versions.set(x, (versions.get(x) ?? new Set()).add(body.model!.version));
      }
    }
    expect([...versions.values()].every((s) => s.size === 1)).toBe(true);
    const split = new Set([...versions.values()].map((s) => [...s][0]));
    expect(split).toEqual(new Set([1, 2]));

    const back = await deployments.rollbackChallenger({ deploymentName: name, actor: 'test', reason: 'sticky done' });
    expect(back.changed).toBe(true);
    expect(back.deployment.config).toEqual({});
    expect(
      (await deployments.rollbackChallenger({ deploymentName: name, actor: 'test', reason: 'again' })).changed,
    ).toBe(false);
  });

  it('scores a shadow on copies of the traffic and logs its answers, answering with the champion only', async () => {
    const started = await api('POST', `/v1/deployments/${name}/rollouts`, { version: 1, strategy: 'shadow' });
    expect(started.status).toBe(200);
    expect(started.body).toMatchObject({
      strategy: 'shadow',
      changed: true,
      active: [
        { role: 'champion', versionId: v2.model.versionId, trafficPercent: 100 },
        { role: 'shadow', versionId: v1.model.versionId, trafficPercent: 0 },
      ],
    });
    await until(() => servingRoute()?.targets.some((t) => t.role === 'shadow'), 10_000, 'the shadow route');

    const answers: string[] = [];
    for (let x = 0; x < 37; x++) {
      const { status, body } = await predict({ instances: [{ x, kind: 'k1' }] });
      expect(status).toBe(200);
      expect(body.model?.version).toBe(2);
      answers.push(body.requestId!);
    }
    const shadowRows = await until(
      async () => {
        const rows = await logRows(`role = 'shadow' and request_id = any($2)`, [answers]);
        return rows.length === answers.length ? rows : undefined;
      },
      10_000,
      'the shadow rows',
    );
    expect(shadowRows.every((r) => r.version === 1 && r.error === null)).toBe(true);
    expect(shadowRows.every((r) => typeof (r.outputs as { label?: unknown }).label !== 'undefined')).toBe(true);
    const championRows = await logRows(`role = 'champion' and request_id = any($2)`, [answers]);
    expect(championRows).toHaveLength(answers.length);
    expect(championRows.every((r) => r.version === 2)).toBe(true);
    // The two versions disagree on some inputs, which the logs show.
    const label = (rows: typeof shadowRows) =>
      new Map(rows.map((r) => [r.request_id, JSON.stringify((r.outputs as { label: unknown }).label)]));
    const shadowLabels = label(shadowRows);
    const championLabels = label(championRows);
    expect(answers.some((id) => shadowLabels.get(id) !== championLabels.get(id))).toBe(true);

    const stopped = await api('DELETE', `/v1/deployments/${name}/shadows/1`);
    expect(stopped.status).toBe(200);
    expect(stopped.body).toMatchObject({ changed: true, strategy: 'replace', active: [{ role: 'champion' }] });
    const [latest] = await platform.storage.deployments.deploymentHistory(name);
    expect(latest!.reason).toBe('shadow stopped by alice');
    const again = await api('DELETE', `/v1/deployments/${name}/shadows/1`);
    expect(again.body.changed).toBe(false);
  });

  /** Cancels a running rollout through the API and waits for it to end. */
  async function cancelRollout(rolloutId: string): Promise<void> {
    expect((await api('POST', `/v1/deployments/${name}/rollouts/${rolloutId}/cancel`)).status).toBe(202);
    await rolloutDone(rolloutId, 30_000);
  }

  const longCanary = { version: 1, strategy: 'canary', trafficPercent: 5, durationSeconds: 3600, minRequests: 10 };

  it('accepts one of several concurrent canary requests and refuses the others with 409, atomically', async () => {
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => api('POST', `/v1/deployments/${name}/rollouts`, longCanary)),
    );
    const accepted = answers.filter((a) => a.status === 202);
    expect(answers.map((a) => a.status).sort()).toEqual([202, 409, 409, 409, 409, 409]);
    for (const refused of answers.filter((a) => a.status === 409)) {
      expect(refused.body.error?.code).toBe('conflict');
      expect(refused.body.error?.message).toMatch(/already runs (rollout|a canary)/);
    }
    const rolloutId = accepted[0]!.body.rolloutId!;
    await until(
      async () => (await platform.storage.deployments.activeRevisions(name)).some((r) => r.role === 'challenger'),
      10_000,
      'the canary to start',
    );
    await cancelRollout(rolloutId);
    const deployment = await platform.storage.deployments.getDeployment(name);
    expect(deployment?.config).toEqual({});
  });

  it('probe: a second canary while one runs is refused, and a rollout started around the API ends no canary', async () => {
    const first = await api('POST', `/v1/deployments/${name}/rollouts`, longCanary);
    expect(first.status).toBe(202);
    await until(
      async () => (await platform.storage.deployments.activeRevisions(name)).some((r) => r.role === 'challenger'),
      10_000,
      'the canary to start',
    );
    // Issue 15: the second request answered 202 and, once the first rolled back, stayed `running` in phase canary.
    const second = await api('POST', `/v1/deployments/${name}/rollouts`, { ...longCanary, trafficPercent: 20 });
    expect(second.status).toBe(409);
    expect(second.body.error?.message).toContain(`already runs rollout rollout-${name}-${first.body.rolloutId}`);

    // A workflow started without the API's reservation is refused by the store, and leaves the first canary alone.
    const bypass = await startDeploymentRollout(
      { client: platform.client, taskQueue: platform.taskQueue },
      {
        deploymentName: name,
        versionId: v1.model.versionId,
        strategy: 'canary',
        trafficPercent: 30,
        durationSeconds: 3600,
        minRequests: 10,
        thresholds: { maxErrorRateIncrease: 0.01, maxLatencyP99Ratio: 2, maxPredictionDivergence: 0.5 },
      },
      name,
    );
    await expect(platform.client.workflow.getHandle(bypass.workflowId).result()).rejects.toThrow();
    const bypassView = await api('GET', `/v1/deployments/${name}/rollouts/${bypass.rolloutId}`);
    expect(bypassView.body.status).toBe('failed');
    expect(shares(await platform.storage.deployments.activeRevisions(name))).toEqual([
      'champion v2 95%',
      'challenger v1 5%',
    ]);

    await cancelRollout(first.body.rolloutId!);
    expect(shares(await platform.storage.deployments.activeRevisions(name))).toEqual(['champion v2 100%']);
    // Nothing is left running, and the next canary is accepted.
    const next = await api('POST', `/v1/deployments/${name}/rollouts`, longCanary);
    expect(next.status).toBe(202);
    await until(
      async () => (await platform.storage.deployments.activeRevisions(name)).some((r) => r.role === 'challenger'),
      10_000,
      'the next canary to start',
    );
    await cancelRollout(next.body.rolloutId!);
  });

  it('probe: the reconciler rolls back a canary whose rollout workflow was terminated, and a new canary is accepted', async () => {
    const started = await api('POST', `/v1/deployments/${name}/rollouts`, longCanary);
    expect(started.status).toBe(202);
    await until(
      async () => (await platform.storage.deployments.activeRevisions(name)).some((r) => r.role === 'challenger'),
      10_000,
      'the canary to start',
    );
    const workflowId = started.body.workflowId as string;
    await platform.client.workflow.getHandle(workflowId).terminate('test: the rollout is gone');
    // Terminated, the rollout never rolled its canary back.
    expect(shares(await platform.storage.deployments.activeRevisions(name))).toEqual([
      'champion v2 95%',
      'challenger v1 5%',
    ]);

    // One pass of the scheduled reconciler, run directly, for this file's deployment only.
    const reconciled = await platform.client.workflow.execute(reconcileDeploymentRollouts, {
      taskQueue: platform.taskQueue,
      workflowId: `reconcile-${name}-${randomUUID()}`,
      args: [{ deploymentName: name }],
    });
    expect(reconciled).toEqual([
      expect.objectContaining({
        deployment: name,
        workflowId,
        workflowStatus: 'terminated',
        action: 'rolled_back',
      }),
    ]);
    const [latest] = await platform.storage.deployments.deploymentHistory(name);
    expect(shares([latest!])).toEqual(['champion v2 100%']);
    expect(latest!.actor).toBe('rollout-reconciler');
    expect(latest!.reason).toBe(`rolled back by the rollout reconciler: rollout workflow ${workflowId} is terminated`);
    expect((await platform.storage.deployments.getDeployment(name))?.config).toEqual({});
    // A second pass finds nothing to do.
    expect(
      await platform.client.workflow.execute(reconcileDeploymentRollouts, {
        taskQueue: platform.taskQueue,
        workflowId: `reconcile-${name}-${randomUUID()}`,
        args: [{ deploymentName: name }],
      }),
    ).toEqual([]);

    const next = await api('POST', `/v1/deployments/${name}/rollouts`, longCanary);
    expect(next.status).toBe(202);
    await until(
      async () => (await platform.storage.deployments.activeRevisions(name)).some((r) => r.role === 'challenger'),
      10_000,
      'the next canary to start',
    );
    // Terminated again: the API heals the deployment itself before it answers the next request.
    await platform.client.workflow.getHandle(next.body.workflowId as string).terminate('test');
    const healed = await api('POST', `/v1/deployments/${name}/rollouts`, longCanary);
    expect(healed.status).toBe(202);
    await until(
      async () => (await platform.storage.deployments.activeRevisions(name)).some((r) => r.role === 'challenger'),
      10_000,
      'the healed canary to start',
    );
    await cancelRollout(healed.body.rolloutId!);
  });

  it('probe: refuses to serve an unblessed or approval-rejected version unless the request allows it, and records the override', async () => {
    const { registry, pipelines, database, deployments } = platform.storage;
    const signature = (await registry.getVersionById(v1.model.versionId))!.signature;
    const register = (reason: string, blessed: boolean, sourceRunId?: string) =>
      registry.registerVersion({
        modelName: name,
        onnxUri: 's3://nowhere/never-loaded',
        sha256: randomUUID().replace(/-/g, '').repeat(2),
        signature,
        metrics: {},
        params: {},
        blessing: { blessed, reason, evaluatedAt: new Date().toISOString() },
        ...(sourceRunId ? { sourceRunId } : {}),
        actor: 'test',
        reason,
      });
    const unblessed = (await register('worse than the champion', false)).version;
    // A blessed version whose run's approval was rejected.
    const { rows } = await database.pool.query<{ pipeline_version_id: string }>(
      'select pipeline_version_id from pipeline_runs where id = $1',
      [v1.runId],
    );
    const { run } = await pipelines.createRun({
      pipelineVersionId: rows[0]!.pipeline_version_id,
      workflowId: `rejected-${randomUUID()}`,
      trigger: 'test',
    });
    await pipelines.setRunStatus(run.workflowId, 'succeeded', { outcome: 'rejected' });
    const rejected = (await register('good, but a reviewer said no', true, run.id)).version;
    expect(rejected.status).toBe('blessed');

    // A deployment of its own: the versions above are never loaded, so they must not touch the main one's serving.
    const guard = `${name}-guard`;
    await deployments.deploy({
      deploymentName: guard,
      modelName: name,
      versionId: v1.model.versionId,
      actor: 't',
      reason: 'v1',
    });
    const rollout = (body: unknown) => api('POST', `/v1/deployments/${guard}/rollouts`, body);
    for (const [version, state] of [
      [unblessed, 'is rejected, not blessed'],
      [rejected, `was rejected at approval (run ${run.workflowId})`],
    ] as const) {
      for (const strategy of ['replace', 'canary', 'shadow']) {
        const refused = await rollout({ version: version.version, strategy });
        expect(refused.status, `${strategy} of v${version.version}`).toBe(409);
        expect(refused.body.error?.message).toContain(`version ${version.version} ${state}`);
        expect(refused.body.error?.message).toContain('allowUnblessed');
      }
    }
    expect(shares(await deployments.activeRevisions(guard))).toEqual(['champion v1 100%']);

    // Explicitly allowed: served, and the revision says so.
    const shadow = await rollout({ version: rejected.version, strategy: 'shadow', allowUnblessed: true });
    expect(shadow.status).toBe(200);
    const [latest] = await deployments.deploymentHistory(guard);
    expect(latest!.version).toBe(rejected.version);
    expect(latest!.reason).toMatch(/^shadow started by .*\[override: version \d+ was rejected at approval/);
    expect((await api('DELETE', `/v1/deployments/${guard}/shadows/${rejected.version}`)).status).toBe(200);
    const replaced = await rollout({ version: unblessed.version, strategy: 'replace', allowUnblessed: true });
    expect(replaced.status).toBe(200);
    expect((await deployments.deploymentHistory(guard))[0]!.reason).toContain('is rejected, not blessed, served');

    // A later pipeline run's deploy of the same bytes, after its own approval, is not refused by the rejection.
    const storeDeploy = { deploymentName: guard, modelName: name, versionId: rejected.id, actor: 't', reason: 'b' };
    await expect(deployments.deploy(storeDeploy)).rejects.toThrow('was rejected at approval');
    const approved = await deployments.deploy({ ...storeDeploy, approvedInRun: randomUUID() });
    expect(approved.changed).toBe(true);
    expect(approved.revision.reason).toBe('b');
  });
});

describe('the rollout reconciler schedule', () => {
  it('is created once and updated, not duplicated, when workers start again', async () => {
    // A task queue nobody polls: the schedule's runs (if any fire during the test) do nothing.
    const options = { taskQueue: `unpolled-${name}`, everySeconds: 300 };
    try {
      expect(await ensureRolloutReconcilerSchedule(platform.client, options)).toBe(true);
      expect(await ensureRolloutReconcilerSchedule(platform.client, { ...options, everySeconds: 120 })).toBe(false);
      const described = await platform.client.schedule.getHandle(ROLLOUT_RECONCILER_SCHEDULE_ID).describe();
      expect(described.spec.intervals?.map((i) => i.every)).toEqual([120_000]);
      expect(described.action).toMatchObject({
        workflowType: 'reconcileDeploymentRollouts',
        taskQueue: options.taskQueue,
      });
    } finally {
      await platform.client.schedule.getHandle(ROLLOUT_RECONCILER_SCHEDULE_ID).delete();
    }
  });
});

describe('DeploymentStore traffic changes', () => {
  it('starts, reshapes, promotes and rolls back canaries idempotently, with one revision set per change', async () => {
    const { registry, deployments } = platform.storage;
    const deploymentName = `${name}-store`;
    await deployments.deploy({
      deploymentName,
      modelName: name,
      versionId: v1.model.versionId,
      actor: 'test',
      reason: 'a',
    });
    const canary = {
      deploymentName,
      versionId: v2.model.versionId,
      trafficPercent: 10,
      actor: 'test',
      reason: 'canary',
    };
    const first = await deployments.startCanary({ ...canary, stickyKey: 'kind' });
    expect(first.changed).toBe(true);
    expect(first.deployment).toMatchObject({ strategy: 'canary', config: { stickyKey: 'kind' } });
    expect((await deployments.startCanary({ ...canary, stickyKey: 'kind' })).changed).toBe(false);
    // Another share of the same canary reshapes it; another sticky key too.
    const wider = await deployments.startCanary({ ...canary, trafficPercent: 20 });
    expect(wider.changed).toBe(true);
    expect(wider.deployment.config).toEqual({});
    expect(shares(await deployments.activeRevisions(deploymentName))).toEqual(['champion v1 80%', 'challenger v2 20%']);
    const reshaped = await deployments.setChallengerTraffic({
      deploymentName,
      trafficPercent: 30,
      actor: 'test',
      reason: 'ramp',
    });
    expect(reshaped.changed).toBe(true);
    expect(
      (await deployments.setChallengerTraffic({ deploymentName, trafficPercent: 30, actor: 'test', reason: 'ramp' }))
        .changed,
    ).toBe(false);

    // Refusals change nothing.
    const unblessed = await registry.registerVersion({
      modelName: name,
      onnxUri: 's3://nowhere/never-loaded',
      sha256: randomUUID().replace(/-/g, '').repeat(2),
      signature: (await registry.getVersionById(v1.model.versionId))!.signature,
      metrics: {},
      params: {},
      blessing: { blessed: false, reason: 'worse', evaluatedAt: new Date().toISOString() },
      actor: 'test',
      reason: 'unblessed',
    });
    const refusals: [() => Promise<unknown>, string][] = [
      [() => deployments.startCanary({ ...canary, versionId: unblessed.version.id }), 'not blessed'],
      [() => deployments.startCanary({ ...canary, versionId: v1.model.versionId }), 'already is the champion'],
      [() => deployments.startCanary({ ...canary, trafficPercent: 0 }), 'from 1 to 99'],
      [() => deployments.startCanary({ ...canary, deploymentName: `${deploymentName}-none` }), 'does not exist'],
      [
        () =>
          deployments.promoteChallenger({ deploymentName, versionId: unblessed.version.id, actor: 't', reason: 'r' }),
        'another version',
      ],
    ];
    for (const [refused, message] of refusals) await expect(refused()).rejects.toThrow(message);
    expect(shares(await deployments.activeRevisions(deploymentName))).toEqual(['champion v1 70%', 'challenger v2 30%']);

    // An unblessed version runs not even in shadow, unless the caller allows it explicitly (recorded in the reason).
    await expect(
      deployments.startShadow({ deploymentName, versionId: unblessed.version.id, actor: 't', reason: 's' }),
    ).rejects.toThrow('is rejected, not blessed: it is not run in shadow unless the request allows');
    await registry.transitionStatus(unblessed.version.id, 'registered', 'test', 'look at it in shadow');
    const shadow = { deploymentName, versionId: unblessed.version.id, allowUnblessed: true, actor: 't', reason: 's' };
    const shadowed = await deployments.startShadow(shadow);
    expect(shadowed.changed).toBe(true);
    expect(shadowed.active.find((r) => r.role === 'shadow')?.reason).toMatch(
      /^s \[override: version \d+ is registered/,
    );
    expect((await deployments.startShadow(shadow)).changed).toBe(false);
    await expect(
      deployments.startShadow({ deploymentName, versionId: v2.model.versionId, actor: 't', reason: 's' }),
    ).rejects.toThrow('as challenger');

    const promoted = await deployments.promoteChallenger({
      deploymentName,
      versionId: v2.model.versionId,
      actor: 't',
      reason: 'good',
    });
    expect(promoted.changed).toBe(true);
    expect(promoted.deployment.strategy).toBe('shadow');
    expect(shares(await deployments.activeRevisions(deploymentName))).toEqual([
      'champion v2 100%',
      `shadow v${unblessed.version.version} 0%`,
    ]);
    // Retried: nothing to do.
    expect(
      (
        await deployments.promoteChallenger({
          deploymentName,
          versionId: v2.model.versionId,
          actor: 't',
          reason: 'good',
        })
      ).changed,
    ).toBe(false);
    await expect(deployments.promoteChallenger({ deploymentName, actor: 't', reason: 'x' })).rejects.toThrow(
      'runs no canary',
    );

    const stopped = await deployments.stopShadow({ deploymentName, actor: 't', reason: 'enough' });
    expect(stopped.changed).toBe(true);
    expect(stopped.deployment.strategy).toBe('replace');
    expect((await deployments.stopShadow({ deploymentName, actor: 't', reason: 'enough' })).changed).toBe(false);

    // After every change: exactly one champion, and the champion and challenger shares add up to 100 %.
    const history = await deployments.deploymentHistory(deploymentName);
    const changes = [...new Set(history.map((r) => r.startedAt.getTime()))].sort((a, b) => a - b);
    // deploy, canary, wider canary, ramp, shadow, promotion, shadow stopped.
    expect(changes).toHaveLength(7);
    for (const at of changes) {
      const active = history.filter(
        (r) => r.startedAt.getTime() <= at && (r.endedAt === null || r.endedAt.getTime() > at),
      );
      expect(active.filter((r) => r.role === 'champion')).toHaveLength(1);
      const serving = active.filter((r) => r.role !== 'shadow').reduce((sum, r) => sum + r.trafficPercent, 0);
      expect(serving).toBe(100);
    }
    expect(history.filter((r) => r.endedAt === null).map((r) => `${r.role} v${r.version}`)).toEqual(['champion v2']);
    expect(history[0]!.reason).toBe('enough');
  });
});
