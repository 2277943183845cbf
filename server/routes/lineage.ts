/**
 * `GET /v1/lineage`: the lineage graph around an artifact, a model version, a pipeline run or a deployment, upstream
 * (what it came from) or downstream (what came from it), as JSON, Graphviz DOT or Mermaid. One artifact with its
 * producing and consuming executions is `GET /v1/artifacts/{id}` (artifacts.ts).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { LINEAGE_DIRECTIONS, type LineageAnchor, type LineageStore } from '../../storage/lineage-store.js';
import { scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';
import { errorResponse, NAME_PATTERN, UUID_PATTERN } from './common.js';
import { lineageGraphJson, lineageGraphSchema } from './lineage-responses.js';
import { LINEAGE_FORMATS, LINEAGE_TEXT_TYPES, lineageDot, lineageMermaid } from './lineage-text.js';

export interface LineageDeps {
  readonly lineage: LineageStore;
}

export const DEFAULT_LINEAGE_DEPTH = 10;
/** A walk deeper than this is refused: every level is a query, and our pipelines' graphs end within about 12. */
export const MAX_LINEAGE_DEPTH = 50;
/** Past this many nodes a graph is cut (`truncated: true`): bigger is no longer readable, and slow to draw. */
export const MAX_LINEAGE_NODES = 5000;

const ANCHORS = ['artifact', 'modelVersion', 'run', 'deployment'] as const;

const uuidAnchor = (name: string, description: string) =>
  z
    .string()
    .regex(UUID_PATTERN, 'must be a UUID')
    .optional()
    .openapi({ param: { name, in: 'query' }, description });

const querySchema = z
  .object({
    artifact: uuidAnchor('artifact', 'An artifact id (a dataset snapshot, a model, ...).'),
    modelVersion: uuidAnchor('modelVersion', 'A model version id.'),
    run: uuidAnchor('run', 'A pipeline run id: its executions are part of the anchor.'),
    deployment: z
      .string()
      .regex(NAME_PATTERN, 'letters, digits and ._- only, at most 128')
      .optional()
      .openapi({
        param: { name: 'deployment', in: 'query' },
        description: 'A deployment name: upstream of it is what it serves now.',
      }),
    direction: z
      .enum(LINEAGE_DIRECTIONS)
      .default('upstream')
      .openapi({ param: { name: 'direction', in: 'query' }, description: 'Default `upstream`.' }),
    depth: z.coerce
      .number()
      .int()
      .min(1)
      .max(MAX_LINEAGE_DEPTH)
      .default(DEFAULT_LINEAGE_DEPTH)
      .openapi({
        param: { name: 'depth', in: 'query' },
        description: `The most edges from the anchor. Default ${DEFAULT_LINEAGE_DEPTH}, at most ${MAX_LINEAGE_DEPTH}.`,
      }),
    format: z
      .enum(LINEAGE_FORMATS)
      .default('json')
      .openapi({ param: { name: 'format', in: 'query' }, description: 'Default `json`.' }),
  })
  .superRefine((query, ctx) => {
    const given = ANCHORS.filter((anchor) => query[anchor] !== undefined);
    if (given.length === 1) return;
    ctx.addIssue({
      code: 'custom',
      // The second anchor is the field at fault; with none, the query as a whole.
      path: given.length > 1 ? [given[1]!] : [],
      message: `give exactly one of ${ANCHORS.join(', ')}${given.length > 1 ? ` (got ${given.join(', ')})` : ''}`,
    });
  });

const getLineageRoute = createRoute({
  method: 'get',
  path: '/',
  ...scoped('read'),
  tags: ['lineage'],
  summary: 'The lineage graph of an artifact, a model version, a run or a deployment',
  description:
    'Nodes are artifacts, executions, pipeline runs, model versions and deployments; edges point the way data ' +
    'flows. `upstream` of a model version or a deployment is what produced what it serves; `downstream` of a ' +
    `dataset snapshot is every run, model version and deployment that used it. Each node appears once, at its ` +
    `fewest edges from the anchor; past ${MAX_LINEAGE_NODES} nodes the graph is cut and says \`truncated\`.`,
  request: { query: querySchema },
  responses: {
    200: {
      description: 'The graph: JSON, DOT (`format=dot`) or a Mermaid flowchart (`format=mermaid`).',
      content: {
        'application/json': { schema: lineageGraphSchema },
        'text/vnd.graphviz': { schema: z.string() },
        'text/plain': { schema: z.string() },
      },
    },
    400: errorResponse('No anchor or several, an id that is not a UUID, or a depth out of range.'),
    404: errorResponse('The anchor does not exist.'),
  },
});

function anchorOf(query: z.infer<typeof querySchema>): { anchor: LineageAnchor; what: string } {
  if (query.artifact) return { anchor: { kind: 'artifact', id: query.artifact }, what: `artifact ${query.artifact}` };
  if (query.modelVersion) {
    return {
      anchor: { kind: 'model_version', id: query.modelVersion },
      what: `model version ${query.modelVersion}`,
    };
  }
  if (query.run) return { anchor: { kind: 'run', id: query.run }, what: `run ${query.run}` };
  // The query schema admits exactly one anchor, so this is the deployment.
  return { anchor: { kind: 'deployment', name: query.deployment! }, what: `deployment ${query.deployment!}` };
}

/** `/v1/lineage`: lineage graphs. */
export function lineage(deps: LineageDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  router.openapi(getLineageRoute, async (c) => {
    const query = c.req.valid('query');
    const { anchor, what } = anchorOf(query);
    const graph = await deps.lineage.graph({
      anchor,
      direction: query.direction,
      depth: query.depth,
      maxNodes: MAX_LINEAGE_NODES,
    });
    if (!graph) throw new NotFoundError(`${what} does not exist`);
    const json = lineageGraphJson(graph);
    if (query.format === 'json') return c.json(json, 200);
    const text = query.format === 'dot' ? lineageDot(json) : lineageMermaid(json);
    return c.body(text, 200, { 'content-type': LINEAGE_TEXT_TYPES[query.format] });
  });
  return router;
}
