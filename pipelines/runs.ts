/**
 * Starting and steering pipeline runs from outside a workflow: the HTTP API, the demo, the CLI and tests all go
 * through here, so a run is started, resumed, approved or cancelled the same way whoever asks.
 */
import { randomUUID } from 'node:crypto';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdReusePolicy,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type Client,
} from '@temporalio/client';
import { SearchAttributeKeys } from '../core/constants.js';
import type { PipelineRun } from '../schema/pipelines.js';
import type { PipelineStore } from '../storage/pipeline-store.js';
import {
  approveUpdate,
  pipelineProgressQuery,
  rejectUpdate,
  trainingPipeline,
  type ApprovalDecision,
  type ApprovalRequest,
  type PipelineProgress,
  type TrainingPipelineInput,
} from '../workflows/index.js';
import { modelNameOf, pipelineDefinitionSchema, type PipelineDefinition } from './definition.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

export interface PipelineRunnerDeps {
  readonly client: Client;
  readonly pipelines: PipelineStore;
  /** The main task queue: where the pipeline workflow and its non-training stages run. */
  readonly taskQueue: string;
  readonly trainingTaskQueue: string;
  /** How long an approval or rejection waits for the run's workflow to take it. Default {@link DECISION_TIMEOUT_MS}. */
  readonly decisionTimeoutMs?: number;
  /**
   * How long a request waits for a short workflow it started (a monitoring window computed now) before answering 503
   * with the workflow's id; the workflow goes on. Default 30 s.
   */
  readonly answerTimeoutMs?: number;
}

/** A request that conflicts with the run's state (resume a running run, approve one that is not waiting, ...). */
export class RunStateError extends DomainError {
  override readonly name = 'RunStateError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('conflict', message, options);
  }
}

export class RunNotFoundError extends DomainError {
  override readonly name = 'RunNotFoundError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('not_found', message, options);
  }
}

/** A start request that cannot be taken as given (a trigger time that is not a time). */
export class InvalidRunRequestError extends DomainError {
  override readonly name = 'InvalidRunRequestError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('invalid', message, options);
  }
}

/** Thrown when a run's row was written but Temporal could not be reached to start its workflow; worth retrying. */
export class RunStartError extends DomainError {
  override readonly name = 'RunStartError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('unavailable', message, options);
  }
}

/**
 * How long an approval or rejection waits for the run's workflow to take it. The workflow answers in milliseconds
 * when a worker runs; without one the request would wait as long as the caller's connection, holding it open.
 */
export const DECISION_TIMEOUT_MS = 10_000;

/** Thrown when a run's workflow did not take a decision in time (no worker running it now); worth retrying. */
export class DecisionTimeoutError extends DomainError {
  override readonly name = 'DecisionTimeoutError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('unavailable', message, { code: 'decision_pending', ...options });
  }
}

export interface StartRunRequest {
  readonly pipeline: string;
  /** Default: the newest version. */
  readonly version?: number;
  readonly trigger: string;
  readonly triggeredBy?: string;
  /** One key never starts two runs: a repeated request (or a concurrent one) gets the run the key started. */
  readonly idempotencyKey?: string;
  /**
   * The trigger's nominal time (a schedule action's scheduled time): a window `relativeTo: 'trigger'` is measured
   * back from it. Default: the run's start.
   */
  readonly triggeredAt?: string | Date;
}

export interface StartedRun {
  readonly run: PipelineRun;
  /** False when the idempotency key had already started this run. */
  readonly created: boolean;
}

function workflowIdFor(pipeline: string, runId: string): string {
  return `pipeline-${pipeline}-${runId}`;
}

/**
 * Starts a run of a stored pipeline version. The run row is written first (keyed by the idempotency key) and its
 * workflow id is derived from it, so concurrent requests with one key converge on one row and one workflow: the
 * losers' start requests meet the winner's workflow id and are absorbed.
 *
 * @throws RunNotFoundError when the pipeline or version does not exist.
 * @throws RunStateError when the key was used for a different pipeline.
 */
