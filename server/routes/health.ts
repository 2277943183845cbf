import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { AppEnv } from '../context.js';
import { runReadinessChecks, type ReadinessCheck } from '../readiness.js';
import { createRouter } from '../router.js';

export interface HealthDeps {
  readonly version: string;
  readonly readiness: readonly ReadinessCheck[];
  /** Bound on each readiness check in milliseconds. Default 2000. */
  readonly readinessTimeoutMs?: number;
}

const livenessSchema = z
  .object({
    status: z.literal('ok'),
    version: z.string().openapi({ example: '0.1.0' }),
    uptimeSeconds: z.number().int().nonnegative().openapi({ description: 'Seconds since the process started.' }),
  })
  .openapi('Liveness');

const checkResultSchema = z
  .object({
    ok: z.boolean(),
    latencyMs: z.number().nonnegative(),
    error: z.string().optional().openapi({ description: 'Why the check failed; absent when it passed.' }),
  })
  .openapi('ReadinessCheckResult');

const checksSchema = z.record(z.string(), checkResultSchema).openapi({
  description: 'One entry per dependency (temporal, postgres, s3, ...).',
  example: { temporal: { ok: true, latencyMs: 1.72 }, postgres: { ok: true, latencyMs: 0.61 } },
});

const readySchema = z.object({ status: z.literal('ready'), checks: checksSchema }).openapi('Ready');
const notReadySchema = z.object({ status: z.literal('not_ready'), checks: checksSchema }).openapi('NotReady');

const livenessRoute = createRoute({
  method: 'get',
  path: '/healthz',
  tags: ['health'],
  summary: 'Liveness: the process is up and serving HTTP',
  description: 'Checks no dependency; restart the process only when this fails.',
  responses: {
    200: { description: 'The process is alive.', content: { 'application/json': { schema: livenessSchema } } },
  },
});

const readinessRoute = createRoute({
  method: 'get',
  path: '/readyz',
  tags: ['health'],
  summary: 'Readiness: every dependency answers',
  description: 'Runs every readiness check in parallel, each with its own timeout.',
  responses: {
    200: { description: 'Every check passed.', content: { 'application/json': { schema: readySchema } } },
    503: {
      description: 'At least one check failed or timed out.',
      content: { 'application/json': { schema: notReadySchema } },
    },
  },
});

/**
 * Health endpoints: `GET /healthz` (liveness) and `GET /readyz` (readiness of every dependency).
 *
 * @throws Error when two readiness checks share a name (their results would overwrite each other).
 */
export function health(deps: HealthDeps): OpenAPIHono<AppEnv> {
  const names = deps.readiness.map((c) => c.name);
  const duplicate = names.find((name, i) => names.indexOf(name) !== i);
  if (duplicate !== undefined) throw new Error(`Two readiness checks are named "${duplicate}"; names must be unique`);

  const router = createRouter();
  router.openapi(livenessRoute, (c) => {
    c.header('cache-control', 'no-store');
    return c.json({ status: 'ok' as const, version: deps.version, uptimeSeconds: Math.floor(process.uptime()) }, 200);
  });
  router.openapi(readinessRoute, async (c) => {
    c.header('cache-control', 'no-store');
    const report = await runReadinessChecks(deps.readiness, { timeoutMs: deps.readinessTimeoutMs });
    if (report.ready) return c.json({ status: 'ready' as const, checks: report.checks }, 200);
    const failed = Object.entries(report.checks).filter(([, r]) => !r.ok);
    c.get('logger')().warn({ failed: Object.fromEntries(failed) }, 'not ready');
    return c.json({ status: 'not_ready' as const, checks: report.checks }, 503);
  });
  return router;
}
