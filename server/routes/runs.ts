/**
 * `/v1/runs` (pipeline runs, their progress, approve, reject, cancel and resume) and `POST /v1/pipelines/{name}/runs`.
 * The response shapes and how a stored run becomes one are run-responses.ts's.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import {
  approvePipelineRun,
  cancelPipelineRun,
  rejectPipelineRun,
  resumePipelineRun,
  runProgress,
  startPipelineRun,
  type PipelineRunnerDeps,
} from '../../pipelines/runs.js';
import { PIPELINE_RUN_STATUSES, type PipelineRunStatus } from '../../schema/index.js';
import { type RunDetails, type RunSummary } from '../../storage/pipeline-store.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, jsonResponse, pipelineNameSchema, UUID_PATTERN, versionNumberSchema } from './common.js';
import {
  decisionSchema,
  derived,
  linksSchema,
  progressJson,
  runDetailsSchema,
  runJson,
  runSchema,
  stageJson,
  stageOrder,
  startedSchema,
} from './run-responses.js';

export interface RunsDeps {
  readonly runner: PipelineRunnerDeps;
  /** The Temporal UI's base URL (`http://127.0.0.1:8233`), for links to a run's workflow; absent: no link. */
  readonly temporalUiUrl?: string | undefined;
  /** Bound on the live progress query of a running run, in ms; the run is answered without it past this. Default 2000. */
  readonly progressTimeoutMs?: number;
}

const LIVE_STATUSES: ReadonlySet<PipelineRunStatus> = new Set(['pending', 'running', 'waiting_approval']);

const runIdSchema = z
  .string()
  .regex(UUID_PATTERN, 'must be a UUID')
  .openapi({ param: { name: 'runId', in: 'path' }, example: '0f8fad5b-d9cb-469f-a165-70867728950e' });

const decisionBodySchema = z
  .strictObject({ reason: z.string().trim().min(1).max(2000).optional().openapi({ example: 'metrics look right' }) })
  .openapi('ApprovalRequest');

const startRouteDef = createRoute({
  method: 'post',
  path: '/{name}/runs',
  ...scoped('trigger'),
  tags: ['runs'],
  summary: 'Start a run of a pipeline',
  description:
    'Starts the training pipeline on a stored version (default: the newest). With an `Idempotency-Key`, a ' +
    'repeated or concurrent request gets the run the first one started (200) instead of a second run.',
  request: {
    params: z.object({ name: pipelineNameSchema }),
    headers: z.object({
      'idempotency-key': z
        .string()
        .min(1)
        .max(200)
        .optional()
        .openapi({ param: { name: 'idempotency-key', in: 'header' }, example: 'nightly-2024-05-01' }),
    }),
    body: {
      content: {
        'application/json': {
          schema: z
            .strictObject({
              version: versionNumberSchema.optional().openapi({ description: 'Default: the newest.' }),
            })
            .openapi('StartRunRequest'),
        },
      },
      required: false,
    },
  },
  responses: {
    201: jsonResponse('The run was started.', startedSchema),
    200: jsonResponse('The Idempotency-Key had already started this run.', startedSchema),
    400: errorResponse('Invalid request.'),
    404: errorResponse('No such pipeline or version.'),
    409: errorResponse('The Idempotency-Key started a run of another pipeline.'),
  },
});

const listRouteDef = createRoute({
  method: 'get',
  path: '/',
  ...scoped('read'),
  tags: ['runs'],
  summary: 'Pipeline runs, newest first',
  request: {
    query: z.object({
      pipeline: pipelineNameSchema.optional().openapi({ param: { name: 'pipeline', in: 'query' } }),
      status: z
        .enum(PIPELINE_RUN_STATUSES)
        .optional()
        .openapi({ param: { name: 'status', in: 'query' } }),
      limit: z.coerce
        .number()
        .int()
        .min(1)
        .max(500)
        .default(50)
        .openapi({ param: { name: 'limit', in: 'query' } }),
    }),
  },
  responses: {
    200: jsonResponse('The runs.', z.object({ runs: z.array(runSchema) })),
    400: errorResponse('Invalid filter.'),
  },
});

const getRouteDef = createRoute({
  method: 'get',
  path: '/{runId}',
  ...scoped('read'),
  tags: ['runs'],
  summary: 'A run with its stages, metrics, registered version and live progress',
  request: { params: z.object({ runId: runIdSchema }) },
  responses: {
    200: jsonResponse('The run.', runDetailsSchema),
    400: errorResponse('The run id is not a UUID.'),
    404: errorResponse('No such run.'),
  },
});

const decideRoute = (decision: 'approve' | 'reject') =>
  createRoute({
    method: 'post',
    path: `/{runId}/${decision}`,
    ...scoped('approve'),
    tags: ['runs'],
    summary:
      decision === 'approve'
        ? 'Approve the deployment a run is waiting for'
        : 'Reject the deployment a run is waiting for (the version stays registered, not deployed)',
    request: {
      params: z.object({ runId: runIdSchema }),
      body: { content: { 'application/json': { schema: decisionBodySchema } }, required: false },
    },
    responses: {
      200: jsonResponse('The recorded decision.', decisionSchema),
      400: errorResponse('Invalid request.'),
      404: errorResponse('No such run.'),
      409: errorResponse('The run is not waiting for an approval.'),
    },
  });

