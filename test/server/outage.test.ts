import net from 'node:net';
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import { Hono } from 'hono';
import { Client as MinioClient } from 'minio';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { outageOf } from '../../core/outage.js';
import type { AppEnv } from '../../server/context.js';
import { createErrorHandler, DEFAULT_RETRY_AFTER_SECONDS } from '../../server/error-handler.js';
import { TEMPORAL_CALL_ATTEMPTS } from '../../server/start-api.js';
import { createDatabase } from '../../storage/database.js';
import { captureLogger } from './helpers.js';

// Real errors from the real clients, each against a port nothing listens on (refused at once): what the API meets
// when PostgreSQL, Temporal or MinIO is down.
let closedPort: number;

beforeAll(async () => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closedPort = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
});

async function errorOf(work: () => Promise<unknown>): Promise<unknown> {
  return work().then(
    () => {
      throw new Error('expected a failure');
    },
    (error: unknown) => error,
  );
}

const databaseUrl = () => `postgres://postgres:postgres@127.0.0.1:${closedPort}/mlops`;

describe('outageOf', () => {
  it('recognises PostgreSQL refusing connections, through Drizzle and the pool', async () => {
    const database = createDatabase(databaseUrl(), { max: 1, connectionTimeoutMs: 1_000 });
    try {
      const error = await errorOf(() => database.db.execute('select 1'));
      expect(outageOf(error)).toMatchObject({ service: 'PostgreSQL', reason: 'ECONNREFUSED' });
    } finally {
      await database.close();
    }
  });

  it('recognises a pool timeout, a lost connection and a server shutting down', () => {
    expect(outageOf(new Error('timeout exceeded when trying to connect'))?.service).toBe('PostgreSQL');
    expect(outageOf(new Error('Connection terminated unexpectedly'))?.service).toBe('PostgreSQL');
    for (const code of ['57P01', '57P02', '57P03', '08006', '08001', '53300']) {
      const error = Object.assign(new pg.DatabaseError('terminating connection', 0, 'error'), { code });
      expect(outageOf(new Error('Failed query: select 1', { cause: error })), code).toMatchObject({
        service: 'PostgreSQL',
        reason: code,
      });
    }
  });

  it('recognises Temporal unreachable (gRPC UNAVAILABLE), within seconds with the API retry setting', async () => {
    const connection = Connection.lazy({
      address: `127.0.0.1:${closedPort}`,
      interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions({ maxAttempts: TEMPORAL_CALL_ATTEMPTS }))],
    });
    const started = Date.now();
    try {
      const client = new Client({ connection });
      const error = await errorOf(() => client.workflow.getHandle('nope').describe());
      expect(outageOf(error)).toMatchObject({ service: 'Temporal' });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await connection.close();
    }
  });

  it('recognises S3 refusing connections', async () => {
    const minio = new MinioClient({
      endPoint: '127.0.0.1',
      port: closedPort,
      useSSL: false,
      accessKey: 'minioadmin',
      secretKey: 'minioadmin',
      region: 'us-east-1',
    });
    const error = await errorOf(() => minio.statObject('bucket', 'key'));
    expect(outageOf(error)?.reason).toBe('ECONNREFUSED');
  });

  it('leaves bugs and refusals alone', () => {
    expect(outageOf(new TypeError('x is undefined'))).toBeUndefined();
    expect(outageOf(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBeUndefined();
    expect(outageOf(Object.assign(new Error('statement timeout'), { code: '57014' }))).toBeUndefined();
    expect(outageOf(Object.assign(new Error('not found'), { code: 5, metadata: {} }))).toBeUndefined();
    expect(outageOf(undefined)).toBeUndefined();
  });
});

describe('the error handler on an outage', () => {
  it('answers 503 service_unavailable with Retry-After, naming the service but not its address', async () => {
    const { logger, lines } = captureLogger();
    const database = createDatabase(databaseUrl(), { max: 1, connectionTimeoutMs: 1_000 });
    const app = new Hono<AppEnv>();
    app.onError(createErrorHandler(logger));
    app.get('/db', async () => {
      await database.db.execute('select 1');
      return new Response('unreachable');
    });
    app.get('/bug', () => {
      throw new TypeError('a bug');
    });
    try {
      const response = await app.request('/db');
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe(String(DEFAULT_RETRY_AFTER_SECONDS));
      const body = (await response.json()) as { error: { code: string; message: string; details: unknown } };
      expect(body.error).toMatchObject({ code: 'service_unavailable', details: { service: 'PostgreSQL' } });
      expect(body.error.message).toContain('PostgreSQL');
      expect(body.error.message).not.toContain(String(closedPort));
      expect(lines.some((l) => l.level === 50)).toBe(true);

      expect((await app.request('/bug')).status).toBe(500);
    } finally {
      await database.close();
    }
  });
});
