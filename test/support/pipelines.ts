/**
 * Shared by the tests (and the history recorder) that drive whole pipeline runs: a small synthetic dataset and
 * "start a run and wait for its result".
 */
import type { Client } from '@temporalio/client';
import {
  pipelineDefinitionSchema,
  type PipelineDefinition,
  type PipelineDefinitionInput,
} from '../../pipelines/definition.js';
import { startPipelineRun, type PipelineRunnerDeps } from '../../pipelines/runs.js';
import type { TrainingPipelineResult } from '../../workflows/index.js';

/**
 * 400 rows of `x,kind,y`: y is 1 when x (0..36) is above `threshold`; kind is `<kindPrefix>0..2`, so a new prefix
 * makes every category unseen.
 */
export function syntheticCsv(options: { threshold?: number; kindPrefix?: string } = {}): string {
  const threshold = options.threshold ?? 18;
  const prefix = options.kindPrefix ?? 'k';
  const rows = Array.from({ length: 400 }, (_, i) => `${i % 37},${prefix}${i % 3},${i % 37 > threshold ? 1 : 0}`);
  return ['x,kind,y', ...rows].join('\n') + '\n';
}

/**
 * The pipeline over a {@link syntheticCsv} file: y from x (numeric) and kind (categorical), hash split, logistic
 * regression, quick retries; `overrides` replace top-level fields.
 */
export function syntheticDefinition(
  name: string,
  csv: string,
  overrides: Partial<PipelineDefinitionInput> = {},
): PipelineDefinition {
  return pipelineDefinitionSchema.parse({
    name,
    source: { uri: csv },
    label: { name: 'y', expression: 'y', task: 'binary' },
    features: [
      { name: 'x', expression: 'x', kind: 'numeric' },
      { name: 'kind', expression: 'kind' },
    ],
    split: { kind: 'hash', key: 'x', evalFraction: 0.3 },
    trainer: { kind: 'logistic_regression', params: {} },
    retry: { maximumAttempts: 2, initialIntervalSeconds: 0.2 },
    ...overrides,
  } satisfies PipelineDefinitionInput);
}

/** Starts a run of the pipeline's newest (or given) version and waits for the workflow's result. */
export async function runPipelineToEnd(
  runner: PipelineRunnerDeps & { readonly client: Client },
  pipeline: string,
  options: { version?: number; trigger?: string } = {},
): Promise<{ runId: string; workflowId: string; result: TrainingPipelineResult }> {
  const { run } = await startPipelineRun(runner, {
    pipeline,
    trigger: options.trigger ?? 'manual',
    triggeredBy: 'test',
    ...(options.version ? { version: options.version } : {}),
  });
  const result = (await runner.client.workflow.getHandle(run.workflowId).result()) as TrainingPipelineResult;
  return { runId: run.id, workflowId: run.workflowId, result };
}
