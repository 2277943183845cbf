/**
 * Pipeline benchmark: the flight-delay demo's pipeline run end to end on real services, and what orchestrating it
 * costs.
 *
 *   npm run bench:pipeline -- --runs 3
 *
 * It starts its own stack (random ports, temporary data directory) and the main and training workers in this
 * process (as `npm start` does), and for each iteration:
 *
 * - prepares, untimed, a fresh bucket, a fresh scratch folder and fresh workers over them, and a fresh pipeline name
 *   (so a fresh dataset and model): nothing of an earlier iteration is reused (no fingerprint hit for the extract,
 *   no cached download or artifact, no champion): a true first run;
 * - runs the demo as `npm start` does (`runFlightsDemo`: land January–March 2001 in S3, save the `flights-delay`
 *   definition, start the run and wait for its result), and times the run **from the start request to the result**
 *   (extract to deploy, gradient-boosted trees with default parameters): the goal's figure; landing and saving are
 *   reported beside it;
 * - reads the run's workflow history and computes the **orchestration overhead**: the workflow's wall time
 *   (WorkflowExecutionStarted → WorkflowExecutionCompleted event times) minus the sum of its activities' durations
 *   (ActivityTaskStarted → ActivityTaskCompleted event times of each activity, the run's bookkeeping activities
 *   included). The rest is Temporal and the worker: workflow tasks, activity dispatch (schedule to start), and the
 *   round trips between them. Each activity's duration is reported by stage;
 * - runs the same pipeline again on unchanged data (the reuse path: the extract finds the snapshot by its
 *   fingerprint, training gives the same ONNX bytes, the registry returns the same version, the validator finds it
 *   not better than the champion, outcome `not_blessed`) and measures it the same way.
 *
 * It checks each run's outcome (deployed, then not_blessed with the same version), prints a table and a goal line
 * per goal (whole first run under 60 s, orchestration overhead under 2 s), writes
 * `bench/results/pipeline-<timestamp>.json` and exits non-zero when a goal or a check fails.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { loadConfig, type AppConfig, type ServiceEndpoints } from '../core/config.js';
import { STAGE_OF_ACTIVITY as STAGE_OF_STAGE_ACTIVITY } from '../core/stages.js';
import { createLogger } from '../core/logger.js';
import { DEMO_ROWS, formatDemoReport, runFlightsDemo, type DemoReport } from '../demo/flights.js';
import { startStack, type Stack } from '../stack/stack.js';
import { openStorage, type PlatformStorage } from '../storage/open-storage.js';
import { PIPELINE_STAGES } from '../core/stages.js';
import { startWorkers, type RunningWorkers } from '../workers/run-workers.js';
import {
  formatMs,
  formatTable,
  parseBenchArgs,
  runBenchmark,
  writeResultFile,
  type BenchmarkResult,
  type Metrics,
} from './harness.js';

const GOAL_WALL_MS = 60_000;
const GOAL_OVERHEAD_MS = 2_000;

/** The stage each activity type runs; bookkeeping activities are the run's own records. */
const STAGE_OF_ACTIVITY: Record<string, string> = {
  ...STAGE_OF_STAGE_ACTIVITY,
  beginPipelineRun: 'bookkeeping',
  setPipelineRunStatus: 'bookkeeping',
};
const STAGES: readonly string[] = [...PIPELINE_STAGES.filter((s) => s !== 'approval'), 'bookkeeping'];

const M = {
  firstWall: 'first run: start request → result',
  firstLanding: 'first run: landing (DuckDB + upload)',
  firstSave: 'first run: save definition',
  firstDemo: 'first run: whole demo (landing + save + run)',
  firstWorkflow: 'first run: workflow wall (history)',
  firstActivities: 'first run: sum of activities',
  firstOverhead: 'first run: orchestration overhead',
  firstDispatch: 'first run: — activity schedule → start',
  firstWorkflowTasks: 'first run: — workflow tasks',
  firstClient: 'first run: client (request → started, completed → result)',
  rerunWall: 'rerun: start request → result',
  rerunWorkflow: 'rerun: workflow wall (history)',
  rerunActivities: 'rerun: sum of activities',
  rerunOverhead: 'rerun: orchestration overhead',
  rerunDispatch: 'rerun: — activity schedule → start',
  rerunWorkflowTasks: 'rerun: — workflow tasks',
} as const;

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

