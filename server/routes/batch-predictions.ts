/**
 * Batch predictions, a resource created under its model:
 *
 * - `POST /v1/models/{name}/batch-predictions` ({@link modelBatchPredictions}), mounted by models.ts under `/v1/models`
 * - `GET /v1/batch-predictions/{id}` ({@link batchPredictions}), mounted by server/app.ts
 */
import { randomUUID } from 'node:crypto';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { WorkflowFailedError, type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import { ApplicationFailure, WorkflowNotFoundError } from '@temporalio/common';
import { SearchAttributeKeys } from '../../core/constants.js';
import { ExtractError } from '../../data/extract-errors.js';
import { parseSourceSpec } from '../../data/sources.js';
import type { PipelineRunnerDeps } from '../../pipelines/runs.js';
import { CHAMPION_ALIAS } from '../../storage/registry-common.js';
import type { RegistryStore } from '../../storage/registry-store.js';
import { batchScore, type BatchScoreInput, type BatchScoreResult } from '../../workflows/index.js';
import { scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, jsonResponse, nameParamSchema, versionNumberSchema } from './common.js';

export interface BatchPredictionsDeps {
  /** The Temporal client and the main task queue, where `batchScore` and its activity run. */
  readonly runner: Pick<PipelineRunnerDeps, 'client' | 'taskQueue'>;
  readonly registry: Pick<RegistryStore, 'getModel' | 'getVersion'>;
  /** The Temporal UI's base URL, for a link to the job's workflow; absent: no link. */
  readonly temporalUiUrl?: string | undefined;
}

/** Batch prediction jobs are `batchScore` workflows with ids of this shape; the id is the job's id in the API. */
const ID_PREFIX = 'batch-score-';
const WORKFLOW_TYPE = 'batchScore';
const ALIAS = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;

const jobIdSchema = z
  .string()
  .regex(new RegExp(`^${ID_PREFIX}[A-Za-z0-9._-]{1,200}$`), `a batch prediction id (${ID_PREFIX}...)`)
  .openapi({
    param: { name: 'id', in: 'path' },
    example: 'batch-score-flight-delays-0f8fad5b-d9cb-469f-a165-70867728950e',
  });

/** The input must be a path or URI the activity can read: checked here so that a typo is a 400, not a failed job. */
const inputSchema = z
  .string()
  .trim()
  .min(1)
  .max(2048)
  .superRefine((value, ctx) => {
    try {
      parseSourceSpec(value);
    } catch (error) {
      if (!(error instanceof ExtractError)) throw error;
      ctx.addIssue({ code: 'custom', message: error.message });
    }
  })
  .openapi({
    description:
      'The Parquet to score: `s3://bucket/key` (an object, a prefix, or a glob such as `s3://b/day=*/*.parquet`) of ' +
      'any bucket, or a path on the workers. Several files are scored as one dataset.',
    example: 's3://landing/flights/2001-01-08.parquet',
  });

const startBodySchema = z
  .strictObject({
    version: versionNumberSchema.optional().openapi({ description: 'Score with this version.' }),
    alias: z.string().regex(ALIAS, 'an alias such as champion').optional().openapi({
      description: 'Score with the version this alias names. Default (no version, no alias): `champion`.',
      example: 'champion',
    }),
    input: inputSchema,
    passthrough: z
      .array(z.string().min(1).max(256))
      .max(1000)
      .refine((columns) => new Set(columns).size === columns.length, 'columns must not repeat')
      .optional()
      .openapi({
        description:
          'Input columns copied to the output, in this order, before the predictions (keys, ids). Default: every ' +
          'input column. `[]`: the predictions alone.',
        example: ['flight_id', 'date'],
      }),
  })
  .superRefine((body, ctx) => {
    if (body.version !== undefined && body.alias !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['alias'], message: 'give version or alias, not both' });
    }
  })
  .openapi('BatchPredictionRequest');

const modelSchema = z
  .object({ name: z.string(), version: z.number().int(), versionId: z.string() })
  .openapi('BatchPredictionModel');

const linksSchema = z
  .object({
    self: z.string(),
    temporalUi: z.string().optional().openapi({ description: 'The job’s workflow in the Temporal UI.' }),
  })
  .openapi('BatchPredictionLinks');

const STATUSES = ['running', 'completed', 'failed', 'cancelled'] as const;
type JobStatus = (typeof STATUSES)[number];

const startedSchema = z
  .object({
    id: z.string().openapi({ description: 'The job id (its workflow id).' }),
    status: z.enum(STATUSES),
    model: modelSchema,
    input: z.string(),
    links: linksSchema,
  })
  .openapi('StartedBatchPrediction');

