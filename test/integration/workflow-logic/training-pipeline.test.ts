/**
 * The branches of `trainingPipeline` with mocked activities: deploy policies (automatic, approval approved, rejected,
 * timed out, cancelled), an unblessed model, typed failures, retries and a resume from the stage that failed. The
 * activities keep what a real run would record (stage results per workflow id, run statuses) in memory.
 */
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FailureType } from '../../../core/constants.js';
import { pipelineDefinitionSchema, type PipelineDefinitionInput } from '../../../pipelines/definition.js';
import {
  approveUpdate,
  pipelineProgressQuery,
  rejectUpdate,
  trainingPipeline,
  type PipelineProgress,
  type TrainingPipelineInput,
  type TrainingPipelineResult,
} from '../../../workflows/index.js';
import {
  deployResult,
  evaluateResult,
  extractResult,
  prepareResult,
  registerResult,
  statisticsResult,
  trainResult,
  validateDataResult,
  validateModelResult,
} from '../../support/activity-results.js';
import {
  createWorkflowTestEnv,
  workflowFailure,
  WORKFLOW_TEST_TIMEOUT_MS,
  type MockActivities,
  type MockedActivities,
  type WorkflowTestEnv,
} from '../../support/workflow-env.js';

const NAME = 'wf-logic';

/** The stage activities in the order a run calls them. */
const STAGE_ACTIVITIES = [
  'extractData',
  'computeStatistics',
  'validateData',
  'prepareData',
  'trainModel',
  'evaluateModel',
  'validateModel',
  'registerModel',
];

let t: WorkflowTestEnv;

beforeAll(async () => {
  t = await createWorkflowTestEnv();
});

afterAll(async () => {
  await t?.teardown();
});

function definition(overrides: Partial<PipelineDefinitionInput> = {}) {
  return pipelineDefinitionSchema.parse({
    name: NAME,
    source: { uri: '/nowhere/events.csv' },
    label: { name: 'y', expression: 'y', task: 'binary' },
    features: [{ name: 'x', expression: 'x', kind: 'numeric' }],
    split: { kind: 'hash', key: 'x', evalFraction: 0.3 },
    trainer: { kind: 'logistic_regression', params: {} },
    // Two tries 0.1 s apart: a retry costs the test almost nothing.
    retry: { maximumAttempts: 2, initialIntervalSeconds: 0.1, maximumIntervalSeconds: 1 },
    ...overrides,
  } satisfies PipelineDefinitionInput);
}

function input(taskQueue: string, overrides: Partial<PipelineDefinitionInput> = {}): TrainingPipelineInput {
  return {
    runId: randomUUID(),
    pipeline: NAME,
    pipelineVersion: 1,
    definition: definition(overrides),
    trigger: 'manual',
    triggeredBy: 'test',
    // One worker serves both queues here.
    trainingTaskQueue: taskQueue,
  };
}

/**
 * The pipeline's activities, in memory: each stage records its result under its workflow id the way the real stages
 * record theirs in the metadata store, and `beginPipelineRun` hands a later run of the same workflow id back what was
 * recorded (a resume). `overrides` replace single activities.
 */
function pipelineActivities(options: { blessed?: boolean; changed?: boolean } = {}, overrides: MockActivities = {}) {
  const recorded = new Map<string, Record<string, unknown>>();
  const workflowId = () => Context.current().info.workflowExecution?.workflowId ?? '';
  const remember = <T>(stage: string, result: T): T => {
    recorded.set(workflowId(), { ...recorded.get(workflowId()), [stage]: result });
    return result;
  };
  const activities: MockActivities = {
    beginPipelineRun: async ({ stages }) => {
      const done = recorded.get(workflowId()) ?? {};
      return { completed: Object.fromEntries(stages.filter((s) => s in done).map((s) => [s, done[s]])) };
    },
    setPipelineRunStatus: async () => undefined,
    extractData: async () => remember('extract', extractResult()),
    computeStatistics: async () => remember('statistics', statisticsResult()),
    validateData: async () => remember('validate', validateDataResult()),
    prepareData: async () => remember('prepare', prepareResult()),
    trainModel: async () => remember('train', trainResult()),
    evaluateModel: async () => remember('evaluate', evaluateResult()),
    validateModel: async () => remember('validate_model', validateModelResult(options.blessed ?? true)),
    registerModel: async ({ modelName }) => remember('register', registerResult(modelName)),
    deployModel: async ({ deploymentName, versionId }) => deployResult(deploymentName, versionId, options.changed),
    ...overrides,
  };
  return activities;
}

