/**
 * The flight-delay demo: what `npm start` runs once the platform is ready, and `npm run demo` runs again.
 *
 * It lands January–March 2001 of vega-datasets' `flights-3m.parquet` (1,477,911 rows) in S3 as the pipeline's
 * source, saves the `flights-delay` pipeline (label `delay > 15`; hour, day of week, distance, origin, destination;
 * train on January–February, evaluate on March; gradient-boosted trees), runs it to the end and prints the
 * registered version, its metrics, the champion comparison, the stage timings and where to look. Everything is
 * idempotent: the same data lands as the same object, the same definition is the same pipeline version, and the
 * same training gives the same ONNX bytes, so a second run registers nothing new and, not being better than the
 * champion (which is itself), deploys nothing.
 *
 * Landing the data is landing.ts's; opening a session on a running platform and running the demo in the background
 * of `npm start` is session.ts's.
 */
import { performance } from 'node:perf_hooks';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { modelNameOf, pipelineDefinitionSchema, type PipelineDefinitionInput } from '../pipelines/definition.js';
import { runProgress, startPipelineRun, type PipelineRunnerDeps } from '../pipelines/runs.js';
import type { PlatformStorage } from '../storage/open-storage.js';
import type { TrainingPipelineResult } from '../workflows/index.js';
import type { StageProgress } from '../workflows/training-pipeline.js';
import { landFlights, type LandedData } from './landing.js';

/** The demo's pipeline (and so its model and deployment). */
export const DEMO_PIPELINE = 'flights-delay';

/** Where the demo lands its source, in the configured bucket. */
export const DEMO_LANDING_KEY = 'landing/flights/2001-q1.parquet';

/** The rows the demo lands: January to March 2001, `date` in [from, to). */
export const DEMO_SPAN = { from: '2001-01-01', to: '2001-04-01' } as const;

/** January–March 2001 of flights-3m.parquet. */
export const DEMO_ROWS = 1_477_911;

// ---------------------------------------------------------------------------------------------------------------
// The pipeline

/**
 * The demo's pipeline definition over a landed source: is a flight more than 15 minutes late, from the hour, day of
 * week, distance, origin and destination; trained on January–February, evaluated on March; gradient-boosted trees
 * with default parameters (seed 0); AUC at least 0.65 and strictly better than the champion's on the same rows.
 */
export function flightsDelayDefinition(
  sourceUri: string,
  overrides: Partial<PipelineDefinitionInput> = {},
): PipelineDefinitionInput {
  return {
    name: DEMO_PIPELINE,
    description:
      'Demo: will a flight be more than 15 minutes late? US flights of January–March 2001 (vega-datasets ' +
      'flights-3m); trained on January–February, evaluated on March.',
    source: { uri: sourceUri },
    label: { name: 'delayed', expression: 'delay > 15', task: 'binary' },
    features: [
      { name: 'hour', expression: 'hour(date)', kind: 'numeric' },
      { name: 'day_of_week', expression: 'dayofweek(date)', kind: 'numeric' },
      { name: 'distance', expression: 'distance', kind: 'numeric' },
      { name: 'origin', expression: 'origin', kind: 'categorical' },
      { name: 'destination', expression: 'destination', kind: 'categorical' },
    ],
    split: { kind: 'time', column: 'date', trainBefore: '2001-03-01', evalBefore: '2001-04-01' },
    trainer: { kind: 'gradient_boosted_trees', params: { seed: 0 } },
    evaluation: { slices: ['origin'], minSliceRows: 1000 },
    validation: {
      thresholds: [{ metric: 'auc', min: 0.65 }],
      champion: { metric: 'auc', minImprovement: 0 },
    },
    deployment: { policy: 'automatic' },
    ...overrides,
  };
}

/** Where the demo's results can be looked at; absent entries are not printed. */
export interface DemoLinks {
  /** The API's base URL, for example http://127.0.0.1:3000. */
  readonly apiUrl?: string;
  /** The Temporal Web UI's base URL (undefined for an external Temporal). */
  readonly temporalUiUrl?: string;
  readonly namespace: string;
}

export interface DemoDeps {
  readonly client: Client;
  readonly storage: Pick<PlatformStorage, 'pipelines' | 'registry' | 'artifacts'>;
  readonly taskQueue: string;
  readonly trainingTaskQueue: string;
  readonly links: DemoLinks;
}

