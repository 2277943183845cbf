import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDataAccessPolicy } from '../../data/access-policy.js';
import { createApp } from '../../server/app.js';
import { anyNamedKey, withKey } from '../support/auth.js';
import { historyToJSON } from '../support/history-json.js';
import { connectTestPlatform, testLogger, type TestPlatform } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

/**
 * The data access policy end to end (issue 15, Security 2 and 3): sources outside the policy are refused with 403
 * before any byte is read, connections keep their passwords out of every response and of workflow histories.
 */

let platform: TestPlatform;
let app: ReturnType<typeof createApp>;
let root: string;
const workers: { worker: Worker; running: Promise<void> }[] = [];
const suffix = randomUUID().slice(0, 8);
const role = `conn_test_${suffix}`;
const schema = `conn_data_${suffix}`;
const password = `pw-${randomUUID()}`;

const send = async (method: string, url: string, body?: unknown) => {
  const res = await app.request(
    url,
    withKey({
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    }),
  );
  return { status: res.status, text: await res.text() };
};

function definition(name: string, source: unknown) {
  return {
    name,
    source,
    label: { name: 'tipped', expression: 'tipped = 1', task: 'binary' },
    features: [
      { name: 'distance', expression: 'distance' },
      { name: 'zone', expression: 'zone' },
    ],
    split: { kind: 'hash', key: 'ride_id', evalFraction: 0.25 },
    trainer: { kind: 'logistic_regression', params: { maxIterations: 20 } },
    retry: { maximumAttempts: 1 },
  };
}

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'data-access-'));
  const bucket = platform.endpoints.s3.bucket;
  app = createApp({
    logger: testLogger,
    readiness: [],
    auth: anyNamedKey,
    version: 'test',
    bodyLimitBytes: 1_048_576,
    stores: platform.storage,
    sources: {
      policy: createDataAccessPolicy({ roots: [root], buckets: [`${bucket}/landing/`] }),
      objects: platform.storage.objects,
      connections: platform.connections,
      queryTimeoutMs: 5_000,
      scratchDir: root,
    },
    connections: platform.connections,
    runner: {
      client: platform.client,
      pipelines: platform.storage.pipelines,
      taskQueue: platform.taskQueue,
      trainingTaskQueue: platform.trainingTaskQueue,
    },
  });
  const pool = platform.storage.database.pool;
  await pool.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  await pool.query(`CREATE SCHEMA ${schema}`);
  await pool.query(`CREATE TABLE ${schema}.rides AS
    SELECT g AS ride_id, (g % 17) * 1.5 AS distance, (ARRAY['north','south','east'])[g % 3 + 1] AS zone,
           CASE WHEN g % 17 > 8 THEN 1 ELSE 0 END AS tipped
    FROM generate_series(1, 300) g`);
  await pool.query(`GRANT USAGE ON SCHEMA ${schema} TO ${role}`);
  await pool.query(`GRANT SELECT ON ${schema}.rides TO ${role}`);
});