function start(mocked: MockedActivities, run: TrainingPipelineInput, workflowId = mocked.workflowId('pipeline')) {
  return t.client.workflow.start(trainingPipeline, { taskQueue: mocked.taskQueue, workflowId, args: [run] });
}

function stageStates(result: { stages: PipelineProgress['stages'] }): Record<string, string> {
  return Object.fromEntries(result.stages.map((s) => [s.name, s.state]));
}

/** Waits until the run offers its approval (what the API waits for before it accepts a decision). */
function pendingApproval(handle: WorkflowHandle<typeof trainingPipeline>) {
  return vi.waitFor(
    async () => {
      const progress = await handle.query(pipelineProgressQuery);
      if (!progress.approval) throw new Error(`not waiting yet: ${progress.stage}`);
      return progress;
    },
    { timeout: 15_000, interval: 50 },
  );
}

describe.concurrent('trainingPipeline, automatic policy', { timeout: WORKFLOW_TEST_TIMEOUT_MS }, () => {
  it('runs the stages in order, hands each output to the next stage and deploys the blessed version', async () => {
    const activities = pipelineActivities();
    await t.withActivities(activities, async (mocked) => {
      const run = input(mocked.taskQueue);
      const result = await (await start(mocked, run)).result();

      expect(mocked.names()).toEqual(['beginPipelineRun', ...STAGE_ACTIVITIES, 'deployModel', 'setPipelineRunStatus']);
      const [extracted] = mocked.inputsOf('computeStatistics');
      const [prepared] = mocked.inputsOf('trainModel');
      const [registered] = mocked.inputsOf('registerModel');
      const [deployed] = mocked.inputsOf('deployModel');
      expect(extracted!.snapshot.uri).toBe(result.artifacts.snapshot);
      expect(mocked.inputsOf('prepareData')[0]).toMatchObject({ dataset: NAME, label: run.definition.label });
      expect(prepared!.transform.uri).toBe(result.artifacts.transform);
      expect(registered).toMatchObject({ modelName: NAME, pipeline: NAME, blessing: result.blessing });
      expect(registered!.lineage.blessing.uri).toBe(result.artifacts.blessing);
      expect(deployed).toMatchObject({
        deploymentName: NAME,
        modelName: NAME,
        versionId: result.model.versionId,
        actor: `workflow:${run.runId}`,
        reason: 'all checks passed (automatic policy)',
      });

      expect(result).toMatchObject({ runId: run.runId, outcome: 'deployed', metrics: { auc: 0.9 } });
      expect(result.approval).toBeUndefined();
      expect(stageStates(result)).toEqual({
        extract: 'succeeded',
        statistics: 'succeeded',
        validate_data: 'succeeded',
        prepare: 'succeeded',
        train: 'succeeded',
        evaluate: 'succeeded',
        validate_model: 'succeeded',
        register: 'succeeded',
        approval: 'skipped',
        deploy: 'succeeded',
      });
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([{ status: 'succeeded', outcome: 'deployed' }]);
    });
  });

  it('ends as already_champion when the deployment already serves that version', async () => {
    await t.withActivities(pipelineActivities({ changed: false }), async (mocked) => {
      const result = await (await start(mocked, input(mocked.taskQueue))).result();
      expect(result.outcome).toBe('already_champion');
      expect(result.deployment?.changed).toBe(false);
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([{ status: 'succeeded', outcome: 'already_champion' }]);
    });
  });

  it('registers an unblessed model and never deploys it', async () => {
    await t.withActivities(pipelineActivities({ blessed: false }), async (mocked) => {
      const result = await (await start(mocked, input(mocked.taskQueue))).result();

      expect(mocked.names()).toEqual(['beginPipelineRun', ...STAGE_ACTIVITIES, 'setPipelineRunStatus']);
      expect(mocked.inputsOf('registerModel')[0]!.blessing).toMatchObject({ blessed: false, reason: 'auc 0.4 < 0.55' });
      expect(result.outcome).toBe('not_blessed');
      expect(result.deployment).toBeUndefined();
      expect(stageStates(result)).toMatchObject({ register: 'succeeded', approval: 'skipped', deploy: 'skipped' });
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([{ status: 'succeeded', outcome: 'not_blessed' }]);
    });
  });

  it('never asks for an approval for an unblessed model, even under the approval policy', async () => {
    await t.withActivities(pipelineActivities({ blessed: false }), async (mocked) => {
      const run = input(mocked.taskQueue, { deployment: { policy: 'approval', approvalTimeoutSeconds: 60 } });
      const result = await (await start(mocked, run)).result();
      expect(result.outcome).toBe('not_blessed');
      expect(stageStates(result)).toMatchObject({ approval: 'skipped', deploy: 'skipped' });
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([{ status: 'succeeded', outcome: 'not_blessed' }]);
    });
  });
});

