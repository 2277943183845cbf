/**
 * The branches of `monitorDeployment` with mocked activities: a breached window runs the actions its definition asks
 * for (alert, retrain, rollback on a crossed floor), a quiet window or one below `minRows` runs none, a failed
 * action is reported without stopping the others, and the window's span comes from the input, floored to seconds.
 */
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MonitoringActionOutcome, MonitoringPolicyResult } from '../../../activities/index.js';
import type { MonitoringPolicy } from '../../../monitoring/action-policy.js';
import type { MonitorWindowInput, WindowSummary } from '../../../monitoring/types.js';
import { monitorDeployment, type MonitorDeploymentInput } from '../../../workflows/index.js';
import {
  createWorkflowTestEnv,
  WORKFLOW_TEST_TIMEOUT_MS,
  type MockActivities,
  type MockedActivities,
  type WorkflowTestEnv,
} from '../../support/workflow-env.js';

const DEPLOYMENT = 'delays';

let t: WorkflowTestEnv;

beforeAll(async () => {
  t = await createWorkflowTestEnv();
});

afterAll(async () => {
  await t?.teardown();
});

const FULL_POLICY: MonitoringPolicy = {
  everySeconds: 600,
  windowSeconds: 300,
  minRows: 100,
  thresholds: { skew: 0.1, drift: 0.1, features: {} },
  alert: { url: 'http://127.0.0.1:1/hook', secretEnv: 'MLOPS_ALERT_SECRET' },
  retrain: { cooldownSeconds: 3600 },
  rollback: { metric: 'auc', min: 0.7, minLabelledRows: 100 },
};

function windowOf(input: MonitorWindowInput, overrides: Partial<WindowSummary> = {}): WindowSummary {
  const end = Date.parse(input.windowEnd);
  return {
    windowId: randomUUID(),
    deployment: input.deployment,
    model: DEPLOYMENT,
    version: 2,
    versionId: 'v2',
    windowStart: new Date(end - input.windowSeconds * 1000).toISOString(),
    windowEnd: input.windowEnd,
    rows: 1000,
    labelledRows: 500,
    features: [],
    evaluation: { auc: 0.8 },
    breaches: [],
    breached: false,
    belowMinRows: false,
    ...overrides,
  };
}

const done = (kind: MonitoringActionOutcome['kind']): MonitoringActionOutcome => ({
  kind,
  status: 'done',
  reason: `${kind} done`,
});

function activities(
  policy: MonitoringPolicyResult,
  window: Partial<WindowSummary>,
  overrides: MockActivities = {},
): MockActivities {
  return {
    loadMonitoringPolicy: async () => policy,
    computeMonitoringWindow: async (input) => windowOf(input, window),
    deliverMonitoringAlert: async () => done('alert'),
    retrainFromMonitoring: async () => done('retrain'),
    rollbackFromMonitoring: async () => done('rollback'),
    ...overrides,
  };
}

function run(mocked: MockedActivities, input: MonitorDeploymentInput) {
  return t.client.workflow.execute(monitorDeployment, {
    taskQueue: mocked.taskQueue,
    workflowId: mocked.workflowId('monitor'),
    args: [input],
  });
}

const breached = {
  breached: true,
  breaches: [{ kind: 'drift' as const, subject: 'x', value: 0.3, threshold: 0.1 }],
  live: { auc: 0.6 },
};

