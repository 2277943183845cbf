import { flightsDelayDefinition } from '../../demo/flights.js';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipelineDefinitionSchema, type PipelineDefinitionInput } from '../../pipelines/definition.js';
import {
  approvePipelineRun,
  rejectPipelineRun,
  resumePipelineRun,
  runProgress,
  startPipelineRun,
  type PipelineRunnerDeps,
} from '../../pipelines/runs.js';
import type { TrainingPipelineResult } from '../../workflows/index.js';
import type { TestPlatform } from '../support/platform.js';
import { runPipelineToEnd, syntheticCsv } from '../support/pipelines.js';
import { startTestPlatform, type RunningTestPlatform } from '../support/running-platform.js';

const dataDir = path.resolve('node_modules/vega-datasets/data');
let platform: TestPlatform;
let runner: PipelineRunnerDeps;
let started: RunningTestPlatform | undefined;

beforeAll(async () => {
  started = await startTestPlatform();
  ({ platform, runner } = started);
});

afterAll(async () => {
  await started?.stop();
});

/**
 * The demo's definition (label, features) on a week of January 2001 flights (about 100k rows): train on the first
 * five days, evaluate on the next two, with a smaller model and thresholds for that size.
 */
function flightsDefinition(name: string, overrides: Partial<PipelineDefinitionInput> = {}): PipelineDefinitionInput {
  return flightsDelayDefinition(path.join(dataDir, 'flights-3m.parquet'), {
    name,
    description: undefined,
    span: { column: 'date', from: '2001-01-01', to: '2001-01-08' },
    split: { kind: 'time', column: 'date', trainBefore: '2001-01-06', evalBefore: '2001-01-08' },
    trainer: { kind: 'gradient_boosted_trees', params: { maxIterations: 20, seed: 0 } },
    evaluation: { slices: ['origin'], minSliceRows: 500 },
    validation: {
      thresholds: [{ metric: 'auc', min: 0.55 }],
      champion: { metric: 'auc', minImprovement: 0 },
    },
    deployment: undefined,
    retry: { maximumAttempts: 2, initialIntervalSeconds: 0.2 },
    ...overrides,
  });
}

async function save(input: PipelineDefinitionInput) {
  const definition = pipelineDefinitionSchema.parse(input);
  return platform.storage.pipelines.saveDefinition(definition, 'test');
}

async function runToEnd(pipeline: string, version?: number) {
  return runPipelineToEnd(runner, pipeline, version ? { version } : {});
}

async function waitForApproval(workflowId: string) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const progress = await runProgress(runner, workflowId);
    if (progress?.approval) return progress.approval;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the run never asked for an approval');
}