afterAll(async () => {
  for (const { worker } of workers) worker.shutdown();
  await Promise.allSettled(workers.map((w) => w.running));
  const pool = platform?.storage.database.pool;
  if (pool) {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pool.query(`DROP ROLE IF EXISTS ${role}`);
  }
  await platform?.close();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

describe('sources outside the policy', () => {
  it('probe /etc/passwd as a source answers 403 with nothing of the file', async () => {
    const res = await send('POST', '/v1/pipelines', definition(`p-${suffix}`, { uri: '/etc/passwd', format: 'csv' }));
    expect(res.status).toBe(403);
    expect(res.text).toContain('source_not_allowed');
    expect(res.text).toContain('DATA_ROOTS=');
    expect(res.text).not.toContain('root:');
  });

  it('probe a file:// URL outside the roots answers 403', async () => {
    const res = await send('POST', '/v1/pipelines', definition(`p-${suffix}`, { uri: 'file:///etc/hostname' }));
    expect(res.status).toBe(403);
    expect(JSON.parse(res.text)).toMatchObject({ error: { code: 'source_not_allowed' } });
  });

  it('probe a bucket outside the policy answers 403', async () => {
    const res = await send('POST', '/v1/pipelines', definition(`p-${suffix}`, { uri: 's3://some-other-bucket/x.csv' }));
    expect(res.status).toBe(403);
    expect(res.text).toContain('DATA_BUCKETS=');
    const artifacts = `s3://${platform.endpoints.s3.bucket}/artifacts/`;
    expect((await send('POST', '/v1/pipelines', definition(`p-${suffix}`, { uri: artifacts }))).status).toBe(403);
  });

  it('probe a raw Postgres URL answers 400 naming source.url, without echoing the password', async () => {
    const url = `postgres://${role}:${password}@127.0.0.1:5432/mlops`;
    const res = await send(
      'POST',
      '/v1/pipelines',
      definition(`p-${suffix}`, { kind: 'postgres', query: 'SELECT 1', url }),
    );
    expect(res.status).toBe(400);
    expect(res.text).toContain('source.url');
    expect(res.text).not.toContain(password);
  });
});

describe('connections', () => {
  const name = `warehouse-${suffix}`;

  it('create, list and get never return the secret', async () => {
    const db = new URL(testEndpoints().databaseUrl);
    const url = `postgres://${role}:${encodeURIComponent(password)}@${db.host}${db.pathname}`;
    const created = await send('POST', '/v1/connections', { name, url, description: 'test warehouse' });
    expect(created.status).toBe(201);
    expect(created.text).not.toContain(password);
    expect(JSON.parse(created.text)).toMatchObject({
      name,
      hasSecret: true,
      secretSource: 'encrypted',
      createdBy: 'api',
    });
    const listed = await send('GET', '/v1/connections');
    expect(listed.status).toBe(200);
    expect(listed.text).not.toContain(password);
    expect(JSON.parse(listed.text).connections.map((c: { name: string }) => c.name)).toContain(name);
    const one = await send('GET', `/v1/connections/${name}`);
    expect(one.status).toBe(200);
    expect(one.text).not.toContain(password);
    // Sealed at rest, too.
    const { rows } = await platform.storage.database.pool.query<{ secret: string }>(
      'SELECT secret FROM connections WHERE name = $1',
      [name],
    );
    expect(rows[0]?.secret).not.toContain(password);
    expect((await send('POST', '/v1/connections', { name, url })).status).toBe(409);
    expect((await send('GET', '/v1/connections/nope-none')).status).toBe(404);
  });

  it("refuses a named secret that would send the platform's own secrets to a connection's server", async () => {
    const url = 'postgres://reader@127.0.0.1:1/warehouse';
    for (const variable of ['S3_SECRET_KEY', 'DATABASE_URL', 'PATH']) {
      const res = await send('POST', '/v1/connections', {
        name: `env-${variable.toLowerCase()}`.replace(/_/g, '-'),
        url,
        secret: { source: 'env', variable },
      });
      expect(res.status, variable).toBe(400);
      expect(res.text, variable).toContain('MLOPS_CONNECTION_');
    }
    const dataDir = inject('stackDataDir');
    const inside = await send('POST', '/v1/connections', {
      name: 'file-in-data-dir',
      url,
      secret: { source: 'file', path: `${dataDir}/secrets/connections.key` },
    });
    expect(inside.status).toBe(400);
    expect(inside.text).toContain('secret.path');
    // The process's own environment, directly or through a symbolic link: refused too.
    const link = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'secret-link-')), 'pw');
    fs.symlinkSync('/proc/self/environ', link);
    for (const file of ['/proc/self/environ', link]) {
      const system = await send('POST', '/v1/connections', {
        name: `file-system-${Date.now()}`,
        url,
        secret: { source: 'file', path: file },
      });
      expect(system.status, file).toBe(400);
      expect(system.text, file).toContain('secret.path');
    }
    const badEscape = await send('POST', '/v1/connections', { name: 'bad-escape', url: 'postgres://u:a%zz@h/db' });
    expect(badEscape.status).toBe(400);
    expect(badEscape.text).toContain('percent-encoding');
    const allowed = await send('POST', '/v1/connections', {
      name: `env-ok-${Date.now()}`,
      url,
      secret: { source: 'env', variable: 'MLOPS_CONNECTION_WAREHOUSE' },
    });
    expect(allowed.status).toBe(201);
  });

  it("a connection to a host that does not resolve is the source's 4xx when a definition is checked, not a 500", async () => {
    const nowhere = `nowhere-${suffix}`;
    expect(
      (await send('POST', '/v1/connections', { name: nowhere, url: 'postgres://reader@nowhere.invalid:5432/db' }))
        .status,
    ).toBe(201);
    const source = { kind: 'postgres', connection: nowhere, query: 'SELECT 1 AS x' };
    const saved = await send('POST', '/v1/pipelines', definition(`nowhere-${suffix}`, source));
    expect(saved.status).toBeGreaterThanOrEqual(400);
    expect(saved.status).toBeLessThan(500);
    expect(saved.text).toContain('source');
  });

  it('a pipeline on a connection extracts, and the password is in no response or workflow history', async () => {
    const pipeline = `conn-${suffix}`;
    const source = { kind: 'postgres', connection: name, query: `SELECT * FROM ${schema}.rides` };
    const saved = await send('POST', '/v1/pipelines', definition(pipeline, source));
    expect(saved.status).toBe(201);
    expect(saved.text).not.toContain(password);
    const got = await send('GET', `/v1/pipelines/${pipeline}`);
    expect(got.status).toBe(200);
    expect(got.text).not.toContain(password);

    for (const worker of [await platform.mainWorker(), await platform.trainingWorker()]) {
      workers.push({ worker, running: worker.run() });
    }
    const started = await send('POST', `/v1/pipelines/${pipeline}/runs`, {});
    expect(started.status).toBe(201);
    const { run } = JSON.parse(started.text) as { run: { id: string; workflowId: string } };
    const deadline = Date.now() + 90_000;
    let extract: { status: string } | undefined;
    while (Date.now() < deadline) {
      const res = await send('GET', `/v1/runs/${run.id}`);
      expect(res.text).not.toContain(password);
      const body = JSON.parse(res.text) as { status: string; stages: { name: string; status: string }[] };
      extract = body.stages.find((s) => s.name === 'extract');
      if (extract?.status === 'succeeded' || ['succeeded', 'failed', 'cancelled'].includes(body.status)) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(extract?.status).toBe('succeeded');
    const history = await platform.client.workflow.getHandle(run.workflowId).fetchHistory();
    // Payloads are base64 in the JSON form: search them decoded too.
    const raw = historyToJSON(history);
    const decoded = [...raw.matchAll(/"data":\s*"([A-Za-z0-9+/=]+)"/g)].map((m) =>
      Buffer.from(m[1]!, 'base64').toString('utf8'),
    );
    const json = `${raw}\n${decoded.join('\n')}`;
    expect(json).toContain(name);
    expect(json).not.toContain(password);
    expect(json).not.toContain(encodeURIComponent(password));
    await platform.client.workflow
      .getHandle(run.workflowId)
      .terminate('test done')
      .catch(() => undefined);
  });

  it('a built-in platform connection cannot be changed, and a deleted connection is gone', async () => {
    expect((await send('DELETE', '/v1/connections/platform')).status).toBe(409);
    expect((await send('DELETE', `/v1/connections/${name}`)).status).toBe(204);
    expect((await send('GET', `/v1/connections/${name}`)).status).toBe(404);
  });
});
