import { describe, expect, it } from 'vitest';
import { API_SCOPES, type ApiScope } from '../../schema/index.js';
import { createApp } from '../../server/app.js';
import { bearerToken } from '../../server/auth.js';
import { hostName } from '../../server/middleware/host-check.js';
import { KeyRateLimiter } from '../../server/middleware/rate-limit.js';
import { fixedKeys } from '../support/auth.js';
import { testDeps } from './helpers.js';

/**
 * Keys and scopes guard every route: the OpenAPI document is walked, so a route added without a scope, or whose
 * documented scope is not the one enforced, fails here.
 */

const OTHER_SCOPES = (scope: ApiScope): ApiScope[] => API_SCOPES.filter((s) => s !== scope && s !== 'admin');

const keys = fixedKeys({
  admin: ['admin'],
  ...Object.fromEntries(API_SCOPES.map((s) => [`only-${s}`, [s]])),
  ...Object.fromEntries(API_SCOPES.map((s) => [`all-but-${s}`, OTHER_SCOPES(s)])),
});

/** Every resource mounted, over stores that are never reached by a refused request. */
function fullApp(overrides: Parameters<typeof testDeps>[0] = {}) {
  const stub = {} as never;
  return createApp(
    testDeps({
      auth: keys.auth,
      keys: stub,
      stores: {
        registry: stub,
        deployments: stub,
        pipelines: stub,
        artifacts: stub,
        metadata: stub,
        datasets: stub,
        feedback: stub,
        watchedObjects: stub,
        monitoringWindows: stub,
        monitoringActions: stub,
        triggers: stub,
      },
      runner: { client: stub, pipelines: stub, taskQueue: 'm', trainingTaskQueue: 't' },
      serving: { pool: stub, metrics: { forModel: () => stub, render: () => stub } as never },
      ...overrides,
    }),
  );
}

type Operation = { security?: Record<string, string[]>[] };

async function operations(): Promise<{ method: string; path: string; scope: string | undefined }[]> {
  const doc = (await (await fullApp().request('/openapi.json')).json()) as {
    paths: Record<string, Record<string, Operation>>;
    components: { securitySchemes?: Record<string, { type: string; scheme: string }> };
  };
  expect(doc.components.securitySchemes?.apiKey).toMatchObject({ type: 'http', scheme: 'bearer' });
  return Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => {
      const scopes = op.security?.flatMap((requirement) => Object.values(requirement).flat());
      return { method, path, scope: scopes?.length === 1 ? scopes[0] : scopes?.join('+') };
    }),
  );
}

/** A concrete URL for a documented path: each `{param}` becomes a value of the right shape. */
function urlOf(path: string): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) =>
    /id$/i.test(name) ? '0b7c1f5e-7d1f-4a3e-9e0b-5d6f1c2a3b4c' : name === 'version' ? '1' : 'x1',
  );
}

const PUBLIC = new Set(['/healthz', '/readyz']);

/** What each write needs; reads need `read` unless listed. */
const EXPECTED_SCOPES: Record<string, ApiScope> = {
  'post /v1/pipelines': 'trigger',
  'put /v1/pipelines/{name}': 'trigger',
  'post /v1/pipelines/{name}/runs': 'trigger',
  'post /v1/pipelines/{name}/schedules': 'trigger',
  'patch /v1/pipelines/{name}/schedules/{schedule}': 'trigger',
  'delete /v1/pipelines/{name}/schedules/{schedule}': 'trigger',
  'post /v1/pipelines/{name}/schedules/{schedule}/pause': 'trigger',
  'post /v1/pipelines/{name}/schedules/{schedule}/unpause': 'trigger',
  'post /v1/pipelines/{name}/schedules/{schedule}/trigger': 'trigger',
  'post /v1/pipelines/{name}/schedules/{schedule}/backfill': 'trigger',
  'post /v1/events/s3': 'trigger',
  'post /v1/runs/{runId}/approve': 'approve',
  'post /v1/runs/{runId}/reject': 'approve',
  'post /v1/runs/{runId}/cancel': 'trigger',
  'post /v1/runs/{runId}/resume': 'trigger',
  'post /v1/datasets/{dataset}/schema/accept': 'approve',
  'post /v1/models/{name}/predict': 'predict',
  'post /v1/models/{name}/batch-predictions': 'predict',
  'patch /v1/models/{name}': 'deploy',
  'patch /v1/models/{name}/versions/{version}': 'deploy',
  'post /v1/models/{name}/versions/{version}/archive': 'deploy',
  'put /v1/models/{name}/aliases/{alias}': 'deploy',
  'delete /v1/models/{name}/aliases/{alias}': 'deploy',
  'post /v1/feedback': 'predict',
  'post /v1/deployments/{name}/rollouts': 'deploy',
  'post /v1/deployments/{name}/rollouts/{id}/cancel': 'deploy',
  'post /v1/deployments/{name}/rollback': 'deploy',
  'delete /v1/deployments/{name}/shadows/{version}': 'deploy',
  'put /v1/deployments/{name}/monitoring/schedule': 'deploy',
  'delete /v1/deployments/{name}/monitoring/schedule': 'deploy',
  'post /v1/deployments/{name}/monitoring/windows': 'trigger',
  'post /v1/keys': 'admin',
  'get /v1/keys': 'admin',
  'get /v1/keys/{id}': 'admin',
  'delete /v1/keys/{id}': 'admin',
};

