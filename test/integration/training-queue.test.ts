import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainingHostCheck } from '../../workflows/index.js';
import { connectTestPlatform, type TestPlatform } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

let platform: TestPlatform;

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
});

afterAll(async () => {
  await platform?.close();
});

describe('training task queue', () => {
  it('a workflow on the main queue reaches the worker that serves the training queue', async () => {
    const main = await platform.mainWorker();
    const training = await platform.trainingWorker();
    const info = await main.runUntil(
      training.runUntil(
        platform.client.workflow.execute(trainingHostCheck, {
          taskQueue: platform.taskQueue,
          workflowId: `training-host-${randomUUID()}`,
          args: [{ trainingTaskQueue: platform.trainingTaskQueue }],
        }),
      ),
    );
    expect(info.hostname).toBe(os.hostname());
    expect(info.cpus).toBeGreaterThan(0);
    expect(info.memoryBytes).toBe(os.totalmem());
    expect(Array.isArray(info.gpus)).toBe(true);
  });

  it('the activity history names the training queue', async () => {
    const main = await platform.mainWorker();
    const training = await platform.trainingWorker();
    const workflowId = `training-host-${randomUUID()}`;
    await main.runUntil(
      training.runUntil(
        platform.client.workflow.execute(trainingHostCheck, {
          taskQueue: platform.taskQueue,
          workflowId,
          args: [{ trainingTaskQueue: platform.trainingTaskQueue }],
        }),
      ),
    );
    const history = await platform.client.workflow.getHandle(workflowId).fetchHistory();
    const scheduled = history.events?.find((e) => e.activityTaskScheduledEventAttributes);
    expect(scheduled?.activityTaskScheduledEventAttributes?.taskQueue?.name).toBe(platform.trainingTaskQueue);
    expect(scheduled?.activityTaskScheduledEventAttributes?.activityType?.name).toBe('probeTrainingHost');
  });
});
