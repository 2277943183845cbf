/**
 * `/v1/pipelines`, one resource mounted once by server/app.ts, from two files:
 *
 * - this file: saving definitions (`POST /v1/pipelines`, `PUT /v1/pipelines/{name}`), listing and reading them and
 *   their versions
 * - runs.ts: `POST /v1/pipelines/{name}/runs`, starting a run (the runs themselves are `/v1/runs`, in the same file)
 * - schedules.ts: `/v1/pipelines/{name}/schedules...` (Temporal Schedules) and `GET /v1/pipelines/{name}/triggers`
 *
 * Runs are mounted when a runner is given; schedules and triggers when the trigger store is given too.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context, ValidationTargets } from 'hono';
import type { ZodError } from 'zod';
import { pipelineDefinitionSchema, redactDefinition } from '../../pipelines/definition.js';
import {
  issuesFromZod,
  validateDefinition,
  type DefinitionIssue,
  type DefinitionValidationDeps,
} from '../../pipelines/validate-definition.js';
import type { Pipeline, PipelineVersion } from '../../schema/index.js';
import type { PipelineStore } from '../../storage/pipeline-store.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError, ValidationError, validationErrorFromZod } from '../errors.js';
import { createRouter } from '../router.js';
import { findUnstorableText } from '../storable-text.js';
import { errorResponse, iso, jsonResponse, MAX_VERSION, pageQuerySchema, pipelineNameSchema } from './common.js';
import { pipelineRuns, type RunsDeps } from './runs.js';
import { pipelineSchedules } from './schedules.js';
import type { TriggerStore } from '../../storage/trigger-store.js';

export interface PipelinesDeps {
  readonly pipelines: PipelineStore;
  /** How a definition's source is probed to check its columns. */
  readonly sources: DefinitionValidationDeps;
  /** Starting runs (`POST /{name}/runs`); absent without a runner. */
  readonly runs?: RunsDeps;
  /**
   * Called after every save (new version or not) with the pipeline's name, to bring what follows its newest
   * definition up to date (the new-data poll schedule); a failure fails the request, and a retried save repeats it.
   */
  readonly afterSave?: (pipeline: string) => Promise<unknown>;
  /** Trigger events: with `runs`, the pipeline's schedules and `GET /{name}/triggers` are mounted. */
  readonly triggers?: TriggerStore;
}

const definitionBodySchema = pipelineDefinitionSchema.openapi('PipelineDefinition', {
  description:
    'A pipeline definition: source, label and feature expressions, split, trainer, evaluation, validation and ' +
    'deployment policy. Expressions are checked against the columns the source really has.',
});

const definitionSchema = z
  .record(z.string(), z.unknown())
  .openapi({ description: 'The stored definition, defaults filled in (see PipelineDefinition).' });

const pipelineSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    createdAt: z.string().openapi({ format: 'date-time' }),
    updatedAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('Pipeline');

