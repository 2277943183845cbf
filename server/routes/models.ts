/**
 * `/v1/models`, one resource mounted once by server/app.ts, from three files:
 *
 * - this file: `GET /v1/models`, `GET /v1/models/{name}`, `GET /v1/models/{name}/versions` and
 *   `GET /v1/models/{name}/versions/{versionOrAlias}`, the registry's models and versions
 * - batch-predictions.ts: `POST /v1/models/{name}/batch-predictions`, a batch scoring job (read back at
 *   `/v1/batch-predictions/{id}`, in the same file)
 * - predict.ts: `POST /v1/models/{name}/predict`, online predictions (the serving hot path)
 *
 * Each part is mounted when its dependencies are given, so a serving-only API has `/predict` alone.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ModelVersion, ModelVersionTransition, RegisteredModel } from '../../schema/index.js';
import { MODEL_VERSION_STATUSES } from '../../schema/index.js';
import type { RegistryStore } from '../../storage/registry-store.js';
import { scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { modelBatchPredictions, type BatchPredictionsDeps } from './batch-predictions.js';
import { errorResponse, iso, jsonResponse, nameParamSchema, pageQuerySchema } from './common.js';
import { predict, type PredictDeps } from './predict.js';

export interface ModelsDeps {
  /** The model registry: the read routes of this file are mounted with it. */
  readonly registry?: RegistryStore | undefined;
  /** `POST /{name}/batch-predictions` is mounted with it. */
  readonly batchPredictions?: BatchPredictionsDeps | undefined;
  /** `POST /{name}/predict` is mounted with it. */
  readonly serving?: PredictDeps | undefined;
}

const versionRefSchema = z
  .string()
  .regex(/^(?:[1-9][0-9]{0,8}|[A-Za-z][A-Za-z0-9._-]{0,63})$/, 'a version number or an alias such as champion')
  .openapi({
    param: { name: 'versionOrAlias', in: 'path' },
    description: 'A version number (`3`) or an alias (`champion`).',
    example: 'champion',
  });

const modelSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    tags: z.record(z.string(), z.string()),
    createdAt: z.string().openapi({ format: 'date-time' }),
    updatedAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('RegisteredModel');

