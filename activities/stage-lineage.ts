import type { PipelineStage } from '../core/stages.js';
import { Context } from '@temporalio/activity';
import type { JsonProperties } from '../schema/index.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';

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

function currentWorkflow(): { workflowId: string; runId: string } {
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

/** The stage's execution in this workflow, created on first use (idempotent: keyed by workflow id and stage). */
function startStageExecution(metadata: MetadataStore, identity: StageIdentity) {
  const { workflowId, runId } = currentWorkflow();
  return metadata.startExecution({
    externalId: `${workflowId}/${identity.stage}`,
    type: identity.executionType,
    name: identity.stage,
    workflowId,
    temporalRunId: runId,
    stage: identity.stage,
  });
}

/**
 * Records a finished stage as ML Metadata: its execution (keyed by workflow id and stage), each input and output
 * artifact with its event, the pipeline context, and the stage's result for retries. Every write is an upsert, so
 * running it again changes nothing.
 *
 * @returns the execution id and the metadata id of each output by role.
 */
export async function recordStage(
  metadata: MetadataStore,
  identity: StageIdentity,
  stage: { inputs: readonly StageArtifact[]; outputs: readonly StageArtifact[]; result: unknown },
): Promise<{ executionId: string; artifactIds: Record<string, string> }> {
  const execution = await startStageExecution(metadata, identity);
  const context = identity.context
    ? await metadata.putContext({ type: 'pipeline', name: identity.context })
    : undefined;
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
      properties: { result: stage.result as JsonProperties[string] },
    });
  }
  return { executionId: execution.id, artifactIds };
}

/** Marks the stage's execution failed (with why), so a failed run is visible in the metadata store too. */
export async function recordStageFailure(
  metadata: MetadataStore,
  identity: StageIdentity,
  failure: { type: string; message: string; reportUri?: string },
): Promise<void> {
  const execution = await startStageExecution(metadata, identity);
  if (execution.state === 'running') {
    await metadata.completeExecution(execution.id, { state: 'failed', properties: { failure } });
  }
}
