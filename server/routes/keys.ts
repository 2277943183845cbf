/**
 * `/v1/keys`: API keys, managed by admin keys. A key's token is returned once, by the request that creates it; lists
 * show its prefix only. Revoking is a soft delete, so audit records that name a key keep meaning something.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { API_SCOPES } from '../../schema/index.js';
import type { ApiKeyInfo, ApiKeyStore } from '../../storage/api-key-store.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, iso, jsonResponse, NAME_PATTERN, UUID_PATTERN } from './common.js';

export interface KeysDeps {
  readonly keys: ApiKeyStore;
}

const keySchema = z
  .object({
    id: z.string(),
    name: z.string(),
    prefix: z
      .string()
      .openapi({ description: "The token's first characters (`mlk_` and 8 more): how to tell keys apart." }),
    scopes: z.array(z.enum(API_SCOPES)),
    createdBy: z.string(),
    createdAt: z.string().openapi({ format: 'date-time' }),
    lastUsedAt: z.string().nullable().openapi({ format: 'date-time', description: 'To the minute.' }),
    revokedAt: z.string().nullable().openapi({ format: 'date-time' }),
  })
  .openapi('ApiKey');

const createBodySchema = z
  .object({
    name: z
      .string()
      .regex(NAME_PATTERN, 'letters, digits and ._- only, at most 128')
      .openapi({ description: 'Who uses the key; the actor of everything it changes.', example: 'ci-retrain' }),
    scopes: z
      .array(z.enum(API_SCOPES))
      .min(1)
      .max(API_SCOPES.length)
      .openapi({ description: '`admin` holds every other scope.', example: ['read', 'trigger'] }),
  })
  .strict()
  .openapi('NewApiKey');

const idParamSchema = z
  .string()
  .regex(UUID_PATTERN, 'expected a UUID')
  .openapi({ param: { name: 'id', in: 'path' }, example: '0b7c1f5e-7d1f-4a3e-9e0b-5d6f1c2a3b4c' });

const listQuerySchema = z.object({
  includeRevoked: z
    .enum(['true', 'false'])
    .optional()
    .openapi({ description: 'Also list revoked keys. Default false.' }),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

const createKeyRoute = createRoute({
  method: 'post',
  path: '/',
  ...scoped('admin'),
  tags: ['keys'],
  summary: 'Create an API key; its token is in this response only',
  request: { body: { content: { 'application/json': { schema: createBodySchema } }, required: true } },
  responses: {
    201: jsonResponse(
      'The key and its token. Store the token now: only its hash is kept.',
      z.object({ key: keySchema, token: z.string().openapi({ example: 'mlk_Ab3dEf9h_...' }) }),
    ),
    400: errorResponse('Invalid name or scopes.'),
    409: errorResponse('A live key has this name.'),
  },
});

const listKeysRoute = createRoute({
  method: 'get',
  path: '/',
  ...scoped('admin'),
  tags: ['keys'],
  summary: 'API keys, live ones first',
  request: { query: listQuerySchema },
  responses: { 200: jsonResponse('The keys (never their tokens).', z.object({ keys: z.array(keySchema) })) },
});

const getKeyRoute = createRoute({
  method: 'get',
  path: '/{id}',
  ...scoped('admin'),
  tags: ['keys'],
  summary: 'One API key',
  request: { params: z.object({ id: idParamSchema }) },
  responses: {
    200: jsonResponse('The key.', keySchema),
    400: errorResponse('The id is not a UUID.'),
    404: errorResponse('No such key.'),
  },
});

const revokeKeyRoute = createRoute({
  method: 'delete',
  path: '/{id}',
  ...scoped('admin'),
  tags: ['keys'],
  summary: 'Revoke an API key (idempotent); requests with it are refused from then on',
  request: { params: z.object({ id: idParamSchema }) },
  responses: {
    200: jsonResponse('The revoked key.', keySchema),
    400: errorResponse('The id is not a UUID.'),
    404: errorResponse('No such key.'),
  },
});

function toJson(key: ApiKeyInfo): z.infer<typeof keySchema> {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    scopes: key.scopes as z.infer<typeof keySchema>['scopes'],
    createdBy: key.createdBy,
    createdAt: iso(key.createdAt),
    lastUsedAt: iso(key.lastUsedAt),
    revokedAt: iso(key.revokedAt),
  };
}

export function keys(deps: KeysDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  router.openapi(createKeyRoute, async (c) => {
    const body = c.req.valid('json');
    const created = await deps.keys.create({ ...body, createdBy: actorOf(c) });
    c.get('logger')().info(
      { key: created.key.name, prefix: created.key.prefix, scopes: created.key.scopes },
      'API key created',
    );
    return c.json({ key: toJson(created.key), token: created.token }, 201);
  });
  router.openapi(listKeysRoute, async (c) => {
    const { includeRevoked, limit, offset } = c.req.valid('query');
    const list = await deps.keys.list({ includeRevoked: includeRevoked === 'true', limit, offset });
    return c.json({ keys: list.map(toJson) }, 200);
  });
  router.openapi(getKeyRoute, async (c) => {
    const key = await deps.keys.get(c.req.valid('param').id);
    if (!key) throw new NotFoundError('no such API key');
    return c.json(toJson(key), 200);
  });
  router.openapi(revokeKeyRoute, async (c) => {
    const key = await deps.keys.revoke(c.req.valid('param').id);
    if (!key) throw new NotFoundError('no such API key');
    c.get('logger')().info({ key: key.name, prefix: key.prefix, by: actorOf(c) }, 'API key revoked');
    return c.json(toJson(key), 200);
  });
  return router;
}
