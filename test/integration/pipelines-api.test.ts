import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import { anyNamedKey, keyOf, withKey } from '../support/auth.js';
import type { ErrorBody } from '../../server/errors.js';
import { connectTestPlatform, testLogger, type TestPlatform } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

let platform: TestPlatform;
let app: ReturnType<typeof createApp>;
let scratchDir: string;
const workers: { worker: Worker; running: Promise<void> }[] = [];

const suffix = randomUUID().slice(0, 8);
const pipelineName = `rides-${suffix}`;
let sourceUri: string;

/** A few hundred rows of a learnable binary task: tipped when a noisy score of distance and zone is positive. */
function ridesCsv(rows: number): string {
  let seed = 7;
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const lines = ['ride_id,distance,passengers,zone,day,tipped'];
  for (let i = 0; i < rows; i++) {
    const distance = random() * 20;
    const zone = ['north', 'south', 'east'][i % 3]!;
    const score = distance - 10 + (zone === 'north' ? 3 : 0) + (random() - 0.5) * 4;
    const day = `2024-03-${String((i % 28) + 1).padStart(2, '0')}`;
    lines.push(`${i},${distance.toFixed(3)},${1 + (i % 4)},${zone},${day},${score > 0 ? 1 : 0}`);
  }
  return `${lines.join('\n')}\n`;
}

function definition(overrides: Record<string, unknown> = {}) {
  return {
    name: pipelineName,
    description: 'tips from ride features',
    source: { uri: sourceUri },
    label: { name: 'tipped', expression: 'tipped = 1', task: 'binary' },
    features: [
      { name: 'distance', expression: 'distance' },
      { name: 'passengers', expression: 'passengers' },
      { name: 'zone', expression: 'zone' },
    ],
    split: { kind: 'hash', key: 'ride_id', evalFraction: 0.25 },
    trainer: { kind: 'logistic_regression', params: { maxIterations: 50 } },
    retry: { maximumAttempts: 2 },
    ...overrides,
  };
}