function eventMs(event: HistoryEvent | undefined): number {
  const ts = event?.eventTime;
  if (!ts) throw new Error(`history event ${event?.eventId?.toString() ?? '?'} has no time`);
  const seconds = ts.seconds;
  const whole = typeof seconds === 'number' ? seconds : seconds ? seconds.toNumber() : 0;
  return whole * 1000 + (ts.nanos ?? 0) / 1e6;
}

function idOf(id: { toString(): string } | null | undefined): string {
  return id?.toString() ?? '';
}

/** What a run's history says about where its time went. */
interface HistoryTimes {
  readonly workflowMs: number;
  readonly activitiesMs: number;
  readonly overheadMs: number;
  /** Sum of activity schedule → start (dispatch through the task queue). */
  readonly dispatchMs: number;
  /** Sum of workflow task schedule → completion. */
  readonly workflowTasksMs: number;
  readonly workflowTasks: number;
  readonly activities: number;
  /** Activity durations (start → completion) summed by stage. */
  readonly byStage: Record<string, number>;
  /** Started → completed, absolute (epoch ms), to compare with the client's clock. */
  readonly startedAt: number;
  readonly completedAt: number;
}

async function historyTimes(client: Client, workflowId: string): Promise<HistoryTimes> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  const byId = new Map(events.map((e) => [idOf(e.eventId), e]));
  const started = events.find((e) => e.workflowExecutionStartedEventAttributes);
  const completed = events.find((e) => e.workflowExecutionCompletedEventAttributes);
  if (!started || !completed) throw new Error(`workflow ${workflowId} has not completed`);
  const byStage: Record<string, number> = {};
  let activitiesMs = 0;
  let dispatchMs = 0;
  let activities = 0;
  let workflowTasksMs = 0;
  let workflowTasks = 0;
  for (const event of events) {
    const done = event.activityTaskCompletedEventAttributes;
    if (done) {
      const scheduled = byId.get(idOf(done.scheduledEventId));
      const startedEvent = byId.get(idOf(done.startedEventId));
      const type = scheduled?.activityTaskScheduledEventAttributes?.activityType?.name ?? '?';
      const ms = eventMs(event) - eventMs(startedEvent);
      activitiesMs += ms;
      dispatchMs += eventMs(startedEvent) - eventMs(scheduled);
      activities += 1;
      const stage = STAGE_OF_ACTIVITY[type] ?? type;
      byStage[stage] = (byStage[stage] ?? 0) + ms;
    }
    const task = event.workflowTaskCompletedEventAttributes;
    if (task) {
      workflowTasksMs += eventMs(event) - eventMs(byId.get(idOf(task.scheduledEventId)));
      workflowTasks += 1;
    }
  }
  const workflowMs = eventMs(completed) - eventMs(started);
  return {
    workflowMs,
    activitiesMs,
    overheadMs: workflowMs - activitiesMs,
    dispatchMs,
    workflowTasksMs,
    workflowTasks,
    activities,
    byStage,
    startedAt: eventMs(started),
    completedAt: eventMs(completed),
  };
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

function loadAverage(): number[] {
  return os.loadavg().map((v) => Math.round(v * 100) / 100);
}

interface IterationState {
  readonly id: string;
  readonly pipeline: string;
  readonly storage: PlatformStorage;
  readonly workers: RunningWorkers;
  readonly scratch: string;
}

interface RunRecord {
  readonly iteration: string;
  readonly pipeline: string;
  readonly first: { report: DemoReport; history: HistoryTimes };
  readonly rerun: { report: DemoReport; history: HistoryTimes };
}