const jobSchema = z
  .object({
    id: z.string(),
    status: z.enum(STATUSES),
    model: modelSchema.nullable(),
    input: z.string().nullable(),
    startedAt: z.string().openapi({ format: 'date-time' }),
    finishedAt: z.string().nullable().openapi({ format: 'date-time' }),
    progress: z
      .object({
        phase: z.string().openapi({ description: 'resolve, download, scoring, writing or upload.' }),
        rows: z.number().int(),
        total: z.number().int().optional(),
        attempt: z.number().int(),
      })
      .optional()
      .openapi({ description: 'While running: the activity’s last heartbeat (rows scored of the total).' }),
    result: z
      .object({
        output: z.string().openapi({ description: 'The predictions’ Parquet artifact (content-addressed).' }),
        sha256: z.string(),
        bytes: z.number().int(),
        rows: z.number().int(),
        columns: z.array(z.string()),
        seconds: z.number(),
        rowsPerSecond: z.number(),
      })
      .optional(),
    failure: z.object({ type: z.string(), message: z.string() }).optional(),
    links: linksSchema,
  })
  .openapi('BatchPrediction');

const startRoute = createRoute({
  method: 'post',
  path: '/{name}/batch-predictions',
  ...scoped('predict'),
  tags: ['batch predictions'],
  summary: 'Score a Parquet dataset with a model version, in the background',
  description:
    'Starts a `batchScore` workflow: the version (default: `champion`) is resolved now and pinned; the job streams the ' +
    'input through the model and stores the pass-through columns with `prediction` (and, for classifiers, ' +
    '`probabilities`) as a Parquet artifact. Follow it at `GET /v1/batch-predictions/{id}`.',
  request: {
    params: z.object({ name: nameParamSchema }),
    body: { content: { 'application/json': { schema: startBodySchema } }, required: true },
  },
  responses: {
    202: jsonResponse('The job was started.', startedSchema),
    400: errorResponse('Invalid request (the message names the field).'),
    404: errorResponse('No such model or version.'),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/{id}',
  ...scoped('read'),
  tags: ['batch predictions'],
  summary: 'A batch prediction job: its status, progress, and result or failure',
  request: { params: z.object({ id: jobIdSchema }) },
  responses: {
    200: jsonResponse('The job.', jobSchema),
    400: errorResponse('The id is not a batch prediction id.'),
    404: errorResponse('No such job.'),
  },
});

function links(
  deps: BatchPredictionsDeps,
  requestUrl: string,
  id: string,
  runId?: string,
): z.infer<typeof linksSchema> {
  const self = new URL(`/v1/batch-predictions/${encodeURIComponent(id)}`, requestUrl).href;
  if (!deps.temporalUiUrl) return { self };
  const base = `${deps.temporalUiUrl.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(deps.runner.client.options.namespace)}`;
  const temporalUi = runId
    ? `${base}/workflows/${encodeURIComponent(id)}/${encodeURIComponent(runId)}/history`
    : `${base}/workflows?query=${encodeURIComponent(`WorkflowId="${id}"`)}`;
  return { self, temporalUi };
}

/** `POST /v1/models/{name}/batch-predictions`, mounted by models.ts under `/v1/models`. */
export function modelBatchPredictions(deps: BatchPredictionsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  router.openapi(startRoute, async (c) => {
    const { name } = c.req.valid('param');
    const body = c.req.valid('json');
    if (!(await deps.registry.getModel(name))) throw new NotFoundError(`model ${name} does not exist`);
    const ref = body.version ?? body.alias ?? CHAMPION_ALIAS;
    const version = await deps.registry.getVersion(name, ref);
    if (!version) {
      throw new NotFoundError(
        typeof ref === 'number'
          ? `model ${name} has no version ${ref}`
          : ref === CHAMPION_ALIAS && body.alias === undefined
            ? `model ${name} has no champion (no version is deployed): give version or alias`
            : `model ${name} has no version aliased ${ref}`,
        { code: 'model_version_not_found' },
      );
    }
    const model = { name, version: version.version, versionId: version.id };
    const input: BatchScoreInput = {
      modelName: name,
      // Pinned: the job scores the version resolved now, whatever the alias names by the time it runs.
      version: version.version,
      input: body.input,
      ...(body.passthrough ? { passthrough: body.passthrough } : {}),
    };
    const id = `${ID_PREFIX}${name}-${randomUUID()}`;
    const handle = await deps.runner.client.workflow.start(batchScore, {
      workflowId: id,
      taskQueue: deps.runner.taskQueue,
      args: [input],
      memo: { model, input: body.input },
      typedSearchAttributes: [
        { key: SearchAttributeKeys.model, value: name },
        { key: SearchAttributeKeys.stage, value: 'scoring' },
      ],
      staticSummary: `batch scoring with ${name} v${version.version}: ${body.input}`,
    });
    c.header('location', `/v1/batch-predictions/${encodeURIComponent(id)}`);
    return c.json(
      {
        id,
        status: 'running' as const,
        model,
        input: body.input,
        links: links(deps, c.req.url, id, handle.firstExecutionRunId),
      },
      202,
    );
  });
  return router;
}

/** `GET /v1/batch-predictions/{id}`: a job as its workflow tells it. */
export function batchPredictions(deps: BatchPredictionsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const client = deps.runner.client;
  router.openapi(getRoute, async (c) => {
    const { id } = c.req.valid('param');
    const handle = client.workflow.getHandle(id);
    let description: WorkflowExecutionDescription;
    try {
      description = await handle.describe();
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) throw new NotFoundError(`batch prediction ${id} does not exist`);
      throw error;
    }
    if (description.type !== WORKFLOW_TYPE) throw new NotFoundError(`batch prediction ${id} does not exist`);
    const memo = description.memo ?? {};
    const status = statusOf(description.status.name);
    const base = {
      id,
      status,
      model: modelOf(memo.model),
      input: typeof memo.input === 'string' ? memo.input : null,
      startedAt: description.startTime.toISOString(),
      finishedAt: description.closeTime?.toISOString() ?? null,
      links: links(deps, c.req.url, id, description.runId),
    };
    if (status === 'running') {
      const progress = progressOf(client, description);
      return c.json({ ...base, ...(progress ? { progress } : {}) }, 200);
    }
    if (status === 'completed') {
      const result = (await handle.result()) as BatchScoreResult;
      return c.json(
        {
          ...base,
          result: {
            output: result.output.uri,
            sha256: result.output.sha256,
            bytes: result.output.bytes,
            rows: result.rows,
            columns: [...result.columns],
            seconds: result.seconds,
            rowsPerSecond: result.rowsPerSecond,
          },
        },
        200,
      );
    }
    return c.json({ ...base, failure: await failureOf(handle.result(), description.status.name) }, 200);
  });
  return router;
}

