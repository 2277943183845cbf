/**
 * Issue 15: an outage of PostgreSQL or Temporal answers 503 `service_unavailable` with `Retry-After`, never a 500.
 * The API is built over the real stores and client with the service it loses pointed at a port nothing listens on
 * (the shared test stack keeps running for the other files); stopping a real server mid-run is covered by
 * test/integration/faults/.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import { DEFAULT_RETRY_AFTER_SECONDS } from '../../server/error-handler.js';
import { TEMPORAL_CALL_ATTEMPTS } from '../../server/start-api.js';
import { openStorage, type PlatformStorage } from '../../storage/open-storage.js';
import { connectTestPlatform, testLogger, type TestPlatform } from '../support/platform.js';
import { syntheticCsv, syntheticDefinition } from '../support/pipelines.js';
import { testEndpoints } from '../support/stack.js';

let platform: TestPlatform;
let closedPort: number;
let pgDown: PlatformStorage;
let temporalDown: Connection;
let dir: string;
const name = `outage-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closedPort = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  platform = await connectTestPlatform(testEndpoints());
  const url = new URL(testEndpoints().databaseUrl);
  url.port = String(closedPort);
  pgDown = openStorage(
    { ...testEndpoints(), databaseUrl: url.toString() },
    { logger: testLogger, applicationName: 'outage-test', poolSize: 2 },
  );
  temporalDown = Connection.lazy({
    address: `127.0.0.1:${closedPort}`,
    interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions({ maxAttempts: TEMPORAL_CALL_ATTEMPTS }))],
  });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'outage-api-'));
  const csv = path.join(dir, 'events.csv');
  fs.writeFileSync(csv, syntheticCsv());
  await platform.storage.pipelines.saveDefinition(syntheticDefinition(name, csv), 'test');
});

afterAll(async () => {
  await pgDown?.close();
  await temporalDown?.close();
  await platform?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function app(storage: PlatformStorage, client: Client) {
  return createApp({
    logger: testLogger,
    auth: { kind: 'open' },
    readiness: [],
    version: 'test',
    bodyLimitBytes: 1 << 20,
    stores: storage,
    runner: {
      client,
      pipelines: storage.pipelines,
      taskQueue: `outage-${randomUUID().slice(0, 8)}`,
      trainingTaskQueue: 'outage-training',
    },
  });
}

async function expectOutage(response: Response, service: string): Promise<void> {
  const body = (await response.json()) as { error: { code: string; details?: { service?: string } } };
  expect(response.status, JSON.stringify(body)).toBe(503);
  expect(body.error.code).toMatch(/service_unavailable/);
  expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  if (body.error.details?.service) expect(body.error.details.service).toBe(service);
}

describe('the API during an outage', () => {
  it('answers 503 with Retry-After on every route that reads or writes PostgreSQL while it is down', async () => {
    const api = app(pgDown, platform.client);
    const requests: [string, string, unknown?][] = [
      ['GET', '/v1/pipelines'],
      ['GET', `/v1/pipelines/${name}`],
      ['POST', `/v1/pipelines/${name}/runs`, {}],
      ['GET', '/v1/runs'],
      ['GET', `/v1/runs/${randomUUID()}`],
      ['GET', '/v1/models'],
      ['GET', `/v1/models/${name}/versions`],
      ['GET', '/v1/deployments'],
      ['GET', `/v1/datasets/${name}/schema`],
    ];
    for (const [method, url, body] of requests) {
      const response = await api.request(url, {
        method,
        ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      });
      await expectOutage(response, 'PostgreSQL');
    }
    expect(DEFAULT_RETRY_AFTER_SECONDS).toBeGreaterThan(0);
  });

  it('answers 503 with Retry-After, within seconds, when Temporal is down and a run is started or steered', async () => {
    const api = app(platform.storage, new Client({ connection: temporalDown }));
    const started = Date.now();
    const start = await api.request(`/v1/pipelines/${name}/runs`, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    await expectOutage(start, 'Temporal');
    expect(Date.now() - started).toBeLessThan(10_000);
    // The run it wrote is marked failed (resumable); steering it needs Temporal too.
    const run = (await platform.storage.pipelines.listRuns({ pipelineName: name })).at(0);
    expect(run?.status).toBe('failed');
    for (const action of ['cancel', 'resume', 'approve']) {
      const response = await api.request(`/v1/runs/${run!.id}/${action}`, {
        method: 'POST',
        body: '{}',
        headers: { 'content-type': 'application/json' },
      });
      // A failed run can be resumed (Temporal needed: 503); cancel and approve are refused by its state (409).
      expect(response.status, `${action}: ${await response.clone().text()}`).not.toBe(500);
      if (action === 'resume') await expectOutage(response, 'Temporal');
    }
  });
});
