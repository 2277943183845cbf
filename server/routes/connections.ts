/**
 * `/v1/connections`: named data connections that Postgres sources refer to (`"source": {"kind": "postgres",
 * "connection": "warehouse", "query": "..."}`), managed by admin keys. A connection's password is write-only: it is
 * sealed in the database or named (an environment variable, a file), and no response ever carries it.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { CONNECTION_NAME_PATTERN } from '../../data/postgres-source.js';
import { SECRET_SOURCES } from '../../schema/index.js';
import type { ConnectionInfo, ConnectionStore } from '../../storage/connection-store.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { createRouter } from '../router.js';
import { errorResponse, iso, jsonResponse } from './common.js';

export interface ConnectionsDeps {
  readonly connections: ConnectionStore;
}

const connectionSchema = z
  .object({
    name: z.string(),
    kind: z.literal('postgres'),
    url: z.string().openapi({ description: 'Without its password.', example: 'postgres://reader@db:5432/warehouse' }),
    description: z.string().nullable(),
    secretSource: z.enum(SECRET_SOURCES).nullable().openapi({ description: 'Where the password lives; null: none.' }),
    hasSecret: z.boolean(),
    builtin: z.boolean().openapi({ description: 'Defined by the platform; cannot be changed or deleted.' }),
    createdBy: z.string(),
    createdAt: z.string().openapi({ format: 'date-time' }),
    updatedAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('Connection');

const secretSchema = z
  .discriminatedUnion('source', [
    z.strictObject({ source: z.literal('encrypted'), value: z.string().min(1).max(1000) }),
    z.strictObject({ source: z.literal('env'), variable: z.string().min(1).max(128) }),
    z.strictObject({ source: z.literal('file'), path: z.string().min(1).max(4096) }),
  ])
  .openapi('ConnectionSecret', {
    description:
      'The password: `encrypted` (sealed with AES-256-GCM under the platform key), `env` (read from this ' +
      'environment variable of the worker and API when used) or `file` (read from this file when used).',
  });

const bodySchema = z
  .strictObject({
    url: z.string().min(1).max(2000).openapi({
      description: 'A postgres:// URL; a password in it is taken out and sealed.',
      example: 'postgres://reader@db.internal:5432/warehouse?sslmode=require',
    }),
    description: z.string().max(2000).optional(),
    secret: secretSchema.nullable().optional().openapi({
      description: 'Create: the password, if any. Replace: absent keeps the current one, null removes it.',
    }),
  })
  .openapi('ConnectionRequest');

const nameSchema = z
  .string()
  .regex(CONNECTION_NAME_PATTERN, 'lowercase letters, digits, - and _ only, at most 63')
  .openapi({ param: { name: 'name', in: 'path' }, example: 'warehouse' });

const createBodySchema = bodySchema
  .extend({
    name: z
      .string()
      .regex(CONNECTION_NAME_PATTERN, 'lowercase letters, digits, - and _ only, at most 63')
      .openapi({ example: 'warehouse' }),
  })
  .openapi('NewConnection');

const createConnectionRoute = createRoute({
  method: 'post',
  path: '/',
  ...scoped('admin'),
  tags: ['connections'],
  summary: 'Create a connection (its password is never returned)',
  request: { body: { content: { 'application/json': { schema: createBodySchema } }, required: true } },
  responses: {
    201: jsonResponse('The connection, without its password.', connectionSchema),
    400: errorResponse('Invalid name, URL or secret.'),
    409: errorResponse('A connection has this name.'),
  },
});

const listConnectionsRoute = createRoute({
  method: 'get',
  path: '/',
  ...scoped('admin'),
  tags: ['connections'],
  summary: 'Connections, built-in ones first',
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(500).default(100),
      offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
    }),
  },
  responses: {
    200: jsonResponse('The connections (never their passwords).', z.object({ connections: z.array(connectionSchema) })),
    400: errorResponse('Invalid page.'),
  },
});

const getConnectionRoute = createRoute({
  method: 'get',
  path: '/{name}',
  ...scoped('admin'),
  tags: ['connections'],
  summary: 'One connection',
  request: { params: z.object({ name: nameSchema }) },
  responses: {
    200: jsonResponse('The connection.', connectionSchema),
    400: errorResponse('Invalid name.'),
    404: errorResponse('No such connection.'),
  },
});

const replaceConnectionRoute = createRoute({
  method: 'put',
  path: '/{name}',
  ...scoped('admin'),
  tags: ['connections'],
  summary: 'Replace a connection’s URL and description (and its password, when given)',
  request: {
    params: z.object({ name: nameSchema }),
    body: { content: { 'application/json': { schema: bodySchema } }, required: true },
  },
  responses: {
    200: jsonResponse('The connection.', connectionSchema),
    400: errorResponse('Invalid URL or secret.'),
    404: errorResponse('No such connection.'),
    409: errorResponse('A built-in connection cannot be changed.'),
  },
});

const deleteConnectionRoute = createRoute({
  method: 'delete',
  path: '/{name}',
  ...scoped('admin'),
  tags: ['connections'],
  summary: 'Delete a connection; sources that name it fail from then on',
  request: { params: z.object({ name: nameSchema }) },
  responses: {
    204: { description: 'Deleted.' },
    400: errorResponse('Invalid name.'),
    404: errorResponse('No such connection.'),
    409: errorResponse('A built-in connection cannot be deleted.'),
  },
});

function toJson(connection: ConnectionInfo): z.infer<typeof connectionSchema> {
  return {
    name: connection.name,
    kind: connection.kind,
    url: connection.url,
    description: connection.description,
    secretSource: connection.secretSource,
    hasSecret: connection.hasSecret,
    builtin: connection.builtin,
    createdBy: connection.createdBy,
    createdAt: iso(connection.createdAt),
    updatedAt: iso(connection.updatedAt),
  };
}

export function connections(deps: ConnectionsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  router.openapi(createConnectionRoute, async (c) => {
    const { name, ...input } = c.req.valid('json');
    const created = await deps.connections.create(name, input, actorOf(c));
    c.get('logger')().info({ connection: name, by: actorOf(c) }, 'connection created');
    return c.json(toJson(created), 201);
  });
  router.openapi(listConnectionsRoute, async (c) => {
    const list = await deps.connections.list(c.req.valid('query'));
    return c.json({ connections: list.map(toJson) }, 200);
  });
  router.openapi(getConnectionRoute, async (c) => {
    return c.json(toJson(await deps.connections.get(c.req.valid('param').name)), 200);
  });
  router.openapi(replaceConnectionRoute, async (c) => {
    const { name } = c.req.valid('param');
    const updated = await deps.connections.update(name, c.req.valid('json'));
    c.get('logger')().info({ connection: name, by: actorOf(c) }, 'connection replaced');
    return c.json(toJson(updated), 200);
  });
  router.openapi(deleteConnectionRoute, async (c) => {
    const { name } = c.req.valid('param');
    await deps.connections.delete(name);
    c.get('logger')().info({ connection: name, by: actorOf(c) }, 'connection deleted');
    return c.body(null, 204);
  });
  return router;
}
