/**
 * Records the event histories of completed `trainingPipeline`, `batchScore` and `deploymentRollout` runs as replay
 * fixtures (`test/fixtures/histories/<scenario>.json`), which `test/unit/workflows/replay.test.ts` replays against
 * the current workflow code: a change that would break running workflows (non-determinism) then fails CI.
 *
 * Starts its own isolated stack (real Temporal, PostgreSQL and MinIO on random ports, a temporary data directory)
 * and in-process workers on unique task queues, drives each scenario on a small synthetic CSV, and stops it all at
 * the end, also on error. Re-record after a deliberate, versioned change to the workflow:
 *
 *   npm run fixtures:histories
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { loadConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { DataEngine, sqlString } from '../data/engine.js';
import { cancelDeploymentRollout, startDeploymentRollout } from '../pipelines/rollouts.js';
import {
  approvePipelineRun,
  rejectPipelineRun,
  resumePipelineRun,
  runProgress,
  startPipelineRun,
  type PipelineRunnerDeps,
} from '../pipelines/runs.js';
import { startStack, type Stack } from '../stack/stack.js';
import { openStorage, type PlatformStorage } from '../storage/open-storage.js';
import { historyToJSON } from '../test/support/history-json.js';
import { startWorkers, type RunningWorkers } from '../workers/run-workers.js';
import {
  batchScore,
  type BatchScoreResult,
  type DeploymentRolloutResult,
  type PipelineOutcome,
  type TrainingPipelineResult,
} from '../workflows/index.js';
import { syntheticCsv, syntheticDefinition } from '../test/support/pipelines.js';

const FIXTURES_DIR = fileURLToPath(new URL('../test/fixtures/histories/', import.meta.url));

/** A recorded history: the scenario names the fixture file. */
interface Recorded {
  readonly scenario: string;
  readonly workflowId: string;
  readonly runId: string;
  readonly json: string;
}

