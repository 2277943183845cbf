/**
 * The readiness checks that `/readyz` runs, against this run's real Temporal, PostgreSQL and MinIO, and against
 * endpoints where nothing (or something that never answers) listens.
 */
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  postgresReadiness,
  runReadinessChecks,
  s3Readiness,
  temporalReadiness,
  type ReadinessCheck,
  type ReadinessResult,
} from '../../server/readiness.js';
import { findFreePort } from '../../stack/ports.js';
import { S3ArtifactStore } from '../../storage/artifact-store.js';
import { createDatabase, type DatabaseHandle } from '../../storage/database.js';
import { testEndpoints } from '../support/stack.js';

const TIMEOUT_MS = 1_000;
/** Slack over the per-check timeout for timers and the event loop. */
const SLACK_MS = 500;

const databases: DatabaseHandle[] = [];
const connections: Connection[] = [];
const blackHoles: net.Server[] = [];
const blackHoleSockets = new Set<net.Socket>();

function database(url: string): DatabaseHandle {
  const handle = createDatabase(url, { max: 1, connectionTimeoutMs: 3_000 });
  databases.push(handle);
  return handle;
}

function lazyConnection(address: string): Connection {
  const connection = Connection.lazy({ address, connectTimeout: 1_000 });
  connections.push(connection);
  return connection;
}

/** A TCP port that accepts connections and never answers a byte: a hung service. */
async function blackHole(): Promise<number> {
  const server = net.createServer((socket) => {
    blackHoleSockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => blackHoleSockets.delete(socket));
  });
  blackHoles.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

async function runOne(check: ReadinessCheck, timeoutMs = TIMEOUT_MS): Promise<ReadinessResult> {
  const report = await runReadinessChecks([check], { timeoutMs });
  expect(Object.keys(report.checks)).toEqual([check.name]);
  expect(report.ready).toBe(report.checks[check.name]!.ok);
  return report.checks[check.name]!;
}

function expectFailure(result: ReadinessResult): string {
  expect(result.ok).toBe(false);
  if (result.ok) throw new Error('unreachable');
  expect(result.error).not.toBe('');
  return result.error;
}

let realTemporal: Connection;

beforeAll(async () => {
  realTemporal = await Connection.connect({ address: testEndpoints().temporal.address });
  connections.push(realTemporal);
});

afterAll(async () => {
  // The SDK's retry timers for unreachable servers must run out before their connection is closed (see the
  // comment on temporalReadiness): the gRPC deadline bounds them to one backoff interval.
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  for (const socket of blackHoleSockets) socket.destroy();
  await Promise.allSettled([
    ...connections.map((c) => c.close()),
    ...databases.map((d) => d.close()),
    ...blackHoles.map((s) => new Promise((resolve) => s.close(resolve))),
  ]);
});

describe('readiness checks against the real services', () => {
  it('pass for Temporal, PostgreSQL and S3 together', async () => {
    const endpoints = testEndpoints();
    const s3 = S3ArtifactStore.fromConfig(endpoints.s3);
    const report = await runReadinessChecks(
      [
        temporalReadiness(realTemporal),
        postgresReadiness(database(endpoints.databaseUrl).pool),
        s3Readiness(s3.client, endpoints.s3.bucket),
      ],
      { timeoutMs: 5_000 },
    );
    expect(report.ready).toBe(true);
    expect(Object.keys(report.checks).sort()).toEqual(['postgres', 's3', 'temporal']);
    for (const result of Object.values(report.checks)) {
      expect(result).toEqual({ ok: true, latencyMs: expect.any(Number) });
      expect(result.latencyMs).toBeGreaterThanOrEqual(0);
      expect(result.latencyMs).toBeLessThan(5_000);
    }
  });

  it('pass through a lazy Temporal connection, as the API makes it', async () => {
    const result = await runOne(temporalReadiness(lazyConnection(testEndpoints().temporal.address)), 5_000);
    expect(result.ok).toBe(true);
  });

  it('report one failing dependency without hiding the others', async () => {
    const endpoints = testEndpoints();
    const s3 = S3ArtifactStore.fromConfig(endpoints.s3);
    const missing = `no-such-bucket-${randomUUID().slice(0, 8)}`;
    const report = await runReadinessChecks(
      [
        temporalReadiness(realTemporal),
        postgresReadiness(database(endpoints.databaseUrl).pool),
        s3Readiness(s3.client, missing),
      ],
      { timeoutMs: 5_000 },
    );
    expect(report.ready).toBe(false);
    expect(report.checks.temporal!.ok).toBe(true);
    expect(report.checks.postgres!.ok).toBe(true);
    expect(report.checks.s3!.ok).toBe(false);
  });
});

