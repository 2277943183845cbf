import { z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Registry } from 'prom-client';
import type { ServingMetrics } from '../../serving/metrics.js';
import { requireScope, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { createRouter } from '../router.js';

export interface MetricsDeps {
  readonly metrics: Pick<ServingMetrics, 'render'>;
  /**
   * More registries rendered after the serving one, such as the platform's own (server/platform-metrics.ts). Each
   * metric name must appear in one registry only, so the page declares each family once.
   */
  readonly registries?: readonly Pick<Registry, 'metrics'>[];
}

/** `GET /metrics`: the Prometheus exposition of the serving metrics, the platform's own and the process's. */
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
      'Serving requests, durations, batch sizes and model loads; pipeline runs, stage durations, ' +
      'trigger events and monitoring windows and actions; and Node process metrics, in the Prometheus text format.',
    responses: {
      200: { description: 'The metrics.', content: { 'text/plain': { schema: z.string() } } },
    },
  });
  router.get('/metrics', requireScope('read'), async (c) => {
    const { body, contentType } = await deps.metrics.render();
    const more = await Promise.all((deps.registries ?? []).map((registry) => registry.metrics()));
    return c.body([body, ...more].join('\n'), 200, { 'content-type': contentType });
  });
  return router;
}
