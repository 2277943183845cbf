/**
 * The one path by which anything but an HTTP call starts a run: a schedule's action, a settled burst of new objects,
 * a monitoring window's retrain. Each event is recorded (started or skipped, with why) under a dedupe key that is
 * also the run's idempotency key, so a retried activity, a duplicate notification or a recomputed window starts at
 * most one run; a run of the pipeline still in progress makes the trigger skip unless the definition allows overlap.
 */
import type { JsonProperties } from '../schema/columns.js';
import type { PipelineTrigger, TriggerKind } from '../schema/index.js';
import type { TriggerStore } from '../storage/trigger-store.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import { pipelineDefinitionSchema } from './definition.js';
import { RunNotFoundError, startPipelineRun, type PipelineRunnerDeps } from './runs.js';

export interface TriggerRequest {
  readonly pipeline: string;
  /** Default: the newest version. */
  readonly version?: number;
  readonly kind: TriggerKind;
  /** What fired it: a schedule id, a watched prefix, a monitoring window id. Recorded as the run's `triggeredBy`. */
  readonly source: string;
  /** One event, one key: the same key never records a second event nor starts a second run. */
  readonly dedupeKey: string;
  /**
   * The event's nominal time (ISO 8601): a schedule action's scheduled time (a backfilled action's past time), else
   * when it fired. A window `relativeTo: 'trigger'` is measured back from it; absent: from the run's start.
   */
  readonly triggeredAt?: string;
  readonly details?: JsonProperties;
}

export interface TriggerOutcome {
  readonly triggerId: string;
  readonly status: 'started' | 'skipped';
  readonly runId?: string;
  readonly reason?: string;
  /** False when the dedupe key had already been recorded (a retry or duplicate): nothing new happened. */
  readonly created: boolean;
}

/** A stored definition that no longer parses (a field refused since it was saved): the trigger cannot run it. */
export class StoredDefinitionError extends DomainError {
  override readonly name = 'StoredDefinitionError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('invalid', message, { code: 'invalid_definition', ...options });
  }
}

export interface TriggerDeps {
  readonly triggers: TriggerStore;
  readonly runner: PipelineRunnerDeps;
}

const outcomeOf = (row: PipelineTrigger, created: boolean): TriggerOutcome => ({
  triggerId: row.id,
  status: row.status,
  ...(row.runId ? { runId: row.runId } : {}),
  ...(row.reason ? { reason: row.reason } : {}),
  created,
});

/** Why an event starts no run, as a guard answers it: recorded as the skipped event's reason and details. */
export interface TriggerSkip {
  readonly reason: string;
  readonly details?: JsonProperties;
}

export interface FireTriggerOptions {
  /**
   * Asked under the pipeline's trigger lock, after the event's dedupe key is found new and before a run is looked
   * for or started: an answer skips the event (a monitoring retrain's cooldown). Checks made here see every event
   * of the pipeline recorded before, and none recorded while they run.
   */
  readonly guard?: () => Promise<TriggerSkip | undefined>;
}

/**
 * Records a trigger event and starts its run unless one of the pipeline is in progress (and overlap is not allowed)
 * or the guard says to skip it.
 *
 * @throws RunNotFoundError when the pipeline or version does not exist (nothing is recorded).
 */
export async function fireTrigger(
  deps: TriggerDeps,
  request: TriggerRequest,
  options: FireTriggerOptions = {},
): Promise<TriggerOutcome> {
  const seen = await deps.triggers.findByDedupeKey(request.dedupeKey);
  if (seen) return outcomeOf(seen, false);
  const version = await deps.runner.pipelines.getVersion(request.pipeline, request.version);
  if (!version) {
    throw new RunNotFoundError(
      request.version === undefined
        ? `pipeline ${request.pipeline} does not exist`
        : `pipeline ${request.pipeline} has no version ${request.version}`,
    );
  }
  // A stored definition that no longer parses cannot run: a final failure, not one retried for ever.
  const parsed = pipelineDefinitionSchema.safeParse(version.definition);
  if (!parsed.success) {
    throw new StoredDefinitionError(
      `pipeline ${request.pipeline} v${version.version}: its stored definition is no longer valid ` +
        `(${parsed.error.issues[0]?.message ?? 'invalid'}); save a corrected version`,
    );
  }
  const allowOverlap = parsed.data.triggers.allowOverlap;
  return deps.triggers.withPipelineLock(request.pipeline, async () => {
    const again = await deps.triggers.findByDedupeKey(request.dedupeKey);
    if (again) return outcomeOf(again, false);
    const details: JsonProperties | undefined =
      request.triggeredAt !== undefined ? { ...request.details, triggeredAt: request.triggeredAt } : request.details;
    const base = {
      pipeline: request.pipeline,
      kind: request.kind,
      source: request.source,
      dedupeKey: request.dedupeKey,
      ...(details ? { details } : {}),
    };
    // A run this key already started (an attempt that died before recording the event) is this event's run, not
    // one "in progress" that would make it skip.
    const own = await deps.triggers.runByIdempotencyKey(request.dedupeKey);
    const skip = own ? undefined : await options.guard?.();
    if (skip) {
      const row = await deps.triggers.record({
        ...base,
        status: 'skipped',
        reason: skip.reason,
        details: { ...request.details, ...skip.details },
      });
      return outcomeOf(row, true);
    }
    if (!own && !allowOverlap) {
      const busy = await deps.triggers.runInProgress(request.pipeline);
      if (busy) {
        const row = await deps.triggers.record({
          ...base,
          status: 'skipped',
          reason: `run ${busy.id} of ${request.pipeline} is ${busy.status}; runs of this pipeline do not overlap`,
          details: { ...details, runInProgress: busy.id },
        });
        return outcomeOf(row, true);
      }
    }
    const { run } = await startPipelineRun(deps.runner, {
      pipeline: request.pipeline,
      ...(request.version !== undefined ? { version: request.version } : {}),
      trigger: request.kind,
      triggeredBy: request.source,
      idempotencyKey: request.dedupeKey,
      ...(request.triggeredAt !== undefined ? { triggeredAt: request.triggeredAt } : {}),
    });
    const row = await deps.triggers.record({
      ...base,
      status: 'started',
      runId: run.id,
      reason: `started run ${run.id}`,
    });
    return outcomeOf(row, true);
  });
}
