/**
 * Rollback, history by time and the rollouts list on the real stack, through the API. The versions are registered
 * directly (never loaded: no serving runs here), so the file needs no training and stays fast.
 *
 * A rollback serves the previous champion (a repeated one goes further back, never to the version just rolled back
 * from) or the version named by number or id, as a revision with the reason and actor; it refuses versions not fit
 * to serve, unknown ones, and a deployment a rollout holds, changing nothing. With `from`, a retried rollback answers
 * the one it made instead of going back again; the default passes over versions that may not serve now; a `to`
 * that already serves is answered even while a rollout holds the deployment, and Temporal out of reach does not
 * fail a rollback. History by time answers which versions served, with their shares, at a time before or after a
 * change, and at exactly the times it reports. Rollouts are listed newest first, with the running one on the
 * deployment, and their steps name versions by number beside the id.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The app first: it loads @hono/zod-openapi, which must extend zod before the pipeline definition's schemas are built.
import { createApp } from '../../server/app.js';
import { createLogger } from '../../core/logger.js';
import { rollbackDeployment, type RollbackDeps } from '../../pipelines/deployment-rollback.js';
import type { ModelVersion } from '../../schema/index.js';
import { RolloutRunningError, type RevisionSummary } from '../../storage/deployment-store.js';
import { anyNamedKey, keyOf } from '../support/auth.js';
import { testLogger, type TestPlatform } from '../support/platform.js';
import { startTestPlatform, type RunningTestPlatform } from '../support/running-platform.js';

let started: RunningTestPlatform | undefined;
let platform: TestPlatform;
let app: ReturnType<typeof createApp>;
const name = `rollback-${randomUUID().slice(0, 8)}`;
/** v1 to v3 blessed and deployed in turn; v4 blessed, never deployed. */
const versions: ModelVersion[] = [];
/** Times between the deploys: before v1, while v1 served, while v2 served, while v3 served. */
const marks: Date[] = [];

/** A JSON answer of the API, loosely typed (the assertions check its shape). */
interface ApiBody {
  error?: { code: string; message: string };
  [key: string]: unknown;
}

