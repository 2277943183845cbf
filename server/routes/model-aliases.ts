/**
 * `/v1/models/{name}/aliases`: the aliases people name (`staging`, `candidate`, ...), each naming one version of the
 * model, and their recorded moves. `champion` and `previous` are the deployment path's (a rollout or a rollback moves
 * them), so they are read here but never written. Mounted by models.ts under `/v1/models`.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { ALIAS_PATTERN } from '../../storage/registry-aliases.js';
import type { RegistryStore } from '../../storage/registry-store.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import {
  errorResponse,
  jsonResponse,
  nameParamSchema,
  pageQuerySchema,
  UUID_PATTERN,
  versionNumberSchema,
} from './common.js';
import { aliasChangeJson, aliasChangeSchema, aliasJson, aliasSchema } from './model-responses.js';

const aliasParamSchema = z
  .string()
  .regex(ALIAS_PATTERN, 'a letter, then letters, digits and ._- (at most 64)')
  .openapi({ param: { name: 'alias', in: 'path' }, example: 'staging' });

const reasonSchema = z.string().trim().min(1).max(2000);

const setAliasBodySchema = z
  .strictObject({
    version: z
      .union([versionNumberSchema, z.string().regex(UUID_PATTERN, 'a version id (UUID)')])
      .openapi({ description: 'The version the alias names: its number or id (of this model).', example: 3 }),
    reason: reasonSchema.optional().openapi({ description: 'Why; recorded with the move.' }),
  })
  .openapi('SetModelAliasRequest');

const versionRefSchema = z.object({ version: z.number().int(), versionId: z.string() });

const aliasWriteSchema = z
  .object({
    model: z.string(),
    alias: aliasSchema,
    from: versionRefSchema.nullable().openapi({ description: 'The version it named before; null when new.' }),
    changed: z.boolean().openapi({ description: 'False when it already named the version: nothing was written.' }),
  })
  .openapi('ModelAliasWrite');

const DEPLOYMENT_PATH =
  '`champion` and `previous` are refused with 409: they move only through the deployment path ' +
  '(`POST /v1/deployments/{name}/rollouts`, `POST /v1/deployments/{name}/rollback`).';

const listAliasesRoute = createRoute({
  method: 'get',
  path: '/{name}/aliases',
  ...scoped('read'),
  tags: ['registry'],
  summary: 'A model’s aliases, and their recorded moves (newest first, paged)',
  request: {
    params: z.object({ name: nameParamSchema }),
    query: pageQuerySchema.extend({
      alias: aliasParamSchema
        .optional()
        .openapi({ param: { name: 'alias', in: 'query' }, description: 'The moves of this alias only.' }),
    }),
  },
  responses: {
    200: jsonResponse(
      'Every alias (by name) and a page of moves.',
      z.object({ model: z.string(), aliases: z.array(aliasSchema), changes: z.array(aliasChangeSchema) }),
    ),
    400: errorResponse('Invalid name or query.'),
    404: errorResponse('No such model.'),
  },
});

const setAliasRoute = createRoute({
  method: 'put',
  path: '/{name}/aliases/{alias}',
  ...scoped('deploy'),
  tags: ['registry'],
  summary: 'Point an alias at a version of the model (create or move it)',
  description:
    'One version per alias: a move replaces the version it named, atomically, and concurrent moves leave the last ' +
    `one's version. Each move is recorded with the caller and \`reason\`. ${DEPLOYMENT_PATH}`,
  request: {
    params: z.object({ name: nameParamSchema, alias: aliasParamSchema }),
    body: { content: { 'application/json': { schema: setAliasBodySchema } }, required: true },
  },
  responses: {
    200: jsonResponse('The alias was moved, or already named the version.', aliasWriteSchema),
    201: jsonResponse('The alias was created.', aliasWriteSchema),
    400: errorResponse('Invalid alias name or body, named.'),
    404: errorResponse('No such model, or `version` is no version of it (another model’s version included).'),
    409: errorResponse(`The alias is \`champion\` or \`previous\`. ${DEPLOYMENT_PATH}`),
  },
});

const deleteAliasRoute = createRoute({
  method: 'delete',
  path: '/{name}/aliases/{alias}',
  ...scoped('deploy'),
  tags: ['registry'],
  summary: 'Delete an alias of the model',
  request: {
    params: z.object({ name: nameParamSchema, alias: aliasParamSchema }),
    query: z.object({
      reason: reasonSchema
        .optional()
        .openapi({ param: { name: 'reason', in: 'query' }, description: 'Why; recorded with the deletion.' }),
    }),
  },
  responses: {
    200: jsonResponse(
      'The alias is gone.',
      z.object({ model: z.string(), alias: z.string(), deleted: versionRefSchema }).openapi('ModelAliasDeleted'),
    ),
    400: errorResponse('Invalid alias name.'),
    404: errorResponse('No such model, or no such alias.'),
    409: errorResponse(`The alias is \`champion\` or \`previous\`. ${DEPLOYMENT_PATH}`),
  },
});

/** `/v1/models/{name}/aliases...`. */
export function modelAliases(registry: RegistryStore): OpenAPIHono<AppEnv> {
  const router = createRouter();

  router.openapi(listAliasesRoute, async (c) => {
    const { name } = c.req.valid('param');
    const { alias, ...page } = c.req.valid('query');
    if (!(await registry.getModel(name))) throw new NotFoundError(`model ${name} does not exist`);
    const [aliases, changes] = await Promise.all([registry.aliases(name), registry.aliasChanges(name, page, alias)]);
    return c.json({ model: name, aliases: aliases.map(aliasJson), changes: changes.map(aliasChangeJson) }, 200);
  });

  router.openapi(setAliasRoute, async (c) => {
    const { name, alias } = c.req.valid('param');
    const body = c.req.valid('json');
    if (!(await registry.getModel(name))) throw new NotFoundError(`model ${name} does not exist`);
    let versionId: string;
    if (typeof body.version === 'number') {
      const version = await registry.getVersion(name, body.version);
      if (!version) throw new NotFoundError(`version: model ${name} has no version ${body.version}`);
      versionId = version.id;
    } else {
      versionId = body.version;
    }
    const actor = actorOf(c);
    const written = await registry.setAlias(name, alias, versionId, actor, body.reason ?? `set by ${actor}`);
    c.get('logger')().info(
      { model: name, alias, version: written.alias.version, from: written.from?.version, actor },
      written.changed ? 'model alias moved' : 'model alias already named the version',
    );
    const answer = {
      model: name,
      alias: aliasJson(written.alias),
      from: written.from && { version: written.from.version, versionId: written.from.versionId },
      changed: written.changed,
    };
    return written.changed && written.from === null ? c.json(answer, 201) : c.json(answer, 200);
  });

  router.openapi(deleteAliasRoute, async (c) => {
    const { name, alias } = c.req.valid('param');
    const { reason } = c.req.valid('query');
    const actor = actorOf(c);
    const deleted = await registry.deleteAlias(name, alias, actor, reason ?? `deleted by ${actor}`);
    c.get('logger')().info({ model: name, alias, version: deleted.version, actor }, 'model alias deleted');
    return c.json({ model: name, alias, deleted: { version: deleted.version, versionId: deleted.versionId } }, 200);
  });

  return router;
}
