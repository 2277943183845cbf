/**
 * `POST /v1/models/{name}/predict`, online predictions: a sub-resource of `/v1/models`, mounted by models.ts. Kept apart
 * from the registry's routes because it is the serving hot path, validated by hand against each model's signature.
 */
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { IncomingMessage } from 'node:http';
import type { LoadedModel } from '../../serving/loaded-model.js';
import { UNRESOLVED, type ModelMetrics, type ServingMetrics } from '../../serving/metrics.js';
import type { ModelPool } from '../../serving/model-pool.js';
import type { PredictionLogWriter } from '../../serving/prediction-log.js';
import { parsePredictBody, validateInstances, type PredictRequest } from '../../serving/signature.js';
import { hasScope, requireScope, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { ConflictError, DomainError, ValidationError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, jsonResponse, NAME_PATTERN, nameParamSchema } from './common.js';

export interface PredictDeps {
  readonly pool: Pick<ModelPool, 'acquireTarget' | 'shadow'>;
  readonly metrics: ServingMetrics;
  /** Most instances in one request; more is a 413 naming `instances`. Default 1000. */
  readonly maxInstances?: number;
  /** Where answered requests are logged (sampled, queued, written in the background); none: nothing is logged. */
  readonly predictionLog?: Pick<PredictionLogWriter, 'enqueue'>;
  /**
   * Why a version named by number or alias may not be scored (not blessed, approval rejected), or undefined when it
   * may (storage/deployment-guards.ts `servingRefusal`). Absent: every version may.
   */
  readonly servingRefusal?: (versionId: string) => Promise<string | undefined>;
}

/** How long a version's fitness to serve is trusted before it is read again (a status changes rarely). */
const REFUSAL_TTL_MS = 10_000;

export const DEFAULT_MAX_INSTANCES = 1000;

const JSON_CONTENT_TYPE = { 'Content-Type': 'application/json' } as const;

// The schemas below document the route only: requests are validated by hand against each model's signature (see
// serving/signature.ts), which is much faster than a schema library per instance.
const featureValue = z.union([z.number(), z.string(), z.null()]);
const instanceSchema = z.record(z.string(), featureValue).openapi('PredictInstance', {
  description: 'Raw feature values by input name; null is a missing value. Keys that are not inputs are ignored.',
  example: { hour: 14, distance: 1200, origin: 'SFO' },
});

const predictBodySchema = z
  .object({
    instances: z.array(instanceSchema).optional().openapi({ description: 'The rows to score (or give `instance`).' }),
    instance: instanceSchema.optional().openapi({ description: 'One row to score (or give `instances`).' }),
    version: z.number().int().positive().optional().openapi({ description: 'Score with this version of the model.' }),
    alias: z
      .string()
      .optional()
      .openapi({ description: 'Score with the version this alias names.', example: 'staging' }),
    allowUnblessed: z
      .boolean()
      .optional()
      .openapi({
        description:
          'Score with a version named by `version` or `alias` although it is not blessed or its approval was ' +
          'rejected; needs a key with the `deploy` scope. Without it such a request is a 409.',
      }),
  })
  .openapi('PredictRequest');

const predictionSchema = z
  .object({
    label: z.union([z.string(), z.number(), z.boolean()]).optional().openapi({
      description: "Classification: the most probable class (its index when the graph's classes are unknown).",
    }),
    probabilities: z
      .array(z.number())
      .optional()
      .openapi({ description: 'Classification: one probability per class, in the order of `classes`.' }),
    prediction: z.number().nullable().optional().openapi({ description: 'Regression: the predicted value.' }),
  })
  .openapi('Prediction');

const predictResponseSchema = z
  .object({
    model: z.object({ name: z.string(), version: z.number().int(), versionId: z.string() }),
    requestId: z.string(),
    classes: z
      .array(z.union([z.string(), z.number(), z.boolean()]))
      .optional()
      .openapi({ description: 'Classification: the classes, in the order of each prediction\u2019s probabilities.' }),
    predictions: z.array(predictionSchema),
  })
  .openapi('PredictResponse');

/** `POST /{name}/predict` under `/v1/models`: online predictions from the loaded models. */
export function predict(deps: PredictDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const maxInstances = deps.maxInstances ?? DEFAULT_MAX_INSTANCES;
  const unresolved = deps.metrics.forModel(UNRESOLVED, UNRESOLVED);
  const refusals = new Map<string, { reason: string | undefined; until: number }>();
  /** Refuses a version named explicitly that may not serve, unless a `deploy` key asks for it by name. */
  const checkExplicit = async (c: Context<AppEnv>, model: LoadedModel, request: PredictRequest): Promise<void> => {
    if (!deps.servingRefusal) return;
    const now = performance.now();
    let cached = refusals.get(model.summary.versionId);
    if (!cached || cached.until < now) {
      cached = { reason: await deps.servingRefusal(model.summary.versionId), until: now + REFUSAL_TTL_MS };
      if (refusals.size >= 10_000) refusals.clear();
      refusals.set(model.summary.versionId, cached);
    }
    if (cached.reason === undefined) return;
    const allowed = request.allowUnblessed === true;
    const principal = c.get('principal');
    if (allowed && principal && hasScope(principal, 'deploy')) return;
    throw new ConflictError(
      `model ${model.summary.name} version ${model.summary.version} ${cached.reason}: it is scored only when a key with the deploy ` +
        'scope asks for it with allowUnblessed',
      { code: 'version_not_servable' },
    );
  };

  router.openAPIRegistry.registerPath({
    method: 'post',
    path: '/{name}/predict',
    security: scoped('predict').security,
    tags: ['serving'],
    summary: 'Score instances with a deployed model',
    description:
      '`name` is a deployment (its champion answers; challengers a share of the traffic) or a registered model (its ' +
      '`champion` alias answers). `version` or `alias` in the body addresses one version of the model explicitly. ' +
      `Every input of the model's signature must be present in every instance (null = missing); numeric inputs take ` +
      `numbers, string inputs strings. At most ${maxInstances} instances per request.`,
    request: {
      params: z.object({
        name: nameParamSchema,
      }),
      body: { content: { 'application/json': { schema: predictBodySchema } }, required: true },
    },
    responses: {
      200: jsonResponse('One prediction per instance, in order.', predictResponseSchema),
      400: errorResponse(
        'The body is not JSON, or an instance does not fit the signature (the message names the field).',
      ),
      404: errorResponse('No deployment or model with that name, or no such version or alias.'),
      409: errorResponse('The version named is not blessed, or its approval was rejected (see allowUnblessed).'),
      413: errorResponse('The body or the number of instances is over the limit.'),
      503: errorResponse('The model could not be loaded, or it is overloaded; retry.'),
    },
  });

  router.post('/:name/predict', requireScope('predict'), async (c) => {
    const started = performance.now();
    let metrics: ModelMetrics = unresolved;
    let status = 500;
    try {
      const name = c.req.param('name');
      // A name no deployment or model can have never reaches the database (a NUL byte there is a query error).
      if (!NAME_PATTERN.test(name)) {
        throw new ValidationError('Invalid request: path.name: letters, digits and ._- only, at most 128', {
          details: [{ location: 'path', path: 'name', problem: 'letters, digits and ._- only, at most 128' }],
        });
      }
      const request = parsePredictBody(await readJson(c), maxInstances);
      const acquired = deps.pool.acquireTarget(name, request);
      const target = acquired instanceof Promise ? await acquired : acquired;
      const model: LoadedModel = target.model;
      metrics = model.metrics;
      try {
        // What a deployment serves was checked when it was deployed; a version named in the request is checked here.
        if (request.version !== undefined || request.alias !== undefined) await checkExplicit(c, model, request);
        validateInstances(model.signature, request);
        const slice = await model.score(request.instances, clientGone(c));
        const requestId = c.get('requestId');
        // The PredictResponse schema, written by hand: the header fields are fixed per model, and the predictions
        // come straight from the output tensors.
        const predictions = model.predictionJsonParts(slice);
        const body = `${model.responseHead}"requestId":${JSON.stringify(requestId)},${model.responseClasses}"predictions":[${predictions.join(',')}]}`;
        status = 200;
        const response = c.body(body, 200, JSON_CONTENT_TYPE);
        // After the answer is built. The writer keeps the predictions' text, and the instances' only when it queues
        // the request (not when it samples it out or drops it).
        deps.predictionLog?.enqueue({
          requestId,
          loggedAt: Date.now(),
          deployment: target.deployment ?? null,
          model: model.summary,
          role: target.role,
          instances: request.instances,
          outputs: predictions,
          latencyMs: performance.now() - started,
        });
        // The deployment's shadows score a copy on a later turn of the event loop: never part of this answer.
        if (target.deployment !== undefined) deps.pool.shadow(target.deployment, request.instances, requestId);
        return response;
      } finally {
        model.release();
      }
    } catch (error) {
      status = error instanceof DomainError ? error.httpStatus : 500;
      throw error;
    } finally {
      metrics.observe(status, (performance.now() - started) / 1000);
    }
  });
  return router;
}

/**
 * Whether the client's connection has closed, read from the Node request under @hono/node-server (absent when the
 * app is called in process, as the unit tests do): a request waiting for its model is then dropped, not scored.
 */
function clientGone(c: Context<AppEnv>): (() => boolean) | undefined {
  const socket = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket;
  return socket ? () => socket.destroyed : undefined;
}

/** The request body as JSON; a body that does not parse is a 400 `malformed_json` whatever its content type. */
async function readJson(c: Context<AppEnv>): Promise<unknown> {
  try {
    return await c.req.json<unknown>();
  } catch (error) {
    if (error instanceof SyntaxError) {
      throw new ValidationError(`Request body is not valid JSON: ${error.message}`, { code: 'malformed_json' });
    }
    throw error;
  }
}
