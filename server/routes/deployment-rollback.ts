/**
 * `POST /v1/deployments/{name}/rollback`: an earlier version serves again, through the deployment path (a champion
 * revision with the reason and actor). Mounted by deployments.ts under `/v1/deployments`.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { rollbackDeployment, type RollbackDeps } from '../../pipelines/deployment-rollback.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { createRouter } from '../router.js';
import { errorResponse, jsonResponse, nameParamSchema, UUID_PATTERN, versionNumberSchema } from './common.js';
import { revisionJson, revisionSchema } from './deployment-revisions.js';

/** A version of the deployment's model: its number or id. */
const versionRefBodySchema = z.union([versionNumberSchema, z.string().regex(UUID_PATTERN, 'a version id (UUID)')]);

const rollbackBodySchema = z
  .strictObject({
    to: versionRefBodySchema.optional().openapi({
      description:
        'The version to serve: its number or id. Default: the previous champion, the one that served before the ' +
        'current one (never one a rollback already moved away from, so a repeated rollback goes further back).',
      example: 2,
    }),
    from: versionRefBodySchema.optional().openapi({
      description:
        'The champion you roll back from: its number or id. When given, the rollback is made only while it is the ' +
        'champion, so a retry whose answer was lost never goes back twice: when the champion now was started by a ' +
        'rollback that replaced `from` (and is `to`, when named), that rollback is answered with `changed: false`; ' +
        'otherwise 409 `champion_changed`, nothing written.',
      example: 3,
    }),
    reason: z.string().trim().min(1).max(2000).openapi({ description: 'Why; recorded in the revision.' }),
    allowUnblessed: z
      .boolean()
      .optional()
      .openapi({
        description:
          'Serve a version that is not blessed, or whose approval was rejected (never an archived one). Without it ' +
          'such a version is refused with 409; with it, the override is recorded in the revision’s reason.',
      }),
  })
  .openapi('RollbackRequest');

const versionRefSchema = z.object({ version: z.number().int(), versionId: z.string() });

const rollbackSchema = z
  .object({
    deployment: z.string(),
    changed: z.boolean().openapi({
      description:
        'False when nothing was written: `to` already was the champion, or (with `from`) a rollback from `from` ' +
        'already made the champion that serves.',
    }),
    from: versionRefSchema.openapi({ description: 'The champion before the rollback.' }),
    to: versionRefSchema.openapi({ description: 'The champion now.' }),
    revision: revisionSchema.openapi({ description: 'The champion revision the rollback started.' }),
    active: z.array(revisionSchema).openapi({ description: 'What serves now, champion first.' }),
  })
  .openapi('DeploymentRollback');

const rollbackRoute = createRoute({
  method: 'post',
  path: '/{name}/rollback',
  ...scoped('deploy'),
  tags: ['deployments'],
  summary: 'Serve an earlier version again: the previous champion, or the one named',
  description:
    'The version becomes the champion with all of the traffic, as a `replace` rollout and the monitoring rollback ' +
    'do it: a revision whose reason starts `rollback:` and names both versions, the caller and `reason`; the ' +
    '`champion` alias moves and serving reloads. Shadows end with it. Refused while a canary runs. The default ' +
    'target skips versions that may not serve now (archived; unblessed without `allowUnblessed`). Retry-safe: an ' +
    'explicit `to` that already serves answers `changed: false` (even while a rollout runs); a default rollback is ' +
    'retry-safe with `from`, the champion it rolls back from (see `from`).',
  request: {
    params: z.object({ name: nameParamSchema }),
    body: { content: { 'application/json': { schema: rollbackBodySchema } }, required: true },
  },
  responses: {
    200: jsonResponse('The version serves (changed: false when it already did).', rollbackSchema),
    400: errorResponse('Invalid request: a malformed `to` or `from`, no `reason`.'),
    404: errorResponse('No such deployment, or `to` is no version of its model.'),
    409: errorResponse(
      'The version is archived, or not blessed or rejected at approval (without `allowUnblessed`); a canary or ' +
        'rollout runs on the deployment; there is no earlier champion fit to serve; or the champion changed meanwhile ' +
        'or is not `from` (code `champion_changed`).',
    ),
  },
});

/** `/v1/deployments/{name}/rollback`. */
export function deploymentRollback(deps: RollbackDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();

  router.openapi(rollbackRoute, async (c) => {
    const { name } = c.req.valid('param');
    const body = c.req.valid('json');
    const actor = actorOf(c);
    const outcome = await rollbackDeployment(
      { ...deps, logger: c.get('logger')() },
      {
        deploymentName: name,
        ...(body.to !== undefined ? { to: body.to } : {}),
        ...(body.from !== undefined ? { from: body.from } : {}),
        ...(body.allowUnblessed ? { allowUnblessed: true } : {}),
        actor,
        reason: body.reason,
      },
    );
    const active = await deps.deployments.activeRevisions(name);
    c.get('logger')().info(
      { deployment: name, from: outcome.from.version, to: outcome.to.version, actor, changed: outcome.deploy.changed },
      'deployment rolled back',
    );
    return c.json(
      {
        deployment: name,
        changed: outcome.deploy.changed,
        from: outcome.from,
        to: outcome.to,
        revision: revisionJson({ ...outcome.deploy.revision, version: outcome.to.version }),
        active: active.map(revisionJson),
      },
      200,
    );
  });

  return router;
}
