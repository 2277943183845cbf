/**
 * Online serving on the real stack: a model trained, registered and deployed by the pipeline is served from S3;
 * new deployments are picked up under load (NOTIFY, and polling with LISTEN off) with no failed request; a version
 * whose object is corrupt or missing is never swapped in.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import type { PipelineRunnerDeps } from '../../pipelines/runs.js';
import { startApiServer, type ApiServer } from '../../server/serve.js';
import { createServing, type Serving, type ServingOptions } from '../../serving/index.js';
import { artifactKey, formatArtifactUri } from '../../storage/content-hash.js';
import type { TrainingPipelineResult } from '../../workflows/index.js';
import { testLogger, type TestPlatform } from '../support/platform.js';
import { runPipelineToEnd, syntheticCsv, syntheticDefinition } from '../support/pipelines.js';
import { startTestPlatform, type RunningTestPlatform } from '../support/running-platform.js';

let platform: TestPlatform;
let runner: PipelineRunnerDeps;
let started: RunningTestPlatform | undefined;
const servings: Serving[] = [];
const servers: ApiServer[] = [];
let dir: string;

const name = `serving-${randomUUID().slice(0, 8)}`;
let csv: string;

beforeAll(async () => {
  started = await startTestPlatform();
  ({ platform, runner } = started);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serving-'));
  csv = path.join(dir, 'events.csv');
});

afterAll(async () => {
  await Promise.allSettled(servers.map((s) => s.close()));
  await Promise.allSettled(servings.map((s) => s.pool.close()));
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

/** A started pool and an app over it, served on a random port. */
async function startServing(options: ServingOptions): Promise<{ serving: Serving; url: string }> {
  const serving = createServing({
    registry: platform.storage.registry,
    deployments: platform.storage.deployments,
    artifacts: platform.storage.artifacts,
    databaseUrl: platform.endpoints.databaseUrl,
    logger: testLogger,
    options: { defaultMetrics: false, ...options },
  });
  servings.push(serving);
  await serving.pool.start();
  const app = createApp({
    logger: testLogger,
    readiness: [],
    auth: { kind: 'open' },
    version: 'test',
    bodyLimitBytes: 64 * 1024,
    serving: { ...serving, maxInstances: 100 },
  });
  const server = await startApiServer({ app, host: '127.0.0.1', port: 0, logger: testLogger });
  servers.push(server);
  return { serving, url: server.url };
}

/** A predict response or an error, as JSON. */
interface PredictBody {
  model?: { name: string; version: number; versionId: string };
  requestId?: string;
  classes?: unknown[];
  predictions?: { label?: unknown; probabilities?: number[] }[];
  error?: { code: string; message: string };
}

interface Answer {
  status: number;
  body: PredictBody;
}

