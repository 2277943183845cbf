import { z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServingMetrics } from '../../serving/metrics.js';
import { requireScope, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { createRouter } from '../router.js';

export interface MetricsDeps {
  readonly metrics: Pick<ServingMetrics, 'render'>;
}

/** `GET /metrics`: the Prometheus exposition of the serving metrics (and the process's own). */
export function metrics(deps: MetricsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const { security } = scoped('read');
  router.openAPIRegistry.registerPath({
    method: 'get',
    path: '/metrics',
    security,
    tags: ['serving'],
    summary: 'Prometheus metrics',
    description:
      'Serving requests, durations, batch sizes and model loads, and Node process metrics, in the Prometheus text ' +
      'format.',
    responses: {
      200: { description: 'The metrics.', content: { 'text/plain': { schema: z.string() } } },
    },
  });
  router.get('/metrics', requireScope('read'), async (c) => {
    const { body, contentType } = await deps.metrics.render();
    return c.body(body, 200, { 'content-type': contentType });
  });
  return router;
}