const modelVersionSchema = z
  .object({
    id: z.string(),
    model: z.string(),
    version: z.number().int(),
    status: z.enum(MODEL_VERSION_STATUSES),
    onnxUri: z.string(),
    sha256: z.string(),
    signature: z.record(z.string(), z.unknown()),
    metrics: z.record(z.string(), z.number()),
    params: z.record(z.string(), z.unknown()),
    blessing: z.record(z.string(), z.unknown()).nullable(),
    codeVersion: z.string().nullable(),
    sourceRunId: z.string().nullable().openapi({ description: 'The pipeline run that trained it.' }),
    artifactId: z.string().nullable(),
    createdAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('ModelVersion');

const transitionSchema = z
  .object({
    fromStatus: z.enum(MODEL_VERSION_STATUSES).nullable(),
    toStatus: z.enum(MODEL_VERSION_STATUSES),
    actor: z.string(),
    reason: z.string(),
    createdAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('ModelVersionTransition');

const modelDetailsSchema = modelSchema
  .extend({
    latestVersion: modelVersionSchema.nullable(),
    champion: modelVersionSchema.nullable().openapi({ description: 'The version the `champion` alias names.' }),
    versionCount: z.number().int(),
  })
  .openapi('RegisteredModelDetails');

const notFound = errorResponse('Not found.');
const badRequest = errorResponse('Invalid name.');

const listModelsRoute = createRoute({
  method: 'get',
  path: '/',
  ...scoped('read'),
  tags: ['registry'],
  summary: 'Registered models, by name (paged)',
  request: { query: pageQuerySchema },
  responses: { 200: jsonResponse('The models, by name.', z.object({ models: z.array(modelSchema) })) },
});

const getModelRoute = createRoute({
  method: 'get',
  path: '/{name}',
  ...scoped('read'),
  tags: ['registry'],
  summary: 'A registered model with its latest version and champion',
  request: { params: z.object({ name: nameParamSchema }) },
  responses: { 200: jsonResponse('The model.', modelDetailsSchema), 400: badRequest, 404: notFound },
});

const listVersionsRoute = createRoute({
  method: 'get',
  path: '/{name}/versions',
  ...scoped('read'),
  tags: ['registry'],
  summary: 'A model’s versions, newest first (paged)',
  request: { params: z.object({ name: nameParamSchema }), query: pageQuerySchema },
  responses: {
    200: jsonResponse('The versions.', z.object({ versions: z.array(modelVersionSchema) })),
    400: badRequest,
    404: notFound,
  },
});

const getVersionRoute = createRoute({
  method: 'get',
  path: '/{name}/versions/{versionOrAlias}',
  ...scoped('read'),
  tags: ['registry'],
  summary: 'One model version, by number or alias, with its status transitions',
  request: { params: z.object({ name: nameParamSchema, versionOrAlias: versionRefSchema }) },
  responses: {
    200: jsonResponse(
      'The version and its audit trail (oldest first).',
      modelVersionSchema.extend({ transitions: z.array(transitionSchema) }).openapi('ModelVersionDetails'),
    ),
    400: badRequest,
    404: notFound,
  },
});

function modelJson(model: RegisteredModel): z.infer<typeof modelSchema> {
  return {
    id: model.id,
    name: model.name,
    description: model.description,
    tags: model.tags,
    createdAt: iso(model.createdAt),
    updatedAt: iso(model.updatedAt),
  };
}

function versionJson(model: string, v: ModelVersion): z.infer<typeof modelVersionSchema> {
  return {
    id: v.id,
    model,
    version: v.version,
    status: v.status,
    onnxUri: v.onnxUri,
    sha256: v.sha256,
    signature: { ...v.signature },
    metrics: v.metrics,
    params: v.params,
    blessing: v.blessing ? { ...v.blessing } : null,
    codeVersion: v.codeVersion,
    sourceRunId: v.sourceRunId,
    artifactId: v.artifactId,
    createdAt: iso(v.createdAt),
  };
}

function transitionJson(t: ModelVersionTransition): z.infer<typeof transitionSchema> {
  return {
    fromStatus: t.fromStatus,
    toStatus: t.toStatus,
    actor: t.actor,
    reason: t.reason,
    createdAt: iso(t.createdAt),
  };
}

/** `/v1/models`: the registry's models and versions, and (batch-predictions.ts, predict.ts) scoring with them. */
export function models(deps: ModelsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  if (deps.registry) router.route('/', modelRegistry(deps.registry));
  if (deps.batchPredictions) router.route('/', modelBatchPredictions(deps.batchPredictions));
  if (deps.serving) router.route('/', predict(deps.serving));
  return router;
}

/** The registry's models and versions (read side). */
function modelRegistry(registry: RegistryStore): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const modelOrThrow = async (name: string) => {
    const model = await registry.getModel(name);
    if (!model) throw new NotFoundError(`model ${name} does not exist`);
    return model;
  };

  router.openapi(listModelsRoute, async (c) => {
    return c.json({ models: (await registry.listModels(c.req.valid('query'))).map(modelJson) }, 200);
  });

  router.openapi(getModelRoute, async (c) => {
    const { name } = c.req.valid('param');
    const model = await modelOrThrow(name);
    const [versions, champion] = await Promise.all([registry.listVersions(name), registry.champion(name)]);
    const latest = versions[0];
    return c.json(
      {
        ...modelJson(model),
        latestVersion: latest ? versionJson(name, latest) : null,
        champion: champion ? versionJson(name, champion) : null,
        versionCount: versions.length,
      },
      200,
    );
  });

  router.openapi(listVersionsRoute, async (c) => {
    const { name } = c.req.valid('param');
    await modelOrThrow(name);
    const versions = await registry.listVersions(name, c.req.valid('query'));
    return c.json({ versions: versions.map((v) => versionJson(name, v)) }, 200);
  });

  router.openapi(getVersionRoute, async (c) => {
    const { name, versionOrAlias } = c.req.valid('param');
    await modelOrThrow(name);
    const ref = /^\d+$/.test(versionOrAlias) ? Number(versionOrAlias) : versionOrAlias;
    const version = await registry.getVersion(name, ref);
    if (!version) {
      const what = typeof ref === 'number' ? `version ${ref}` : `version with the alias ${ref}`;
      throw new NotFoundError(`model ${name} has no ${what}`);
    }
    const transitions = await registry.transitions(version.id);
    return c.json({ ...versionJson(name, version), transitions: transitions.map(transitionJson) }, 200);
  });

  return router;
}
