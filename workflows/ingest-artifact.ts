import { FINAL_FAILURE_TYPES } from '../core/stages.js';
import { proxyActivities, workflowInfo, type ActivityOptions } from '@temporalio/workflow';
import type { MainActivities } from '../activities/index.js';

/** The ingestion stage's retry profile: transient S3/Postgres/network errors retry with backoff; typed ones don't. */
const ingestActivity: ActivityOptions = {
  startToCloseTimeout: '10 minutes',
  retry: {
    initialInterval: '500ms',
    backoffCoefficient: 2,
    maximumInterval: '30s',
    nonRetryableErrorTypes: [...FINAL_FAILURE_TYPES],
  },
};

const { storeArtifact, recordArtifactLineage } = proxyActivities<MainActivities>(ingestActivity);

export interface IngestArtifactInput {
  /** Absolute path on a worker host, file:// or http(s):// URL. */
  readonly source: string;
  /** Metadata artifact type: Dataset, Model, Report, ... */
  readonly artifactType: string;
  readonly contentType?: string;
  readonly context?: { readonly type: 'pipeline' | 'pipeline_run' | 'experiment'; readonly name: string };
}

export interface IngestArtifactResult {
  readonly artifact: { uri: string; sha256: string; bytes: number; contentType: string; kind: string };
  readonly artifactId: string;
  readonly executionId: string;
}

/**
 * Brings one file into the platform: stores it content-addressed in S3, then records the execution, the artifact
 * and its lineage in the metadata store. Retries of either step never duplicate anything.
 */
export async function ingestArtifact(input: IngestArtifactInput): Promise<IngestArtifactResult> {
  const { workflowId, runId } = workflowInfo();
  const artifact = await storeArtifact({
    source: input.source,
    kind: input.artifactType,
    ...(input.contentType ? { contentType: input.contentType } : {}),
  });
  const lineage = await recordArtifactLineage({
    workflowId,
    runId,
    stage: 'ingest',
    executionType: 'Importer',
    artifact,
    artifactType: input.artifactType,
    role: 'result',
    ...(input.context ? { context: input.context } : {}),
  });
  return { artifact, artifactId: lineage.artifactId, executionId: lineage.executionId };
}