async function main(): Promise<void> {
  const started = Date.now();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'record-histories-'));
  // The embedded PostgreSQL runs as `postgres` and must be able to enter the data directory.
  fs.chmodSync(dataDir, 0o755);
  const level = process.env.LOG_LEVEL ?? 'error';
  const logger = createLogger({ level, name: 'record-histories' });
  const suffix = randomUUID().slice(0, 8);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'test',
    LOG_LEVEL: level,
    MLOPS_DATA_DIR: dataDir,
    TEMPORAL_TASK_QUEUE: `fixtures-main-${suffix}`,
    TEMPORAL_TRAINING_TASK_QUEUE: `fixtures-training-${suffix}`,
  };
  // Always a local stack of its own, never an external service configured in this shell.
  for (const key of ['TEMPORAL_ADDRESS', 'DATABASE_URL', 'S3_ENDPOINT']) delete env[key];
  const config = loadConfig(env);

  let stack: Stack | undefined;
  let workers: RunningWorkers | undefined;
  let storage: PlatformStorage | undefined;
  let connection: Connection | undefined;
  const recorded: Recorded[] = [];
  try {
    stack = await startStack(config, { logger, ports: 'random' });
    console.log(`stack ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const { endpoints } = stack;
    workers = await startWorkers({ config, endpoints, logger, roles: ['main', 'training'] });
    storage = openStorage(endpoints, { logger, applicationName: 'record-histories', poolSize: 2 });
    connection = await Connection.connect({ address: endpoints.temporal.address });
    const client = new Client({ connection, namespace: endpoints.temporal.namespace });
    const runner: PipelineRunnerDeps = {
      client,
      pipelines: storage.pipelines,
      taskQueue: config.temporal.taskQueue,
      trainingTaskQueue: config.temporal.trainingTaskQueue,
    };
    const pipelines = storage.pipelines;
    const pool = storage.database.pool;

    const dataFolder = path.join(dataDir, 'fixture-data');
    fs.mkdirSync(dataFolder);
    const csv = (name: string) => {
      const file = path.join(dataFolder, `${name}.csv`);
      fs.writeFileSync(file, syntheticCsv({ kindPrefix: 'a' }));
      return file;
    };

    /** The history of one Temporal run of a workflow id (the latest when runId is absent). */
    const record = async (scenario: string, workflowId: string, runId?: string) => {
      const handle = client.workflow.getHandle(workflowId, runId);
      const { runId: resolved } = await handle.describe();
      const history = await client.workflow.getHandle(workflowId, resolved).fetchHistory();
      recorded.push({ scenario, workflowId, runId: resolved, json: historyToJSON(history) });
      console.log(`recorded ${scenario}: ${workflowId} (run ${resolved}, ${history.events?.length ?? 0} events)`);
      return resolved;
    };
    const start = async (pipeline: string) =>
      (await startPipelineRun(runner, { pipeline, trigger: 'manual', triggeredBy: 'fixtures' })).run;
    const expectOutcome = async (workflowId: string, expected: PipelineOutcome) => {
      const result = (await client.workflow.getHandle(workflowId).result()) as TrainingPipelineResult;
      if (result.outcome !== expected) throw new Error(`${workflowId}: outcome ${result.outcome}, not ${expected}`);
    };
    const expectFailure = async (workflowId: string, stage: string) => {
      const error = await client.workflow
        .getHandle(workflowId)
        .result()
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      if (!(error instanceof WorkflowFailedError)) throw new Error(`${workflowId} did not fail`);
      const failure = error.cause?.message ?? '';
      if (!failure.startsWith(`stage ${stage} failed`)) {
        throw new Error(`${workflowId} failed elsewhere than at ${stage}: ${failure}`);
      }
    };
    const waitForApproval = async (workflowId: string) => {
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline) {
        if ((await runProgress(runner, workflowId))?.approval) return;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`${workflowId} never asked for an approval`);
    };

    // (1) automatic deployment, (5) a rerun on the same data (equal to the champion: not blessed), then (2) the
    // data changes so that every category is unseen: the run stops at data validation.
    const auto = `fixtures-auto-${suffix}`;
    const autoFile = csv(auto);
    await pipelines.saveDefinition(
      syntheticDefinition(auto, autoFile, { validation: { champion: { metric: 'auc', minImprovement: 0 } } }),
      'fixtures',
    );
    const first = await start(auto);
    await expectOutcome(first.workflowId, 'deployed');
    await record('success-automatic', first.workflowId);
    const rerun = await start(auto);
    await expectOutcome(rerun.workflowId, 'not_blessed');
    await record('not-blessed', rerun.workflowId);
    fs.writeFileSync(autoFile, syntheticCsv({ kindPrefix: 'zz' }));
    const drifted = await start(auto);
    await expectFailure(drifted.workflowId, 'validate_data');
    await record('data-validation-failure', drifted.workflowId);

    // (3) and (4): the approval policy, approved and rejected through the Updates.
    for (const [scenario, approved] of [
      ['approval-approved', true],
      ['approval-rejected', false],
    ] as const) {
      const name = `fixtures-${approved ? 'approve' : 'reject'}-${suffix}`;
      await pipelines.saveDefinition(
        syntheticDefinition(name, csv(name), { deployment: { policy: 'approval', approvalTimeoutSeconds: 3600 } }),
        'fixtures',
      );
      const run = await start(name);
      await waitForApproval(run.workflowId);
      const request = { actor: 'fixtures', reason: approved ? 'looks good' : 'not this week' };
      await (approved ? approvePipelineRun : rejectPipelineRun)(runner, run.id, request);
      await expectOutcome(run.workflowId, approved ? 'deployed' : 'rejected');
      await record(scenario, run.workflowId);
    }

    // (6) an external fault (the registry refuses this model's versions) fails the run at register; once it is
    // fixed, the resumed run reuses every earlier stage. Both Temporal runs of the workflow id are recorded.
    const resume = `fixtures-resume-${suffix}`;
    const trigger = `fail_registry_${resume.replace(/-/g, '_')}`;
    await pool.query(`
      create function ${trigger}() returns trigger language plpgsql as $$
      begin
        if exists (select 1 from registered_models where id = new.model_id and name = '${resume}') then
          raise exception 'registry unavailable (injected by the fixture recorder)';
        end if;
        return new;
      end $$;
      create trigger ${trigger} before insert on model_versions for each row execute function ${trigger}();
    `);
    let run: Awaited<ReturnType<typeof start>>;
    let failedRunId: string;
    try {
      await pipelines.saveDefinition(syntheticDefinition(resume, csv(resume)), 'fixtures');
      run = await start(resume);
      await expectFailure(run.workflowId, 'register');
      failedRunId = await record('resumed-failed', run.workflowId);
    } finally {
      await pool.query(`drop trigger if exists ${trigger} on model_versions; drop function if exists ${trigger}();`);
    }
    await resumePipelineRun(runner, run.id);
    await expectOutcome(run.workflowId, 'deployed');
    const resumedRunId = await record('resumed', run.workflowId);
    if (resumedRunId === failedRunId) throw new Error('the resumed run has the failed run’s id');

    // (7) batch scoring: a local Parquet file scored with the auto pipeline's champion, in batches.
    const parquet = path.join(dataFolder, 'score.parquet');
    const engine = await DataEngine.open({ workDir: path.join(dataDir, 'duckdb'), readableDirs: [dataFolder] });
    try {
      await engine.run(
        `COPY (SELECT i AS id, (i * 7 % 37)::DOUBLE AS x, ['a0', 'a1', 'a2', 'new'][i % 4 + 1] AS kind
               FROM range(3000) t(i)) TO ${sqlString(parquet)} (FORMAT parquet)`,
      );
    } finally {
      engine.close();
    }
    const batchId = `fixtures-batch-${suffix}`;
    const scored = (await client.workflow.execute(batchScore, {
      workflowId: batchId,
      taskQueue: config.temporal.taskQueue,
      args: [{ modelName: auto, version: 'champion', input: parquet, batchRows: 1000 }],
    })) as BatchScoreResult;
    if (scored.rows !== 3000) throw new Error(`batch scoring: ${scored.rows} rows, not 3000`);
    await record('batch-score', batchId);

    // (8) and (9) canary rollouts on a deployment with two blessed versions (v1 the champion): one that runs its
    // checks to the end (no traffic, so too few requests: rolled back), and one cancelled while its canary serves.
    const roll = `fixtures-rollout-${suffix}`;
    const rollFile = path.join(dataFolder, `${roll}.csv`);
    await pipelines.saveDefinition(syntheticDefinition(roll, rollFile), 'fixtures');
    const versions = [];
    for (const threshold of [18, 16]) {
      fs.writeFileSync(rollFile, syntheticCsv({ threshold, kindPrefix: 'a' }));
      const trained = await start(roll);
      await expectOutcome(trained.workflowId, 'deployed');
      const result = (await client.workflow.getHandle(trained.workflowId).result()) as TrainingPipelineResult;
      if (!result.model) throw new Error(`${trained.workflowId}: no model`);
      versions.push(result.model);
    }
    const [v1, v2] = versions as [
      NonNullable<TrainingPipelineResult['model']>,
      NonNullable<TrainingPipelineResult['model']>,
    ];
    if (v1.versionId === v2.versionId) throw new Error('the rollout pipeline trained one version twice');
    await storage.deployments.deploy({
      deploymentName: roll,
      modelName: roll,
      versionId: v1.versionId,
      actor: 'fixtures',
      reason: 'v1 is the champion before the canaries',
    });
    const rollouts = { client, taskQueue: config.temporal.taskQueue };
    const canary = (durationSeconds: number) => ({
      deploymentName: roll,
      versionId: v2.versionId,
      strategy: 'canary' as const,
      trafficPercent: 50,
      durationSeconds,
      checkEverySeconds: 1,
      minRequests: 5,
      thresholds: { maxErrorRateIncrease: 0.01, maxLatencyP99Ratio: 2, maxPredictionDivergence: 0.5 },
      requestedBy: 'fixtures',
    });
    const judged = await startDeploymentRollout(rollouts, canary(2), roll);
    const verdict = (await client.workflow.getHandle(judged.workflowId).result()) as DeploymentRolloutResult;
    if (verdict.outcome !== 'rolled_back') throw new Error(`${judged.workflowId}: ${verdict.outcome}, not rolled_back`);
    await record('rollout-rolled-back', judged.workflowId);
    const cancelled = await startDeploymentRollout(rollouts, canary(3600), roll);
    const deadline = Date.now() + 60_000;
    while (!(await storage.deployments.activeRevisions(roll)).some((r) => r.role === 'challenger')) {
      if (Date.now() > deadline) throw new Error(`${cancelled.workflowId}: the canary never started`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await cancelDeploymentRollout(rollouts, roll, cancelled.rolloutId);
    const ended = await client.workflow
      .getHandle(cancelled.workflowId)
      .result()
      .then(
        () => 'completed',
        (e: unknown) => (e instanceof WorkflowFailedError ? 'failed' : String(e)),
      );
    if (ended !== 'failed') throw new Error(`${cancelled.workflowId}: ${ended}, not cancelled`);
    await record('rollout-cancelled', cancelled.workflowId);
  } finally {
    await workers?.shutdown();
    await connection?.close();
    await storage?.close();
    await stack?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  // Replace the fixtures only once every scenario has been recorded.
  fs.mkdirSync(FIXTURES_DIR, { recursive: true });
  for (const file of fs.readdirSync(FIXTURES_DIR)) {
    if (file.endsWith('.json')) fs.rmSync(path.join(FIXTURES_DIR, file));
  }
  for (const { scenario, json } of recorded) {
    const file = path.join(FIXTURES_DIR, `${scenario}.json`);
    fs.writeFileSync(file, json);
    console.log(`wrote ${path.relative(process.cwd(), file)} (${(Buffer.byteLength(json) / 1024).toFixed(1)} KiB)`);
  }
  console.log(`${recorded.length} histories in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(`recording histories failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
  process.exit(1);
});