export async function startPipelineRun(deps: PipelineRunnerDeps, request: StartRunRequest): Promise<StartedRun> {
  const version = await deps.pipelines.getVersion(request.pipeline, request.version);
  if (!version) {
    throw new RunNotFoundError(
      request.version === undefined
        ? `pipeline ${request.pipeline} does not exist`
        : `pipeline ${request.pipeline} has no version ${request.version}`,
    );
  }
  const triggeredAt = request.triggeredAt === undefined ? undefined : new Date(request.triggeredAt);
  if (triggeredAt && !Number.isFinite(triggeredAt.getTime())) {
    throw new InvalidRunRequestError(`triggeredAt ${JSON.stringify(request.triggeredAt)} is not a valid time`);
  }
  const runId = randomUUID();
  const { run, created } = await deps.pipelines.createRun({
    runId,
    pipelineVersionId: version.id,
    workflowId: workflowIdFor(request.pipeline, runId),
    trigger: request.trigger,
    ...(request.triggeredBy ? { triggeredBy: request.triggeredBy } : {}),
    ...(request.idempotencyKey ? { idempotencyKey: request.idempotencyKey } : {}),
  });
  if (run.pipelineVersionId !== version.id) {
    const existing = await deps.pipelines.getVersionById(run.pipelineVersionId);
    const samePipeline = existing && existing.pipelineId === version.pipelineId;
    if (!samePipeline) {
      throw new RunStateError(`idempotency key ${request.idempotencyKey} already started a run of another pipeline`);
    }
  }
  const runVersion =
    run.pipelineVersionId === version.id ? version : await deps.pipelines.getVersionById(run.pipelineVersionId);
  if (!runVersion) throw new RunNotFoundError(`pipeline version ${run.pipelineVersionId} does not exist`);
  try {
    await startWorkflow(deps, run, request.pipeline, runVersion.version, runVersion.definition, 'start', triggeredAt);
  } catch (error) {
    if (error instanceof DomainError) throw error;
    // The row is written but Temporal did not take the workflow: the run is failed (resumable), never stuck pending.
    const reason = error instanceof Error ? error.message : String(error);
    await deps.pipelines.failPendingRun(run.workflowId, {
      type: 'WorkflowNotStarted',
      message: `the run's workflow could not be started: ${reason}`,
    });
    throw new RunStartError(
      `run ${run.id} could not be started (${reason}); it is marked failed and can be resumed once Temporal answers`,
      { cause: error, details: { runId: run.id } },
    );
  }
  return { run, created };
}

async function startWorkflow(
  deps: PipelineRunnerDeps,
  run: PipelineRun,
  pipeline: string,
  version: number,
  storedDefinition: unknown,
  mode: 'start' | 'resume',
  triggeredAt?: Date,
): Promise<void> {
  // Stored definitions were validated when saved; parsing again fills defaults added since.
  const definition: PipelineDefinition = pipelineDefinitionSchema.parse(storedDefinition);
  const input: TrainingPipelineInput = {
    runId: run.id,
    pipeline,
    pipelineVersion: version,
    definition,
    trigger: run.trigger,
    ...(run.triggeredBy ? { triggeredBy: run.triggeredBy } : {}),
    // A resumed run has none here: the spans it resolved are on its row, or its trigger event records the time.
    ...(triggeredAt ? { triggeredAt: triggeredAt.toISOString() } : {}),
    trainingTaskQueue: deps.trainingTaskQueue,
  };
  try {
    await deps.client.workflow.start(trainingPipeline, {
      workflowId: run.workflowId,
      taskQueue: deps.taskQueue,
      args: [input],
      // A run id is used once; only a resume may start a failed or cancelled run's workflow id again.
      workflowIdReusePolicy:
        mode === 'resume' ? WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY : WorkflowIdReusePolicy.REJECT_DUPLICATE,
      typedSearchAttributes: [
        { key: SearchAttributeKeys.pipeline, value: pipeline },
        { key: SearchAttributeKeys.model, value: modelNameOf(definition) },
        { key: SearchAttributeKeys.trigger, value: run.trigger },
        { key: SearchAttributeKeys.status, value: 'running' },
      ],
      staticSummary: `${pipeline} v${version} (${run.trigger})`,
    });
  } catch (error) {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    if (mode === 'resume') throw new RunStateError(`run ${run.id} is running or already succeeded`);
    // start: another request with the same key started it first, or it already ran: either way it is this run.
  }
}

