import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ArtifactStore } from '../../storage/artifact-store.js';
import { type DatasetStore, type SchemaVersionRecord } from '../../storage/dataset-store.js';
import type { MetadataStore } from '../../storage/metadata-store.js';
import { acceptSchemaChange } from '../../storage/schema-changes.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { errorBodySchema, NotFoundError } from '../errors.js';
import { createRouter } from '../router.js';

export interface DatasetsDeps {
  readonly stores: { artifacts: ArtifactStore; metadata: MetadataStore; datasets: DatasetStore };
}

const datasetName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'letters, digits and ._- only, at most 128')
  .openapi({ param: { name: 'dataset', in: 'path' }, example: 'flights' });

const schemaVersionSchema = z
  .object({
    version: z.number().int().positive(),
    kind: z.enum(['inferred', 'accepted']),
    actor: z.string(),
    reason: z.string(),
    schemaUri: z.string().openapi({ description: 'The schema JSON, a content-addressed artifact.' }),
    reportArtifactId: z.string().nullable(),
    createdAt: z.string().openapi({ format: 'date-time' }),
  })
  .openapi('DatasetSchemaVersion');

const schemaStateSchema = z
  .object({
    dataset: z.string(),
    current: schemaVersionSchema,
    history: z.array(schemaVersionSchema).openapi({ description: 'Every version, newest first.' }),
  })
  .openapi('DatasetSchemaState');

const acceptBodySchema = z
  .object({
    reportUri: z
      .string()
      .startsWith('s3://')
      .openapi({ description: 'The validation report (Anomalies artifact) whose anomalies become the new normal.' }),
    reason: z.string().min(3).max(2000).openapi({ example: 'new airports opened in March' }),
    basedOnVersion: z.number().int().positive().optional().openapi({
      description: 'The schema version the report was made against; default: the one recorded with the report.',
    }),
  })
  .openapi('AcceptSchemaChange');

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: errorBodySchema } },
});

const getSchemaRoute = createRoute({
  method: 'get',
  path: '/{dataset}/schema',
  ...scoped('read'),
  tags: ['datasets'],
  summary: "A dataset's schema in force and its version history",
  request: { params: z.object({ dataset: datasetName }) },
  responses: {
    200: { description: 'The schema state.', content: { 'application/json': { schema: schemaStateSchema } } },
    404: errorResponse('The dataset has no schema yet.'),
  },
});

const acceptRoute = createRoute({
  method: 'post',
  path: '/{dataset}/schema/accept',
  ...scoped('approve'),
  tags: ['datasets'],
  summary: "Accept a validation report's anomalies as a new schema version",
  description:
    'The explicit, recorded action after a DataValidation failure: the schema is widened to accept what the report ' +
    'found, and the new version records who accepted it and why. Accepting the same report twice is a no-op.',
  request: {
    params: z.object({ dataset: datasetName }),
    body: { content: { 'application/json': { schema: acceptBodySchema } }, required: true },
  },
  responses: {
    201: { description: 'The new version.', content: { 'application/json': { schema: schemaVersionSchema } } },
    400: errorResponse('The request or the report is not acceptable.'),
    404: errorResponse('No such dataset schema or report.'),
    409: errorResponse('The schema changed since the report was made.'),
  },
});

function toJson(record: SchemaVersionRecord): z.infer<typeof schemaVersionSchema> {
  return {
    version: record.version,
    kind: record.kind,
    actor: record.actor,
    reason: record.reason,
    schemaUri: record.artifact.uri,
    reportArtifactId: record.reportArtifactId,
    createdAt: record.createdAt.toISOString(),
  };
}

/** `/v1/datasets`: dataset schemas and their recorded changes. */
export function datasets(deps: DatasetsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  router.openapi(getSchemaRoute, async (c) => {
    const { dataset } = c.req.valid('param');
    const history = await deps.stores.datasets.schemaHistory(dataset);
    const current = await deps.stores.datasets.currentSchema(dataset);
    if (!current) throw new NotFoundError(`dataset ${dataset} has no schema yet`);
    return c.json({ dataset, current: toJson(current), history: history.map(toJson) }, 200);
  });
  router.openapi(acceptRoute, async (c) => {
    const { dataset } = c.req.valid('param');
    const body = c.req.valid('json');
    const record = await acceptSchemaChange(deps.stores, { dataset, ...body, actor: actorOf(c) });
    return c.json(toJson(record), 201);
  });
  return router;
}
