/**
 * Issue 15, Reliability 2: a pipeline run survives its worker, PostgreSQL, MinIO and the Temporal dev server going
 * away in the middle of it. One private stack (test/support/fault-stack.ts, never the shared test stack) and the
 * workers as `npm start` runs them: child processes (workers/worker-child.ts) kept alive by the supervisor
 * (stack/supervisor.ts), the main queue and the training queue in separate children so one can die alone. Each test
 * runs a small pipeline (synthetic rows, gradient-boosted trees trained for a few seconds with checkpoints), injects
 * its fault, undoes it, and checks the run completed with exactly one model version and one deployment revision, no
 * duplicated stage rows or executions, and every artifact the metadata store knows present in S3. Recovery times
 * are printed (`[fault]` lines) and recorded in RELIABILITY.md.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipelineDefinitionSchema, type PipelineDefinitionInput } from '../../../pipelines/definition.js';
import { startPipelineRun, type PipelineRunnerDeps } from '../../../pipelines/runs.js';
import { supervise, type Supervisor, type SupervisorEvent } from '../../../stack/supervisor.js';
import { openStorage, type PlatformStorage } from '../../../storage/open-storage.js';
import type { TrainingPipelineResult } from '../../../workflows/index.js';
import { startWorkerChild, type WorkerChild } from '../../../workers/worker-child.js';
import { startFaultStack, type FaultStack } from '../../support/fault-stack.js';
import { testLogger } from '../../support/platform.js';

let stack: FaultStack;
let storage: PlatformStorage;
let connection: Connection;
let runner: PipelineRunnerDeps;
let mainWorker: Supervisor;
let trainingWorker: Supervisor;
let csv: string;
const events: SupervisorEvent[] = [];

/** 30,000 rows of x1, x2, a 20-value category and a noisy binary label: a few seconds of boosting. */
function syntheticCsv(rows: number): string {
  const lines = ['x1,x2,grp,label'];
  let seed = 7;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < rows; i++) {
    const x1 = random() * 10;
    const x2 = random() * 5 - 2.5;
    const group = Math.floor(random() * 20);
    const score = Math.sin(x1) + x2 * x2 * 0.3 + (group % 3) * 0.4 + (random() - 0.5) * 1.5;
    lines.push(`${x1.toFixed(4)},${x2.toFixed(4)},g${group},${score > 0.8 ? 1 : 0}`);
  }
  return `${lines.join('\n')}\n`;
}

function definition(name: string): PipelineDefinitionInput {
  return {
    name,
    source: { uri: csv },
    label: { name: 'label', expression: 'label = 1', task: 'binary' },
    features: [
      { name: 'x1', expression: 'x1', kind: 'numeric' },
      { name: 'x2', expression: 'x2', kind: 'numeric' },
      { name: 'grp', expression: 'grp' },
    ],
    split: { kind: 'hash', key: 'x1::VARCHAR', evalFraction: 0.2 },
    trainer: {
      kind: 'gradient_boosted_trees',
      params: { maxIterations: 150, learningRate: 0.05, earlyStopping: false, seed: 0 },
      checkpointEvery: 5,
    },
    // Outages last seconds: enough quick attempts that a stage outlives one.
    retry: { maximumAttempts: 30, initialIntervalSeconds: 0.5, maximumIntervalSeconds: 2 },
  };
}

function superviseWorker(role: 'main' | 'training'): Promise<Supervisor> {
  return supervise({
    name: `${role} worker`,
    logger: testLogger,
    backoff: { initialMs: 200, factor: 2, maxMs: 2_000, stableAfterMs: 30_000 },
    onEvent: (event) => events.push(event),
    start: () =>
      startWorkerChild({
        config: stack.config,
        endpoints: stack.endpoints,
        logger: testLogger,
        logTo: { file: path.join(stack.root, 'logs', `${role}-worker.log`) },
        roles: [role],
        env: {
          MLOPS_DATA_DIR: stack.config.dataDir,
          DATA_ROOTS: stack.root,
          LOG_LEVEL: 'info',
          WORKER_SHUTDOWN_GRACE_SECONDS: '2',
        },
      }),
  });
}

