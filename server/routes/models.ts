/**
 * `/v1/models`, one resource mounted once by server/app.ts, from these files:
 *
 * - this file: `GET /v1/models`, `GET /v1/models/{name}`, `GET /v1/models/{name}/versions` and
 *   `GET /v1/models/{name}/versions/{versionOrAlias}`, the registry's models and versions, searched with the
 *   filters of model-filters.ts; their JSON is model-responses.ts's
 * - model-aliases.ts: `GET /v1/models/{name}/aliases` and `PUT` `DELETE /v1/models/{name}/aliases/{alias}`
 * - model-edits.ts: `PATCH /v1/models/{name}`, `PATCH /v1/models/{name}/versions/{version}` (description, tags) and
 *   `POST /v1/models/{name}/versions/{version}/archive`
 * - batch-predictions.ts: `POST /v1/models/{name}/batch-predictions`, a batch scoring job (read back at
 *   `/v1/batch-predictions/{id}`, in the same file)
 * - predict.ts: `POST /v1/models/{name}/predict`, online predictions (the serving hot path)
 *
 * Each part is mounted when its dependencies are given, so a serving-only API has `/predict` alone.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { RegistryStore } from '../../storage/registry-store.js';
import { scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { modelBatchPredictions, type BatchPredictionsDeps } from './batch-predictions.js';
import { errorResponse, jsonResponse, nameParamSchema } from './common.js';
import { modelAliases } from './model-aliases.js';
import { modelEdits } from './model-edits.js';
import { modelFilterOf, modelListQuerySchema, versionFilterOf, versionListQuerySchema } from './model-filters.js';
import {
  aliasJson,
  aliasSchema,
  modelJson,
  modelSchema,
  modelVersionDetailsSchema,
  modelVersionSchema,
  transitionJson,
  versionContext,
  versionJson,
} from './model-responses.js';
import { predict, type PredictDeps } from './predict.js';

export interface ModelsDeps {
  /** The model registry: the routes of this file, model-aliases.ts and model-edits.ts are mounted with it. */
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

const modelDetailsSchema = modelSchema
  .extend({
    latestVersion: modelVersionSchema.nullable(),
    champion: modelVersionSchema.nullable().openapi({ description: 'The version the `champion` alias names.' }),
    aliases: z.array(aliasSchema).openapi({ description: 'Every alias of the model, by name.' }),
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
  summary: 'Registered models, by name, filtered by tag and name prefix (paged)',
  request: { query: modelListQuerySchema },
  responses: {
    200: jsonResponse('The models, by name.', z.object({ models: z.array(modelSchema) })),
    400: errorResponse('A malformed filter, named.'),
  },
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
  summary: 'A model’s versions, newest first, filtered by status, alias, tags and metric ranges (paged)',
  request: { params: z.object({ name: nameParamSchema }), query: versionListQuerySchema },
  responses: {
    200: jsonResponse('The versions that match every filter.', z.object({ versions: z.array(modelVersionSchema) })),
    400: errorResponse('An invalid name, or a malformed filter, named.'),
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
    200: jsonResponse('The version and its audit trail (oldest first).', modelVersionDetailsSchema),
    400: badRequest,
    404: notFound,
  },
});

/** `/v1/models`: the registry's models and versions, and (batch-predictions.ts, predict.ts) scoring with them. */
export function models(deps: ModelsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  if (deps.registry) router.route('/', modelRegistry(deps.registry));
  if (deps.batchPredictions) router.route('/', modelBatchPredictions(deps.batchPredictions));
  if (deps.serving) router.route('/', predict(deps.serving));
  return router;
}

/** The registry's models and versions, their aliases and edits. */
function modelRegistry(registry: RegistryStore): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const modelOrThrow = async (name: string) => {
    const model = await registry.getModel(name);
    if (!model) throw new NotFoundError(`model ${name} does not exist`);
    return model;
  };

  router.openapi(listModelsRoute, async (c) => {
    const query = c.req.valid('query');
    const list = await registry.listModels(query, modelFilterOf(query));
    return c.json({ models: list.map(modelJson) }, 200);
  });

  router.openapi(getModelRoute, async (c) => {
    const { name } = c.req.valid('param');
    const model = await modelOrThrow(name);
    const [versions, champion, aliases] = await Promise.all([
      registry.listVersions(name),
      registry.champion(name),
      registry.aliases(name),
    ]);
    const latest = versions[0];
    const shown = [latest, champion].filter((v) => v !== undefined);
    const context = await versionContext(registry, name, shown);
    return c.json(
      {
        ...modelJson(model),
        latestVersion: latest ? versionJson(name, latest, context) : null,
        champion: champion ? versionJson(name, champion, context) : null,
        aliases: aliases.map(aliasJson),
        versionCount: versions.length,
      },
      200,
    );
  });

  router.openapi(listVersionsRoute, async (c) => {
    const { name } = c.req.valid('param');
    await modelOrThrow(name);
    const query = c.req.valid('query');
    const versions = await registry.listVersions(name, query, versionFilterOf(query));
    const context = await versionContext(registry, name, versions);
    return c.json({ versions: versions.map((v) => versionJson(name, v, context)) }, 200);
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
    const [transitions, context] = await Promise.all([
      registry.transitions(version.id),
      versionContext(registry, name, [version]),
    ]);
    return c.json({ ...versionJson(name, version, context), transitions: transitions.map(transitionJson) }, 200);
  });

  router.route('/', modelAliases(registry));
  router.route('/', modelEdits(registry));
  return router;
}