async function main(): Promise<void> {
  const { runs, warmup } = parseBenchArgs({ runs: 3, warmup: 0 });
  const loadAtStart = loadAverage();
  console.log(
    `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ` +
      `${new Date().toISOString()}, load average at start ${loadAtStart.join(' ')}`,
  );
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-pipeline-'));
  // The embedded PostgreSQL runs as `postgres` and must be able to enter the data directory.
  fs.chmodSync(dataDir, 0o755);
  const logger = createLogger({ level: 'warn', name: 'bench-pipeline' });
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', MLOPS_DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  // Always the local stack, never an external service configured in this shell.
  for (const key of ['TEMPORAL_ADDRESS', 'DATABASE_URL', 'S3_ENDPOINT']) delete env[key];
  const config = loadConfig(env);
  const suffix = randomUUID().slice(0, 6);

  let stack: Stack | undefined;
  let connection: Connection | undefined;
  const records: RunRecord[] = [];
  let result: BenchmarkResult | undefined;
  try {
    const began = performance.now();
    stack = await startStack(config, { logger, ports: 'random' });
    console.log(`stack ready in ${formatMs(performance.now() - began)}`);
    const endpoints = stack.endpoints;
    connection = await Connection.connect({ address: endpoints.temporal.address });
    const client = new Client({ connection, namespace: endpoints.temporal.namespace });

    result = await runBenchmark<IterationState>({
      name: 'pipeline',
      runs,
      warmup,
      metric: M.firstWall,
      // Untimed: a fresh bucket, scratch folder and workers, so the first run really is a first run.
      setup: async (iteration) => {
        const id = `${iteration.warmup ? 'w' : 'm'}${iteration.index}`;
        const scratch = path.join(dataDir, 'iterations', id);
        fs.mkdirSync(scratch, { recursive: true });
        const scoped: ServiceEndpoints = { ...endpoints, s3: { ...endpoints.s3, bucket: `bench-${suffix}-${id}` } };
        const storage = openStorage(scoped, { logger, applicationName: 'bench-pipeline', poolSize: 4 });
        await storage.artifacts.ensureBucket();
        const iterationConfig: AppConfig = { ...config, dataDir: scratch };
        const workers = await startWorkers({
          config: iterationConfig,
          endpoints: scoped,
          logger,
          roles: ['main', 'training'],
        });
        return { id, pipeline: `flights-delay-${suffix}-${id}`, storage, workers, scratch };
      },
      run: async (state, iteration) => {
        const deps = {
          client,
          storage: state.storage,
          taskQueue: config.temporal.taskQueue,
          trainingTaskQueue: config.temporal.trainingTaskQueue,
          links: { namespace: endpoints.temporal.namespace },
        };
        const first = await runFlightsDemo(deps, { pipeline: state.pipeline, trigger: 'bench' });
        check(first.landed.rows === DEMO_ROWS, `landed ${first.landed.rows} rows, expected ${DEMO_ROWS}`);
        check(first.landed.uploaded, 'the fresh bucket already held the landed object');
        check(first.result.outcome === 'deployed', `first run: outcome ${first.result.outcome}, expected deployed`);
        check(first.result.model.created, 'first run: the registry already knew the model');
        const firstHistory = await historyTimes(client, first.workflowId);

        const rerun = await runFlightsDemo(deps, { pipeline: state.pipeline, trigger: 'bench' });
        check(rerun.result.outcome === 'not_blessed', `rerun: outcome ${rerun.result.outcome}, expected not_blessed`);
        check(
          !rerun.result.model.created && rerun.result.model.versionId === first.result.model.versionId,
          'rerun: expected the same registered version (the same ONNX bytes)',
        );
        check(rerun.result.deployment === undefined, 'rerun: something was deployed');
        const rerunHistory = await historyTimes(client, rerun.workflowId);
        if (!iteration.warmup) {
          records.push({
            iteration: state.id,
            pipeline: state.pipeline,
            first: { report: first, history: firstHistory },
            rerun: { report: rerun, history: rerunHistory },
          });
        }
        const stages = (prefix: string, history: HistoryTimes): Metrics =>
          Object.fromEntries(
            STAGES.filter((s) => history.byStage[s] !== undefined).map((s) => [`${prefix}: ${s}`, history.byStage[s]!]),
          );
        return {
          [M.firstWall]: first.timings.runMs,
          [M.firstLanding]: first.timings.landMs,
          [M.firstSave]: first.timings.saveMs,
          [M.firstDemo]: first.timings.totalMs,
          [M.firstWorkflow]: firstHistory.workflowMs,
          [M.firstActivities]: firstHistory.activitiesMs,
          [M.firstOverhead]: firstHistory.overheadMs,
          [M.firstDispatch]: firstHistory.dispatchMs,
          [M.firstWorkflowTasks]: firstHistory.workflowTasksMs,
          [M.firstClient]: first.timings.runMs - firstHistory.workflowMs,
          ...stages('first run, activity', firstHistory),
          [M.rerunWall]: rerun.timings.runMs,
          [M.rerunWorkflow]: rerunHistory.workflowMs,
          [M.rerunActivities]: rerunHistory.activitiesMs,
          [M.rerunOverhead]: rerunHistory.overheadMs,
          [M.rerunDispatch]: rerunHistory.dispatchMs,
          [M.rerunWorkflowTasks]: rerunHistory.workflowTasksMs,
          ...stages('rerun, activity', rerunHistory),
        };
      },
      teardown: async (state) => {
        await state.workers.shutdown();
        await state.storage.close();
        fs.rmSync(state.scratch, { recursive: true, force: true });
      },
      onIteration: (iteration, metrics) => {
        const record = records.at(-1)!;
        console.log(
          `#${iteration.index + 1}: first run ${formatMs(metrics[M.firstWall]!)} (overhead ` +
            `${formatMs(metrics[M.firstOverhead]!)}, AUC ${record.first.report.result.metrics.auc?.toFixed(4)}), ` +
            `rerun ${formatMs(metrics[M.rerunWall]!)} (overhead ${formatMs(metrics[M.rerunOverhead]!)}, ` +
            `${record.rerun.report.result.outcome})`,
        );
      },
    });
  } finally {
    await connection?.close().catch(() => undefined);
    await stack?.stop().catch((error: unknown) => console.error('the stack did not stop cleanly', error));
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  const metric = (name: string) => {
    const found = result.metrics.find((m) => m.metric === name);
    if (!found) throw new Error(`no metric ${name}`);
    return found;
  };
  const wall = metric(M.firstWall);
  const overhead = metric(M.firstOverhead);
  const rerunOverhead = metric(M.rerunOverhead);
  const goals = [
    {
      label: `whole demo pipeline run (start request → result, extract to deploy) under ${GOAL_WALL_MS / 1000} s`,
      pass: wall.median < GOAL_WALL_MS,
      detail: `median ${formatMs(wall.median)}, min ${formatMs(wall.min)}, max ${formatMs(wall.max)}`,
    },
    {
      label: `orchestration overhead of a first run under ${GOAL_OVERHEAD_MS / 1000} s`,
      pass: overhead.median < GOAL_OVERHEAD_MS,
      detail: `median ${formatMs(overhead.median)}, min ${formatMs(overhead.min)}, max ${formatMs(overhead.max)}`,
    },
    {
      label: `orchestration overhead of a rerun under ${GOAL_OVERHEAD_MS / 1000} s`,
      pass: rerunOverhead.median < GOAL_OVERHEAD_MS,
      detail: `median ${formatMs(rerunOverhead.median)}, min ${formatMs(rerunOverhead.min)}, max ${formatMs(rerunOverhead.max)}`,
    },
  ];
  const last = records.at(-1)!;
  console.log(`\n${formatTable([result])}\n`);
  const aucs = records.map((r) => r.first.report.result.metrics.auc ?? Number.NaN);
  console.log(
    `first-run AUC ${[...new Set(aucs.map((a) => a.toFixed(6)))].join(', ')} over ${records.length} runs; ` +
      `${last.first.history.activities} activities and ${last.first.history.workflowTasks} workflow tasks per first run, ` +
      `${last.rerun.history.activities} and ${last.rerun.history.workflowTasks} per rerun`,
  );
  console.log(`\nlast first run, as the demo prints it:\n${formatDemoReport(last.first.report)}\n`);
  console.log(`last rerun:\n${formatDemoReport(last.rerun.report)}\n`);
  for (const goal of goals) console.log(`goal: ${goal.label}: ${goal.pass ? 'PASS' : 'FAIL'} (${goal.detail})`);
  const loadAtEnd = loadAverage();
  console.log(`load average at start ${loadAtStart.join(' ')}, at end ${loadAtEnd.join(' ')}`);
  const file = writeResultFile('pipeline', {
    rows: DEMO_ROWS,
    loadAverageAtStart: loadAtStart,
    loadAverageAtEnd: loadAtEnd,
    goals,
    runs: records.map((r) => ({
      iteration: r.iteration,
      pipeline: r.pipeline,
      first: {
        outcome: r.first.report.result.outcome,
        metrics: r.first.report.result.metrics,
        model: r.first.report.result.model,
        timings: r.first.report.timings,
        history: r.first.history,
        stages: r.first.report.result.stages,
      },
      rerun: {
        outcome: r.rerun.report.result.outcome,
        blessing: r.rerun.report.result.blessing,
        model: r.rerun.report.result.model,
        timings: r.rerun.report.timings,
        history: r.rerun.history,
        stages: r.rerun.report.result.stages,
      },
    })),
    results: [result],
    medians: Object.fromEntries(result.metrics.map((m) => [m.metric, m.median])),
  });
  console.log(`results: ${path.relative(process.cwd(), file)}`);
  if (goals.some((g) => !g.pass)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`\npipeline benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
  process.exit(1);
});