const actionRoute = (action: 'cancel' | 'resume') =>
  createRoute({
    method: 'post',
    path: `/{runId}/${action}`,
    ...scoped('trigger'),
    tags: ['runs'],
    summary:
      action === 'cancel'
        ? 'Cancel a pending, running or waiting run'
        : 'Resume a failed or cancelled run from the stage that stopped it',
    request: { params: z.object({ runId: runIdSchema }) },
    responses: {
      202: jsonResponse(
        action === 'cancel' ? 'Cancellation was requested.' : 'The run was started again.',
        z.object({ run: runSchema, links: linksSchema }),
      ),
      400: errorResponse('The run id is not a UUID.'),
      404: errorResponse('No such run.'),
      409: errorResponse(action === 'cancel' ? 'The run has already finished.' : 'The run is not failed or cancelled.'),
    },
  });

/** Temporal's refusals of a run's workflow as API errors (the runner's own errors answer for themselves). */
function mapWorkflowError(error: unknown): never {
  // The run's row exists but its workflow does not (it never started, or its history was deleted).
  if (error instanceof Error && error.name === 'WorkflowNotFoundError') {
    throw new ConflictError(`the run's workflow is not running: ${error.message}`, { cause: error });
  }
  throw error;
}

/** Resolves to undefined when `promise` takes longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** `/v1/runs`: pipeline runs, their progress, and approve, reject, cancel and resume. */
export function runs(deps: RunsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const { runner } = deps;
  const links = (url: string, run: RunSummary) => runLinks(deps, new URL(`/v1/runs/${run.id}`, url).href, run);
  const runOrThrow = async (runId: string): Promise<RunDetails> => {
    const run = await runner.pipelines.getRun(runId);
    if (!run) throw new NotFoundError(`run ${runId} does not exist`);
    return run;
  };

  router.openapi(listRouteDef, async (c) => {
    const { pipeline, status, limit } = c.req.valid('query');
    const list = await runner.pipelines.listRuns({
      limit,
      ...(pipeline ? { pipelineName: pipeline } : {}),
      ...(status ? { status } : {}),
    });
    return c.json({ runs: list.map(runJson) }, 200);
  });

  router.openapi(getRouteDef, async (c) => {
    const { runId } = c.req.valid('param');
    const run = await runOrThrow(runId);
    const stages = [...run.stages].sort((a, b) => stageOrder(a.stage) - stageOrder(b.stage));
    const progress = LIVE_STATUSES.has(run.status)
      ? await within(runProgress(runner, run.workflowId), deps.progressTimeoutMs ?? 2000)
      : undefined;
    return c.json(
      {
        ...runJson(run),
        stages: stages.map(stageJson),
        ...derived(stages),
        ...(progress ? { progress: progressJson(progress) } : {}),
        links: links(c.req.url, run),
      },
      200,
    );
  });

  for (const decision of ['approve', 'reject'] as const) {
    router.openapi(decideRoute(decision), async (c) => {
      const { runId } = c.req.valid('param');
      const { reason } = c.req.valid('json');
      const actor = actorOf(c);
      const run = await runOrThrow(runId);
      // The run records waiting_approval once its workflow waits; asking a workflow in any other state could only
      // be refused (or, before a worker picked it up, wait for one).
      if (run.status !== 'waiting_approval') {
        throw new ConflictError(`run ${runId} is ${run.status}; it is not waiting for an approval`);
      }
      const decide = decision === 'approve' ? approvePipelineRun : rejectPipelineRun;
      const decided = await decide(runner, runId, { actor, ...(reason ? { reason } : {}) }).catch(mapWorkflowError);
      return c.json({ ...decided }, 200);
    });
  }

  router.openapi(actionRoute('cancel'), async (c) => {
    const { runId } = c.req.valid('param');
    await cancelPipelineRun(runner, runId).catch(mapWorkflowError);
    const run = await runOrThrow(runId);
    return c.json({ run: runJson(run), links: links(c.req.url, run) }, 202);
  });

  router.openapi(actionRoute('resume'), async (c) => {
    const { runId } = c.req.valid('param');
    await resumePipelineRun(runner, runId).catch(mapWorkflowError);
    const run = await runOrThrow(runId);
    return c.json({ run: runJson(run), links: links(c.req.url, run) }, 202);
  });

  return router;
}

/** `POST /v1/pipelines/{name}/runs`, mounted under `/v1/pipelines` beside the definitions. */
export function pipelineRuns(deps: RunsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const { runner } = deps;
  router.openapi(startRouteDef, async (c) => {
    const { name } = c.req.valid('param');
    const { version } = c.req.valid('json');
    const headers = c.req.valid('header');
    const actor = actorOf(c);
    const idempotencyKey = headers['idempotency-key'];
    const started = await startPipelineRun(runner, {
      pipeline: name,
      ...(version === undefined ? {} : { version }),
      trigger: 'http',
      triggeredBy: actor,
      ...(idempotencyKey ? { idempotencyKey } : {}),
    }).catch(mapWorkflowError);
    const run = await runner.pipelines.getRun(started.run.id);
    if (!run) throw new NotFoundError(`run ${started.run.id} does not exist`);
    const self = new URL(`/v1/runs/${run.id}`, c.req.url).href;
    const body = { run: runJson(run), created: started.created, links: runLinks(deps, self, run) };
    if (started.created) {
      c.header('location', `/v1/runs/${run.id}`);
      return c.json(body, 201);
    }
    return c.json(body, 200);
  });
  return router;
}

function runLinks(deps: RunsDeps, self: string, run: RunSummary): z.infer<typeof linksSchema> {
  if (!deps.temporalUiUrl) return { self };
  const base = `${deps.temporalUiUrl.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(deps.runner.client.options.namespace)}`;
  const workflowId = encodeURIComponent(run.workflowId);
  const temporalUi = run.temporalRunId
    ? `${base}/workflows/${workflowId}/${encodeURIComponent(run.temporalRunId)}/history`
    : `${base}/workflows?query=${encodeURIComponent(`WorkflowId="${run.workflowId}"`)}`;
  return { self, temporalUi };
}