describe.concurrent('monitorDeployment', { timeout: WORKFLOW_TEST_TIMEOUT_MS }, () => {
  it('alerts, retrains and rolls back on a breached window whose floor was crossed', async () => {
    const policy = { deployment: DEPLOYMENT, pipeline: 'delays-pipeline', monitoring: FULL_POLICY };
    await t.withActivities(activities(policy, breached), async (mocked) => {
      const result = await run(mocked, { deployment: DEPLOYMENT, windowEnd: '2026-03-01T10:00:00.750Z' });

      expect(mocked.names().slice(0, 2)).toEqual(['loadMonitoringPolicy', 'computeMonitoringWindow']);
      expect(mocked.names().slice(2).sort()).toEqual([
        'deliverMonitoringAlert',
        'retrainFromMonitoring',
        'rollbackFromMonitoring',
      ]);
      // The definition's window, ending at the asked time floored to whole seconds.
      expect(mocked.inputsOf('computeMonitoringWindow')).toEqual([
        { deployment: DEPLOYMENT, windowEnd: '2026-03-01T10:00:00.000Z', windowSeconds: 300 },
      ]);
      const [summary] = mocked.inputsOf('retrainFromMonitoring').map((i) => i.summary);
      expect(mocked.inputsOf('retrainFromMonitoring')).toEqual([
        { summary, pipeline: 'delays-pipeline', cooldownSeconds: 3600 },
      ]);
      expect(mocked.inputsOf('deliverMonitoringAlert')).toEqual([{ summary, alert: FULL_POLICY.alert }]);
      expect(mocked.inputsOf('rollbackFromMonitoring')).toEqual([{ summary, rollback: FULL_POLICY.rollback }]);
      expect(result.pipeline).toBe('delays-pipeline');
      expect(result.summary).toEqual(summary);
      expect(result.actions.map((a) => a.kind)).toEqual(['alert', 'retrain', 'rollback']);
    });
  });

  it('runs only the actions the definition asks for, and no rollback above the floor', async () => {
    const { alert: _alert, rollback: _rollback, ...retrainOnly } = FULL_POLICY;
    const policy = { deployment: DEPLOYMENT, pipeline: 'p', monitoring: retrainOnly };
    await t.withActivities(activities(policy, breached), async (mocked) => {
      const result = await run(mocked, { deployment: DEPLOYMENT, windowSeconds: 60 });
      expect(mocked.names()).toEqual(['loadMonitoringPolicy', 'computeMonitoringWindow', 'retrainFromMonitoring']);
      expect(mocked.inputsOf('computeMonitoringWindow')[0]?.windowSeconds).toBe(60);
      expect(result.actions).toEqual([done('retrain')]);
    });
    const full = { deployment: DEPLOYMENT, pipeline: 'p', monitoring: FULL_POLICY };
    await t.withActivities(activities(full, { ...breached, live: { auc: 0.75 } }), async (mocked) => {
      await run(mocked, { deployment: DEPLOYMENT });
      expect(mocked.names()).not.toContain('rollbackFromMonitoring');
      expect(mocked.names()).toContain('deliverMonitoringAlert');
    });
  });

  it('rolls back on a crossed floor even when no distance breached', async () => {
    const policy = { deployment: DEPLOYMENT, pipeline: 'p', monitoring: FULL_POLICY };
    await t.withActivities(activities(policy, { live: { auc: 0.5 } }), async (mocked) => {
      const result = await run(mocked, { deployment: DEPLOYMENT });
      expect(mocked.names()).toContain('rollbackFromMonitoring');
      expect(result.actions.map((a) => a.kind).sort()).toEqual(['alert', 'retrain', 'rollback']);
    });
  });

  it('does nothing on a quiet window, below minRows, or without a monitoring section', async () => {
    const cases: [MonitoringPolicyResult, Partial<WindowSummary>][] = [
      [{ deployment: DEPLOYMENT, pipeline: 'p', monitoring: FULL_POLICY }, { live: { auc: 0.9 } }],
      [
        { deployment: DEPLOYMENT, pipeline: 'p', monitoring: FULL_POLICY },
        { ...breached, belowMinRows: true },
      ],
      [{ deployment: DEPLOYMENT, pipeline: 'p' }, breached],
    ];
    for (const [policy, window] of cases) {
      await t.withActivities(activities(policy, window), async (mocked) => {
        const result = await run(mocked, { deployment: DEPLOYMENT });
        expect(mocked.names()).toEqual(['loadMonitoringPolicy', 'computeMonitoringWindow']);
        expect(result.actions).toEqual([]);
        // Without a definition's window: the hourly default; the end is the start time, in whole seconds.
        const [input] = mocked.inputsOf('computeMonitoringWindow');
        expect(input?.windowSeconds).toBe(policy.monitoring ? 300 : 3600);
        expect(Date.parse(input!.windowEnd) % 1000).toBe(0);
        expect(Math.abs(Date.parse(input!.windowEnd) - Date.now())).toBeLessThan(15_000);
      });
    }
  });

  it('reports an action that failed and still runs the others', async () => {
    const policy = { deployment: DEPLOYMENT, pipeline: 'p', monitoring: FULL_POLICY };
    const overrides: MockActivities = {
      deliverMonitoringAlert: async () => {
        throw ApplicationFailure.create({ type: 'NotFound', message: 'receiver gone', nonRetryable: true });
      },
    };
    await t.withActivities(activities(policy, breached, overrides), async (mocked) => {
      const result = await run(mocked, { deployment: DEPLOYMENT });
      expect(result.actions).toEqual([
        { kind: 'alert', status: 'failed', reason: 'receiver gone' },
        done('retrain'),
        done('rollback'),
      ]);
    });
  });

  it('skips a retrain when the champion did not come from a pipeline', async () => {
    const { alert: _alert, rollback: _rollback, ...retrainOnly } = FULL_POLICY;
    await t.withActivities(
      activities({ deployment: DEPLOYMENT, monitoring: retrainOnly }, breached),
      async (mocked) => {
        const result = await run(mocked, { deployment: DEPLOYMENT });
        expect(mocked.names()).toEqual(['loadMonitoringPolicy', 'computeMonitoringWindow']);
        expect(result.actions).toEqual([expect.objectContaining({ kind: 'retrain', status: 'skipped' })]);
      },
    );
  });
});