beforeAll(async () => {
  stack = await startFaultStack();
  csv = path.join(stack.root, 'sources', 'synthetic.csv');
  fs.mkdirSync(path.dirname(csv), { recursive: true });
  fs.writeFileSync(csv, syntheticCsv(30_000));
  storage = openStorage(stack.endpoints, { logger: testLogger, applicationName: 'mlops-faults-test', poolSize: 4 });
  connection = await Connection.connect({ address: stack.endpoints.temporal.address });
  runner = {
    client: new Client({ connection, namespace: stack.endpoints.temporal.namespace }),
    pipelines: storage.pipelines,
    taskQueue: stack.config.temporal.taskQueue,
    trainingTaskQueue: stack.config.temporal.trainingTaskQueue,
  };
  [mainWorker, trainingWorker] = await Promise.all([superviseWorker('main'), superviseWorker('training')]);
}, 180_000);

afterAll(async () => {
  await Promise.allSettled([mainWorker?.stop(), trainingWorker?.stop()]);
  await connection?.close();
  await storage?.close();
  await stack?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `probe` gives a value; errors (a service being down) count as "not yet". */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Waits until the run's `stage` row has `status`. */
function stageReached(runId: string, stage: string, status: 'running' | 'succeeded') {
  return waitFor(`stage ${stage} ${status}`, async () => {
    const run = await storage.pipelines.getRun(runId);
    return run?.stages.some((s) => s.stage === stage && s.status === status) ? true : undefined;
  });
}

async function startRun(name: string) {
  await storage.pipelines.saveDefinition(pipelineDefinitionSchema.parse(definition(name)), 'faults-test');
  const { run } = await startPipelineRun(runner, { pipeline: name, trigger: 'test', triggeredBy: 'faults-test' });
  const result = runner.client.workflow.getHandle(run.workflowId).result() as Promise<TrainingPipelineResult>;
  // Observed below; an early failure must not be an unhandled rejection meanwhile.
  result.catch(() => undefined);
  return { runId: run.id, workflowId: run.workflowId, result, startedAt: Date.now() };
}

/** What every fault must leave: a completed run, one version, one revision, no duplicates, no missing objects. */
async function expectConsistent(name: string, runId: string, workflowId: string, result: TrainingPipelineResult) {
  expect(result.outcome, JSON.stringify(result.blessing)).toBe('deployed');
  expect(await storage.registry.listVersions(name)).toHaveLength(1);
  expect(await storage.deployments.deploymentHistory(name)).toHaveLength(1);
  const run = await storage.pipelines.getRun(runId);
  expect(run?.status).toBe('succeeded');
  const stageNames = run!.stages.map((s) => s.stage);
  expect(new Set(stageNames).size).toBe(stageNames.length);
  expect(run!.stages.every((s) => s.status === 'succeeded' || s.status === 'skipped')).toBe(true);
  const pool = storage.database.pool;
  const executions = await pool.query<{ stage: string; n: number }>(
    `select stage, count(*)::int as n from executions where workflow_id = $1 and state = 'complete' group by stage`,
    [workflowId],
  );
  for (const row of executions.rows) expect(row.n, `completed executions of ${row.stage}`).toBe(1);
  const uris = await pool.query<{ uri: string }>(`select uri from artifacts`);
  expect(uris.rows.length).toBeGreaterThan(0);
  for (const { uri } of uris.rows) expect(await storage.artifacts.exists(uri), uri).toBe(true);
}

/** Prints the measured times and the stages that needed more than one attempt (where the fault landed). */
async function report(fault: string, runId: string, figures: Record<string, number>): Promise<void> {
  const text = Object.entries(figures)
    .map(([k, v]) => `${k}=${(v / 1000).toFixed(1)}s`)
    .join(' ');
  const run = await storage.pipelines.getRun(runId);
  const retried = run?.stages.filter((s) => s.attempt > 1).map((s) => `${s.stage}×${s.attempt}`) ?? [];
  console.info(`[fault] ${fault}: ${text} retried=[${retried.join(', ')}]`);
}

const current = (supervisor: Supervisor) => supervisor.current as WorkerChild | undefined;

describe('a pipeline run survives', () => {
  it('the main worker killed between stages, and restarted by the supervisor', async () => {
    const name = `fault-main-${randomUUID().slice(0, 8)}`;
    const run = await startRun(name);
    // While the training worker trains, the main worker holds no activity: killing it now is between its stages.
    await stageReached(run.runId, 'train', 'running');
    const victim = current(mainWorker)!.pid!;
    const restartsBefore = mainWorker.restarts;
    const killedAt = Date.now();
    process.kill(victim, 'SIGKILL');
    await waitFor('the main worker restarted', async () => (mainWorker.restarts > restartsBefore ? true : undefined));
    const restartedAt = Date.now();
    expect(current(mainWorker)?.pid).not.toBe(victim);
    const result = await run.result;
    await report('main worker SIGKILL', run.runId, {
      restart: restartedAt - killedAt,
      killToDone: Date.now() - killedAt,
    });
    await expectConsistent(name, run.runId, run.workflowId, result);
  }, 120_000);

  it('PostgreSQL stopped mid-run and started again', async () => {
    const name = `fault-pg-${randomUUID().slice(0, 8)}`;
    const run = await startRun(name);
    await stageReached(run.runId, 'extract', 'succeeded');
    const restarts = mainWorker.restarts + trainingWorker.restarts;
    const stoppedAt = Date.now();
    await stack.stop('postgres', 'clean');
    await sleep(5_000);
    await stack.start('postgres');
    const backAt = Date.now();
    const result = await run.result;
    await report('PostgreSQL stopped 5 s', run.runId, { down: backAt - stoppedAt, backToDone: Date.now() - backAt });
    await expectConsistent(name, run.runId, run.workflowId, result);
    // An outage fails activities, never a worker.
    expect(mainWorker.restarts + trainingWorker.restarts).toBe(restarts);
  }, 120_000);

  it('MinIO stopped mid-run and started again', async () => {
    const name = `fault-s3-${randomUUID().slice(0, 8)}`;
    const run = await startRun(name);
    await stageReached(run.runId, 'extract', 'succeeded');
    const restarts = mainWorker.restarts + trainingWorker.restarts;
    const stoppedAt = Date.now();
    await stack.stop('minio', 'clean');
    await sleep(5_000);
    await stack.start('minio');
    const backAt = Date.now();
    const result = await run.result;
    await report('MinIO stopped 5 s', run.runId, { down: backAt - stoppedAt, backToDone: Date.now() - backAt });
    await expectConsistent(name, run.runId, run.workflowId, result);
    expect(mainWorker.restarts + trainingWorker.restarts).toBe(restarts);
  }, 120_000);

  it('the Temporal dev server restarted mid-run (its SQLite file keeps the history)', async () => {
    const name = `fault-temporal-${randomUUID().slice(0, 8)}`;
    const run = await startRun(name);
    await stageReached(run.runId, 'train', 'running');
    const stoppedAt = Date.now();
    await stack.stop('temporal', 'clean');
    await sleep(2_000);
    await stack.start('temporal');
    const backAt = Date.now();
    const result = await run.result;
    await report('Temporal restarted', run.runId, { down: backAt - stoppedAt, backToDone: Date.now() - backAt });
    await expectConsistent(name, run.runId, run.workflowId, result);
  }, 180_000);

  it('MinIO killed during training: the training worker stays up and the run completes once MinIO is back', async () => {
    const name = `fault-s3-kill-${randomUUID().slice(0, 8)}`;
    const run = await startRun(name);
    await stageReached(run.runId, 'train', 'running');
    const trainer = current(trainingWorker)!.pid!;
    const restarts = trainingWorker.restarts;
    // Let it write a checkpoint or two first, so the kill meets a checkpoint upload in flight or soon after.
    await sleep(1_000);
    const killedAt = Date.now();
    await stack.stop('minio', 'SIGKILL');
    await sleep(5_000);
    expect(trainingWorker.restarts).toBe(restarts);
    expect(current(trainingWorker)?.pid).toBe(trainer);
    await stack.start('minio');
    const backAt = Date.now();
    const result = await run.result;
    await report('MinIO SIGKILL during training', run.runId, {
      down: backAt - killedAt,
      backToDone: Date.now() - backAt,
    });
    await expectConsistent(name, run.runId, run.workflowId, result);
    // The process never died: same pid, no restart.
    expect(trainingWorker.restarts).toBe(restarts);
    expect(current(trainingWorker)?.pid).toBe(trainer);
  }, 120_000);
});
