/**
 * The branches of `deploymentRollout` with mocked activities: promote on a passing comparison, roll back on a failing
 * one, on too little traffic, early on a failing periodic check, when promotion itself fails and when cancelled; the
 * refusal of a strategy it does not run; a refused start that ends no canary it did not start; continuing as new with
 * its state; and one pass of the rollout reconciler. Canaries last a few seconds or less.
 */
import { randomUUID } from 'node:crypto';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CanaryComparison } from '../../../activities/index.js';
import { FailureType } from '../../../core/constants.js';
import {
  deploymentRollout,
  reconcileDeploymentRollouts,
  rolloutStateQuery,
  type DeploymentRolloutInput,
} from '../../../workflows/index.js';
import { canaryComparison, startCanaryResult, trafficState } from '../../support/activity-results.js';
import {
  createWorkflowTestEnv,
  workflowFailure,
  WORKFLOW_TEST_TIMEOUT_MS,
  type MockActivities,
  type MockedActivities,
  type WorkflowTestEnv,
} from '../../support/workflow-env.js';

const DEPLOYMENT = 'delays';
const CHAMPION = randomUUID();
const CHALLENGER = randomUUID();
const THRESHOLDS = { maxErrorRateIncrease: 0.01, maxLatencyP99Ratio: 1.5, maxPredictionDivergence: 0.1 };

let t: WorkflowTestEnv;

beforeAll(async () => {
  t = await createWorkflowTestEnv();
});

afterAll(async () => {
  await t?.teardown();
});

function input(overrides: Partial<DeploymentRolloutInput> = {}): DeploymentRolloutInput {
  return {
    deploymentName: DEPLOYMENT,
    versionId: CHALLENGER,
    strategy: 'canary',
    trafficPercent: 10,
    durationSeconds: 0.5,
    minRequests: 50,
    thresholds: THRESHOLDS,
    ...overrides,
  };
}

/** Rollout activities whose comparisons answer `verdicts` in turn (the last one repeats). */
function rolloutActivities(verdicts: CanaryComparison[], overrides: MockActivities = {}): MockActivities {
  let compared = 0;
  return {
    startCanary: async ({ deploymentName, versionId, trafficPercent }) =>
      startCanaryResult(deploymentName, CHAMPION, versionId, trafficPercent),
    compareCanary: async () => verdicts[Math.min(compared++, verdicts.length - 1)]!,
    promoteCanary: async ({ deploymentName, versionId }) => trafficState(deploymentName, versionId, versionId, 0),
    rollbackCanary: async ({ deploymentName, versionId }) => trafficState(deploymentName, CHAMPION, versionId, 0),
    ...overrides,
  };
}

function start(mocked: MockedActivities, rollout: DeploymentRolloutInput, workflowId = mocked.workflowId('rollout')) {
  return t.client.workflow.start(deploymentRollout, { taskQueue: mocked.taskQueue, workflowId, args: [rollout] });
}

