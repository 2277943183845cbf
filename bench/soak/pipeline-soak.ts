/**
 * The pipeline soak: many runs of the demo's pipeline on a slice of its data (one week of January 2001, a small
 * gradient-boosted model: the demo test's slice), started at once and awaited together. The runs are dealt
 * round-robin over `--pipelines` pipelines (default: one pipeline per run, so every run is a first run that
 * extracts, trains, registers and deploys; fewer pipelines put several runs of one definition in a race for the
 * same model version and deployment).
 */
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Client } from '@temporalio/client';
import { flightsDelayDefinition } from '../../demo/flights.js';
import { landFlights, type LandedData } from '../../demo/landing.js';
import { pipelineDefinitionSchema, type PipelineDefinitionInput } from '../../pipelines/definition.js';
import { startPipelineRun, type PipelineRunnerDeps } from '../../pipelines/runs.js';
import type { PlatformStorage } from '../../storage/open-storage.js';
import type { TrainingPipelineResult } from '../../workflows/index.js';
import { formatMs } from '../harness.js';

/** The slice: January 1–7, 2001; train on the first five days, evaluate on the last two. */
export const SLICE_SPAN = { from: '2001-01-01', to: '2001-01-08' } as const;

/** The demo definition's changes for the slice (as test/integration/demo.test.ts runs it). */
const SLICE_DEFINITION: Partial<PipelineDefinitionInput> = {
  split: { kind: 'time', column: 'date', trainBefore: '2001-01-06', evalBefore: '2001-01-08' },
  trainer: { kind: 'gradient_boosted_trees', params: { maxIterations: 20, seed: 0 } },
  evaluation: { slices: ['origin'], minSliceRows: 500 },
  validation: { thresholds: [{ metric: 'auc', min: 0.55 }], champion: { metric: 'auc' } },
};

export interface SoakRun {
  readonly index: number;
  readonly pipeline: string;
  readonly runId: string | undefined;
  readonly workflowId: string | undefined;
  /** From the start request to the result (or the failure). */
  readonly ms: number;
  readonly result: TrainingPipelineResult | undefined;
  readonly error: string | undefined;
}

export interface PipelineSoakResult {
  readonly landed: LandedData;
  readonly landMs: number;
  readonly pipelines: readonly string[];
  readonly runs: readonly SoakRun[];
  /** From the first start request to the last result. */
  readonly wallMs: number;
}

export interface PipelineSoakDeps {
  readonly client: Client;
  readonly storage: PlatformStorage;
  readonly taskQueue: string;
  readonly trainingTaskQueue: string;
}

/** Resolves with `promise`, or rejects once `deadline` aborts (the promise is left to settle unobserved). */
function untilDeadline<T>(promise: Promise<T>, deadline: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('no result before the deadline (--run-timeout-seconds)'));
    if (deadline.aborted) return onAbort();
    deadline.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        deadline.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        deadline.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/** Lands the slice, saves the pipelines, starts `runs` runs at once and waits for all of them (bounded). */
export async function runPipelineSoak(
  deps: PipelineSoakDeps,
  options: { runs: number; pipelines: number; timeoutSeconds: number; prefix: string },
): Promise<PipelineSoakResult> {
  const { storage } = deps;
  const landBegan = performance.now();
  const landed = await landFlights({
    s3: storage.artifacts.client,
    bucket: storage.artifacts.bucket,
    region: storage.artifacts.region,
    key: `landing/flights/${options.prefix}.parquet`,
    span: SLICE_SPAN,
  });
  const landMs = performance.now() - landBegan;
  console.log(`  landed ${landed.uri}: ${landed.rows.toLocaleString('en-US')} rows (${formatMs(landMs)})`);

  const pipelines = Array.from(
    { length: options.pipelines },
    (_, i) => `${options.prefix}-${String(i).padStart(2, '0')}`,
  );
  const versions = new Map<string, number>();
  for (const name of pipelines) {
    const definition = pipelineDefinitionSchema.parse(
      flightsDelayDefinition(landed.uri, { ...SLICE_DEFINITION, name }),
    );
    const saved = await storage.pipelines.saveDefinition(definition, 'bench:soak');
    versions.set(name, saved.version.version);
  }

  const runner: PipelineRunnerDeps = {
    client: deps.client,
    pipelines: storage.pipelines,
    taskQueue: deps.taskQueue,
    trainingTaskQueue: deps.trainingTaskQueue,
  };
  const deadline = AbortSignal.timeout(options.timeoutSeconds * 1000);
  // Every run waits on it.
  setMaxListeners(options.runs + 10, deadline);
  const began = performance.now();
  const one = async (index: number): Promise<SoakRun> => {
    const pipeline = pipelines[index % pipelines.length]!;
    const runBegan = performance.now();
    let runId: string | undefined;
    let workflowId: string | undefined;
    try {
      const { run } = await startPipelineRun(runner, {
        pipeline,
        version: versions.get(pipeline),
        trigger: 'bench-soak',
      });
      runId = run.id;
      workflowId = run.workflowId;
      const handle = deps.client.workflow.getHandle(run.workflowId);
      const result = await untilDeadline(handle.result() as Promise<TrainingPipelineResult>, deadline);
      return { index, pipeline, runId, workflowId, ms: performance.now() - runBegan, result, error: undefined };
    } catch (error) {
      const message =
        error instanceof Error ? `${error.message}${error.cause ? ` (${String(error.cause)})` : ''}` : String(error);
      return {
        index,
        pipeline,
        runId,
        workflowId,
        ms: performance.now() - runBegan,
        result: undefined,
        error: message,
      };
    }
  };
  console.log(`  ${options.runs} runs over ${pipelines.length} pipeline(s), started at once...`);
  const runs = await Promise.all(Array.from({ length: options.runs }, (_, i) => one(i)));
  const wallMs = performance.now() - began;
  return { landed, landMs, pipelines, runs, wallMs };
}