describe.concurrent('trainingPipeline, approval policy', { timeout: WORKFLOW_TEST_TIMEOUT_MS }, () => {
  const approval = (approvalTimeoutSeconds: number) => ({
    deployment: { policy: 'approval' as const, approvalTimeoutSeconds },
  });

  it('waits for the decision, refuses one without an actor, and deploys once approved', async () => {
    await t.withActivities(pipelineActivities(), async (mocked) => {
      const handle = await start(mocked, input(mocked.taskQueue, approval(60)));
      const progress = await pendingApproval(handle);
      expect(progress).toMatchObject({ stage: 'approval', approval: { version: 1 } });
      expect(mocked.names()).not.toContain('deployModel');
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([{ status: 'waiting_approval' }]);

      await expect(handle.executeUpdate(approveUpdate, { args: [{ actor: ' ' }] })).rejects.toBeInstanceOf(
        WorkflowUpdateFailedError,
      );
      const decision = await handle.executeUpdate(approveUpdate, { args: [{ actor: 'alice', reason: 'looks good' }] });
      expect(decision).toMatchObject({ approved: true, actor: 'alice', reason: 'looks good' });
      const result = await handle.result();

      expect(result).toMatchObject({ outcome: 'deployed', approval: { approved: true, actor: 'alice' } });
      expect(mocked.inputsOf('deployModel')).toEqual([
        expect.objectContaining({ actor: 'alice', reason: 'all checks passed (approved by alice: looks good)' }),
      ]);
      expect(stageStates(result)).toMatchObject({ approval: 'succeeded', deploy: 'succeeded' });
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([
        { status: 'waiting_approval' },
        { status: 'running' },
        { status: 'succeeded', outcome: 'deployed' },
      ]);
      expect(progress.approval!.versionId).toBe(result.model.versionId);
    });
  });

  it('does not deploy a rejected version, and refuses a second decision', async () => {
    await t.withActivities(pipelineActivities(), async (mocked) => {
      const handle = await start(mocked, input(mocked.taskQueue, approval(60)));
      await pendingApproval(handle);
      await handle.executeUpdate(rejectUpdate, { args: [{ actor: 'carol', reason: 'not this week' }] });
      const result = await handle.result();

      expect(result).toMatchObject({
        outcome: 'rejected',
        approval: { approved: false, actor: 'carol', reason: 'not this week' },
      });
      expect(result.deployment).toBeUndefined();
      expect(mocked.names()).not.toContain('deployModel');
      expect(stageStates(result)).toMatchObject({ approval: 'succeeded', deploy: 'skipped' });
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([
        { status: 'waiting_approval' },
        { status: 'running' },
        { status: 'succeeded', outcome: 'rejected' },
      ]);
      await expect(handle.executeUpdate(approveUpdate, { args: [{ actor: 'bob' }] })).rejects.toThrow();
    });
  });

  it('gives up when nobody decides within the approval timeout; the version stays registered', async () => {
    await t.withActivities(pipelineActivities(), async (mocked) => {
      const started = Date.now();
      const result: TrainingPipelineResult = await (await start(mocked, input(mocked.taskQueue, approval(1)))).result();

      expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
      expect(result.outcome).toBe('approval_timed_out');
      expect(result.approval).toBeUndefined();
      expect(result.model.versionId).toBeTruthy();
      expect(mocked.names()).not.toContain('deployModel');
      expect(stageStates(result)).toMatchObject({ register: 'succeeded', approval: 'succeeded', deploy: 'skipped' });
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([
        { status: 'waiting_approval' },
        { status: 'running' },
        { status: 'succeeded', outcome: 'approval_timed_out' },
      ]);
    });
  });

  it('records a run cancelled while it waits as cancelled, and deploys nothing', async () => {
    await t.withActivities(pipelineActivities(), async (mocked) => {
      const handle = await start(mocked, input(mocked.taskQueue, approval(60)));
      await pendingApproval(handle);
      await handle.cancel();

      expect(await workflowFailure(handle.result())).toBeInstanceOf(CancelledFailure);
      expect(mocked.names()).not.toContain('deployModel');
      const progress = await handle.query(pipelineProgressQuery);
      expect(progress.stages.find((s) => s.name === 'approval')).toMatchObject({ state: 'cancelled' });
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([
        { status: 'waiting_approval' },
        { status: 'cancelled' },
      ]);
    });
  });
});

