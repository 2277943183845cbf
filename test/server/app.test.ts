import { createRoute, z } from '@hono/zod-openapi';
import { HTTPException } from 'hono/http-exception';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import { ConflictError, NotFoundError, type ErrorBody, type FieldProblem } from '../../server/errors.js';
import { createRouter } from '../../server/router.js';
import { captureLogger, testDeps } from './helpers.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Routes that exist only in these tests, mounted the way resources are. */
function testRoutes() {
  const router = createRouter();
  router.openapi(
    createRoute({
      method: 'post',
      path: '/items/{id}',
      request: {
        params: z.object({ id: z.coerce.number().int().positive() }),
        query: z.object({ dryRun: z.enum(['true', 'false']).optional() }),
        body: {
          required: true,
          content: {
            'application/json': {
              schema: z.object({
                name: z.string().min(1),
                rows: z.array(z.object({ distance: z.number() })).optional(),
              }),
            },
          },
        },
      },
      responses: { 200: { description: 'echo', content: { 'application/json': { schema: z.object({}) } } } },
    }),
    (c) => c.json({ id: c.req.valid('param').id, body: c.req.valid('json') }, 200),
  );
  router.post('/raw-json', async (c) => c.json(await c.req.json<unknown>()));
  router.get('/boom', () => {
    throw new Error('connection to postgres://admin:hunter2@db failed');
  });
  router.get('/missing', () => {
    throw new NotFoundError('model "churn" version 7 not found');
  });
  router.get('/conflict', () => {
    throw new ConflictError('alias "production" moved meanwhile', {
      code: 'alias_conflict',
      details: { alias: 'production' },
    });
  });
  router.get('/auth', () => {
    throw new HTTPException(401, {
      message: 'missing bearer token',
      res: new Response('Unauthorized', { status: 401, headers: { 'www-authenticate': 'Bearer realm="api"' } }),
    });
  });
  return router;
}

function makeApp(overrides: Parameters<typeof testDeps>[0] = {}) {
  const app = createApp(testDeps(overrides));
  app.route('/test', testRoutes());
  return app;
}

async function errorOf(res: Response): Promise<ErrorBody['error']> {
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await res.json()) as ErrorBody;
  expect(Object.keys(body)).toEqual(['error']);
  return body.error;
}

describe('request id', () => {
  it('generates a UUID when the request has none and stores it for the logs', async () => {
    const { logger, lines } = captureLogger();
    const res = await makeApp({ logger }).request('/healthz');
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(UUID);
    expect(lines.find((l) => l.msg === 'request completed')?.requestId).toBe(id);
  });

  it('echoes a valid incoming id', async () => {
    const res = await makeApp().request('/healthz', { headers: { 'x-request-id': 'trace-01HZX3.abc:42' } });
    expect(res.headers.get('x-request-id')).toBe('trace-01HZX3.abc:42');
  });

  it('replaces an id that is not safe to log', async () => {
    const res = await makeApp().request('/healthz', { headers: { 'x-request-id': '<script>alert(1)</script>' } });
    expect(res.headers.get('x-request-id')).toMatch(UUID);
  });

  it('is on error responses too', async () => {
    const res = await makeApp().request('/nowhere', { headers: { 'x-request-id': 'abc-123' } });
    expect(res.status).toBe(404);
    expect(res.headers.get('x-request-id')).toBe('abc-123');
  });
});

describe('request logging', () => {
  it('logs one line per request with id, method, path, status and duration', async () => {
    const { logger, lines } = captureLogger();
    await makeApp({ logger }).request('/test/missing?token=secret', { headers: { 'x-request-id': 'req-1' } });
    const line = lines.find((l) => l.requestId === 'req-1' && l.status !== undefined);
    expect(line).toMatchObject({ method: 'GET', path: '/test/missing', status: 404, level: 40 });
    expect(typeof line?.durationMs).toBe('number');
    expect(JSON.stringify(lines)).not.toContain('secret');
  });
});