async function api(method: string, route: string, body?: unknown): Promise<{ status: number; body: ApiBody }> {
  const response = await app.request(route, {
    method,
    headers: { 'content-type': 'application/json', ...keyOf('alice') },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as ApiBody };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A moment strictly between the changes around it (the database and this process share the clock). */
async function mark(): Promise<Date> {
  await pause(20);
  const at = new Date();
  await pause(20);
  return at;
}

async function until<T>(probe: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    await pause(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function register(blessed: boolean, modelName = name): Promise<ModelVersion> {
  const sha256 = randomUUID().replace(/-/g, '').repeat(2);
  const { version } = await platform.storage.registry.registerVersion({
    modelName,
    onnxUri: `s3://nowhere/${sha256}`,
    sha256,
    signature: { inputs: [], outputs: [] },
    metrics: {},
    params: {},
    blessing: { blessed, reason: blessed ? 'good' : 'worse', evaluatedAt: new Date().toISOString() },
    actor: 'test',
    reason: 'rollback test',
  });
  return version;
}

const shares = (revisions: readonly Pick<RevisionSummary, 'role' | 'version' | 'trafficPercent'>[]) =>
  revisions.map((r) => `${r.role} v${r.version} ${r.trafficPercent}%`);

const active = async () => shares(await platform.storage.deployments.activeRevisions(name));

/** A fresh model and its deployment, of one name: `count` blessed versions, deployed in turn. */
async function deployedInTurn(count: number): Promise<{ name: string; versions: ModelVersion[] }> {
  const model = `rollback-${randomUUID().slice(0, 8)}`;
  const deployed: ModelVersion[] = [];
  for (let i = 0; i < count; i++) {
    const v = await register(true, model);
    await platform.storage.deployments.deploy({
      deploymentName: model,
      modelName: model,
      versionId: v.id,
      actor: 'test',
      reason: `version ${v.version}`,
    });
    deployed.push(v);
  }
  return { name: model, versions: deployed };
}

beforeAll(async () => {
  started = await startTestPlatform();
  platform = started.platform;
  for (let i = 0; i < 4; i++) versions.push(await register(true));
  marks.push(await mark());
  for (const v of versions.slice(0, 3)) {
    await platform.storage.deployments.deploy({
      deploymentName: name,
      modelName: name,
      versionId: v.id,
      actor: 'test',
      reason: `version ${v.version} deployed by the test`,
    });
    marks.push(await mark());
  }
  const { storage } = platform;
  app = createApp({
    logger: testLogger,
    readiness: [],
    auth: anyNamedKey,
    version: 'test',
    bodyLimitBytes: 64 * 1024,
    stores: {
      artifacts: storage.artifacts,
      metadata: storage.metadata,
      datasets: storage.datasets,
      registry: storage.registry,
      deployments: storage.deployments,
    },
    runner: started.runner,
  });
}, 120_000);

afterAll(async () => {
  await started?.stop();
});

describe('deployment history by time', () => {
  it('answers which versions served at a time before and after each change, with a canary’s split', async () => {
    const at = async (time: Date) => {
      const answer = await api('GET', `/v1/deployments/${name}/history?at=${encodeURIComponent(time.toISOString())}`);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      return answer.body as { champion: { version: number } | null; revisions: RevisionSummary[]; at: string };
    };
    const before = await at(marks[0]!);
    expect(before.champion).toBeNull();
    expect(before.revisions).toEqual([]);
    for (const [i, version] of [1, 2, 3].entries()) {
      const then = await at(marks[i + 1]!);
      expect(then.champion?.version).toBe(version);
      expect(shares(then.revisions)).toEqual([`champion v${version} 100%`]);
      expect(then.revisions[0]!.reason).toBe(`version ${version} deployed by the test`);
    }
    // Without `at`: now.
    const now = await api('GET', `/v1/deployments/${name}/history`);
    expect(now.body).toMatchObject({ champion: { version: 3 } });

    // A canary's split, as it stood while it ran.
    const { deployments } = platform.storage;
    await deployments.startCanary({
      deploymentName: name,
      versionId: versions[1]!.id,
      trafficPercent: 30,
      actor: 'test',
      reason: 'a short canary',
    });
    const during = await mark();
    await deployments.rollbackChallenger({ deploymentName: name, actor: 'test', reason: 'canary over' });
    expect(shares((await at(during)).revisions)).toEqual(['champion v3 70%', 'challenger v2 30%']);
    expect(shares((await at(await mark())).revisions)).toEqual(['champion v3 100%']);
  });

  it('answers at exactly the times it reports: a revision serves at its startedAt, the next one at its endedAt', async () => {
    // Stored in microseconds, reported in milliseconds: each reported time selects the revision it belongs to.
    const { history } = (await api('GET', `/v1/deployments/${name}`)).body as {
      history: { version: number; reason: string; startedAt: string; endedAt: string | null }[];
    };
    for (const version of [1, 2]) {
      const revision = history.find((r) => r.reason === `version ${version} deployed by the test`)!;
      const at = async (time: string) =>
        (await api('GET', `/v1/deployments/${name}/history?at=${encodeURIComponent(time)}`)).body as {
          champion: { version: number } | null;
        };
      expect((await at(revision.startedAt)).champion?.version, revision.startedAt).toBe(version);
      expect((await at(revision.endedAt!)).champion?.version, revision.endedAt!).toBe(version + 1);
    }
  });

  it('refuses a malformed time naming `at`, and answers 404 for an unknown deployment', async () => {
    for (const bad of ['yesterday', '2026-13-01T00:00:00Z', '2026-05-01T12:00:00']) {
      const answer = await api('GET', `/v1/deployments/${name}/history?at=${encodeURIComponent(bad)}`);
      expect(answer.status, bad).toBe(400);
      expect(answer.body.error?.message).toContain('at');
    }
    expect((await api('GET', `/v1/deployments/nope-${name}/history`)).status).toBe(404);
  });
});

describe('POST /v1/deployments/{name}/rollback', () => {
  const rollback = (body: unknown, deployment = name) => api('POST', `/v1/deployments/${deployment}/rollback`, body);

  it('serves the previous champion by default, as a revision with the reason and actor; again goes further back', async () => {
    const first = await rollback({ reason: 'v3 answers slowly' });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body).toMatchObject({
      deployment: name,
      changed: true,
      from: { version: 3, versionId: versions[2]!.id },
      to: { version: 2, versionId: versions[1]!.id },
      revision: { role: 'champion', version: 2, actor: 'alice', endedAt: null },
      active: [{ role: 'champion', version: 2, trafficPercent: 100 }],
    });
    const [latest] = await platform.storage.deployments.deploymentHistory(name);
    expect(latest).toMatchObject({ version: 2, role: 'champion', actor: 'alice', endedAt: null });
    expect(latest!.reason).toBe('rollback: version 2 serves again instead of 3, requested by alice: v3 answers slowly');
    expect((await platform.storage.registry.champion(name))?.id).toBe(versions[1]!.id);

    // The version that served before v2 is v1; v3 was just rolled back from, so it is never the default.
    const second = await rollback({ reason: 'v2 too' });
    expect(second.body).toMatchObject({ from: { version: 2 }, to: { version: 1 } });
    const none = await rollback({ reason: 'and v1' });
    expect(none.status).toBe(409);
    expect(none.body.error?.message).toContain('no earlier champion');
    expect(await active()).toEqual(['champion v1 100%']);
  });

  it('serves the version named by number or id; the champion itself changes nothing', async () => {
    const byNumber = await rollback({ to: 3, reason: 'v3 was fine after all' });
    expect(byNumber.body).toMatchObject({ changed: true, from: { version: 1 }, to: { version: 3 } });
    const byId = await rollback({ to: versions[1]!.id, reason: 'back to v2' });
    expect(byId.body).toMatchObject({ changed: true, from: { version: 3 }, to: { version: 2 } });
    const same = await rollback({ to: 2, reason: 'retried' });
    expect(same.status).toBe(200);
    expect(same.body).toMatchObject({ changed: false, to: { version: 2 } });
    const [latest] = await platform.storage.deployments.deploymentHistory(name);
    expect(latest!.reason).toBe('rollback: version 2 serves again instead of 3, requested by alice: back to v2');
  });

  it('refuses unfit, unknown and malformed targets with the field or state named, changing nothing', async () => {
    const unblessed = await register(false);
    const archived = versions[3]!;
    await platform.storage.registry.transitionStatus(archived.id, 'archived', 'test', 'retired');
    const before = await platform.storage.deployments.deploymentHistory(name);

    const refusedUnblessed = await rollback({ to: unblessed.version, reason: 'x' });
    expect(refusedUnblessed.status).toBe(409);
    expect(refusedUnblessed.body.error?.message).toContain(`version ${unblessed.version} is rejected, not blessed`);
    const refusedArchived = await rollback({ to: archived.version, reason: 'x' });
    expect(refusedArchived.status).toBe(409);
    expect(refusedArchived.body.error?.message).toContain(`version ${archived.version} is archived`);
    // Archived stays refused even when an unblessed version is allowed.
    expect((await rollback({ to: archived.version, reason: 'x', allowUnblessed: true })).status).toBe(409);

    expect((await rollback({ to: 99, reason: 'x' })).status).toBe(404);
    expect((await rollback({ to: randomUUID(), reason: 'x' })).status).toBe(404);
    expect((await rollback({ reason: 'x' }, `nope-${name}`)).status).toBe(404);
    for (const [body, field] of [
      [{ to: 'v2', reason: 'x' }, 'to'],
      [{ to: 0, reason: 'x' }, 'to'],
      [{ to: 2 }, 'reason'],
      [{ to: 2, reason: '  ' }, 'reason'],
      [{ to: 2, reason: 'x', force: true }, 'force'],
    ] as const) {
      const refused = await rollback(body);
      expect(refused.status, JSON.stringify(body)).toBe(400);
      expect(refused.body.error?.message).toContain(field);
    }
    expect(await platform.storage.deployments.deploymentHistory(name)).toEqual(before);
  });
});

describe('rollback retries and targets', () => {
  const rollback = (deployment: string, body: unknown) => api('POST', `/v1/deployments/${deployment}/rollback`, body);

  it('with `from`, a retried default rollback answers the one it made instead of going back again', async () => {
    const { name: deployment, versions: v } = await deployedInTurn(3);
    const first = await rollback(deployment, { from: 3, reason: 'v3 answers slowly' });
    expect(first.body).toMatchObject({ changed: true, from: { version: 3 }, to: { version: 2 } });
    const history = await platform.storage.deployments.deploymentHistory(deployment);

    // The answer was lost; the same request again (and by id, with `to`) changes nothing and answers that rollback.
    for (const body of [
      { from: 3, reason: 'v3 answers slowly' },
      { from: v[2]!.id, to: 2, reason: 'v3 answers slowly' },
    ]) {
      const retried = await rollback(deployment, body);
      expect(retried.status, JSON.stringify(retried.body)).toBe(200);
      expect(retried.body).toMatchObject({
        changed: false,
        from: { version: 3, versionId: v[2]!.id },
        to: { version: 2, versionId: v[1]!.id },
        revision: { id: (first.body.revision as { id: string }).id },
      });
    }
    // A champion that is not `from`, and that no rollback from `from` (to `to`) started: 409, nothing written.
    for (const body of [
      { from: 1, reason: 'x' },
      { from: 3, to: 1, reason: 'x' },
    ]) {
      const refused = await rollback(deployment, body);
      expect(refused.status, JSON.stringify(body)).toBe(409);
      expect(refused.body.error?.code).toBe('champion_changed');
    }
    expect(await platform.storage.deployments.deploymentHistory(deployment)).toEqual(history);

    // Without `from`, the retry goes back a second time: what `from` is for.
    const unguarded = await rollback(deployment, { reason: 'v3 answers slowly' });
    expect(unguarded.body).toMatchObject({ changed: true, from: { version: 2 }, to: { version: 1 } });
  });

  it('passes over an archived previous champion for the one before it', async () => {
    const { name: deployment, versions: v } = await deployedInTurn(3);
    await platform.storage.registry.transitionStatus(v[1]!.id, 'archived', 'test', 'retired');
    const answer = await rollback(deployment, { reason: 'v3 answers slowly' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body).toMatchObject({ changed: true, from: { version: 3 }, to: { version: 1 } });
  });

  it('answers a `to` that serves while a rollout holds the deployment, and goes on when Temporal is out of reach', async () => {
    const { name: deployment, versions: v } = await deployedInTurn(2);
    const canary = await register(true, deployment);
    const workflowId = `rollout-${deployment}-${randomUUID()}`;
    const { deployments, registry } = platform.storage;
    await deployments.reserveRollout({ deploymentName: deployment, workflowId, versionId: canary.id });

    // Through the API (its reconcile leaves a fresh reservation alone): the champion itself, before the rollout check.
    const same = await rollback(deployment, { to: 2, reason: 'retried' });
    expect(same.status, JSON.stringify(same.body)).toBe(200);
    expect(same.body).toMatchObject({ changed: false, to: { version: 2 } });

    // Temporal out of reach: the reconcile fails, is logged, and the deploy still refuses under the lock.
    const logged: string[] = [];
    const unreachable = {
      workflow: { getHandle: () => ({ describe: () => Promise.reject(new Error('connect ECONNREFUSED')) }) },
    } as unknown as Client;
    const deps: RollbackDeps = {
      registry,
      deployments,
      rollouts: { client: unreachable, taskQueue: 'unused' },
      logger: createLogger({ level: 'warn', destination: { write: (line: string) => logged.push(line) } }),
    };
    const request = { deploymentName: deployment, actor: 'test', reason: 'v2 answers slowly' };
    expect(await rollbackDeployment(deps, { ...request, to: v[1]!.id })).toMatchObject({
      deploy: { changed: false },
      to: { version: 2 },
    });
    await expect(rollbackDeployment(deps, request)).rejects.toThrow(RolloutRunningError);
    await expect(rollbackDeployment(deps, request)).rejects.toThrow(`is held by rollout ${workflowId}`);
    expect(logged.join('')).toContain('ECONNREFUSED');

    await deployments.releaseRollout(deployment, workflowId);
    expect(await rollbackDeployment(deps, request)).toMatchObject({ deploy: { changed: true }, to: { version: 1 } });
  });
});

describe('rollouts', () => {
  const longCanary = { version: 1, strategy: 'canary', trafficPercent: 5, durationSeconds: 3600, minRequests: 10 };
  const canaryStarted = () =>
    until(
      async () => (await platform.storage.deployments.activeRevisions(name)).some((r) => r.role === 'challenger'),
      10_000,
      'the canary to start',
    );
  interface Listed {
    rolloutId: string;
    status: string;
    version: number | null;
    championVersion: number | null;
    outcome: string | null;
    steps: { step: string; detail: string }[];
  }
  const list = async (query = '') => {
    const answer = await api('GET', `/v1/deployments/${name}/rollouts${query}`);
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer.body.rollouts as Listed[];
  };

  it('lists them newest first, shows the running one on the deployment, and refuses a rollback while it runs', async () => {
    expect(await list()).toEqual([]);
    expect((await api('GET', `/v1/deployments/nope-${name}/rollouts`)).status).toBe(404);
    expect((await api('GET', `/v1/deployments/${name}/rollouts?limit=0`)).status).toBe(400);

    // One that ends on its own: too little traffic to judge, rolled back.
    const short = await api('POST', `/v1/deployments/${name}/rollouts`, {
      ...longCanary,
      durationSeconds: 1,
    });
    expect(short.status, JSON.stringify(short.body)).toBe(202);
    const shortId = short.body.rolloutId as string;
    await until(
      async () => (await list()).find((r) => r.rolloutId === shortId && r.status === 'completed'),
      20_000,
      'the short rollout to end',
    );

    const running = await api('POST', `/v1/deployments/${name}/rollouts`, longCanary);
    expect(running.status).toBe(202);
    const runningId = running.body.rolloutId as string;
    await canaryStarted();
    const deployment = await api('GET', `/v1/deployments/${name}`);
    expect(deployment.body.rollout).toMatchObject({
      rolloutId: runningId,
      version: 1,
      versionId: versions[0]!.id,
      status: 'running',
      links: { self: `/v1/deployments/${name}/rollouts/${runningId}` },
    });

    const held = await api('POST', `/v1/deployments/${name}/rollback`, { to: 3, reason: 'during a canary' });
    expect(held.status).toBe(409);
    expect(held.body.error?.message).toContain(`is held by rollout ${running.body.workflowId as string}`);
    expect(await active()).toEqual(['champion v2 95%', 'challenger v1 5%']);

    const listed = await until(
      async () => {
        const all = await list();
        return all.length === 2 && all[0]!.status === 'running' ? all : undefined;
      },
      10_000,
      'both rollouts listed',
    );
    expect(listed.map((r) => [r.rolloutId, r.status])).toEqual([
      [runningId, 'running'],
      [shortId, 'completed'],
    ]);
    expect(listed[0]).toMatchObject({ version: 1, championVersion: 2 });
    expect(listed[0]!.steps[0]).toEqual(
      expect.objectContaining({
        step: 'canary_started',
        detail: `challenger v1 (${versions[0]!.id}) serves 5% beside champion v2 (${versions[1]!.id})`,
      }),
    );
    expect(listed[1]).toMatchObject({ outcome: 'rolled_back', version: 1, championVersion: 2 });
    expect((await list('?limit=1&offset=1')).map((r) => r.rolloutId)).toEqual([shortId]);

    expect((await api('POST', `/v1/deployments/${name}/rollouts/${runningId}/cancel`)).status).toBe(202);
    await until(
      async () => (await list('?limit=1'))[0]?.status === 'cancelled',
      20_000,
      'the cancelled rollout to end',
    );
    expect((await api('GET', `/v1/deployments/${name}`)).body.rollout).toBeNull();
    const after = await api('POST', `/v1/deployments/${name}/rollback`, { to: 3, reason: 'after the canary' });
    expect(after.body).toMatchObject({ changed: true, from: { version: 2 }, to: { version: 3 } });
  });
});