describe.concurrent('trainingPipeline, failures', { timeout: WORKFLOW_TEST_TIMEOUT_MS }, () => {
  it('stops at the stage that found bad data, with its typed failure, and runs no later stage', async () => {
    const bad = ApplicationFailure.create({
      type: FailureType.DataValidation,
      message: '3 anomalies',
      nonRetryable: true,
    });
    const activities = pipelineActivities({}, { validateData: () => Promise.reject(bad) });
    await t.withActivities(activities, async (mocked) => {
      const failure = await workflowFailure((await start(mocked, input(mocked.taskQueue))).result());

      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure).toMatchObject({
        type: FailureType.DataValidation,
        message: 'stage validate_data failed: 3 anomalies',
        nonRetryable: true,
        details: [{ type: FailureType.DataValidation, message: '3 anomalies', stage: 'validate_data' }],
      });
      // Not retried: the type is non-retryable.
      expect(mocked.names()).toEqual([
        'beginPipelineRun',
        'extractData',
        'computeStatistics',
        'validateData',
        'setPipelineRunStatus',
      ]);
      expect(mocked.inputsOf('setPipelineRunStatus')).toEqual([
        {
          status: 'failed',
          failure: { type: FailureType.DataValidation, message: '3 anomalies', stage: 'validate_data' },
        },
      ]);
    });
  });

  it('retries a stage that failed for a transient reason and goes on', async () => {
    let calls = 0;
    const activities = pipelineActivities(
      {},
      {
        evaluateModel: async () => {
          calls += 1;
          if (calls === 1) throw new Error('connection reset');
          return evaluateResult();
        },
      },
    );
    await t.withActivities(activities, async (mocked) => {
      const result = await (await start(mocked, input(mocked.taskQueue))).result();
      expect(result.outcome).toBe('deployed');
      expect(mocked.calls.filter((c) => c.name === 'evaluateModel').map((c) => c.attempt)).toEqual([1, 2]);
    });
  });

  it('fails once the retries are spent; a resume of the same workflow id reuses the completed stages', async () => {
    let trainerWorks = false;
    const activities = pipelineActivities(
      {},
      {
        trainModel: async () => {
          if (!trainerWorks) throw new Error('the GPU fell off the bus');
          return trainResult();
        },
      },
    );
    await t.withActivities(activities, async (mocked) => {
      const run = input(mocked.taskQueue);
      const workflowId = mocked.workflowId('pipeline-resume');
      const failure = await workflowFailure((await start(mocked, run, workflowId)).result());
      expect(failure).toMatchObject({
        type: 'Error',
        message: 'stage train failed: the GPU fell off the bus',
        details: [{ type: 'Error', message: 'the GPU fell off the bus', stage: 'train' }],
      });
      expect(mocked.calls.filter((c) => c.name === 'trainModel').map((c) => c.attempt)).toEqual([1, 2]);
      expect(mocked.names().at(-1)).toBe('setPipelineRunStatus');
      expect(mocked.inputsOf('setPipelineRunStatus').at(-1)).toMatchObject({ status: 'failed' });
      const firstRun = mocked.calls.length;
      const firstTraining = mocked.inputsOf('trainModel')[0]!;

      trainerWorks = true;
      const result = await (await start(mocked, run, workflowId)).result();

      const resumed = mocked.calls.slice(firstRun).map((c) => c.name);
      expect(resumed).toEqual([
        'beginPipelineRun',
        'trainModel',
        'evaluateModel',
        'validateModel',
        'registerModel',
        'deployModel',
        'setPipelineRunStatus',
      ]);
      // The resumed training reads the splits the first run prepared.
      expect(mocked.inputsOf('trainModel').at(-1)).toMatchObject({
        train: firstTraining.train,
        eval: firstTraining.eval,
      });
      expect(stageStates(result)).toMatchObject({
        extract: 'reused',
        statistics: 'reused',
        validate_data: 'reused',
        prepare: 'reused',
        train: 'succeeded',
        deploy: 'succeeded',
      });
      expect(result.outcome).toBe('deployed');
      expect(result.artifacts.snapshot).toBe(recordedSnapshot(mocked));
    });
  });
});

/** The snapshot the (only) extraction returned, as the statistics stage received it. */
function recordedSnapshot(mocked: MockedActivities): string {
  const [statistics] = mocked.inputsOf('computeStatistics');
  return statistics!.snapshot.uri;
}