export interface DemoOptions {
  /** The pipeline's name; default `flights-delay`. */
  readonly pipeline?: string;
  /** The object to land in the storage's bucket, and the rows; default the demo's January–March. */
  readonly landing?: { readonly key: string; readonly from: string; readonly to: string };
  /** An already landed source: landing is skipped. */
  readonly landed?: LandedData;
  /** Changes to the definition (a shorter span or a smaller model for tests). */
  readonly definition?: Partial<PipelineDefinitionInput>;
  /** What started the run; default `demo`. */
  readonly trigger?: string;
  readonly triggeredBy?: string;
  /** Stops waiting and cancels the run. */
  readonly signal?: AbortSignal;
  /** Called with one line per step as the demo goes (landing, run started, each stage finished). */
  readonly onProgress?: (line: string) => void;
}

export interface DemoReport {
  readonly pipeline: string;
  readonly pipelineVersion: number;
  /** False when this exact definition was saved before. */
  readonly definitionCreated: boolean;
  readonly landed: LandedData;
  /** Whether this call landed the data (false: `options.landed` was given). */
  readonly landedHere: boolean;
  readonly runId: string;
  readonly workflowId: string;
  readonly result: TrainingPipelineResult;
  /** The champion before this run (what the candidate was compared with), if there was one. */
  readonly championBefore?: { readonly versionId: string; readonly version: number };
  readonly timings: {
    /** Landing (0 when given). */
    readonly landMs: number;
    readonly saveMs: number;
    /** From the start request to the workflow's result. */
    readonly runMs: number;
    readonly totalMs: number;
  };
  readonly links: {
    readonly run?: string;
    readonly model?: string;
    readonly temporal?: string;
    readonly docs?: string;
  };
}