describe('S3 readiness', () => {
  it('fails for a bucket that does not exist, naming it', async () => {
    const endpoints = testEndpoints();
    const missing = `no-such-bucket-${randomUUID().slice(0, 8)}`;
    const error = expectFailure(await runOne(s3Readiness(S3ArtifactStore.fromConfig(endpoints.s3).client, missing)));
    expect(error).toContain(`"${missing}"`);
    expect(error).toMatch(/does not exist/);
  });

  it('fails with wrong credentials', async () => {
    const endpoints = testEndpoints();
    const client = S3ArtifactStore.fromConfig({ ...endpoints.s3, secretKey: 'definitely-wrong-secret' }).client;
    expect(expectFailure(await runOne(s3Readiness(client, endpoints.s3.bucket), 5_000))).toMatch(
      /credentials|access denied|signature/i,
    );
  });

  it('fails when nothing listens at the endpoint', async () => {
    const endpoints = testEndpoints();
    const port = await findFreePort();
    const client = S3ArtifactStore.fromConfig({ ...endpoints.s3, endpoint: `http://127.0.0.1:${port}` }).client;
    const result = await runOne(s3Readiness(client, endpoints.s3.bucket));
    expect(expectFailure(result)).toContain(`ECONNREFUSED 127.0.0.1:${port}`);
    expect(result.latencyMs).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  });
});

describe('PostgreSQL readiness', () => {
  it('fails against a port where nothing listens', async () => {
    const url = new URL(testEndpoints().databaseUrl);
    url.port = String(await findFreePort());
    const result = await runOne(postgresReadiness(database(url.toString()).pool));
    expect(expectFailure(result)).toContain(`ECONNREFUSED 127.0.0.1:${url.port}`);
    expect(result.latencyMs).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  });

  it('fails with a wrong password', async () => {
    const url = new URL(testEndpoints().databaseUrl);
    url.password = 'wrong-password';
    expect(expectFailure(await runOne(postgresReadiness(database(url.toString()).pool), 5_000))).toMatch(
      /password|authentication/i,
    );
  });

  it('times out against a server that never answers, within the timeout', async () => {
    const url = new URL(testEndpoints().databaseUrl);
    url.port = String(await blackHole());
    const result = await runOne(postgresReadiness(database(url.toString()).pool), 500);
    expect(expectFailure(result)).toBe('timed out after 500 ms');
    expect(result.latencyMs).toBeLessThan(500 + SLACK_MS);
  });
});

describe('Temporal readiness', () => {
  it('fails against a closed port within the timeout', async () => {
    const port = await findFreePort();
    const check = temporalReadiness(lazyConnection(`127.0.0.1:${port}`), { timeoutMs: TIMEOUT_MS });
    const started = Date.now();
    const result = await runOne(check);
    // The SDK retries UNAVAILABLE until the deadline, so a refused connection is reported as a timeout.
    expect(expectFailure(result)).toMatch(/timed out|deadline|unavailable|ECONNREFUSED/i);
    expect(result.latencyMs).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  });

  it('times out against a server that never answers, within the timeout', async () => {
    const port = await blackHole();
    const check = temporalReadiness(lazyConnection(`127.0.0.1:${port}`), { timeoutMs: TIMEOUT_MS });
    const result = await runOne(check);
    expect(expectFailure(result)).toMatch(/timed out|deadline/i);
    expect(result.latencyMs).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  });
});
