/**
 * The branches of `dataStages` with mocked activities: a data check without training, the full path with prepare,
 * bad data that stops the run at the stage that found it, and a transient failure that is retried. Also shows that
 * the harness fails a test whose workflow calls an activity the test did not provide.
 */
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureType } from '../../../core/constants.js';
import { currentStageQuery, dataStages, type DataStagesInput } from '../../../workflows/index.js';
import { extractResult, prepareResult, statisticsResult, validateDataResult } from '../../support/activity-results.js';
import {
  createWorkflowTestEnv,
  UNEXPECTED_ACTIVITY,
  workflowFailure,
  WORKFLOW_TEST_TIMEOUT_MS,
  type MockActivities,
  type MockedActivities,
  type WorkflowTestEnv,
} from '../../support/workflow-env.js';

let t: WorkflowTestEnv;

beforeAll(async () => {
  t = await createWorkflowTestEnv();
});

afterAll(async () => {
  await t?.teardown();
});

const DATASET = 'flights';

const prepare: NonNullable<DataStagesInput['prepare']> = {
  label: { name: 'delayed', expression: 'delay > 15', task: 'binary' },
  features: [{ name: 'distance', expression: 'distance' }],
  split: { kind: 'hash', key: 'id', evalFraction: 0.2 },
};

function dataActivities(overrides: MockActivities = {}): MockActivities {
  return {
    extractData: async () => extractResult(),
    computeStatistics: async () => statisticsResult(),
    validateData: async () => validateDataResult(),
    prepareData: async () => prepareResult(),
    ...overrides,
  };
}

function start(mocked: MockedActivities, input: DataStagesInput) {
  return t.client.workflow.start(dataStages, {
    taskQueue: mocked.taskQueue,
    workflowId: mocked.workflowId('data'),
    args: [input],
  });
}

describe.concurrent('dataStages', { timeout: WORKFLOW_TEST_TIMEOUT_MS }, () => {
  it('checks data without training: extract, statistics, validate, and no prepare', async () => {
    await t.withActivities(dataActivities(), async (mocked) => {
      const handle = await start(mocked, {
        dataset: DATASET,
        source: 's3://landing/flights/',
        format: 'parquet',
        span: { column: 'date', from: '2001-01-01', to: '2001-02-01' },
      });
      const result = await handle.result();

      expect(mocked.names()).toEqual(['extractData', 'computeStatistics', 'validateData']);
      expect(mocked.inputsOf('extractData')).toEqual([
        {
          dataset: DATASET,
          source: 's3://landing/flights/',
          format: 'parquet',
          span: { column: 'date', from: '2001-01-01', to: '2001-02-01' },
        },
      ]);
      expect(mocked.inputsOf('computeStatistics')).toEqual([{ dataset: DATASET, snapshot: result.extract.snapshot }]);
      expect(mocked.inputsOf('validateData')).toEqual([
        { dataset: DATASET, snapshot: result.extract.snapshot, statistics: result.statistics.statistics },
      ]);
      expect(result.prepared).toBeUndefined();
      expect(await handle.query(currentStageQuery)).toBe('done');
    });
  });

  it('prepares the splits from the extracted snapshot when asked to', async () => {
    await t.withActivities(dataActivities(), async (mocked) => {
      const result = await (await start(mocked, { dataset: DATASET, source: '/data/flights.csv', prepare })).result();

      expect(mocked.names()).toEqual(['extractData', 'computeStatistics', 'validateData', 'prepareData']);
      expect(mocked.inputsOf('extractData')).toEqual([{ dataset: DATASET, source: '/data/flights.csv' }]);
      expect(mocked.inputsOf('prepareData')).toEqual([
        { dataset: DATASET, snapshot: result.extract.snapshot, ...prepare },
      ]);
      expect(result.prepared?.trainRows).toBe(280);
    });
  });

  it('stops at validation on bad data with the typed failure, without retrying or preparing', async () => {
    const bad = ApplicationFailure.create({
      type: FailureType.DataValidation,
      message: 'column "delay" is missing',
      nonRetryable: true,
    });
    await t.withActivities(dataActivities({ validateData: () => Promise.reject(bad) }), async (mocked) => {
      const handle = await start(mocked, { dataset: DATASET, source: '/data/flights.csv', prepare });
      const failure = await workflowFailure(handle.result());

      // The activity's failure reaches the caller unchanged, under the activity failure.
      expect(failure).toMatchObject({
        cause: { type: FailureType.DataValidation, message: 'column "delay" is missing' },
      });
      expect(mocked.names()).toEqual(['extractData', 'computeStatistics', 'validateData']);
      expect(await handle.query(currentStageQuery)).toBe('validate_data');
    });
  });

  it('fails the workflow and the test when an activity the test did not provide is called', async () => {
    const { validateData: _missing, ...partial } = dataActivities();
    let failure: unknown;
    const test = t.withActivities(partial, async (mocked) => {
      failure = await workflowFailure(
        (await start(mocked, { dataset: DATASET, source: '/data/flights.csv' })).result(),
      );
    });

    await expect(test).rejects.toThrow('activities the test did not provide were called: validateData');
    expect(failure).toMatchObject({ cause: { type: UNEXPECTED_ACTIVITY, nonRetryable: true } });
  });

  it('retries a transient failure with backoff and completes', async () => {
    let attempts = 0;
    const flaky = dataActivities({
      computeStatistics: async () => {
        attempts += 1;
        if (attempts === 1) throw new Error('S3 answered 503');
        return statisticsResult();
      },
    });
    await t.withActivities(flaky, async (mocked) => {
      const result = await (await start(mocked, { dataset: DATASET, source: '/data/flights.csv' })).result();

      expect(mocked.names()).toEqual(['extractData', 'computeStatistics', 'computeStatistics', 'validateData']);
      expect(mocked.calls.filter((c) => c.name === 'computeStatistics').map((c) => c.attempt)).toEqual([1, 2]);
      expect(result.statistics.rowCount).toBe(400);
    });
  });
});
