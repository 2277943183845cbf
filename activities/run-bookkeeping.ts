/**
 * The pipeline run's own record: started (or resumed), its status while it runs, and how it ended. The stages record
 * themselves (stage-lineage.ts, run-stages.ts); these two activities are the run's.
 */
import type { RunFailure } from '../schema/index.js';
import type { PipelineRunStatus } from '../schema/pipelines.js';
import type { ActivityDeps } from './deps.js';
import { completedStageResult, currentWorkflow } from './stage-lineage.js';

export interface BeginPipelineRunInput {
  /** Stage keys (as the activities record them) whose completed results a resumed run may reuse. */
  readonly stages: readonly string[];
}

export interface BeginPipelineRunResult {
  /** Results of stages this workflow id completed before (a resumed run skips them), by stage key. */
  readonly completed: Record<string, unknown>;
}

export interface SetRunStatusInput {
  readonly status: PipelineRunStatus;
  readonly failure?: RunFailure;
  /** With `succeeded`: what became of the candidate (deployed, not_blessed, ...). */
  readonly outcome?: string;
}

/** Activities that keep the pipeline run's record; served by the main task queue. */
export function createRunBookkeepingActivities(deps: ActivityDeps) {
  return {
    /**
     * Marks the run started (or resumed: a new Temporal run of the same workflow id) and returns the results of the
     * stages this workflow id already completed, so that a resumed run starts at the stage that failed.
     */
    async beginPipelineRun(input: BeginPipelineRunInput): Promise<BeginPipelineRunResult> {
      const { workflowId, runId } = currentWorkflow();
      await deps.pipelines.markRunStarted(workflowId, runId);
      const completed: Record<string, unknown> = {};
      for (const stage of input.stages) {
        const result = await completedStageResult<unknown>(deps.metadata, stage);
        if (result !== undefined) completed[stage] = result;
      }
      return { completed };
    },

    /** Records the run's status (running, waiting for approval, and the final one with its failure). */
    async setPipelineRunStatus(input: SetRunStatusInput): Promise<void> {
      await deps.pipelines.setRunStatus(currentWorkflow().workflowId, input.status, {
        ...(input.failure ? { failure: input.failure } : {}),
        ...(input.outcome ? { outcome: input.outcome } : {}),
      });
    },
  };
}