const pipelineVersionSchema = z
  .object({
    id: z.string(),
    pipeline: z.string(),
    version: z.number().int().positive(),
    definition: definitionSchema,
    definitionSha256: z.string().openapi({ description: 'sha256 of the canonical JSON: the identity of a version.' }),
    createdBy: z.string(),
    createdAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('PipelineVersion');

const savedSchema = z
  .object({
    pipeline: pipelineSchema,
    version: pipelineVersionSchema,
    created: z.boolean().openapi({ description: 'False when the same definition was already stored.' }),
  })
  .openapi('SavedPipelineVersion');

const pipelineSummarySchema = pipelineSchema
  .extend({
    latestVersion: z.object({ id: z.string(), version: z.number().int().positive(), definition: definitionSchema }),
  })
  .openapi('PipelineSummary');

const pipelineDetailsSchema = z
  .object({
    pipeline: pipelineSchema,
    versions: z.array(pipelineVersionSchema).openapi({ description: 'Every version, newest first.' }),
  })
  .openapi('PipelineDetails');

const definitionErrors = {
  400: errorResponse(
    'The definition is invalid: `error.details.issues` lists each problem as `{ path, message }` ' +
      '(`features.2.expression`, `trainer.params.C`), and the message names the first.',
  ),
  503: errorResponse('The source could not be reached to check the definition; try again.'),
};

const createRouteDef = createRoute({
  method: 'post',
  path: '/',
  ...scoped('trigger'),
  tags: ['pipelines'],
  summary: 'Store a pipeline definition (a new pipeline, or a new version of one)',
  description:
    'Validates the definition (shape, trainer parameters, and every expression against the columns of its source, ' +
    'probed without reading the data) and stores it as the pipeline’s next version. The same definition again ' +
    'returns the stored version with 200 and `created: false`.',
  request: {
    body: { content: { 'application/json': { schema: definitionBodySchema } }, required: true },
  },
  responses: {
    201: jsonResponse('A new version was stored.', savedSchema),
    200: jsonResponse('This definition was already stored: its version.', savedSchema),
    ...definitionErrors,
  },
});

const putRouteDef = createRoute({
  method: 'put',
  path: '/{name}',
  ...scoped('trigger'),
  tags: ['pipelines'],
  summary: 'Store a new version of the pipeline {name}',
  description: 'As `POST /v1/pipelines`; the definition’s `name` must be {name}.',
  request: {
    params: z.object({ name: pipelineNameSchema }),
    body: { content: { 'application/json': { schema: definitionBodySchema } }, required: true },
  },
  responses: {
    201: jsonResponse('A new version was stored.', savedSchema),
    200: jsonResponse('This definition was already stored: its version.', savedSchema),
    ...definitionErrors,
  },
});

const listRouteDef = createRoute({
  method: 'get',
  path: '/',
  ...scoped('read'),
  tags: ['pipelines'],
  summary: 'Pipelines by name, each with its latest version (paged)',
  request: { query: pageQuerySchema },
  responses: {
    200: jsonResponse('The pipelines, by name.', z.object({ pipelines: z.array(pipelineSummarySchema) })),
  },
});

const getRouteDef = createRoute({
  method: 'get',
  path: '/{name}',
  ...scoped('read'),
  tags: ['pipelines'],
  summary: 'A pipeline and its versions',
  request: { params: z.object({ name: pipelineNameSchema }) },
  responses: {
    200: jsonResponse('The pipeline.', pipelineDetailsSchema),
    404: errorResponse('No such pipeline.'),
  },
});

const getVersionRouteDef = createRoute({
  method: 'get',
  path: '/{name}/versions/{version}',
  ...scoped('read'),
  tags: ['pipelines'],
  summary: 'One version of a pipeline',
  request: {
    params: z.object({
      name: pipelineNameSchema,
      version: z.coerce
        .number()
        .int()
        .min(1)
        .max(MAX_VERSION)
        .openapi({ param: { name: 'version', in: 'path' }, example: 1 }),
    }),
  },
  responses: {
    200: jsonResponse('The version.', pipelineVersionSchema),
    404: errorResponse('No such pipeline or version.'),
  },
});

/** The 400 of an invalid definition: every issue in `details.issues`, the first in the message. */
export function invalidDefinition(issues: readonly DefinitionIssue[]): ValidationError {
  const first = issues[0];
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  const message = first ? `Invalid pipeline definition: ${first.path}: ${first.message}${more}` : 'Invalid definition';
  return new ValidationError(message, { code: 'invalid_definition', details: { issues } });
}

/** The route hook: a definition that does not match the schema is reported like every other definition problem. */
function definitionHook(
  result: { success: true } | { success: false; error: ZodError; target: keyof ValidationTargets },
): undefined {
  if (result.success) {
    // Text the database cannot store (a NUL, an unpaired surrogate) is a definition problem like any other. (Path
    // and header values cannot hold it: the name's pattern and HTTP itself refuse it.)
    const found = 'data' in result ? findUnstorableText(result.data) : undefined;
    if (found) throw invalidDefinition([{ path: found.keys.join('.'), message: found.problem }]);
    return undefined;
  }
  if (result.target === 'json') throw invalidDefinition(issuesFromZod(result.error));
  throw validationErrorFromZod(result.error, result.target);
}

export function pipelineJson(pipeline: Pipeline): z.infer<typeof pipelineSchema> {
  return {
    id: pipeline.id,
    name: pipeline.name,
    description: pipeline.description,
    createdAt: iso(pipeline.createdAt),
    updatedAt: iso(pipeline.updatedAt),
  };
}

function versionJson(name: string, version: PipelineVersion): z.infer<typeof pipelineVersionSchema> {
  return {
    id: version.id,
    pipeline: name,
    version: version.version,
    definition: redactDefinition(version.definition),
    definitionSha256: version.definitionSha256,
    createdBy: version.createdBy,
    createdAt: iso(version.createdAt),
  };
}

/** `/v1/pipelines`: pipeline definitions and their versions. */
export function pipelines(deps: PipelinesDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();

  const save = async (c: Context<AppEnv>, body: unknown, actor: string) => {
    const result = await validateDefinition(body, deps.sources);
    if (!result.ok) throw invalidDefinition(result.issues);
    const saved = await deps.pipelines.saveDefinition(result.definition, actor);
    await deps.afterSave?.(saved.pipeline.name);
    const json = {
      pipeline: pipelineJson(saved.pipeline),
      version: versionJson(saved.pipeline.name, saved.version),
      created: saved.created,
    };
    if (saved.created) {
      c.header('location', `/v1/pipelines/${saved.pipeline.name}/versions/${saved.version.version}`);
    }
    return json;
  };

  router.openapi(
    createRouteDef,
    async (c) => {
      const json = await save(c, await c.req.json<unknown>(), actorOf(c));
      return json.created ? c.json(json, 201) : c.json(json, 200);
    },
    definitionHook,
  );

  router.openapi(
    putRouteDef,
    async (c) => {
      const { name } = c.req.valid('param');
      if (c.req.valid('json').name !== name) {
        throw invalidDefinition([
          { path: 'name', message: `must be ${JSON.stringify(name)}, the pipeline in the path` },
        ]);
      }
      const json = await save(c, await c.req.json<unknown>(), actorOf(c));
      return json.created ? c.json(json, 201) : c.json(json, 200);
    },
    definitionHook,
  );

  router.openapi(listRouteDef, async (c) => {
    const list = await deps.pipelines.listPipelines(c.req.valid('query'));
    return c.json(
      {
        pipelines: list.map((p) => ({
          ...pipelineJson(p),
          latestVersion: {
            id: p.latestVersionId,
            version: p.latestVersion,
            definition: redactDefinition(p.definition),
          },
        })),
      },
      200,
    );
  });

  router.openapi(getRouteDef, async (c) => {
    const { name } = c.req.valid('param');
    const found = await deps.pipelines.getPipeline(name);
    if (!found) throw new NotFoundError(`pipeline ${name} does not exist`);
    return c.json(
      { pipeline: pipelineJson(found.pipeline), versions: found.versions.map((v) => versionJson(name, v)) },
      200,
    );
  });

  router.openapi(getVersionRouteDef, async (c) => {
    const { name, version } = c.req.valid('param');
    const found = await deps.pipelines.getVersion(name, version);
    if (!found) throw new NotFoundError(`pipeline ${name} has no version ${version}`);
    return c.json(versionJson(name, found), 200);
  });

  if (deps.runs) router.route('/', pipelineRuns(deps.runs));
  if (deps.runs && deps.triggers) router.route('/', pipelineSchedules({ ...deps.runs, triggers: deps.triggers }));
  return router;
}