describe.concurrent('deploymentRollout', { timeout: WORKFLOW_TEST_TIMEOUT_MS }, () => {
  it('promotes a challenger whose canary passes, after the canary ran its duration', async () => {
    await t.withActivities(rolloutActivities([canaryComparison('pass', 'all within limits')]), async (mocked) => {
      const workflowId = mocked.workflowId('rollout-promote');
      const started = Date.now();
      const result = await (
        await start(mocked, input({ stickyKey: 'user', requestedBy: 'alice' }), workflowId)
      ).result();

      expect(Date.now() - started).toBeGreaterThanOrEqual(500);
      expect(mocked.names()).toEqual(['startCanary', 'compareCanary', 'promoteCanary']);
      expect(mocked.inputsOf('startCanary')).toEqual([
        {
          deploymentName: DEPLOYMENT,
          versionId: CHALLENGER,
          trafficPercent: 10,
          stickyKey: 'user',
          rollout: workflowId,
          actor: 'alice',
          reason: `canary rollout ${workflowId}: 10% of the traffic for 0.5s`,
        },
      ]);
      expect(mocked.inputsOf('compareCanary')).toEqual([
        expect.objectContaining({
          championVersionId: CHAMPION,
          challengerVersionId: CHALLENGER,
          minRequests: 50,
          thresholds: THRESHOLDS,
        }),
      ]);
      expect(mocked.inputsOf('promoteCanary')).toEqual([
        {
          deploymentName: DEPLOYMENT,
          versionId: CHALLENGER,
          rollout: workflowId,
          actor: `workflow:${workflowId}`,
          reason: `canary passed, promoted by rollout ${workflowId}: all within limits`,
        },
      ]);
      expect(result).toMatchObject({ outcome: 'promoted', phase: 'promoted', championVersionId: CHAMPION });
      expect(result.steps.map((s) => s.step)).toEqual(['canary_started', 'compared', 'promoted']);
    });
  });

  it('rolls back a challenger that fails the final comparison', async () => {
    await t.withActivities(rolloutActivities([canaryComparison('fail', 'error rate +5%')]), async (mocked) => {
      const workflowId = mocked.workflowId('rollout-fail');
      const result = await (await start(mocked, input(), workflowId)).result();

      expect(mocked.names()).toEqual(['startCanary', 'compareCanary', 'rollbackCanary']);
      const reason = `canary failed, rolled back by rollout ${workflowId}: error rate +5%`;
      expect(mocked.inputsOf('rollbackCanary')).toEqual([
        {
          deploymentName: DEPLOYMENT,
          versionId: CHALLENGER,
          rollout: workflowId,
          actor: `workflow:${workflowId}`,
          reason,
        },
      ]);
      expect(result).toMatchObject({ outcome: 'rolled_back', phase: 'rolled_back', reason });
      expect(result.steps.map((s) => s.step)).toEqual(['canary_started', 'compared', 'rolled_back']);
    });
  });

  it('rolls back when the canary had too little traffic to judge', async () => {
    await t.withActivities(
      rolloutActivities([canaryComparison('insufficient_data', '3 < 50 requests')]),
      async (mocked) => {
        const result = await (await start(mocked, input())).result();
        expect(mocked.names()).toEqual(['startCanary', 'compareCanary', 'rollbackCanary']);
        expect(result.outcome).toBe('rolled_back');
        expect(result.reason).toMatch(/^canary had too little traffic, rolled back by rollout .*: 3 < 50 requests$/);
      },
    );
  });

  it('rolls back at the first periodic check that fails, without waiting for the end', async () => {
    const verdicts = [canaryComparison('pass', 'fine so far'), canaryComparison('fail', 'p99 x3')];
    await t.withActivities(rolloutActivities(verdicts), async (mocked) => {
      const started = Date.now();
      const handle = await start(mocked, input({ durationSeconds: 30, checkEverySeconds: 0.2 }));
      const result = await handle.result();

      expect(Date.now() - started).toBeLessThan(10_000);
      expect(mocked.names()).toEqual(['startCanary', 'compareCanary', 'compareCanary', 'rollbackCanary']);
      expect(result.steps.map((s) => s.step)).toEqual([
        'canary_started',
        'checked',
        'checked',
        'compared',
        'rolled_back',
      ]);
      expect(result.reason).toMatch(/^canary failed \(early check\), rolled back by rollout .*: p99 x3$/);
      expect(await handle.query(rolloutStateQuery)).toMatchObject({ phase: 'rolled_back', outcome: 'rolled_back' });
    });
  });

  it('rolls back, records the failure and fails when promotion itself fails', async () => {
    const gone = ApplicationFailure.create({
      type: FailureType.NotFound,
      message: 'no such deployment',
      nonRetryable: true,
    });
    const activities = rolloutActivities([canaryComparison('pass')], { promoteCanary: () => Promise.reject(gone) });
    await t.withActivities(activities, async (mocked) => {
      const handle = await start(mocked, input());
      const failure = await workflowFailure(handle.result());

      expect(failure).toMatchObject({ cause: { type: FailureType.NotFound, message: 'no such deployment' } });
      expect(mocked.names()).toEqual(['startCanary', 'compareCanary', 'promoteCanary', 'rollbackCanary']);
      expect(mocked.inputsOf('rollbackCanary')[0]!.reason).toMatch(
        /^rolled back because the rollout failed: no such deployment \(rollout .*\)$/,
      );
      const state = await handle.query(rolloutStateQuery);
      expect(state.phase).toBe('failed');
      expect(state.steps.map((s) => s.step)).toEqual(['canary_started', 'compared', 'rolled_back', 'failed']);
    });
  });

  it('rolls the canary back when the rollout is cancelled', async () => {
    await t.withActivities(rolloutActivities([canaryComparison('pass')]), async (mocked) => {
      const handle = await start(mocked, input({ durationSeconds: 60 }));
      await vi.waitFor(
        async () => {
          const state = await handle.query(rolloutStateQuery);
          if (state.phase !== 'canary') throw new Error(`phase ${state.phase}`);
        },
        { timeout: 15_000, interval: 50 },
      );
      await handle.cancel();

      expect(await workflowFailure(handle.result())).toBeInstanceOf(CancelledFailure);
      expect(mocked.names()).toEqual(['startCanary', 'rollbackCanary']);
      expect(mocked.inputsOf('rollbackCanary')[0]!.reason).toMatch(/^rolled back because the rollout was cancelled/);
      const state = await handle.query(rolloutStateQuery);
      expect(state).toMatchObject({ phase: 'cancelled', outcome: 'rolled_back' });
    });
  });

  it('continues as new after its checks per run, carrying its state, and is judged at the original time', async () => {
    await t.withActivities(rolloutActivities([canaryComparison('pass', 'fine')]), async (mocked) => {
      const workflowId = mocked.workflowId('rollout-can');
      const started = Date.now();
      const handle = await start(
        mocked,
        input({ allowUnblessed: true, durationSeconds: 5, checkEverySeconds: 0.2, checksPerRun: 1 }),
        workflowId,
      );
      const result = await handle.result();

      // One canary started and one promotion, however many runs the rollout took.
      expect(mocked.names().filter((n) => n !== 'compareCanary')).toEqual(['startCanary', 'promoteCanary']);
      expect(mocked.inputsOf('startCanary')[0]).toMatchObject({ rollout: workflowId, allowUnblessed: true });
      expect(mocked.inputsOf('promoteCanary')[0]).toMatchObject({ rollout: workflowId, allowUnblessed: true });
      expect(result).toMatchObject({ outcome: 'promoted', championVersionId: CHAMPION });
      expect(result.continuedAsNew).toBeGreaterThanOrEqual(2);
      // Judged once the original duration was up, not a duration after the last run started.
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(5_000);
      expect(elapsed).toBeLessThan(15_000);
      // The state kept the start and the latest checks only.
      expect(result.steps[0]!.step).toBe('canary_started');
      expect(result.steps.filter((s) => s.step === 'checked').length).toBeLessThanOrEqual(20);
      expect(result.steps.slice(-2).map((s) => s.step)).toEqual(['compared', 'promoted']);

      // The first run ended by continuing as new; the last one completed.
      const first = await t.client.workflow.getHandle(workflowId, handle.firstExecutionRunId).describe();
      expect(first.status.name).toBe('CONTINUED_AS_NEW');
      expect((await t.client.workflow.getHandle(workflowId).describe()).status.name).toBe('COMPLETED');
    });
  });

  it('fails without ending a canary it did not start when its start is refused', async () => {
    const held = ApplicationFailure.create({
      type: FailureType.InvalidInput,
      message: `deployment ${DEPLOYMENT} is held by rollout rollout-other; it must end before another canary starts`,
      nonRetryable: true,
    });
    const activities = rolloutActivities([canaryComparison('pass')], { startCanary: () => Promise.reject(held) });
    await t.withActivities(activities, async (mocked) => {
      const workflowId = mocked.workflowId('rollout-refused');
      const handle = await start(mocked, input(), workflowId);
      const failure = await workflowFailure(handle.result());

      expect(failure).toMatchObject({ cause: { type: FailureType.InvalidInput } });
      expect(mocked.names()).toEqual(['startCanary', 'rollbackCanary']);
      // Only while it holds the deployment itself (it does not: the store then changes nothing).
      expect(mocked.inputsOf('rollbackCanary')[0]).toMatchObject({ rollout: workflowId, heldOnly: true });
      expect((await handle.query(rolloutStateQuery)).phase).toBe('failed');
    });
  });

  it('runs one reconciler pass through its activity', async () => {
    const reconciled = [
      {
        deployment: DEPLOYMENT,
        workflowId: 'rollout-gone',
        workflowStatus: 'terminated',
        action: 'rolled_back' as const,
        reason: 'rolled back by the rollout reconciler: rollout workflow rollout-gone is terminated',
      },
    ];
    await t.withActivities({ reconcileRollouts: async () => reconciled }, async (mocked) => {
      const result = await t.client.workflow.execute(reconcileDeploymentRollouts, {
        taskQueue: mocked.taskQueue,
        workflowId: mocked.workflowId('reconcile'),
        args: [{ deploymentName: DEPLOYMENT, graceSeconds: 0 }],
      });
      expect(result).toEqual(reconciled);
      expect(mocked.inputsOf('reconcileRollouts')).toEqual([{ deploymentName: DEPLOYMENT, graceSeconds: 0 }]);
    });
  });

  it('refuses a strategy other than canary before touching any traffic', async () => {
    await t.withActivities(rolloutActivities([canaryComparison('pass')]), async (mocked) => {
      const shadow = { ...input(), strategy: 'shadow' } as unknown as DeploymentRolloutInput;
      const failure = await workflowFailure((await start(mocked, shadow)).result());

      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure).toMatchObject({ type: FailureType.InvalidInput, nonRetryable: true });
      expect(mocked.calls).toEqual([]);
    });
  });
});