describe('error responses', () => {
  it('answers an unknown route with 404 in the error shape', async () => {
    const res = await makeApp().request('/v1/nothing-here');
    expect(res.status).toBe(404);
    expect(await errorOf(res)).toEqual({ code: 'not_found', message: 'No route for GET /v1/nothing-here' });
  });

  it('maps domain errors to their own status and code', async () => {
    const app = makeApp();
    const missing = await app.request('/test/missing');
    expect(missing.status).toBe(404);
    expect(await errorOf(missing)).toEqual({ code: 'not_found', message: 'model "churn" version 7 not found' });

    const conflict = await app.request('/test/conflict');
    expect(conflict.status).toBe(409);
    expect(await errorOf(conflict)).toEqual({
      code: 'alias_conflict',
      message: 'alias "production" moved meanwhile',
      details: { alias: 'production' },
    });
  });

  it('passes an HTTPException through in the error shape, keeping its headers', async () => {
    const res = await makeApp().request('/test/auth');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="api"');
    expect(await errorOf(res)).toEqual({ code: 'unauthorized', message: 'missing bearer token' });
  });

  it('answers an unexpected error with a generic 500 and logs the stack, never returning it', async () => {
    const { logger, lines } = captureLogger();
    const res = await makeApp({ logger }).request('/test/boom', { headers: { 'x-request-id': 'req-boom' } });
    expect(res.status).toBe(500);
    const text = await res.clone().text();
    expect(text).not.toMatch(/hunter2|postgres|at .*\.ts|stack/);
    expect(await errorOf(res)).toEqual({ code: 'internal_error', message: 'Internal server error' });

    const logged = lines.find((l) => l.msg === 'unhandled error while handling request');
    expect(logged?.requestId).toBe('req-boom');
    expect((logged?.err as { stack?: string } | undefined)?.stack).toContain('app.test.ts');
  });
});

describe('request validation', () => {
  it('names every invalid field with its location', async () => {
    const res = await makeApp().request('/test/items/5', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 42, rows: [{ distance: 1 }, { distance: 'far' }] }),
    });
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.code).toBe('invalid_request');
    expect(error.message).toMatch(/^Invalid request: body\.name: .*expected string.* \(and 1 more\)$/);
    const details = error.details as FieldProblem[];
    expect(details.map((d) => `${d.location}:${d.path}`)).toEqual(['body:name', 'body:rows[1].distance']);
    expect(details[0]?.problem).toMatch(/expected string/);
  });

  it('validates path and query parameters the same way', async () => {
    const res = await makeApp().request('/test/items/-1?dryRun=maybe', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'ok' }),
    });
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.code).toBe('invalid_request');
    expect((error.details as FieldProblem[])[0]).toMatchObject({ location: expect.stringMatching(/path|query/) });
  });

  it('accepts a valid request', async () => {
    const res = await makeApp().request('/test/items/5', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'churn' }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ id: 5, body: { name: 'churn' } });
  });

  it('answers a malformed JSON body with 400 naming the syntax problem', async () => {
    for (const path of ['/test/items/5', '/test/raw-json']) {
      const res = await makeApp().request(path, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"name": "churn",',
      });
      expect(res.status, path).toBe(400);
      const error = await errorOf(res);
      expect(error.code).toBe('malformed_json');
      expect(error.message).toMatch(/^Request body is not valid JSON: .*JSON/);
    }
  });
});

describe('body size limit', () => {
  const big = JSON.stringify({ name: 'x'.repeat(2000) });

  it('rejects a body over the limit with 413 in the error shape (declared length)', async () => {
    const res = await makeApp().request('/test/items/5', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(big.length) },
      body: big,
    });
    expect(res.status).toBe(413);
    expect(await errorOf(res)).toEqual({
      code: 'payload_too_large',
      message: 'Request body exceeds the limit of 1024 bytes',
      details: { limitBytes: 1024 },
    });
  });

  it('rejects a streamed body once it passes the limit', async () => {
    const chunks = [big.slice(0, 1000), big.slice(1000)];
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.shift();
        if (next === undefined) controller.close();
        else controller.enqueue(new TextEncoder().encode(next));
      },
    });
    const res = await makeApp().request('/test/items/5', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect((await errorOf(res)).code).toBe('payload_too_large');
  });

  it('lets a body within the limit through', async () => {
    const res = await makeApp({ bodyLimitBytes: 4096 }).request('/test/items/5', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: big,
    });
    expect(res.status).toBe(200);
  });
});
