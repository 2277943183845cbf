import type { PipelineStage } from '../core/stages.js';
import { Context } from '@temporalio/activity';
import type { JsonProperties } from '../schema/index.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import type { MetadataStore, PutContextInput } from '../storage/metadata-store.js';

/** One artifact a stage read or wrote, by the name it has on the stage (TFX's input/output keys). */
export interface StageArtifact {
  readonly role: string;
  /** Metadata artifact type: Dataset, Statistics, Schema, Anomalies, Transform, ... */
  readonly type: string;
  readonly ref: ArtifactRef;
  readonly properties?: JsonProperties;
}

export interface StageIdentity {
  /**
   * Stable name of the stage within its workflow (a pipeline stage's one name, see core/stages.ts); with the
   * workflow id, the execution's idempotency key.
   */
  readonly stage: PipelineStage | 'batch_score' | `${PipelineStage}-rejected`;
  /** The component that ran (ExampleGen, StatisticsGen, ...), as ML Metadata names execution types. */
  readonly executionType: string;
  /** The pipeline (or dataset) this belongs to; artifacts and the execution join its context. */
  readonly context?: string;
}

/** The workflow run an execution belongs to. */
export interface StageWorkflow {
  readonly workflowId: string;
  readonly runId: string;
}

/** The workflow of the calling activity. Stage activities run inside one; outside a workflow it throws. */
export function currentWorkflow(): StageWorkflow {
  const execution = Context.current().info.workflowExecution;
  if (!execution) throw new Error('stage activities run inside a workflow');
  return { workflowId: execution.workflowId, runId: execution.runId };
}

/** The idempotency key of a stage: one execution per workflow and stage, whatever the retries and run ids. */
export function stageKey(stage: string): string {
  return `${currentWorkflow().workflowId}/${stage}`;
}

/**
 * The result a stage recorded when it completed in this workflow before: an activity retried after its work was
 * done (worker lost before Temporal heard of the completion) returns it instead of doing the work again, so no
 * second set of artifacts can appear.
 */
export async function completedStageResult<T>(metadata: MetadataStore, stage: string): Promise<T | undefined> {
  const execution = await metadata.getExecutionByExternalId(stageKey(stage));
  if (execution?.state !== 'complete') return undefined;
  const result = (execution.properties as { result?: T } | null)?.result;
  return result;
}

/**
 * An execution recorded for a workflow named explicitly (an activity that records on behalf of its caller, like
 * ingestion's lineage step); {@link recordStage} is the same for the calling workflow's own stage.
 */
export interface ExecutionIdentity extends StageWorkflow {
  /** With the workflow id, the execution's idempotency key. */
  readonly stage: string;
  readonly executionType: string;
  /** The context the execution and its artifacts join. */
  readonly context?: Pick<PutContextInput, 'type' | 'name'>;
}

/** What a finished stage read and wrote, and the result a retry of it returns. */
export interface StageRecord {
  readonly inputs: readonly StageArtifact[];
  readonly outputs: readonly StageArtifact[];
  /** Kept on the execution for {@link completedStageResult}; without one, the execution keeps no result. */
  readonly result?: unknown;
}

export interface RecordedStage {
  readonly executionId: string;
  /** The metadata id of each output, by role. */
  readonly artifactIds: Record<string, string>;
  readonly contextId: string | undefined;
}

/** The stage's execution in its workflow, created on first use (idempotent: keyed by workflow id and stage). */
function startStageExecution(metadata: MetadataStore, identity: Omit<ExecutionIdentity, 'context'>) {
  return metadata.startExecution({
    externalId: `${identity.workflowId}/${identity.stage}`,
    type: identity.executionType,
    name: identity.stage,
    workflowId: identity.workflowId,
    temporalRunId: identity.runId,
    stage: identity.stage,
  });
}

/**
 * Records a finished stage of the calling workflow as ML Metadata: its execution (keyed by workflow id and stage),
 * each input and output artifact with its event, the pipeline context, and the stage's result for retries. Every
 * write is an upsert, so running it again changes nothing.
 *
 * @returns the execution id and the metadata id of each output by role.
 */
export async function recordStage(
  metadata: MetadataStore,
  identity: StageIdentity,
  stage: StageRecord,
): Promise<RecordedStage> {
  return recordExecution(
    metadata,
    {
      ...currentWorkflow(),
      stage: identity.stage,
      executionType: identity.executionType,
      ...(identity.context ? { context: { type: 'pipeline', name: identity.context } } : {}),
    },
    stage,
  );
}

/**
 * {@link recordStage} for a workflow and context named explicitly: the execution, each artifact with its event, the
 * context the execution and artifacts join, and the result, if any. Idempotent like recordStage: every write is an
 * upsert on a natural key (execution: workflow id + stage; artifact: URI; event; context: type + name).
 */
export async function recordExecution(
  metadata: MetadataStore,
  identity: ExecutionIdentity,
  stage: StageRecord,
): Promise<RecordedStage> {
  const execution = await startStageExecution(metadata, identity);
  const context = identity.context ? await metadata.putContext(identity.context) : undefined;
  if (context) await metadata.associateExecution(context.id, execution.id);
  const artifactIds: Record<string, string> = {};
  for (const [eventType, artifacts] of [
    ['input', stage.inputs],
    ['output', stage.outputs],
  ] as const) {
    for (const item of artifacts) {
      const artifact = await metadata.putArtifact({
        type: item.type,
        uri: item.ref.uri,
        sha256: item.ref.sha256,
        bytes: item.ref.bytes,
        contentType: item.ref.contentType,
        properties: { kind: item.ref.kind, ...item.properties },
      });
      await metadata.recordEvent({
        artifactId: artifact.id,
        executionId: execution.id,
        type: eventType,
        role: item.role,
      });
      if (context) await metadata.attributeArtifact(context.id, artifact.id);
      if (eventType === 'output') artifactIds[item.role] = artifact.id;
    }
  }
  if (execution.state === 'running') {
    await metadata.completeExecution(execution.id, {
      state: 'complete',
      ...(stage.result === undefined ? {} : { properties: { result: stage.result as JsonProperties[string] } }),
    });
  }
  return { executionId: execution.id, artifactIds, contextId: context?.id };
}

/** Marks the stage's execution failed (with why), so a failed run is visible in the metadata store too. */
export async function recordStageFailure(
  metadata: MetadataStore,
  identity: StageIdentity,
  failure: { type: string; message: string; reportUri?: string },
): Promise<void> {
  const execution = await startStageExecution(metadata, { ...currentWorkflow(), ...identity });
  if (execution.state === 'running') {
    await metadata.completeExecution(execution.id, { state: 'failed', properties: { failure } });
  }
}