describe('trainingPipeline on flights', () => {
  const name = `flights-${randomUUID().slice(0, 8)}`;

  it('takes raw data to a deployed champion, and a rerun on the same data is not deployed', async () => {
    await save(flightsDefinition(name));
    const first = await runToEnd(name);
    expect(first.result.outcome).toBe('deployed');
    expect(first.result.blessing.blessed).toBe(true);
    expect(first.result.metrics.auc).toBeGreaterThan(0.55);
    expect(first.result.metrics).toHaveProperty('log_loss');
    expect(first.result.metrics).toHaveProperty('brier');
    expect(first.result.model.version).toBe(1);
    expect(first.result.stages.map((s) => [s.name, s.state])).toEqual([
      ['extract', 'succeeded'],
      ['statistics', 'succeeded'],
      ['validate_data', 'succeeded'],
      ['prepare', 'succeeded'],
      ['train', 'succeeded'],
      ['evaluate', 'succeeded'],
      ['validate_model', 'succeeded'],
      ['register', 'succeeded'],
      ['approval', 'skipped'],
      ['deploy', 'succeeded'],
    ]);

    const { registry, deployments } = platform.storage;
    const champion = await registry.champion(name);
    expect(champion).toMatchObject({ id: first.result.model.versionId, status: 'blessed' });
    expect(champion?.signature.inputs.map((i) => i.name)).toEqual([
      'hour',
      'day_of_week',
      'distance',
      'origin',
      'destination',
    ]);
    expect(champion?.artifactId).toBeTruthy();
    const lineage = await platform.storage.metadata.lineage(champion!.artifactId!);
    const upstreamTypes = new Set(lineage!.artifacts.map((a) => a.type));
    for (const type of ['Dataset', 'Statistics', 'Schema', 'Transform', 'Evaluation']) {
      expect(upstreamTypes, type).toContain(type);
    }
    const active = await deployments.activeRevisions(name);
    expect(active).toMatchObject([{ versionId: champion!.id, role: 'champion', trafficPercent: 100 }]);

    const run = await platform.storage.pipelines.getRun(first.runId);
    expect(run?.status).toBe('succeeded');
    expect(run?.outcome).toBe('deployed');
    expect(run?.trigger).toBe('manual');
    expect(run?.stages.map((s) => s.stage)).toEqual(
      expect.arrayContaining(['extract', 'train', 'evaluate', 'register', 'deploy']),
    );
    expect(run?.stages.every((s) => s.status === 'succeeded')).toBe(true);

    // Same data, same settings: the candidate equals the champion, which is not better, so nothing changes.
    const second = await runToEnd(name);
    expect(second.result.outcome).toBe('not_blessed');
    expect(second.result.championMetrics?.auc).toBeCloseTo(first.result.metrics.auc!, 12);
    expect(second.result.blessing.reason).toMatch(/champion/);
    expect(second.result.deployment).toBeUndefined();
    expect((await registry.champion(name))?.id).toBe(champion!.id);
    expect(await deployments.deploymentHistory(name)).toHaveLength(1);
  });

  it('registers a worse model without deploying it', async () => {
    // A second version of the same pipeline that trains a single stump: registered, compared with the champion on
    // the same eval rows, refused.
    const worse = await save(
      flightsDefinition(name, {
        trainer: { kind: 'gradient_boosted_trees', params: { maxIterations: 1, maxLeafNodes: 2, seed: 0 } },
        evaluation: { slices: [] },
      }),
    );
    expect(worse.version.version).toBe(2);
    const { result } = await runToEnd(name);
    expect(result.outcome).toBe('not_blessed');
    expect(result.model.created).toBe(true);
    expect(result.model.status).toBe('rejected');
    expect(result.metrics.auc).toBeLessThan(result.championMetrics!.auc!);
    const versions = await platform.storage.registry.listVersions(name);
    expect(versions.map((v) => v.status)).toContain('rejected');
    const champion = await platform.storage.registry.champion(name);
    expect(champion?.id).not.toBe(result.model.versionId);
  });
});

describe('approval gate', () => {
  const approvalDefinition = (name: string, timeoutSeconds = 600) =>
    flightsDefinition(name, {
      trainer: { kind: 'logistic_regression', params: {} },
      evaluation: { slices: [] },
      validation: { thresholds: [{ metric: 'auc', min: 0.55 }] },
      deployment: { policy: 'approval', approvalTimeoutSeconds: timeoutSeconds },
    });

  it('deploys on approve, and not on reject', async () => {
    const name = `approve-${randomUUID().slice(0, 8)}`;
    await save(approvalDefinition(name));
    const { run } = await startPipelineRun(runner, { pipeline: name, trigger: 'http' });
    const pending = await waitForApproval(run.workflowId);
    expect((await platform.storage.pipelines.getRun(run.id))?.status).toBe('waiting_approval');
    expect(await platform.storage.registry.champion(name)).toBeUndefined();
    const decision = await approvePipelineRun(runner, run.id, { actor: 'alice', reason: 'looks good' });
    expect(decision).toMatchObject({ approved: true, actor: 'alice' });
    const result = (await platform.client.workflow.getHandle(run.workflowId).result()) as TrainingPipelineResult;
    expect(result.outcome).toBe('deployed');
    expect((await platform.storage.registry.champion(name))?.id).toBe(pending.versionId);
    const history = await platform.storage.deployments.deploymentHistory(name);
    expect(history[0]?.actor).toBe('alice');
    // A decision on a finished run is refused.
    await expect(approvePipelineRun(runner, run.id, { actor: 'bob' })).rejects.toThrow(/not waiting/);

    const rejectedName = `reject-${randomUUID().slice(0, 8)}`;
    await save(approvalDefinition(rejectedName));
    const rejected = await startPipelineRun(runner, { pipeline: rejectedName, trigger: 'http' });
    await waitForApproval(rejected.run.workflowId);
    await rejectPipelineRun(runner, rejected.run.id, { actor: 'carol', reason: 'not this week' });
    const rejectedResult = (await platform.client.workflow
      .getHandle(rejected.run.workflowId)
      .result()) as TrainingPipelineResult;
    expect(rejectedResult.outcome).toBe('rejected');
    expect(rejectedResult.approval).toMatchObject({ approved: false, actor: 'carol', reason: 'not this week' });
    expect(await platform.storage.registry.champion(rejectedName)).toBeUndefined();
    expect((await platform.storage.pipelines.getRun(rejected.run.id))?.status).toBe('succeeded');
  });

  it('gives up when nobody decides in time', async () => {
    const name = `timeout-${randomUUID().slice(0, 8)}`;
    await save(approvalDefinition(name, 2));
    const { result } = await runToEnd(name);
    expect(result.outcome).toBe('approval_timed_out');
    expect(result.deployment).toBeUndefined();
    expect(await platform.storage.registry.champion(name)).toBeUndefined();
  });
});