describe('API keys and scopes', () => {
  it('documents exactly one scope on every route but the health probes, the one expected', async () => {
    const ops = await operations();
    expect(ops.length).toBeGreaterThan(25);
    for (const { method, path, scope } of ops) {
      const key = `${method} ${path}`;
      if (PUBLIC.has(path)) {
        expect(scope, key).toBeUndefined();
        continue;
      }
      const expected = EXPECTED_SCOPES[key] ?? (path.startsWith('/v1/connections') ? 'admin' : 'read');
      expect(scope, key).toBe(expected);
    }
  });

  it("enforces each route's documented scope: 401 without a key, 403 without the scope, admin passes", async () => {
    const app = fullApp();
    for (const { method, path, scope } of await operations()) {
      if (!scope) continue;
      const label = `${method.toUpperCase()} ${path}`;
      const send = (headers: Record<string, string>) =>
        app.request(urlOf(path), {
          method: method.toUpperCase(),
          headers: { 'content-type': 'application/json', ...headers },
          ...(method === 'get' || method === 'delete' ? {} : { body: '{}' }),
        });

      const anonymous = await send({});
      expect(anonymous.status, label).toBe(401);
      expect(anonymous.headers.get('www-authenticate'), label).toMatch(/^Bearer/);
      expect(((await anonymous.json()) as { error: { code: string } }).error.code, label).toBe('unauthorized');
      expect((await send({ authorization: 'Bearer mlk_wrong' })).status, label).toBe(401);

      const lacking = await send(keys.as(`all-but-${scope}`));
      expect(lacking.status, label).toBe(403);
      const refusal = (await lacking.json()) as { error: { code: string; message: string } };
      expect(refusal.error.code, label).toBe('missing_scope');
      expect(refusal.error.message, label).toContain(`"${scope}"`);

      for (const holder of [`only-${scope}`, 'admin']) {
        const allowed = await send(keys.as(holder));
        expect([401, 403], `${label} as ${holder}`).not.toContain(allowed.status);
      }
    }
  });

  it('serves the health probes, the OpenAPI document and the docs page without a key', async () => {
    const app = fullApp();
    for (const path of ['/healthz', '/openapi.json', '/docs']) {
      expect((await app.request(path)).status, path).toBe(200);
    }
    expect((await app.request('/metrics')).status).toBe(401);
  });

  it('takes the actor from the key, not from a header the caller writes', async () => {
    const ops = await operations();
    const documented = JSON.stringify(ops);
    expect(documented).not.toContain('x-actor');
    const doc = await (await fullApp().request('/openapi.json')).text();
    expect(doc).not.toContain('x-actor');
  });

  it('reads a bearer token only from a well-formed Authorization header', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer   abc  ')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeUndefined();
    expect(bearerToken('Bearer ')).toBeUndefined();
    expect(bearerToken('Bearer a b')).toBeUndefined();
    expect(bearerToken('Bearer ' + 'x'.repeat(513))).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });
});

describe('Host checking', () => {
  it('answers a loopback Host and refuses another name (DNS rebinding) with 403', async () => {
    const app = fullApp({ allowedHosts: ['localhost', '127.0.0.1', '[::1]'] });
    const ok = await app.request('http://localhost:3000/healthz');
    expect(ok.status).toBe(200);
    expect((await app.request('http://127.0.0.1:3000/healthz')).status).toBe(200);
    expect((await app.request('http://[::1]:3000/healthz')).status).toBe(200);
    const rebound = await app.request('http://evil.example:3000/v1/models', { headers: keys.as('admin') });
    expect(rebound.status).toBe(403);
    expect(((await rebound.json()) as { error: { code: string } }).error.code).toBe('host_not_allowed');
  });

  it('parses Host headers with ports and IPv6 literals', () => {
    expect(hostName('LocalHost:3000')).toBe('localhost');
    expect(hostName('[::1]:3000')).toBe('[::1]');
    expect(hostName('[::1]')).toBe('[::1]');
    expect(hostName('127.0.0.1')).toBe('127.0.0.1');
  });
});

describe('rate limits', () => {
  it('answers 429 with Retry-After once a key has used its burst, per key', async () => {
    const app = fullApp({ rateLimitPerSecond: 2 });
    const get = (who: string) => app.request('/v1/keys/not-a-uuid', { headers: keys.as(who) });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await get('admin')).status);
    expect(statuses.slice(0, 4)).toEqual([400, 400, 400, 400]);
    const limited = await get('admin');
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await limited.json()) as { error: { code: string } }).error.code).toBe('rate_limited');
    // Another key has a bucket of its own; the probes are never limited.
    expect((await get('only-admin')).status).toBe(400);
    expect((await app.request('/healthz')).status).toBe(200);
  });

  it('refills at the configured rate and forgets idle keys', () => {
    let now = 0;
    const limiter = new KeyRateLimiter(10, 20, () => now);
    for (let i = 0; i < 20; i++) expect(limiter.take('k')).toBe(0);
    expect(limiter.take('k')).toBeCloseTo(0.1, 5);
    now += 100;
    expect(limiter.take('k')).toBe(0);
    expect(limiter.take('k')).toBeGreaterThan(0);
    now += 10_000;
    for (let i = 0; i < 20; i++) expect(limiter.take('k')).toBe(0);
  });
});
