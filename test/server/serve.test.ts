import { Hono } from 'hono';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import { startApiServer, type ApiServer } from '../../server/serve.js';
import { testDeps } from './helpers.js';

const logger = pino({ level: 'silent' });
const started: ApiServer[] = [];

async function start(
  app: { fetch(request: Request): Response | Promise<Response> },
  port = 0,
  shutdownTimeoutMs?: number,
) {
  const server = await startApiServer({ app, host: '127.0.0.1', port, logger, shutdownTimeoutMs });
  started.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.close()));
});

describe('startApiServer', () => {
  it('serves the app on a free port', async () => {
    const server = await start(createApp(testDeps()));
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBeTruthy();
    expect(((await res.json()) as { status: string }).status).toBe('ok');
  });

  it('rejects with a message naming the port and API_PORT when the port is taken', async () => {
    const first = await start(createApp(testDeps()));
    const port = Number(new URL(first.url).port);
    await expect(start(createApp(testDeps()), port)).rejects.toThrow(
      new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use.*API_PORT`),
    );
  });

  it('lets in-flight requests finish on close and then refuses new ones', async () => {
    const app = new Hono().get('/slow', async (c) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return c.text('done');
    });
    const server = await start(app);
    const inFlight = fetch(`${server.url}/slow`);
    await new Promise((resolve) => setTimeout(resolve, 50));

    const closed = server.close();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('done');
    await closed;
    await expect(fetch(`${server.url}/slow`)).rejects.toThrow();
  });

  it('bounds how long close waits for a request that never finishes', async () => {
    const app = new Hono().get('/hang', () => new Promise<Response>(() => {}));
    const server = await start(app, 0, 100);
    const hanging = fetch(`${server.url}/hang`).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));

    const before = performance.now();
    await server.close();
    expect(performance.now() - before).toBeLessThan(1_000);
    expect(await hanging).toBeInstanceOf(Error);
  });
});