describe('failures', () => {
  it('fails at the extract stage with a typed failure when the source is missing', async () => {
    const name = `missing-${randomUUID().slice(0, 8)}`;
    await save(flightsDefinition(name, { source: { uri: path.join(dataDir, 'missing-flights.parquet') } }));
    const { run } = await startPipelineRun(runner, { pipeline: name, trigger: 'http' });
    const error = await platform.client.workflow
      .getHandle(run.workflowId)
      .result()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const stored = await platform.storage.pipelines.getRun(run.id);
    expect(stored?.status).toBe('failed');
    expect(stored?.failure).toMatchObject({ stage: 'extract', type: 'NotFound' });
    expect(stored?.stages.find((s) => s.stage === 'extract')?.status).toBe('failed');
  });

  it('stops at data validation when new data breaks the schema, before any training', async () => {
    const name = `drifting-${randomUUID().slice(0, 8)}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipeline-validation-'));
    const file = path.join(dir, 'events.csv');
    const rows = (kindPrefix: string) => syntheticCsv({ kindPrefix });
    fs.writeFileSync(file, rows('a'));
    await save({
      name,
      source: { uri: file },
      label: { name: 'y', expression: 'y', task: 'binary' },
      features: [
        { name: 'x', expression: 'x' },
        { name: 'kind', expression: 'kind' },
      ],
      split: { kind: 'hash', key: 'x', evalFraction: 0.3 },
      trainer: { kind: 'logistic_regression', params: {} },
      retry: { maximumAttempts: 2, initialIntervalSeconds: 0.2 },
    });
    expect((await runToEnd(name)).result.outcome).toBe('deployed');
    // Every category is new: far above the unseen-category threshold.
    fs.writeFileSync(file, rows('zz'));
    const { run } = await startPipelineRun(runner, { pipeline: name, trigger: 'http' });
    const error = await platform.client.workflow
      .getHandle(run.workflowId)
      .result()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const stored = await platform.storage.pipelines.getRun(run.id);
    expect(stored?.failure).toMatchObject({ stage: 'validate_data', type: 'DataValidation' });
    expect(stored?.stages.map((s) => s.stage)).not.toContain('train');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('resumes a run failed by an external fault from the failed stage', async () => {
    const name = `resume-${randomUUID().slice(0, 8)}`;
    const trigger = `fail_registry_${name.replace(/-/g, '_')}`;
    const pool = platform.storage.database.pool;
    // The registry refuses versions of this model only (other tests share the database): an outage of one table.
    await pool.query(`
      create function ${trigger}() returns trigger language plpgsql as $$
      begin
        if exists (select 1 from registered_models where id = new.model_id and name = '${name}') then
          raise exception 'registry unavailable (injected by the test)';
        end if;
        return new;
      end $$;
      create trigger ${trigger} before insert on model_versions for each row execute function ${trigger}();
    `);
    try {
      await save(
        flightsDefinition(name, { trainer: { kind: 'logistic_regression', params: {} }, evaluation: { slices: [] } }),
      );
      const { run } = await startPipelineRun(runner, { pipeline: name, trigger: 'http' });
      const error = await platform.client.workflow
        .getHandle(run.workflowId)
        .result()
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkflowFailedError);
      const failed = await platform.storage.pipelines.getRun(run.id);
      expect(failed?.status).toBe('failed');
      expect(failed?.failure).toMatchObject({ stage: 'register' });
      expect(failed?.failure?.message).toMatch(/registry unavailable/);

      await pool.query(`drop trigger ${trigger} on model_versions; drop function ${trigger}();`);
      await resumePipelineRun(runner, run.id);
      const result = (await platform.client.workflow.getHandle(run.workflowId).result()) as TrainingPipelineResult;
      expect(result.outcome).toBe('deployed');
      const states = Object.fromEntries(result.stages.map((s) => [s.name, s.state]));
      expect(states).toMatchObject({
        extract: 'reused',
        statistics: 'reused',
        validate_data: 'reused',
        prepare: 'reused',
        train: 'reused',
        evaluate: 'reused',
        validate_model: 'reused',
        register: 'succeeded',
        deploy: 'succeeded',
      });
      // The resumed Temporal run scheduled no activity of the stages before the failed one.
      const history = await platform.client.workflow.getHandle(run.workflowId).fetchHistory();
      const scheduled = (history.events ?? [])
        .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name)
        .filter((n): n is string => Boolean(n));
      expect(scheduled).not.toContain('extractData');
      expect(scheduled).not.toContain('trainModel');
      expect(scheduled).toContain('registerModel');
      const resumed = await platform.storage.pipelines.getRun(run.id);
      expect(resumed?.status).toBe('succeeded');
      expect(resumed?.failure).toBeNull();
    } finally {
      await pool.query(`drop trigger if exists ${trigger} on model_versions; drop function if exists ${trigger}();`);
    }
  });
});

describe('other tasks', () => {
  it('runs a multiclass pipeline (penguins species)', async () => {
    const name = `penguins-${randomUUID().slice(0, 8)}`;
    await save({
      name,
      source: { uri: path.join(dataDir, 'penguins.json'), format: 'json' },
      label: { name: 'species', expression: '"Species"', task: 'multiclass' },
      features: [
        { name: 'island', expression: '"Island"' },
        { name: 'beak_length', expression: '"Beak Length (mm)"' },
        { name: 'beak_depth', expression: '"Beak Depth (mm)"' },
        { name: 'flipper_length', expression: '"Flipper Length (mm)"' },
        { name: 'body_mass', expression: '"Body Mass (g)"' },
      ],
      split: { kind: 'hash', key: '"Beak Length (mm)" || \'/\' || "Body Mass (g)"', evalFraction: 0.3 },
      trainer: { kind: 'softmax_regression', params: {} },
      validation: { thresholds: [{ metric: 'accuracy', min: 0.9 }] },
    });
    const { result } = await runToEnd(name);
    expect(result.outcome).toBe('deployed');
    expect(result.metrics.accuracy).toBeGreaterThan(0.9);
    expect(result.metrics).toHaveProperty('auc');
    expect(result.metrics).toHaveProperty('log_loss');
  });

  it('runs a regression pipeline (cars miles per gallon)', async () => {
    const name = `cars-${randomUUID().slice(0, 8)}`;
    await save({
      name,
      source: { uri: path.join(dataDir, 'cars.json'), format: 'json' },
      label: { name: 'mpg', expression: 'Miles_per_Gallon', task: 'regression' },
      features: [
        { name: 'cylinders', expression: 'Cylinders' },
        { name: 'displacement', expression: 'Displacement' },
        { name: 'horsepower', expression: 'Horsepower' },
        { name: 'weight', expression: 'Weight_in_lbs' },
        { name: 'acceleration', expression: 'Acceleration' },
        { name: 'origin', expression: 'Origin' },
      ],
      split: { kind: 'hash', key: 'Name', evalFraction: 0.25 },
      trainer: { kind: 'gradient_boosted_trees', params: { maxIterations: 50 } },
      evaluation: { slices: ['origin'], minSliceRows: 10 },
      validation: {
        thresholds: [
          { metric: 'r2', min: 0.6 },
          { metric: 'rmse', max: 6 },
        ],
      },
    });
    const { result } = await runToEnd(name);
    expect(result.outcome).toBe('deployed');
    expect(result.metrics.r2).toBeGreaterThan(0.6);
    expect(result.metrics).toHaveProperty('mae');
  });
});
