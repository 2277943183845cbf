import { describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import { runReadinessChecks, servingReadiness, type ReadinessCheck } from '../../server/readiness.js';
import { testDeps } from './helpers.js';

// Stand-in checks: the route's behaviour (parallelism, timeouts, report shape) does not depend on what is checked.
const passing = (name: string, delayMs = 0): ReadinessCheck => ({
  name,
  check: () => new Promise((resolve) => setTimeout(resolve, delayMs)),
});
const failing = (name: string, message: string): ReadinessCheck => ({
  name,
  check: () => Promise.reject(new Error(message)),
});

interface ReadyzBody {
  status: string;
  checks: Record<string, { ok: boolean; latencyMs: number; error?: string }>;
}

describe('GET /healthz', () => {
  it('answers 200 with the version and uptime without checking dependencies', async () => {
    const app = createApp(testDeps({ readiness: [failing('temporal', 'down')] }));
    const res = await app.request('/healthz');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as { status: string; version: string; uptimeSeconds: number };
    expect(body).toEqual({ status: 'ok', version: '1.2.3-test', uptimeSeconds: expect.any(Number) });
    expect(Number.isInteger(body.uptimeSeconds) && body.uptimeSeconds >= 0).toBe(true);
  });
});

describe('GET /readyz', () => {
  it('answers 200 with every check and its latency when all pass', async () => {
    const app = createApp(testDeps({ readiness: [passing('temporal', 5), passing('postgres'), passing('s3')] }));
    const res = await app.request('/readyz');
    expect(res.status).toBe(200);
    const body = (await res.json()) as ReadyzBody;
    expect(body.status).toBe('ready');
    expect(Object.keys(body.checks).sort()).toEqual(['postgres', 's3', 'temporal']);
    expect(body.checks.temporal).toEqual({ ok: true, latencyMs: expect.any(Number) });
    expect(body.checks.temporal?.latencyMs).toBeGreaterThanOrEqual(4);
  });

  it('answers 503 naming the failing check and its error', async () => {
    const app = createApp(testDeps({ readiness: [passing('temporal'), failing('s3', 'bucket "x" does not exist')] }));
    const res = await app.request('/readyz');
    expect(res.status).toBe(503);
    const body = (await res.json()) as ReadyzBody;
    expect(body.status).toBe('not_ready');
    expect(body.checks.temporal?.ok).toBe(true);
    expect(body.checks.s3).toEqual({ ok: false, latencyMs: expect.any(Number), error: 'bucket "x" does not exist' });
  });

  it('waits for the serving pool to have loaded the deployed models', async () => {
    const pool = { initialLoadDone: false };
    const app = createApp(testDeps({ readiness: [passing('postgres'), servingReadiness(pool)] }));
    const loading = await app.request('/readyz');
    expect(loading.status).toBe(503);
    expect(((await loading.json()) as ReadyzBody).checks.serving).toMatchObject({
      ok: false,
      error: 'the deployed models are still loading',
    });
    pool.initialLoadDone = true;
    expect((await app.request('/readyz')).status).toBe(200);
  });

  it('bounds each check by the timeout, aborts it, and runs the checks in parallel', async () => {
    let abortedWith: unknown;
    const hanging: ReadinessCheck = {
      name: 'postgres',
      check: (signal) =>
        new Promise<void>(() => {
          signal.addEventListener('abort', () => (abortedWith = signal.reason));
        }),
    };
    const app = createApp(
      testDeps({ readiness: [hanging, passing('temporal', 80), passing('s3', 80)], readinessTimeoutMs: 150 }),
    );
    const started = performance.now();
    const res = await app.request('/readyz');
    const elapsed = performance.now() - started;

    expect(res.status).toBe(503);
    const body = (await res.json()) as ReadyzBody;
    expect(body.checks.postgres).toMatchObject({ ok: false, error: 'timed out after 150 ms' });
    expect(body.checks.postgres?.latencyMs).toBeGreaterThanOrEqual(145);
    expect(body.checks.temporal?.ok).toBe(true);
    expect(body.checks.s3?.ok).toBe(true);
    expect(abortedWith).toBeInstanceOf(Error);
    // Sequential checks would take 310 ms or more.
    expect(elapsed).toBeLessThan(300);
  });

  it('defaults the per-check timeout to 2 s', async () => {
    const report = await runReadinessChecks([passing('slow', 2_100)]);
    expect(report.checks.slow).toMatchObject({ ok: false, error: 'timed out after 2000 ms' });
  });

  it('reports a check that throws synchronously instead of failing the request', async () => {
    const throwing: ReadinessCheck = {
      name: 'temporal',
      check: () => {
        throw new Error('not connected');
      },
    };
    const res = await createApp(testDeps({ readiness: [throwing] })).request('/readyz');
    expect(res.status).toBe(503);
    expect(((await res.json()) as ReadyzBody).checks.temporal?.error).toBe('not connected');
  });

  it('is ready when there is nothing to check', async () => {
    const res = await createApp(testDeps()).request('/readyz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready', checks: {} });
  });

  it('refuses two checks with one name when the app is built', () => {
    expect(() => createApp(testDeps({ readiness: [passing('s3'), passing('s3')] }))).toThrow(/"s3"/);
  });
});