/**
 * Starts a failed or cancelled run again under its workflow id: stages it completed are reused, and the run goes
 * on from the stage that failed (after the cause was fixed: data repaired, a service back).
 */
export async function resumePipelineRun(deps: PipelineRunnerDeps, runId: string): Promise<PipelineRun> {
  const run = await deps.pipelines.getRun(runId);
  if (!run) throw new RunNotFoundError(`run ${runId} does not exist`);
  if (run.status !== 'failed' && run.status !== 'cancelled') {
    throw new RunStateError(`run ${runId} is ${run.status}; only failed or cancelled runs can be resumed`);
  }
  const version = await deps.pipelines.getVersionById(run.pipelineVersionId);
  if (!version) throw new RunNotFoundError(`pipeline version ${run.pipelineVersionId} does not exist`);
  await startWorkflow(deps, run, run.pipelineName, version.version, version.definition, 'resume');
  return run;
}

async function decide(
  deps: PipelineRunnerDeps,
  runId: string,
  approved: boolean,
  request: ApprovalRequest,
): Promise<ApprovalDecision> {
  const run = await deps.pipelines.getRun(runId);
  if (!run) throw new RunNotFoundError(`run ${runId} does not exist`);
  const decision = approved ? 'approve' : 'reject';
  const timeoutMs = deps.decisionTimeoutMs ?? DECISION_TIMEOUT_MS;
  try {
    // One update id per run, decision and actor: the same caller's retry after a timeout joins its first request's
    // update instead of deciding twice, and answers with what the workflow did with it; another caller's is its own.
    return await deps.client.withDeadline(Date.now() + timeoutMs, () =>
      deps.client.workflow.getHandle(run.workflowId).executeUpdate(approved ? approveUpdate : rejectUpdate, {
        args: [request],
        updateId: `${decision}-${runId}-${request.actor}`,
      }),
    );
  } catch (error) {
    if (error instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isDeadlineExceeded(error)) {
      throw new DecisionTimeoutError(
        `run ${runId} did not take the ${decision} decision within ${timeoutMs / 1000} s (is a worker ` +
          'running?); it may still apply once one runs: retry the same request to learn the outcome',
        { cause: error },
      );
    }
    if (error instanceof WorkflowUpdateFailedError) {
      throw new RunStateError(error.cause?.message ?? `run ${runId} is not waiting for an approval`);
    }
    if (error instanceof Error && error.name === 'WorkflowNotFoundError') {
      throw new RunStateError(`run ${runId} is not waiting for an approval`);
    }
    throw error;
  }
}

function isDeadlineExceeded(error: unknown): boolean {
  // gRPC status 4, DEADLINE_EXCEEDED, as the client raises it when withDeadline's deadline passes.
  return (
    typeof error === 'object' &&
    error !== null &&
    ((error as { code?: unknown }).code === 4 || (error as { cause?: { code?: unknown } }).cause?.code === 4)
  );
}

export const approvePipelineRun = (deps: PipelineRunnerDeps, runId: string, request: ApprovalRequest) =>
  decide(deps, runId, true, request);
export const rejectPipelineRun = (deps: PipelineRunnerDeps, runId: string, request: ApprovalRequest) =>
  decide(deps, runId, false, request);

/** Requests cancellation; the run stops its current stage (training frees its slot) and records `cancelled`. */
export async function cancelPipelineRun(deps: PipelineRunnerDeps, runId: string): Promise<void> {
  const run = await deps.pipelines.getRun(runId);
  if (!run) throw new RunNotFoundError(`run ${runId} does not exist`);
  if (!['pending', 'running', 'waiting_approval'].includes(run.status)) {
    throw new RunStateError(`run ${runId} is ${run.status}; only a pending or running run can be cancelled`);
  }
  await deps.client.workflow.getHandle(run.workflowId).cancel();
}

/** The live progress of a running run (current stage, pending approval), or undefined when it is not running. */
export async function runProgress(deps: PipelineRunnerDeps, workflowId: string): Promise<PipelineProgress | undefined> {
  try {
    return await deps.client.workflow.getHandle(workflowId).query(pipelineProgressQuery);
  } catch {
    return undefined;
  }
}
