/**
 * Changing what a deployment serves, mounted by deployments.ts under `/v1/deployments`:
 *
 * - `POST /v1/deployments/{name}/rollouts`: canary (a workflow), shadow or replace
 * - `GET /v1/deployments/{name}/rollouts`: the canary rollouts, newest first
 * - `GET /v1/deployments/{name}/rollouts/{id}`, `POST .../rollouts/{id}/cancel`: a canary rollout
 * - `DELETE /v1/deployments/{name}/shadows/{version}`: stop a shadow
 *
 * Reading deployments (`GET /v1/deployments`, `GET /v1/deployments/{name}`) is in deployments.ts.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import {
  cancelDeploymentRollout,
  getDeploymentRollout,
  listDeploymentRollouts,
  requestCanaryRollout,
  type ListedRollout,
  type RolloutRunnerDeps,
  type RolloutView,
} from '../../pipelines/rollouts.js';
import type { DeploymentRevision } from '../../schema/index.js';
import type { RolloutState } from '../../workflows/index.js';
import type { DeploymentStore, TrafficChangeResult } from '../../storage/deployment-store.js';
import type { RegistryStore } from '../../storage/registry-store.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError, ServiceUnavailableError } from '../errors.js';
import { createRouter } from '../router.js';
import {
  errorResponse,
  iso,
  jsonResponse,
  MAX_VERSION,
  nameParamSchema,
  UUID_PATTERN,
  versionNumberSchema,
} from './common.js';

export interface DeploymentRolloutDeps {
  /** Resolves the version numbers that requests name, and the numbers of the versions that answers name. */
  readonly registry: Pick<RegistryStore, 'getVersion' | 'getVersionById'>;
  readonly deployments: DeploymentStore;
  /** Starts and reads rollout workflows; without it, canaries are refused with 503. */
  readonly rollouts?: RolloutRunnerDeps | undefined;
}

/** Defaults of a canary rollout's settings. */
export /** The shortest interval between a canary's checks. */
const MIN_CHECK_EVERY_SECONDS = 1;

const ROLLOUT_DEFAULTS = {
  trafficPercent: 10,
  durationSeconds: 600,
  minRequests: 100,
  thresholds: { maxErrorRateIncrease: 0.01, maxLatencyP99Ratio: 1.5, maxPredictionDivergence: 0.1 },
} as const;

const rolloutIdSchema = z
  .string()
  .regex(UUID_PATTERN, 'a rollout id (UUID)')
  .openapi({ param: { name: 'id', in: 'path' } });

const versionParamSchema = z.coerce
  .number()
  .int()
  .min(1)
  .max(MAX_VERSION)
  .openapi({ param: { name: 'version', in: 'path' }, example: 3 });

const thresholdsSchema = z
  .strictObject({
    maxErrorRateIncrease: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .openapi({
        description: `Largest accepted challenger minus champion error rate. Default ${ROLLOUT_DEFAULTS.thresholds.maxErrorRateIncrease}.`,
      }),
    maxLatencyP99Ratio: z
      .number()
      .positive()
      .optional()
      .openapi({
        description: `Largest accepted challenger / champion p99 latency. Default ${ROLLOUT_DEFAULTS.thresholds.maxLatencyP99Ratio}.`,
      }),
    maxPredictionDivergence: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .openapi({
        description: `Largest accepted Jensen-Shannon divergence of the predictions. Default ${ROLLOUT_DEFAULTS.thresholds.maxPredictionDivergence}.`,
      }),
  })
  .openapi('CanaryThresholds');