/** A demo run that failed or was stopped, with what is known about where. */
export class DemoError extends Error {
  override readonly name = 'DemoError';
  constructor(
    message: string,
    readonly links: DemoReport['links'] = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Links to the run, the model and the workflow. */
export function demoLinks(links: DemoLinks, model: string, runId?: string, workflowId?: string): DemoReport['links'] {
  const api = links.apiUrl?.replace(/\/$/, '');
  const ui = links.temporalUiUrl?.replace(/\/$/, '');
  return {
    ...(api && runId ? { run: `${api}/v1/runs/${runId}` } : {}),
    ...(api ? { model: `${api}/v1/models/${encodeURIComponent(model)}` } : {}),
    ...(ui && workflowId
      ? {
          temporal: `${ui}/namespaces/${encodeURIComponent(links.namespace)}/workflows/${encodeURIComponent(workflowId)}`,
        }
      : {}),
    ...(api ? { docs: `${api}/docs` } : {}),
  };
}

/**
 * Lands the data, saves the pipeline and runs it to the end. Any outcome of a run that finished is a report (a
 * second run's `not_blessed` included); a failed, cancelled or stopped run throws a {@link DemoError}.
 */
export async function runFlightsDemo(deps: DemoDeps, options: DemoOptions = {}): Promise<DemoReport> {
  const began = performance.now();
  const progress = options.onProgress ?? (() => {});
  const pipeline = options.pipeline ?? DEMO_PIPELINE;
  const { signal } = options;
  const bucket = deps.storage.artifacts.bucket;

  let landed = options.landed;
  let landMs = 0;
  if (!landed) {
    const landing = options.landing ?? { key: DEMO_LANDING_KEY, ...DEMO_SPAN };
    const landStarted = performance.now();
    landed = await landFlights({
      s3: deps.storage.artifacts.client,
      bucket,
      region: deps.storage.artifacts.region,
      key: landing.key,
      span: { from: landing.from, to: landing.to },
      ...(signal ? { signal } : {}),
    });
    landMs = performance.now() - landStarted;
    progress(
      `  landed    ${landed.uri}: ${landed.rows.toLocaleString('en-US')} rows, ${mib(landed.bytes)} ` +
        `(${landed.uploaded ? 'uploaded' : 'already there, same bytes'}; ${seconds(landMs)})`,
    );
  }
  signal?.throwIfAborted();

  const saveStarted = performance.now();
  const definition = pipelineDefinitionSchema.parse(
    flightsDelayDefinition(landed.uri, { name: pipeline, ...options.definition }),
  );
  const saved = await deps.storage.pipelines.saveDefinition(definition, options.triggeredBy ?? 'demo');
  const saveMs = performance.now() - saveStarted;
  const modelName = modelNameOf(definition);
  const champion = await deps.storage.registry.champion(modelName);
  signal?.throwIfAborted();

  const runner: PipelineRunnerDeps = {
    client: deps.client,
    pipelines: deps.storage.pipelines,
    taskQueue: deps.taskQueue,
    trainingTaskQueue: deps.trainingTaskQueue,
  };
  const runStarted = performance.now();
  const { run } = await startPipelineRun(runner, {
    pipeline,
    version: saved.version.version,
    trigger: options.trigger ?? 'demo',
    ...(options.triggeredBy ? { triggeredBy: options.triggeredBy } : {}),
  });
  const links = demoLinks(deps.links, modelName, run.id, run.workflowId);
  progress(
    `  pipeline  ${pipeline} v${saved.version.version} (${saved.created ? 'saved' : 'unchanged'}); ` +
      `run ${run.id} started`,
  );
  if (links.temporal) progress(`  follow    ${links.temporal}`);

  const handle = deps.client.workflow.getHandle(run.workflowId);
  const watcher = options.onProgress ? watchStages(runner, run.workflowId, progress) : undefined;
  let result: TrainingPipelineResult;
  try {
    result = await untilAborted(handle.result() as Promise<TrainingPipelineResult>, signal);
  } catch (error) {
    if (signal?.aborted) {
      await handle.cancel().catch(() => undefined);
      throw new DemoError(`the demo was stopped; its run ${run.id} was asked to cancel`, links, { cause: error });
    }
    throw await describeRunFailure(deps, run.id, links, error);
  } finally {
    watcher?.stop();
  }
  const runMs = performance.now() - runStarted;
  if (watcher) watcher.flush(result.stages);

  return {
    pipeline,
    pipelineVersion: saved.version.version,
    definitionCreated: saved.created,
    landed,
    landedHere: options.landed === undefined,
    runId: run.id,
    workflowId: run.workflowId,
    result,
    ...(champion ? { championBefore: { versionId: champion.id, version: champion.version } } : {}),
    timings: { landMs, saveMs, runMs, totalMs: performance.now() - began },
    links,
  };
}

/** Resolves with `promise`, or rejects as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

async function describeRunFailure(
  deps: DemoDeps,
  runId: string,
  links: DemoReport['links'],
  error: unknown,
): Promise<DemoError> {
  if (!(error instanceof WorkflowFailedError)) {
    return new DemoError(`the demo run ${runId} could not be followed: ${messageOf(error)}`, links, { cause: error });
  }
  const stored = await deps.storage.pipelines.getRun(runId).catch(() => undefined);
  const failure = stored?.failure;
  const where = failure?.stage ? ` at stage ${failure.stage}` : '';
  const what = failure ? `${failure.type}: ${failure.message}` : messageOf(error.cause ?? error);
  const status = stored?.status === 'cancelled' ? 'was cancelled' : `failed${where}`;
  return new DemoError(`the demo run ${runId} ${status} (${what})`, links, { cause: error });
}

/** Polls the run's progress query and reports each stage once it has finished. */
function watchStages(runner: PipelineRunnerDeps, workflowId: string, report: (line: string) => void) {
  const printed = new Set<string>();
  const print = (stages: readonly StageProgress[]) => {
    for (const stage of stages) {
      if (printed.has(stage.name) || !['succeeded', 'reused', 'failed', 'cancelled'].includes(stage.state)) continue;
      printed.add(stage.name);
      const took = stage.seconds === undefined ? '' : ` ${stage.seconds.toFixed(2)} s`;
      report(`  ${stage.state === 'succeeded' ? '✓' : stage.state === 'reused' ? '↺' : '✗'} ${stage.name}${took}`);
    }
  };
  let stopped = false;
  const timer = setInterval(() => {
    void runProgress(runner, workflowId).then((p) => {
      if (p && !stopped) print(p.stages);
    });
  }, 1000);
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
    flush: print,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Printing

const METRIC_LABELS: readonly (readonly [string, string])[] = [
  ['auc', 'AUC'],
  ['log_loss', 'log loss'],
  ['accuracy', 'accuracy'],
  ['precision', 'precision'],
  ['recall', 'recall'],
  ['f1', 'F1'],
  ['brier', 'Brier'],
];

function formatMetrics(metrics: Record<string, number>): string {
  const known = METRIC_LABELS.filter(([key]) => metrics[key] !== undefined).map(
    ([key, label]) => `${label} ${metrics[key]!.toFixed(4)}`,
  );
  return known.join(' · ');
}

/** The demo's summary, as printed: outcome, version, metrics, comparison, stage timings, links. */
export function formatDemoReport(report: DemoReport): string {
  const { result } = report;
  const model = result.model;
  const version = `${model.modelName} v${model.version}`;
  const championBefore = report.championBefore;
  const lines: string[] = [];
  const outcome = (() => {
    switch (result.outcome) {
      case 'deployed':
        return `deployed: ${version} is the champion now${
          championBefore ? ` (it replaced v${championBefore.version})` : ' (the first one)'
        }`;
      case 'already_champion':
        return `deployed already: ${version} was the champion before this run`;
      case 'not_blessed':
        return `not deployed: ${result.blessing.reason}`;
      case 'rejected':
        return `not deployed: rejected by ${result.approval?.actor ?? 'a reviewer'} (${result.approval?.reason ?? ''})`;
      case 'approval_timed_out':
        return 'not deployed: nobody approved it in time';
    }
  })();
  lines.push(`Demo run ${report.runId} finished in ${seconds(report.timings.totalMs)}: ${result.outcome}`);
  lines.push(`  outcome   ${outcome}`);
  const sameAsChampion =
    !model.created && championBefore !== undefined && championBefore.versionId === model.versionId
      ? ` (the same ONNX bytes as champion v${championBefore.version}: training is deterministic)`
      : '';
  lines.push(
    `  model     ${version} ${model.created ? 'registered now' : 'registered before'}, status ${model.status}${sameAsChampion}`,
  );
  lines.push(`  metrics   ${formatMetrics(result.metrics)} (March 2001 eval rows, through the ONNX model)`);
  if (result.championMetrics && championBefore) {
    const candidate = result.metrics.auc;
    const reference = result.championMetrics.auc;
    const verdict =
      candidate === undefined || reference === undefined
        ? ''
        : `: candidate AUC ${candidate.toFixed(4)} vs champion ${reference.toFixed(4)}, ${
            candidate - reference > 0 ? 'better' : 'not better'
          }`;
    lines.push(`  champion  v${championBefore.version} on the same rows${verdict}`);
  } else {
    lines.push('  champion  none before this run: the first version that passes the thresholds becomes it');
  }
  lines.push(`  pipeline  ${report.pipeline} v${report.pipelineVersion}, source ${report.landed.uri}`);
  lines.push(`  stages    ${formatStages(result.stages)}`);
  lines.push(
    `  took      run ${seconds(report.timings.runMs)} (start request to result)` +
      (report.landedHere ? `, landing ${seconds(report.timings.landMs)}` : ''),
  );
  const look: [string, string | undefined][] = [
    ['run', report.links.run ? `GET ${report.links.run}` : undefined],
    ['model', report.links.model ? `GET ${report.links.model}` : undefined],
    ['Temporal UI', report.links.temporal],
    ['API docs', report.links.docs],
  ];
  const shown = look.filter((entry): entry is [string, string] => entry[1] !== undefined);
  shown.forEach(([what, where], i) => lines.push(`  ${i === 0 ? 'look at' : '       '}   ${what.padEnd(12)}${where}`));
  lines.push(
    result.outcome === 'deployed'
      ? '  again     npm run demo trains the same model on the same data and settings: not better than the champion, not deployed'
      : `  next      new data or a changed definition (PUT /v1/pipelines/${report.pipeline}) trains a new candidate`,
  );
  return lines.join('\n');
}

function formatStages(stages: readonly StageProgress[]): string {
  const shown = stages.filter((s) => s.state !== 'skipped' && s.state !== 'pending');
  return shown
    .map(
      (s) =>
        `${s.name} ${s.state === 'reused' ? 'reused' : s.seconds === undefined ? s.state : seconds(s.seconds * 1000)}`,
    )
    .join(' · ');
}

/** A failed demo, for people: what went wrong and where to look. */
export function formatDemoFailure(error: unknown): string {
  const lines = [`Demo failed: ${messageOf(error)}`];
  if (error instanceof DemoError) {
    if (error.links.temporal) lines.push(`  Temporal UI  ${error.links.temporal}`);
    if (error.links.run) lines.push(`  run          GET ${error.links.run}`);
  }
  return lines.join('\n');
}

function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