async function predict(url: string, body: unknown, model = name): Promise<Answer> {
  const response = await fetch(`${url}/v1/models/${model}/predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as PredictBody };
}

/** Requests from `concurrency` loops until stopped, each recorded with when it started and ended. */
function load(url: string, concurrency = 8) {
  const log: { started: number; ended: number; status: number; version: number | undefined; error?: string }[] = [];
  let stop = false;
  const loops = Array.from({ length: concurrency }, async (_, i) => {
    while (!stop) {
      const started = performance.now();
      try {
        const { status, body } = await predict(url, { instance: { x: (i * 7) % 37, kind: `k${i % 3}` } });
        log.push({ started, ended: performance.now(), status, version: body?.model?.version });
      } catch (error) {
        log.push({ started, ended: performance.now(), status: 0, version: undefined, error: String(error) });
      }
    }
  });
  return {
    log,
    /** The version of the latest answer. */
    latest: () => log.at(-1)?.version,
    async stop() {
      stop = true;
      await Promise.all(loops);
      return log;
    },
  };
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Every request that started after the first answer from `version` ended was answered by `version`. */
function switchedCleanly(log: ReturnType<typeof load>['log'], version: number): void {
  const failures = log.filter((r) => r.status !== 200);
  expect(failures, JSON.stringify(failures.slice(0, 3))).toEqual([]);
  const first = log.find((r) => r.version === version);
  expect(first, `no answer from version ${version}`).toBeDefined();
  const after = log.filter((r) => r.started > first!.ended);
  expect(after.length).toBeGreaterThan(0);
  expect(after.filter((r) => r.version !== version)).toEqual([]);
}

describe('online serving', () => {
  let url: string;
  let polling: { serving: Serving; url: string };
  let v1: TrainingPipelineResult;
  let v2: TrainingPipelineResult;

  it('serves the pipeline-deployed champion: single, batch, version and alias, refusals, metrics', async () => {
    writeData(18);
    await platform.storage.pipelines.saveDefinition(syntheticDefinition(name, csv), 'test');
    v1 = await trainAndDeploy();
    expect(v1.model.version).toBe(1);

    // LISTEN on; polling far too slow to matter, so a switch below can only come from a notification.
    ({ url } = await startServing({ pollIntervalMs: 600_000, listenerApplicationName: `serving-test-${name}` }));
    // A second pool that only polls.
    polling = await startServing({ listen: false, pollIntervalMs: 250 });

    const single = await predict(url, { instance: { x: 30, kind: 'k1' } });
    expect(single.status).toBe(200);
    expect(single.body.model).toEqual({ name, version: 1, versionId: v1.model.versionId });
    expect(single.body.requestId).toEqual(expect.any(String));
    expect(single.body.classes).toHaveLength(2);
    const [prediction] = single.body.predictions!;
    expect(prediction!.probabilities).toHaveLength(2);
    expect(prediction!.probabilities![0]! + prediction!.probabilities![1]!).toBeCloseTo(1, 5);
    expect(prediction!.label).toBe(single.body.classes![1]);

    const instances = [
      { x: 30, kind: 'k1' },
      { x: 2, kind: 'k0' },
      { x: null, kind: null },
      { x: 19, kind: 'unseen' },
    ];
    const batch = await predict(url, { instances });
    expect(batch.status).toBe(200);
    expect(batch.body.predictions).toHaveLength(4);
    expect(batch.body.predictions![0]).toEqual(prediction);
    expect(batch.body.predictions![1]!.label).toBe(single.body.classes![0]);

    for (const ref of [{ version: 1 }, { alias: 'champion' }]) {
      const addressed = await predict(url, { instances, ...ref });
      expect(addressed.status).toBe(200);
      expect(addressed.body.predictions).toEqual(batch.body.predictions);
    }

    const refusals: [unknown, number, string][] = [
      [{ instances: [instances[0], { kind: 'k1' }] }, 400, 'instances[1].x: missing'],
      [{ instance: { x: '30', kind: 'k1' } }, 400, 'instance.x: expected a number or null, got a string'],
      [{ instance: { x: 30, kind: 1 } }, 400, 'instance.kind: expected a string or null, got a number'],
      ['{"instance": ', 400, 'Request body is not valid JSON'],
      [{ instances: Array.from({ length: 101 }, () => instances[0]) }, 413, 'instances: 101 instances'],
      [{ instance: { x: 1, kind: 'k'.repeat(70_000) } }, 413, 'Request body exceeds the limit'],
      [{ instance: instances[0], version: 99 }, 404, `model ${name} has no version 99`],
      [{ instance: instances[0], alias: 'staging' }, 404, `model ${name} has no alias staging`],
    ];
    for (const [body, status, message] of refusals) {
      const answer = await predict(url, body);
      expect(answer.status, message).toBe(status);
      expect(answer.body.error?.message).toContain(message);
    }
    expect((await predict(url, { instance: instances[0] }, 'no-such-model')).status).toBe(404);

    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain(`mlops_serving_requests_total{model="${name}",version="1",status="200"}`);
    expect(metrics).toContain(`mlops_serving_model_loads_total{model="${name}",version="1",result="success"} 1`);
  });

  it('switches to a newly deployed version on NOTIFY while under load, with no failed request', async () => {
    const traffic = load(url);
    await until(() => traffic.log.length > 20, 10_000, 'traffic');
    writeData(12);
    v2 = await trainAndDeploy();
    expect(v2.model.version).toBe(2);
    await until(() => traffic.latest() === 2, 10_000, 'the NOTIFY-driven switch to version 2');
    await new Promise((r) => setTimeout(r, 200));
    const log = await traffic.stop();
    expect(log.length).toBeGreaterThan(100);
    expect(log.some((r) => r.version === 1)).toBe(true);
    switchedCleanly(log, 2);
    // Both versions stay addressable explicitly.
    expect((await predict(url, { instance: { x: 1, kind: 'k0' }, version: 1 })).body.model?.version).toBe(1);
  });

  it('switches by polling alone when LISTEN is off', async () => {
    await until(
      async () => (await predict(polling.url, { instance: { x: 1, kind: 'k0' } })).body.model?.version === 2,
      5_000,
      'the polling pool to see version 2',
    );
    const traffic = load(polling.url, 4);
    await until(() => traffic.log.length > 20, 10_000, 'traffic');
    // A rollback: v1 becomes the champion again, written directly to the deployment store.
    await platform.storage.deployments.deploy({
      deploymentName: name,
      modelName: name,
      versionId: v1.model.versionId,
      actor: 'test',
      reason: 'rollback',
    });
    await until(() => traffic.latest() === 1, 5_000, 'the poll-driven switch back to version 1');
    await new Promise((r) => setTimeout(r, 200));
    switchedCleanly(await traffic.stop(), 1);
    expect(polling.serving.pool.listening).toBe(false);
  });

  it('keeps serving the current version when the new one is corrupt or missing in S3, and retries', async () => {
    const { registry, deployments } = platform.storage;
    const champion = await registry.champion(name);
    expect(champion?.id).toBe(v1.model.versionId);
    const { bucket, client } = platform.artifacts;

    // A version whose object was overwritten after registration, and one whose object never existed.
    const uploaded = await platform.artifacts.put(`not the registered bytes ${randomUUID()}`, { kind: 'model.onnx' });
    await client.putObject(bucket, artifactKey(uploaded.sha256), Buffer.from('tampered'));
    const missingSha = randomUUID().replace(/-/g, '').repeat(2);
    const register = (onnxUri: string, sha256: string) =>
      registry.registerVersion({
        modelName: name,
        onnxUri,
        sha256,
        signature: champion!.signature,
        metrics: {},
        params: {},
        blessing: { blessed: true, reason: 'test', evaluatedAt: new Date().toISOString() },
        actor: 'test',
        reason: 'a broken version',
      });
    const corrupt = (await register(uploaded.uri, uploaded.sha256)).version;
    const missing = (await register(formatArtifactUri(bucket, missingSha), missingSha)).version;

    const loadFailures = async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      const matches = [
        ...text.matchAll(/mlops_serving_model_loads_total\{model="[^"]+",version="(\d+)",result="failure"\} (\d+)/g),
      ];
      return new Map(matches.map((m) => [Number(m[1]), Number(m[2])]));
    };

    const traffic = load(url, 4);
    await until(() => traffic.log.length > 20, 10_000, 'traffic');
    for (const broken of [corrupt, missing]) {
      await deployments.deploy({
        deploymentName: name,
        modelName: name,
        versionId: broken.id,
        actor: 'test',
        reason: 'x',
      });
      await until(
        async () => ((await loadFailures()).get(broken.version) ?? 0) >= 1,
        10_000,
        `the failed load of v${broken.version}`,
      );
    }
    await new Promise((r) => setTimeout(r, 300));
    // Still on v1, and nothing failed.
    expect(traffic.latest()).toBe(1);
    const route = servings[0]!.pool.status().find((d) => d.deployment === name);
    expect(route?.targets).toEqual([expect.objectContaining({ role: 'champion', version: 1 })]);

    // A good version deployed afterwards is swapped in as usual.
    await deployments.deploy({
      deploymentName: name,
      modelName: name,
      versionId: v2.model.versionId,
      actor: 'test',
      reason: 'fix',
    });
    await until(() => traffic.latest() === 2, 10_000, 'the switch to version 2 after the broken ones');
    await new Promise((r) => setTimeout(r, 200));
    const log = await traffic.stop();
    switchedCleanly(log, 2);
    expect(log.every((r) => r.version === 1 || r.version === 2)).toBe(true);
  });

  it('reconnects its LISTEN connection after it is killed and still follows deployments', async () => {
    const pool = servings[0]!.pool;
    expect(pool.listening).toBe(true);
    const { rowCount } = await platform.storage.database.pool.query(
      'select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1',
      [`serving-test-${name}`],
    );
    expect(rowCount).toBe(1);
    await until(() => !pool.listening, 5_000, 'the listener to notice');
    await until(() => pool.listening, 10_000, 'the listener to reconnect');
    await platform.storage.deployments.deploy({
      deploymentName: name,
      modelName: name,
      versionId: v1.model.versionId,
      actor: 'test',
      reason: 'after reconnect',
    });
    await until(
      async () => (await predict(url, { instance: { x: 1, kind: 'k0' } })).body.model?.version === 1,
      5_000,
      'the switch after reconnecting',
    );
  });
});
