/**
 * `/v1/deployments`, one resource in two files:
 *
 * - this file: `GET /v1/deployments` and `GET /v1/deployments/{name}`, what each deployment serves and its history
 * - deployment-rollouts.ts: `/v1/deployments/{name}/rollouts...` and `/v1/deployments/{name}/shadows/{version}`,
 *   changing what it serves; mounted here, so server/app.ts mounts `/v1/deployments` once
 * - monitoring.ts: `/v1/deployments/{name}/monitoring...`, its monitoring windows and schedule; mounted here too
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { DeploymentSummary, RevisionSummary } from '../../storage/deployment-store.js';
import { scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, iso, jsonResponse, nameParamSchema, pageQuerySchema } from './common.js';
import { deploymentRollouts, type DeploymentRolloutDeps } from './deployment-rollouts.js';
import { deploymentMonitoring, type MonitoringRouteDeps } from './monitoring.js';

const revisionSchema = z
  .object({
    id: z.string(),
    versionId: z.string(),
    version: z.number().int(),
    role: z.string(),
    trafficPercent: z.number().int(),
    reason: z.string(),
    actor: z.string(),
    startedAt: z.string().openapi({ format: 'date-time' }),
    endedAt: z.string().nullable().openapi({ format: 'date-time' }),
  })
  .openapi('DeploymentRevision');

const deploymentSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    model: z.string(),
    strategy: z.string(),
    config: z.record(z.string(), z.unknown()),
    createdAt: z.string().openapi({ format: 'date-time' }),
    updatedAt: z.string().openapi({ format: 'date-time' }),
    active: z.array(revisionSchema).openapi({ description: 'What serves now, champion first.' }),
  })
  .openapi('Deployment');

const notFound = errorResponse('Not found.');
const badRequest = errorResponse('Invalid name.');

const listDeploymentsRoute = createRoute({
  method: 'get',
  path: '/',
  ...scoped('read'),
  tags: ['deployments'],
  summary: 'Deployments by name, each with what it serves now (paged)',
  request: { query: pageQuerySchema },
  responses: {
    200: jsonResponse('The deployments, by name.', z.object({ deployments: z.array(deploymentSchema) })),
  },
});

const getDeploymentRoute = createRoute({
  method: 'get',
  path: '/{name}',
  ...scoped('read'),
  tags: ['deployments'],
  summary: 'A deployment: what serves now and every revision before',
  request: { params: z.object({ name: nameParamSchema }) },
  responses: {
    200: jsonResponse(
      'The deployment and its history (newest first).',
      deploymentSchema.extend({ history: z.array(revisionSchema) }).openapi('DeploymentDetails'),
    ),
    400: badRequest,
    404: notFound,
  },
});

function revisionJson(r: RevisionSummary): z.infer<typeof revisionSchema> {
  return {
    id: r.id,
    versionId: r.versionId,
    version: r.version,
    role: r.role,
    trafficPercent: r.trafficPercent,
    reason: r.reason,
    actor: r.actor,
    startedAt: iso(r.startedAt),
    endedAt: iso(r.endedAt),
  };
}

function deploymentJson(d: DeploymentSummary, active: readonly RevisionSummary[]): z.infer<typeof deploymentSchema> {
  return {
    id: d.id,
    name: d.name,
    model: d.modelName,
    strategy: d.strategy,
    config: d.config,
    createdAt: iso(d.createdAt),
    updatedAt: iso(d.updatedAt),
    active: active.map(revisionJson),
  };
}

/** `/v1/deployments`: what each deployment serves and its revision history, and (deployment-rollouts.ts) changing it. */
export function deployments(
  deps: DeploymentRolloutDeps & {
    /** Monitoring windows, their actions and reports: `/v1/deployments/{name}/monitoring...` is mounted with them. */
    readonly monitoring?: Pick<MonitoringRouteDeps, 'windows' | 'actions' | 'artifacts'> | undefined;
  },
): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const store = deps.deployments;

  router.openapi(listDeploymentsRoute, async (c) => {
    const list = await store.listDeployments(c.req.valid('query'));
    const active = await Promise.all(list.map((d) => store.activeRevisions(d.name)));
    return c.json({ deployments: list.map((d, i) => deploymentJson(d, active[i] ?? [])) }, 200);
  });

  router.openapi(getDeploymentRoute, async (c) => {
    const { name } = c.req.valid('param');
    const deployment = await store.getDeployment(name);
    if (!deployment) throw new NotFoundError(`deployment ${name} does not exist`);
    const [active, history] = await Promise.all([store.activeRevisions(name), store.deploymentHistory(name)]);
    return c.json({ ...deploymentJson(deployment, active), history: history.map(revisionJson) }, 200);
  });

  router.route('/', deploymentRollouts(deps));
  if (deps.monitoring) {
    router.route('/', deploymentMonitoring({ ...deps.monitoring, deployments: store, temporal: deps.rollouts }));
  }
  return router;
}