const send = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) =>
  Promise.resolve(
    app.request(
      url,
      withKey({
        method,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
    ),
  );

interface RunBody {
  id: string;
  status: string;
  workflowId: string;
  failure: { type: string; message: string; stage?: string } | null;
  stages: { name: string; status: string; attempt: number; durationMs: number | null }[];
  metrics: Record<string, number> | null;
  model: { name: string; version: number; versionId: string } | null;
  deployment: { name: string; versionId: string } | null;
  artifacts: { stage: string; name: string; uri: string }[];
  progress?: { stage: string; approval?: { version: number; deadline: string } };
  links: { self: string; temporalUi?: string };
}

async function getRun(id: string): Promise<RunBody> {
  const res = await app.request(`/v1/runs/${id}`, withKey());
  expect(res.status).toBe(200);
  return (await res.json()) as RunBody;
}

/** Polls the run through the API until `done` holds (or the run ended otherwise), and returns it. */
async function waitForRun(id: string, done: (run: RunBody) => boolean, timeoutMs = 120_000): Promise<RunBody> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await getRun(id);
    if (done(run) || ['succeeded', 'failed', 'cancelled'].includes(run.status)) return run;
    if (Date.now() > deadline) throw new Error(`run ${id} is still ${run.status} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function startWorkers(): Promise<void> {
  if (workers.length > 0) return;
  for (const worker of [await platform.mainWorker(), await platform.trainingWorker()]) {
    workers.push({ worker, running: worker.run() });
  }
}

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
  scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipelines-api-'));
  const bucket = platform.endpoints.s3.bucket;
  const key = `landing/${pipelineName}/rides.csv`;
  await platform.artifacts.client.putObject(bucket, key, Buffer.from(ridesCsv(400)));
  sourceUri = `s3://${bucket}/landing/${pipelineName}/`;
  app = createApp({
    logger: testLogger,
    readiness: [],
    auth: anyNamedKey,
    version: 'test',
    bodyLimitBytes: 1_048_576,
    stores: platform.storage,
    sources: {
      policy: platform.activityDeps.dataAccess.policy,
      objects: platform.storage.objects,
      connections: platform.connections,
      scratchDir,
    },
    runner: {
      client: platform.client,
      pipelines: platform.storage.pipelines,
      taskQueue: platform.taskQueue,
      trainingTaskQueue: platform.trainingTaskQueue,
    },
    temporalUiUrl: 'http://temporal-ui.test:8233',
  });
});

afterAll(async () => {
  for (const { worker } of workers) worker.shutdown();
  await Promise.allSettled(workers.map((w) => w.running));
  await platform?.close();
  if (scratchDir) fs.rmSync(scratchDir, { recursive: true, force: true });
});

describe('pipeline definitions', () => {
  it('probes the S3 source, stores version 1, answers 200 for the same body and stores version 2 when it changes', async () => {
    const created = await send('POST', '/v1/pipelines', definition(), { ...keyOf('alice') });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({
      created: true,
      pipeline: { name: pipelineName, description: 'tips from ride features' },
      version: { version: 1, createdBy: 'alice', definition: { trainer: { checkpointEvery: 10 } } },
    });

    const same = await send('POST', '/v1/pipelines', definition());
    expect(same.status).toBe(200);
    expect(await same.json()).toMatchObject({ created: false, version: { version: 1, createdBy: 'alice' } });

    const changed = await send(
      'PUT',
      `/v1/pipelines/${pipelineName}`,
      definition({ trainer: { kind: 'logistic_regression', params: { maxIterations: 60 } } }),
    );
    expect(changed.status).toBe(201);
    expect(await changed.json()).toMatchObject({ created: true, version: { version: 2, createdBy: 'api' } });

    const details = (await (await app.request(`/v1/pipelines/${pipelineName}`, withKey())).json()) as {
      versions: { version: number }[];
    };
    expect(details.versions.map((v) => v.version)).toEqual([2, 1]);
    const list = (await (await app.request('/v1/pipelines', withKey())).json()) as {
      pipelines: { name: string; latestVersion: { version: number } }[];
    };
    expect(list.pipelines.find((p) => p.name === pipelineName)?.latestVersion.version).toBe(2);
  });

  it('answers 400 naming features.N.expression for an unknown column, trainer.kind for an unknown trainer', async () => {
    const unknownColumn = await send(
      'POST',
      '/v1/pipelines',
      definition({
        features: [
          { name: 'distance', expression: 'distance' },
          { name: 'tip_rate', expression: 'tip_amount / fare' },
        ],
      }),
    );
    expect(unknownColumn.status).toBe(400);
    const columnError = ((await unknownColumn.json()) as ErrorBody).error as {
      code: string;
      message: string;
      details: { issues: { path: string; message: string }[] };
    };
    expect(columnError.code).toBe('invalid_definition');
    expect(columnError.message).toContain('features.1.expression');
    expect(columnError.details.issues[0]?.message).toContain('ride_id, distance, passengers, zone, day, tipped');

    const unknownTrainer = await send('POST', '/v1/pipelines', definition({ trainer: { kind: 'xgboost' } }));
    expect(unknownTrainer.status).toBe(400);
    const trainerError = ((await unknownTrainer.json()) as ErrorBody).error as {
      details: { issues: { path: string }[] };
    };
    expect(trainerError.details.issues.map((i) => i.path)).toEqual(['trainer.kind']);

    const nothing = await send(
      'POST',
      '/v1/pipelines',
      definition({ source: { uri: `s3://${platform.endpoints.s3.bucket}/landing/none-${suffix}/` } }),
    );
    expect(nothing.status).toBe(400);
    const sourceError = ((await nothing.json()) as ErrorBody).error as { details: { issues: { path: string }[] } };
    expect(sourceError.details.issues.map((i) => i.path)).toEqual(['source.uri']);
  });
});

describe('pipeline runs', () => {
  it('one Idempotency-Key sent by 5 concurrent requests starts one run, which completes with stages and metrics', async () => {
    await startWorkers();
    const key = `test-${randomUUID()}`;
    const responses = await Promise.all(
      Array.from({ length: 5 }, () =>
        send('POST', `/v1/pipelines/${pipelineName}/runs`, { version: 1 }, { 'idempotency-key': key, ...keyOf('bob') }),
      ),
    );
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 200, 200, 201]);
    const bodies = (await Promise.all(responses.map((r) => r.json()))) as {
      run: { id: string; pipelineVersion: number; trigger: string; triggeredBy: string };
      links: { self: string };
    }[];
    const ids = new Set(bodies.map((b) => b.run.id));
    expect(ids.size).toBe(1);
    const runId = bodies[0]!.run.id;
    expect(bodies[0]!.run).toMatchObject({ pipelineVersion: 1, trigger: 'http', triggeredBy: 'bob' });
    expect(bodies[0]!.links.self).toMatch(new RegExp(`/v1/runs/${runId}$`));

    const run = await waitForRun(runId, (r) => r.status === 'succeeded');
    expect(run.failure).toBeNull();
    expect(run.status).toBe('succeeded');
    expect(run.stages.map((s) => s.name)).toEqual([
      'extract',
      'statistics',
      'validate_data',
      'prepare',
      'train',
      'evaluate',
      'validate_model',
      'register',
      'deploy',
    ]);
    for (const stage of run.stages) {
      expect(stage.status, stage.name).toBe('succeeded');
      expect(stage.durationMs, stage.name).toBeGreaterThanOrEqual(0);
    }
    expect(run.metrics?.auc).toBeGreaterThan(0.8);
    expect(run.model).toMatchObject({ name: pipelineName, version: 1 });
    expect(run.deployment).toMatchObject({ name: pipelineName, versionId: run.model?.versionId });
    expect(run.artifacts.map((a) => `${a.stage}.${a.name}`)).toEqual(
      expect.arrayContaining(['extract.snapshot', 'train.model', 'evaluate.report']),
    );
    expect(run.links.temporalUi).toContain(`/namespaces/${platform.endpoints.temporal.namespace}/workflows/`);

    const listed = (await (
      await app.request(`/v1/runs?pipeline=${pipelineName}&status=succeeded`, withKey())
    ).json()) as {
      runs: { id: string }[];
    };
    expect(listed.runs.map((r) => r.id)).toContain(runId);

    // A finished run waits for nothing: approve and reject conflict, as do cancel and resume.
    for (const action of ['approve', 'reject', 'cancel', 'resume']) {
      const res = await send('POST', `/v1/runs/${runId}/${action}`, undefined, { ...keyOf('carol') });
      expect(res.status, action).toBe(409);
      expect(((await res.json()) as ErrorBody).error.code, action).toBe('conflict');
    }

    // The registry's read side shows what the run registered and deployed.
    const champion = await app.request(`/v1/models/${pipelineName}/versions/champion`, withKey());
    expect(champion.status).toBe(200);
    const version = (await champion.json()) as { version: number; sourceRunId: string; transitions: unknown[] };
    expect(version).toMatchObject({ version: 1, sourceRunId: runId });
    expect(version.transitions.length).toBeGreaterThanOrEqual(2);
    expect((await app.request(`/v1/models/${pipelineName}/versions/1`, withKey())).status).toBe(200);
    expect((await app.request(`/v1/models/${pipelineName}/versions/7`, withKey())).status).toBe(404);
    const model = (await (await app.request(`/v1/models/${pipelineName}`, withKey())).json()) as {
      champion: { version: number };
    };
    expect(model.champion.version).toBe(1);
    const deployment = (await (await app.request(`/v1/deployments/${pipelineName}`, withKey())).json()) as {
      active: { version: number; role: string }[];
      history: unknown[];
    };
    expect(deployment.active).toMatchObject([{ version: 1, role: 'champion' }]);
    expect(deployment.history).toHaveLength(1);
  });

  it('a run under the approval policy waits, shows the pending approval, and deploys once approved', async () => {
    await startWorkers();
    const saved = await send('POST', '/v1/pipelines', definition({ deployment: { policy: 'approval' } }));
    expect(saved.status).toBe(201);
    const { version } = ((await saved.json()) as { version: { version: number } }).version;
    const started = await send('POST', `/v1/pipelines/${pipelineName}/runs`, { version });
    expect(started.status).toBe(201);
    const { run: startedRun } = (await started.json()) as { run: { id: string } };

    const waiting = await waitForRun(startedRun.id, (r) => r.status === 'waiting_approval');
    expect(waiting.status).toBe('waiting_approval');
    expect(waiting.progress?.stage).toBe('approval');
    expect(Date.parse(waiting.progress?.approval?.deadline ?? '')).toBeGreaterThan(Date.now());

    const approved = await send(
      'POST',
      `/v1/runs/${startedRun.id}/approve`,
      { reason: 'looks good' },
      {
        ...keyOf('dana'),
      },
    );
    expect(approved.status).toBe(200);
    expect(await approved.json()).toMatchObject({ approved: true, actor: 'dana', reason: 'looks good' });

    const done = await waitForRun(startedRun.id, (r) => r.status === 'succeeded');
    expect(done.status).toBe('succeeded');
    expect(done.deployment?.versionId).toBe(done.model?.versionId);

    const again = await send('POST', `/v1/runs/${startedRun.id}/reject`, {});
    expect(again.status).toBe(409);
  });

  it('answers 404 for an unknown run or pipeline and 400 for a run id that is not a UUID', async () => {
    const unknown = await app.request(`/v1/runs/${randomUUID()}`, withKey());
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as ErrorBody).error.code).toBe('not_found');
    expect((await send('POST', `/v1/runs/${randomUUID()}/approve`, {})).status).toBe(404);
    expect((await send('POST', `/v1/pipelines/nope-${suffix}/runs`)).status).toBe(404);
    expect((await send('POST', `/v1/pipelines/${pipelineName}/runs`, { version: 99 })).status).toBe(404);

    const bad = await app.request('/v1/runs/not-a-uuid', withKey());
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as ErrorBody).error.message).toContain('path.runId');
  });
});