const rolloutBodySchema = z
  .strictObject({
    version: versionNumberSchema.openapi({ description: 'The version number of the deployment’s model.' }),
    strategy: z.enum(['canary', 'shadow', 'replace']).openapi({
      description:
        '`canary`: a share of the traffic for a while, then promoted or rolled back automatically (a workflow); ' +
        '`shadow`: scored on copies of the traffic, answers logged, never returned; `replace`: the champion now.',
    }),
    trafficPercent: z
      .number()
      .int()
      .min(1)
      .max(99)
      .optional()
      .openapi({ description: `Canary: the challenger's share. Default ${ROLLOUT_DEFAULTS.trafficPercent}.` }),
    stickyKey: z.string().min(1).max(128).optional().openapi({
      description: 'Canary: an instance field whose value picks the version deterministically (one key, one version).',
      example: 'customer_id',
    }),
    durationSeconds: z
      .number()
      .positive()
      .max(30 * 24 * 3600)
      .optional()
      .openapi({ description: `Canary: how long before it is judged. Default ${ROLLOUT_DEFAULTS.durationSeconds}.` }),
    // Each check is an activity and a timer in the rollout's history: sub-second checks would fill it in minutes.
    checkEverySeconds: z
      .number()
      .min(MIN_CHECK_EVERY_SECONDS)
      .optional()
      .openapi({
        description:
          'Canary: compare this often (at least every second) and roll back early when the challenger fails. ' +
          'Default: at the end only.',
      }),
    minRequests: z
      .number()
      .int()
      .min(1)
      .optional()
      .openapi({
        description: `Canary: requests each side needs for a verdict. Default ${ROLLOUT_DEFAULTS.minRequests}.`,
      }),
    thresholds: thresholdsSchema.optional(),
    reason: z.string().trim().min(1).max(2000).optional(),
    allowUnblessed: z
      .boolean()
      .optional()
      .openapi({
        description:
          'Serve a version that is not blessed, or whose approval was rejected (never an archived one). Without it ' +
          'such a version is refused with 409; with it, the override is recorded in the revision’s reason.',
      }),
  })
  .openapi('RolloutRequest');

const revisionSchema = z
  .object({
    id: z.string(),
    versionId: z.string(),
    role: z.string(),
    trafficPercent: z.number().int(),
    reason: z.string(),
    actor: z.string(),
    startedAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('ActiveRevision');

const trafficSchema = z
  .object({
    deployment: z.string(),
    strategy: z.string(),
    changed: z.boolean().openapi({ description: 'False when it already was in that state.' }),
    active: z.array(revisionSchema).openapi({ description: 'What serves now, champion first.' }),
  })
  .openapi('DeploymentTraffic');

const startedSchema = z
  .object({
    rolloutId: z.string(),
    workflowId: z.string(),
    deployment: z.string(),
    strategy: z.literal('canary'),
    version: z.number().int(),
    versionId: z.string(),
    links: z.object({ self: z.string() }),
  })
  .openapi('RolloutStarted');

const rolloutViewSchema = z
  .object({
    rolloutId: z.string(),
    workflowId: z.string(),
    status: z.string().openapi({ description: 'running, completed, failed, cancelled, terminated or timed_out.' }),
    state: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({ description: 'Phase, outcome, the last comparison and every step, with their times.' }),
    failure: z.string().optional(),
  })
  .openapi('Rollout');

/** Rollouts per page of the list: each is read from its workflow (its result or a query), so pages stay small. */
const MAX_ROLLOUT_PAGE = 100;

const rolloutPageSchema = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(MAX_ROLLOUT_PAGE)
    .default(20)
    .openapi({ param: { name: 'limit', in: 'query' }, description: `Default 20, at most ${MAX_ROLLOUT_PAGE}.` }),
  offset: z.coerce
    .number()
    .int()
    .min(0)
    .max(100_000)
    .default(0)
    .openapi({ param: { name: 'offset', in: 'query' }, description: 'Rollouts to skip. Default 0.' }),
});

const listedRolloutSchema = z
  .object({
    rolloutId: z.string(),
    workflowId: z.string(),
    status: z.string().openapi({ description: 'running, completed, failed, cancelled, terminated or timed_out.' }),
    startedAt: z.string().openapi({ format: 'date-time' }),
    endedAt: z.string().nullable().openapi({ format: 'date-time' }),
    version: z.number().int().nullable().openapi({ description: 'The challenger’s version number.' }),
    versionId: z.string().nullable(),
    championVersion: z.number().int().nullable().openapi({ description: 'The champion’s when the canary started.' }),
    championVersionId: z.string().nullable(),
    trafficPercent: z.number().int().nullable(),
    phase: z.string().nullable(),
    outcome: z.string().nullable().openapi({ description: 'promoted or rolled_back, once decided.' }),
    reason: z.string().nullable(),
    steps: z
      .array(z.object({ step: z.string(), at: z.string().openapi({ format: 'date-time' }), detail: z.string() }))
      .openapi({ description: 'Every recorded step; read the rollout for the comparisons.' }),
    failure: z.string().optional(),
    links: z.object({ self: z.string() }),
  })
  .openapi('RolloutSummary');