function statusOf(name: WorkflowExecutionDescription['status']['name']): JobStatus {
  switch (name) {
    case 'COMPLETED':
      return 'completed';
    case 'CANCELLED':
      return 'cancelled';
    case 'FAILED':
    case 'TERMINATED':
    case 'TIMED_OUT':
      return 'failed';
    default:
      return 'running';
  }
}

function modelOf(value: unknown): z.infer<typeof modelSchema> | null {
  const m = value as Partial<z.infer<typeof modelSchema>> | undefined;
  return m && typeof m.name === 'string' && typeof m.version === 'number' && typeof m.versionId === 'string'
    ? { name: m.name, version: m.version, versionId: m.versionId }
    : null;
}

/** The scoring activity's last heartbeat (`ScoreProgress`), decoded; undefined before the first one. */
function progressOf(client: Client, description: WorkflowExecutionDescription) {
  const activity = description.raw.pendingActivities?.[0];
  const payload = activity?.heartbeatDetails?.payloads?.[0];
  if (!activity || !payload) return undefined;
  try {
    const details = client.options.loadedDataConverter.payloadConverter.fromPayload<{
      phase?: unknown;
      rows?: unknown;
      total?: unknown;
    }>(payload);
    if (typeof details?.phase !== 'string' || typeof details.rows !== 'number') return undefined;
    return {
      phase: details.phase,
      rows: details.rows,
      ...(typeof details.total === 'number' ? { total: details.total } : {}),
      attempt: activity.attempt ?? 1,
    };
  } catch {
    return undefined;
  }
}

/** Why a finished job did not complete: the workflow's failure type (the activity's) and message. */
async function failureOf(result: Promise<unknown>, status: string): Promise<{ type: string; message: string }> {
  try {
    await result;
  } catch (error) {
    const cause = error instanceof WorkflowFailedError ? error.cause : error;
    if (cause instanceof ApplicationFailure) return { type: cause.type ?? 'Error', message: cause.message };
    if (cause instanceof Error) return { type: cause.name, message: cause.message };
  }
  return { type: status === 'CANCELLED' ? 'Cancelled' : status, message: `the job ended ${status.toLowerCase()}` };
}
