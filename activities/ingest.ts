import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ApplicationFailure } from '@temporalio/activity';
import { z } from 'zod';
import { FailureType } from '../core/constants.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';
import { recordExecution } from './stage-lineage.js';

/** Where to read the bytes from: an absolute path on the worker's host, a `file://` URL or an `http(s)://` URL. */
const sourceSchema = z
  .string()
  .min(1)
  .refine((s) => path.isAbsolute(s) || /^(file|https?):\/\//.test(s), {
    message: 'expected an absolute path, a file:// URL or an http(s):// URL',
  });

const storeArtifactInputSchema = z.object({
  source: sourceSchema,
  kind: z.string().regex(/^[A-Za-z0-9._:/-]{1,128}$/, 'letters, digits and ._:/- only, at most 128'),
  contentType: z.string().min(1).optional(),
});
export type StoreArtifactInput = z.input<typeof storeArtifactInputSchema>;

const recordLineageInputSchema = z.object({
  workflowId: z.string().min(1),
  runId: z.string().min(1),
  stage: z.string().min(1),
  executionType: z.string().min(1),
  artifact: z.object({
    uri: z.string().min(1),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    bytes: z.number().int().nonnegative(),
    contentType: z.string(),
    kind: z.string(),
  }),
  artifactType: z.string().min(1),
  role: z.string().min(1),
  properties: z.record(z.string(), z.unknown()).optional(),
  context: z.object({ type: z.enum(['pipeline', 'pipeline_run', 'experiment']), name: z.string().min(1) }).optional(),
});
export type RecordLineageInput = z.input<typeof recordLineageInputSchema>;

export interface RecordedLineage {
  readonly artifactId: string;
  readonly executionId: string;
  readonly contextId: string | undefined;
}

/** Parses activity input; bad input is a non-retryable InvalidInput failure that names the field. */
export function parseActivityInput<T>(schema: z.ZodType<T>, input: unknown): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`);
  throw ApplicationFailure.create({
    type: FailureType.InvalidInput,
    message: `invalid input: ${problems.join('; ')}`,
    nonRetryable: true,
    details: [problems],
  });
}

/** Ingestion: bring outside bytes into the content-addressed store and record them in the metadata store. */
export function createIngestActivities(deps: ActivityDeps) {
  return {
    /**
     * Copies the source into the artifact store under its sha256. Idempotent: the same bytes give the same
     * reference and no second object, however often it is retried. A missing source is a non-retryable NotFound; a
     * server error while downloading is retried.
     */
    async storeArtifact(input: StoreArtifactInput): Promise<ArtifactRef> {
      const { source, kind, contentType } = parseActivityInput(storeArtifactInputSchema, input);
      const log = activityLogger(deps.logger);
      const options = { kind, ...(contentType ? { contentType } : {}) };
      let ref: ArtifactRef;
      if (/^https?:\/\//.test(source)) {
        const response = await fetch(source);
        if (response.status === 404 || response.status === 410) {
          throw ApplicationFailure.create({
            type: FailureType.NotFound,
            message: `source not found: ${source} answered ${response.status}`,
            nonRetryable: true,
          });
        }
        if (!response.ok || !response.body)
          throw new Error(`downloading ${source} failed with HTTP ${response.status}`);
        ref = await deps.artifacts.putStream(Readable.fromWeb(response.body), options);
      } else {
        const file = source.startsWith('file://') ? fileURLToPath(source) : source;
        if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
          throw ApplicationFailure.create({
            type: FailureType.NotFound,
            message: `source not found: ${file} is not a file on worker host`,
            nonRetryable: true,
          });
        }
        ref = await deps.artifacts.putFile(file, options);
      }
      log.info({ uri: ref.uri, bytes: ref.bytes }, 'artifact stored');
      return ref;
    },

    /**
     * Records the stage's execution, the artifact it produced, the output event and (optionally) the context, as
     * the ML Metadata model has them, for the workflow named in the input (see recordExecution). Every write is an
     * upsert on a natural key (execution: workflow id + stage; artifact: URI), so retries never create a second row.
     */
    async recordArtifactLineage(input: RecordLineageInput): Promise<RecordedLineage> {
      const parsed = parseActivityInput(recordLineageInputSchema, input);
      const { executionId, artifactIds, contextId } = await recordExecution(
        deps.metadata,
        {
          workflowId: parsed.workflowId,
          runId: parsed.runId,
          stage: parsed.stage,
          executionType: parsed.executionType,
          ...(parsed.context ? { context: parsed.context } : {}),
        },
        {
          inputs: [],
          outputs: [
            {
              role: parsed.role,
              type: parsed.artifactType,
              ref: parsed.artifact,
              ...(parsed.properties ? { properties: parsed.properties } : {}),
            },
          ],
        },
      );
      // The one output: recordExecution keys output ids by role.
      const artifactId = artifactIds[parsed.role]!;
      activityLogger(deps.logger).info({ artifactId, executionId }, 'lineage recorded');
      return { artifactId, executionId, contextId };
    },
  };
}