const listRoute = createRoute({
  method: 'get',
  path: '/{name}/rollouts',
  ...scoped('read'),
  tags: ['deployments'],
  summary: 'A deployment’s canary rollouts, newest first, with status, versions and steps (paged)',
  description:
    'The running rollout first (at most one holds a deployment), then the others by when they ended. Shadow and ' +
    'replace change the deployment at once and are its revisions (`GET /v1/deployments/{name}`), not rollouts.',
  request: { params: z.object({ name: nameParamSchema }), query: rolloutPageSchema },
  responses: {
    200: jsonResponse('The rollouts.', z.object({ rollouts: z.array(listedRolloutSchema) })),
    400: errorResponse('Invalid name, limit or offset.'),
    404: errorResponse('No such deployment.'),
    503: errorResponse('This API is not connected to the workflow service.'),
  },
});

const startRoute = createRoute({
  method: 'post',
  path: '/{name}/rollouts',
  ...scoped('deploy'),
  tags: ['deployments'],
  summary: 'Roll a version out on a deployment: canary, shadow or replace',
  description:
    'A canary starts a `deploymentRollout` workflow (202): the challenger serves `trafficPercent` % for ' +
    '`durationSeconds`, is compared with the champion on live error rate, p99 latency and prediction distribution, ' +
    'then promoted or rolled back automatically. Shadow and replace change the deployment at once (200).',
  request: {
    params: z.object({ name: nameParamSchema }),
    body: { content: { 'application/json': { schema: rolloutBodySchema } }, required: true },
  },
  responses: {
    202: jsonResponse('The canary workflow was started.', startedSchema),
    200: jsonResponse('The shadow was started or the version replaced the champion.', trafficSchema),
    400: errorResponse('Invalid request.'),
    404: errorResponse('No such deployment or version.'),
    409: errorResponse(
      'The version is not blessed or its approval was rejected (without `allowUnblessed`), already serves, or ' +
        'another rollout or canary runs on the deployment.',
    ),
    503: errorResponse('Canaries need the workflow service, which this API is not connected to.'),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/{name}/rollouts/{id}',
  ...scoped('read'),
  tags: ['deployments'],
  summary: 'A canary rollout’s status, phase, comparisons and steps',
  request: { params: z.object({ name: nameParamSchema, id: rolloutIdSchema }) },
  responses: {
    200: jsonResponse('The rollout.', rolloutViewSchema),
    400: errorResponse('Invalid name or id.'),
    404: errorResponse('No such rollout.'),
    503: errorResponse('This API is not connected to the workflow service.'),
  },
});

const cancelRoute = createRoute({
  method: 'post',
  path: '/{name}/rollouts/{id}/cancel',
  ...scoped('deploy'),
  tags: ['deployments'],
  summary: 'Stop a canary rollout and roll it back',
  description:
    'Cancels the `deploymentRollout` workflow (202): it takes the challenger out of traffic, so the champion serves ' +
    'all of it again, records the step and ends as cancelled. Read the rollout to see the rollback.',
  request: {
    params: z.object({ name: nameParamSchema, id: rolloutIdSchema }),
  },
  responses: {
    202: jsonResponse('The cancellation was requested; the rollout as it was then.', rolloutViewSchema),
    400: errorResponse('Invalid name or id.'),
    404: errorResponse('No such rollout.'),
    409: errorResponse('The rollout has already ended.'),
    503: errorResponse('This API is not connected to the workflow service.'),
  },
});

const stopShadowRoute = createRoute({
  method: 'delete',
  path: '/{name}/shadows/{version}',
  ...scoped('deploy'),
  tags: ['deployments'],
  summary: 'Stop scoring a version in shadow',
  request: {
    params: z.object({ name: nameParamSchema, version: versionParamSchema }),
  },
  responses: {
    200: jsonResponse('The shadow was stopped (changed: false when it did not run).', trafficSchema),
    400: errorResponse('Invalid name or version.'),
    404: errorResponse('No such deployment or version.'),
  },
});

function revisionJson(r: DeploymentRevision): z.infer<typeof revisionSchema> {
  return {
    id: r.id,
    versionId: r.versionId,
    role: r.role,
    trafficPercent: r.trafficPercent,
    reason: r.reason,
    actor: r.actor,
    startedAt: iso(r.startedAt),
  };
}

function trafficJson(name: string, result: TrafficChangeResult): z.infer<typeof trafficSchema> {
  return {
    deployment: name,
    strategy: result.deployment.strategy,
    changed: result.changed,
    active: result.active.map(revisionJson),
  };
}

function viewJson(view: RolloutView): z.infer<typeof rolloutViewSchema> {
  return {
    rolloutId: view.rolloutId,
    workflowId: view.workflowId,
    status: view.status,
    ...(view.state ? { state: { ...view.state } } : {}),
    ...(view.failure ? { failure: view.failure } : {}),
  };
}

/** The fields of a rollout's state the list shows; each is null while the state could not be read (no worker). */
function listedJson(
  name: string,
  rollout: ListedRollout,
  numbers: ReadonlyMap<string, number>,
): z.infer<typeof listedRolloutSchema> {
  const state: Partial<RolloutState> = rollout.state ?? {};
  const versionId = state.versionId ?? null;
  const championVersionId = state.championVersionId ?? null;
  return {
    rolloutId: rollout.rolloutId,
    workflowId: rollout.workflowId,
    status: rollout.status,
    startedAt: iso(rollout.startedAt),
    endedAt: iso(rollout.closedAt),
    version: state.version ?? (versionId ? (numbers.get(versionId) ?? null) : null),
    versionId,
    championVersion: state.championVersion ?? (championVersionId ? (numbers.get(championVersionId) ?? null) : null),
    championVersionId,
    trafficPercent: state.trafficPercent ?? null,
    phase: state.phase ?? null,
    outcome: state.outcome ?? null,
    reason: state.reason ?? null,
    steps: (state.steps ?? []).map((s) => ({ step: s.step, at: s.at, detail: s.detail })),
    ...(rollout.failure ? { failure: rollout.failure } : {}),
    links: { self: `/v1/deployments/${name}/rollouts/${rollout.rolloutId}` },
  };
}

/** `/v1/deployments/{name}/rollouts` and `/shadows`: changing what a deployment serves. */
export function deploymentRollouts(deps: DeploymentRolloutDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const { registry, deployments } = deps;

  const runnerOrThrow = (): RolloutRunnerDeps => {
    if (!deps.rollouts) {
      throw new ServiceUnavailableError('canary rollouts need the workflow service; this API is not connected to it');
    }
    return deps.rollouts;
  };

  router.openapi(startRoute, async (c) => {
    const { name } = c.req.valid('param');
    const body = c.req.valid('json');
    const actor = actorOf(c);
    const deployment = await deployments.getDeployment(name);
    if (!deployment) throw new NotFoundError(`deployment ${name} does not exist`);
    const version = await registry.getVersion(deployment.modelName, body.version);
    if (!version) throw new NotFoundError(`model ${deployment.modelName} has no version ${body.version}`);

    if (body.strategy === 'replace') {
      const deployed = await deployments.deploy({
        deploymentName: name,
        modelName: deployment.modelName,
        versionId: version.id,
        ...(body.allowUnblessed ? { allowUnblessed: true } : {}),
        actor,
        reason: body.reason ?? `replaced by ${actor}`,
      });
      const active = await deployments.activeRevisions(name);
      return c.json(
        {
          deployment: name,
          strategy: deployed.deployment.strategy,
          changed: deployed.changed,
          active: active.map(revisionJson),
        },
        200,
      );
    }
    if (body.strategy === 'shadow') {
      const result = await deployments.startShadow({
        deploymentName: name,
        versionId: version.id,
        ...(body.allowUnblessed ? { allowUnblessed: true } : {}),
        actor,
        reason: body.reason ?? `shadow started by ${actor}`,
      });
      return c.json(trafficJson(name, result), 200);
    }

    const runner = runnerOrThrow();
    const thresholds = { ...ROLLOUT_DEFAULTS.thresholds, ...body.thresholds };
    const trafficPercent = body.trafficPercent ?? ROLLOUT_DEFAULTS.trafficPercent;
    const durationSeconds = body.durationSeconds ?? ROLLOUT_DEFAULTS.durationSeconds;
    // Reserves the deployment atomically before the workflow starts (one rollout at a time, 409 for the others), and
    // refuses what the workflow would refuse, so the caller hears of it now rather than from a failed rollout.
    const started = await requestCanaryRollout(
      { ...runner, deployments },
      {
        deploymentName: name,
        versionId: version.id,
        strategy: 'canary',
        trafficPercent,
        ...(body.stickyKey ? { stickyKey: body.stickyKey } : {}),
        durationSeconds,
        ...(body.checkEverySeconds ? { checkEverySeconds: body.checkEverySeconds } : {}),
        minRequests: body.minRequests ?? ROLLOUT_DEFAULTS.minRequests,
        thresholds,
        ...(body.allowUnblessed ? { allowUnblessed: true } : {}),
        requestedBy: actor,
        reason:
          body.reason ??
          `canary of version ${version.version} requested by ${actor}: ${trafficPercent}% for ${durationSeconds}s`,
      },
      deployment.modelName,
    );
    const self = `/v1/deployments/${name}/rollouts/${started.rolloutId}`;
    c.header('location', self);
    return c.json(
      {
        rolloutId: started.rolloutId,
        workflowId: started.workflowId,
        deployment: name,
        strategy: 'canary' as const,
        version: version.version,
        versionId: version.id,
        links: { self: new URL(self, c.req.url).href },
      },
      202,
    );
  });

  router.openapi(listRoute, async (c) => {
    const { name } = c.req.valid('param');
    const runner = runnerOrThrow();
    if (!(await deployments.getDeployment(name))) throw new NotFoundError(`deployment ${name} does not exist`);
    const rollouts = await listDeploymentRollouts(runner, name, c.req.valid('query'));
    // Rollouts started before their state carried version numbers name their versions by id only.
    const ids = new Set(
      rollouts
        .flatMap((r) => [
          r.state?.version === undefined ? r.state?.versionId : undefined,
          r.state?.championVersion === undefined ? r.state?.championVersionId : undefined,
        ])
        .filter((id) => id !== undefined),
    );
    const numbers = new Map<string, number>();
    for (const id of ids) {
      const version = await registry.getVersionById(id);
      if (version) numbers.set(id, version.version);
    }
    return c.json({ rollouts: rollouts.map((r) => listedJson(name, r, numbers)) }, 200);
  });

  router.openapi(getRoute, async (c) => {
    const { name, id } = c.req.valid('param');
    const view = await getDeploymentRollout(runnerOrThrow(), name, id);
    if (!view) throw new NotFoundError(`deployment ${name} has no rollout ${id}`);
    return c.json(viewJson(view), 200);
  });

  router.openapi(cancelRoute, async (c) => {
    const { name, id } = c.req.valid('param');
    const actor = actorOf(c);
    const view = await cancelDeploymentRollout(runnerOrThrow(), name, id);
    if (!view) throw new NotFoundError(`deployment ${name} has no rollout ${id}`);
    c.get('logger')().info({ deployment: name, rolloutId: id, actor }, 'rollout cancellation requested');
    return c.json(viewJson(view), 202);
  });

  router.openapi(stopShadowRoute, async (c) => {
    const { name, version: number } = c.req.valid('param');
    const actor = actorOf(c);
    const deployment = await deployments.getDeployment(name);
    if (!deployment) throw new NotFoundError(`deployment ${name} does not exist`);
    const version = await registry.getVersion(deployment.modelName, number);
    if (!version) throw new NotFoundError(`model ${deployment.modelName} has no version ${number}`);
    const result = await deployments.stopShadow({
      deploymentName: name,
      versionId: version.id,
      actor,
      reason: `shadow stopped by ${actor}`,
    });
    return c.json(trafficJson(name, result), 200);
  });

  return router;
}
