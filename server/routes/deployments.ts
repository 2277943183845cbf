/**
 * `/v1/deployments`, one resource in two files:
 *
 * - this file: `GET /v1/deployments`, `GET /v1/deployments/{name}` and `GET /v1/deployments/{name}/history?at=`,
 *   what each deployment serves (or served at a time) and its history
 * - deployment-rollouts.ts: `/v1/deployments/{name}/rollouts...` and `/v1/deployments/{name}/shadows/{version}`,
 *   changing what it serves; mounted here, so server/app.ts mounts `/v1/deployments` once
 * - deployment-rollback.ts: `POST /v1/deployments/{name}/rollback`, an earlier version serves again; mounted here
 * - monitoring.ts: `/v1/deployments/{name}/monitoring...`, its monitoring windows and schedule; mounted here too
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { rolloutIdOf, rolloutWorkflowStatus } from '../../pipelines/rollouts.js';
import { reservationOf } from '../../storage/deployment-guards.js';
import type { DeploymentSummary, RevisionSummary } from '../../storage/deployment-store.js';
import { scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, iso, jsonResponse, nameParamSchema, pageQuerySchema } from './common.js';
import { deploymentRollback } from './deployment-rollback.js';
import { deploymentRollouts, type DeploymentRolloutDeps } from './deployment-rollouts.js';
import { revisionJson, revisionSchema } from './deployment-revisions.js';
import { deploymentMonitoring, type MonitoringRouteDeps } from './monitoring.js';

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

const runningRolloutSchema = z
  .object({
    rolloutId: z.string().nullable().openapi({ description: 'Null for a workflow id the API did not start.' }),
    workflowId: z.string(),
    version: z.number().int().nullable().openapi({ description: 'The challenger’s version number.' }),
    versionId: z.string(),
    reservedAt: z.string().openapi({ format: 'date-time' }),
    status: z
      .string()
      .optional()
      .openapi({
        description:
          'What Temporal says of its workflow (`running`, or how it ended, until the reconciler releases the ' +
          'deployment); absent when this API is not connected to Temporal.',
      }),
    links: z.object({ self: z.string() }).optional(),
  })
  .openapi('RunningRollout');

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
  summary: 'A deployment: what serves now, the rollout that holds it, and every revision before',
  request: { params: z.object({ name: nameParamSchema }) },
  responses: {
    200: jsonResponse(
      'The deployment and its history (newest first).',
      deploymentSchema
        .extend({
          rollout: runningRolloutSchema.nullable().openapi({
            description: 'The canary rollout that holds the deployment (one at a time), or null.',
          }),
          history: z.array(revisionSchema),
        })
        .openapi('DeploymentDetails'),
    ),
    400: badRequest,
    404: notFound,
  },
});

const historyAtRoute = createRoute({
  method: 'get',
  path: '/{name}/history',
  ...scoped('read'),
  tags: ['deployments'],
  summary: 'What served a deployment at a time: the champion, and a canary’s or shadows’ shares beside it',
  request: {
    params: z.object({ name: nameParamSchema }),
    query: z.object({
      at: z.iso
        .datetime({ offset: true })
        .optional()
        .openapi({
          param: { name: 'at', in: 'query' },
          description: 'An ISO 8601 time with its offset (`2026-05-01T12:00:00Z`). Default: now.',
          example: '2026-05-01T12:00:00Z',
        }),
    }),
  },
  responses: {
    200: jsonResponse(
      'The revisions active at that time, champion first (empty when nothing served then).',
      z
        .object({
          deployment: z.string(),
          at: z.string().openapi({ format: 'date-time' }),
          champion: z
            .object({ version: z.number().int(), versionId: z.string(), trafficPercent: z.number().int() })
            .nullable(),
          revisions: z.array(revisionSchema),
        })
        .openapi('DeploymentAt'),
    ),
    400: errorResponse('Invalid name, or `at` is not an ISO 8601 time with an offset.'),
    404: notFound,
  },
});

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
    const [active, history, rollout] = await Promise.all([
      store.activeRevisions(name),
      store.deploymentHistory(name),
      runningRollout(deployment),
    ]);
    return c.json({ ...deploymentJson(deployment, active), rollout, history: history.map(revisionJson) }, 200);
  });

  router.openapi(historyAtRoute, async (c) => {
    const { name } = c.req.valid('param');
    const { at: asked } = c.req.valid('query');
    const at = asked === undefined ? new Date() : new Date(asked);
    if (!(await store.getDeployment(name))) throw new NotFoundError(`deployment ${name} does not exist`);
    const revisions = await store.revisionsAt(name, at);
    const champion = revisions.find((r) => r.role === 'champion');
    return c.json(
      {
        deployment: name,
        at: at.toISOString(),
        champion: champion
          ? { version: champion.version, versionId: champion.versionId, trafficPercent: champion.trafficPercent }
          : null,
        revisions: revisions.map(revisionJson),
      },
      200,
    );
  });

  /** The rollout the deployment's reservation names, with its workflow's status when Temporal is connected. */
  async function runningRollout(deployment: DeploymentSummary): Promise<z.infer<typeof runningRolloutSchema> | null> {
    const held = reservationOf(deployment.config);
    if (!held) return null;
    const rolloutId = rolloutIdOf(deployment.name, held.workflowId) ?? null;
    const version = await deps.registry.getVersionById(held.versionId);
    // The deployment is answered even when Temporal is not: the status is then left out.
    const status = deps.rollouts
      ? await rolloutWorkflowStatus(deps.rollouts, held.workflowId).catch(() => undefined)
      : undefined;
    return {
      rolloutId,
      workflowId: held.workflowId,
      version: version?.version ?? null,
      versionId: held.versionId,
      reservedAt: held.reservedAt,
      ...(status ? { status } : {}),
      ...(rolloutId ? { links: { self: `/v1/deployments/${deployment.name}/rollouts/${rolloutId}` } } : {}),
    };
  }

  router.route('/', deploymentRollouts(deps));
  router.route('/', deploymentRollback(deps));
  if (deps.monitoring) {
    router.route('/', deploymentMonitoring({ ...deps.monitoring, deployments: store, temporal: deps.rollouts }));
  }
  return router;
}
