/** `GET /v1/artifacts/{id}`: one artifact of the metadata store with the executions that wrote and read it. */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { LineageStore } from '../../storage/lineage-store.js';
import { scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, iso, jsonResponse, MAX_PAGE_SIZE, UUID_PATTERN } from './common.js';
import { artifactDetailsSchema, artifactEventJson } from './lineage-responses.js';

export interface ArtifactsDeps {
  readonly lineage: LineageStore;
}

const getArtifactRoute = createRoute({
  method: 'get',
  path: '/{id}',
  ...scoped('read'),
  tags: ['lineage'],
  summary: 'An artifact with the executions that produced and consumed it',
  description:
    `Each list is oldest first and holds at most ${MAX_PAGE_SIZE} executions (\`truncated\` says when one was cut); ` +
    'the whole graph is `GET /v1/lineage?artifact={id}`.',
  request: {
    params: z.object({
      id: z
        .string()
        .regex(UUID_PATTERN, 'must be a UUID')
        .openapi({ param: { name: 'id', in: 'path' }, example: '0f8fad5b-d9cb-469f-a165-70867728950e' }),
    }),
  },
  responses: {
    200: jsonResponse('The artifact.', artifactDetailsSchema),
    400: errorResponse('The id is not a UUID.'),
    404: errorResponse('No such artifact.'),
  },
});

/** `/v1/artifacts`: the metadata store's artifacts. */
export function artifacts(deps: ArtifactsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  router.openapi(getArtifactRoute, async (c) => {
    const { id } = c.req.valid('param');
    const details = await deps.lineage.artifact(id, MAX_PAGE_SIZE);
    if (!details) throw new NotFoundError(`artifact ${id} does not exist`);
    const { artifact: a } = details;
    const lineage = `/v1/lineage?artifact=${a.id}&direction=`;
    return c.json(
      {
        id: a.id,
        type: a.type,
        uri: a.uri,
        sha256: a.sha256,
        bytes: a.bytes,
        contentType: a.contentType,
        properties: a.properties,
        state: a.state,
        createdAt: iso(a.createdAt),
        producedBy: details.producedBy.map(artifactEventJson),
        consumedBy: details.consumedBy.map(artifactEventJson),
        truncated: details.truncated,
        links: { upstream: `${lineage}upstream`, downstream: `${lineage}downstream` },
      },
      200,
    );
  });
  return router;
}
