/**
 * Registry edits: `PATCH /v1/models/{name}` and `PATCH /v1/models/{name}/versions/{version}` (description and
 * key/value tags), and `POST /v1/models/{name}/versions/{version}/archive`. Mounted by models.ts under `/v1/models`.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import {
  MAX_DESCRIPTION_LENGTH,
  MAX_TAG_VALUE_LENGTH,
  MAX_TAGS,
  TAG_KEY_PATTERN,
} from '../../storage/registry-edits.js';
import type { RegistryStore } from '../../storage/registry-store.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, jsonResponse, MAX_VERSION, nameParamSchema } from './common.js';
import {
  modelJson,
  modelSchema,
  modelVersionDetailsSchema,
  modelVersionSchema,
  transitionJson,
  versionContext,
  versionJson,
} from './model-responses.js';

const versionParamSchema = z.coerce
  .number()
  .int()
  .min(1)
  .max(MAX_VERSION)
  .openapi({ param: { name: 'version', in: 'path' }, example: 3 });

const editBodySchema = z
  .strictObject({
    description: z
      .string()
      .max(MAX_DESCRIPTION_LENGTH)
      .nullable()
      .optional()
      .openapi({ description: `Replaces the description (null clears it); at most ${MAX_DESCRIPTION_LENGTH}.` }),
    tags: z
      .record(
        z.string().regex(TAG_KEY_PATTERN, 'a tag key: letters, digits and _./- (at most 64, no :)'),
        z.string().max(MAX_TAG_VALUE_LENGTH).nullable(),
      )
      .refine((tags) => Object.keys(tags).length <= MAX_TAGS, `at most ${MAX_TAGS} tags`)
      .optional()
      .openapi({
        description:
          `Merged into the tags: a string sets the key, null removes it; at most ${MAX_TAGS} tags after the edit, ` +
          `values of at most ${MAX_TAG_VALUE_LENGTH} characters.`,
        example: { team: 'ops', experiment: null },
      }),
  })
  .refine((body) => body.description !== undefined || body.tags !== undefined, {
    message: 'give `description`, `tags` or both',
  })
  .openapi('RegistryEditRequest');

const archiveBodySchema = z
  .strictObject({
    reason: z.string().trim().min(1).max(2000).openapi({ description: 'Why; recorded in the version’s transitions.' }),
  })
  .openapi('ArchiveVersionRequest');

const editModelRoute = createRoute({
  method: 'patch',
  path: '/{name}',
  ...scoped('deploy'),
  tags: ['registry'],
  summary: 'Edit a registered model’s description and tags',
  request: {
    params: z.object({ name: nameParamSchema }),
    body: { content: { 'application/json': { schema: editBodySchema } }, required: true },
  },
  responses: {
    200: jsonResponse('The model as edited.', modelSchema),
    400: errorResponse('An invalid field, named; nothing changed.'),
    404: errorResponse('No such model.'),
    409: errorResponse(`The edit would leave more than ${MAX_TAGS} tags; nothing changed.`),
  },
});

const editVersionRoute = createRoute({
  method: 'patch',
  path: '/{name}/versions/{version}',
  ...scoped('deploy'),
  tags: ['registry'],
  summary: 'Edit a model version’s description and tags',
  request: {
    params: z.object({ name: nameParamSchema, version: versionParamSchema }),
    body: { content: { 'application/json': { schema: editBodySchema } }, required: true },
  },
  responses: {
    200: jsonResponse('The version as edited.', modelVersionSchema),
    400: errorResponse('An invalid field, named; nothing changed.'),
    404: errorResponse('No such model or version.'),
    409: errorResponse(`The edit would leave more than ${MAX_TAGS} tags; nothing changed.`),
  },
});

const archiveRoute = createRoute({
  method: 'post',
  path: '/{name}/versions/{version}/archive',
  ...scoped('deploy'),
  tags: ['registry'],
  summary: 'Archive a model version: it is never deployed again',
  description:
    'The version becomes `archived`, with a transition recording the caller and `reason`. An archived version is ' +
    'refused by every deploy path (rollouts, canaries, shadows, rollbacks, even with `allowUnblessed`) and by ' +
    'predictions that name it. Refused while a deployment serves it (champion, challenger or shadow) or a rollout ' +
    'holds one to canary it. Archiving an archived version changes nothing.',
  request: {
    params: z.object({ name: nameParamSchema, version: versionParamSchema }),
    body: { content: { 'application/json': { schema: archiveBodySchema } }, required: true },
  },
  responses: {
    200: jsonResponse(
      'The version, archived, with its transitions (`changed`: false when it already was).',
      modelVersionDetailsSchema.extend({ changed: z.boolean() }).openapi('ArchivedModelVersion'),
    ),
    400: errorResponse('An invalid name, version or reason.'),
    404: errorResponse('No such model or version.'),
    409: errorResponse('A deployment serves the version, or a rollout holds one to canary it; nothing changed.'),
  },
});

/** `PATCH /v1/models/{name}`, `PATCH .../versions/{version}` and `POST .../versions/{version}/archive`. */
export function modelEdits(registry: RegistryStore): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const versionOrThrow = async (name: string, number: number) => {
    if (!(await registry.getModel(name))) throw new NotFoundError(`model ${name} does not exist`);
    const version = await registry.getVersion(name, number);
    if (!version) throw new NotFoundError(`model ${name} has no version ${number}`);
    return version;
  };

  router.openapi(editModelRoute, async (c) => {
    const { name } = c.req.valid('param');
    const model = await registry.updateModel(name, c.req.valid('json'));
    c.get('logger')().info({ model: name, actor: actorOf(c) }, 'registered model edited');
    return c.json(modelJson(model), 200);
  });

  router.openapi(editVersionRoute, async (c) => {
    const { name, version: number } = c.req.valid('param');
    const version = await registry.updateVersion((await versionOrThrow(name, number)).id, c.req.valid('json'));
    c.get('logger')().info({ model: name, version: number, actor: actorOf(c) }, 'model version edited');
    return c.json(versionJson(name, version, await versionContext(registry, name, [version])), 200);
  });

  router.openapi(archiveRoute, async (c) => {
    const { name, version: number } = c.req.valid('param');
    const { reason } = c.req.valid('json');
    const before = await versionOrThrow(name, number);
    const actor = actorOf(c);
    const archived = await registry.transitionStatus(before.id, 'archived', actor, reason);
    const changed = before.status !== 'archived';
    c.get('logger')().info({ model: name, version: number, actor, changed }, 'model version archived');
    const [transitions, context] = await Promise.all([
      registry.transitions(archived.id),
      versionContext(registry, name, [archived]),
    ]);
    return c.json(
      { ...versionJson(name, archived, context), transitions: transitions.map(transitionJson), changed },
      200,
    );
  });

  return router;
}
