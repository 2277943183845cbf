/**
 * A run's sliding window, resolved once: the definition's `window` measured back from the newest event time in the
 * source (or the run's start) into concrete train and eval spans, stored on the run's row. The pipeline workflow
 * calls it before extracting; a retry, a replay or a resumed run gets the spans the run first stored.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { toApplicationFailure } from '../core/application-failure.js';
import type { PostgresSource } from '../data/extract.js';
import { newestTime } from '../data/newest-time.js';
import type { RunDetails } from '../storage/pipeline-store.js';
import { TriggerStore } from '../storage/trigger-store.js';
import { resolveWindow, type ResolvedSpans, type SlidingWindow, type WindowAnchor } from '../pipelines/window.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';
import { currentWorkflow } from './stage-lineage.js';
import { inWorkDir } from './work-dir.js';

export interface ResolveRunWindowInput {
  /** The definition's source, as the extract stage is given it. */
  readonly source: string | PostgresSource;
  readonly format?: 'csv' | 'parquet' | 'json';
  readonly window: SlidingWindow;
  /** The trigger's nominal time (ISO 8601), which `relativeTo: 'trigger'` measures back from. */
  readonly triggeredAt?: string;
}

/** Activities that resolve a run's inputs before its stages; served by the main task queue. */
export function createRunWindowActivities(deps: ActivityDeps) {
  const triggers = TriggerStore.over(deps.pgPool);

  /** The nominal time of the trigger that started the run, else its start; now for a workflow that is no run. */
  async function triggerTimeOf(input: ResolveRunWindowInput, run: RunDetails | undefined): Promise<Date> {
    const given = input.triggeredAt === undefined ? undefined : new Date(input.triggeredAt);
    if (given && Number.isFinite(given.getTime())) return given;
    if (!run) return new Date();
    // A resumed run's workflow input has no trigger time: its trigger event recorded it.
    const recorded = (await triggers.findByRunId(run.pipelineName, run.id))?.details?.triggeredAt;
    const fromEvent = typeof recorded === 'string' ? new Date(recorded) : undefined;
    return fromEvent && Number.isFinite(fromEvent.getTime()) ? fromEvent : run.startedAt;
  }

  return {
    /**
     * The run's window spans: the ones stored on its row when it has some (a retry or a resumed run), else resolved
     * now and stored, the first write winning. `relativeTo: 'data'` reads `max(column)` of the source within the data
     * access policy (objects land in the extract stage's cache, so its extraction does not download them again);
     * `'trigger'` measures back from the trigger's nominal time (`triggeredAt`: a schedule action's scheduled time, so
     * each backfilled action gets its own window), else the one its trigger event recorded, else the run's start.
     * Idempotent. A workflow that is not a pipeline run gets spans that are not stored (measured from its
     * `triggeredAt`, else now, for `'trigger'`).
     *
     * @throws a non-retryable failure, of the extract stage, when the source or its column cannot serve a window.
     */
    async resolveRunWindow(input: ResolveRunWindowInput): Promise<ResolvedSpans> {
      const { workflowId } = currentWorkflow();
      const run = await deps.pipelines.getRunByWorkflowId(workflowId);
      if (run?.resolvedSpans) return run.resolvedSpans;
      let anchor: WindowAnchor;
      if (input.window.relativeTo === 'trigger') {
        anchor = { kind: 'trigger', at: await triggerTimeOf(input, run) };
      } else {
        const at = await inWorkDir(deps.scratchDir, 'window', (workDir) =>
          newestTime({
            source: input.source,
            ...(input.format ? { format: input.format } : {}),
            column: input.window.column,
            workDir,
            cacheDir: path.join(deps.scratchDir, 'objects'),
            objectSource: deps.objects,
            policy: deps.dataAccess.policy,
            connections: deps.dataAccess.connections,
            postgres: {
              ...(deps.dataAccess.connectTimeoutMs ? { connectTimeoutMs: deps.dataAccess.connectTimeoutMs } : {}),
              ...(deps.dataAccess.statementTimeoutMs ? { statementTimeoutMs: deps.dataAccess.statementTimeoutMs } : {}),
            },
            signal: Context.current().cancellationSignal,
          }),
        ).catch((error: unknown) => {
          throw toApplicationFailure(error, { stage: 'extract' });
        });
        anchor = { kind: 'data', at };
      }
      const spans = resolveWindow(input.window, anchor);
      const kept = run ? await deps.pipelines.keepResolvedSpans(workflowId, spans) : undefined;
      activityLogger(deps.logger).info({ spans: kept ?? spans }, 'window resolved');
      return kept ?? spans;
    },
  };
}
