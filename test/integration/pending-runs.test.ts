import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipelineDefinitionSchema } from '../../pipelines/definition.js';
import {
  approvePipelineRun,
  DecisionTimeoutError,
  resumePipelineRun,
  RunStartError,
  startPipelineRun,
  type PipelineRunnerDeps,
} from '../../pipelines/runs.js';
import { connectTestPlatform, type TestPlatform } from '../support/platform.js';
import { syntheticCsv, syntheticDefinition } from '../support/pipelines.js';
import { testEndpoints } from '../support/stack.js';

// Issue 15's probe: a run whose row is written but whose workflow cannot be started (Temporal down) must not stay
// pending for ever. Temporal is "down" here by pointing the runner at a port nothing listens on.
let platform: TestPlatform;
let dir: string;
let unreachable: Connection;
const name = `pending-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pending-runs-'));
  const csv = path.join(dir, 'events.csv');
  fs.writeFileSync(csv, syntheticCsv());
  const definition = pipelineDefinitionSchema.parse(syntheticDefinition(name, csv));
  await platform.storage.pipelines.saveDefinition(definition, 'test');
  unreachable = Connection.lazy({ address: '127.0.0.1:1', connectTimeout: 500 });
});

afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await unreachable?.close();
  await platform?.close();
});

/** Runner deps whose Temporal is `client`; no worker polls the queue, so a started run waits harmlessly. */
function runner(client: Client): PipelineRunnerDeps {
  const queue = `pending-${randomUUID().slice(0, 8)}`;
  return { client, pipelines: platform.storage.pipelines, taskQueue: queue, trainingTaskQueue: `${queue}-training` };
}

describe('a run whose workflow could not be started', () => {
  it('probe: is marked failed and resumable, not left pending, and resumes once Temporal answers', async () => {
    const down = runner(new Client({ connection: unreachable, namespace: platform.endpoints.temporal.namespace }));
    const error = await startPipelineRun(down, { pipeline: name, trigger: 'api' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RunStartError);
    expect(error).toMatchObject({ httpStatus: 503, retryable: true });
    const { runId } = (error as RunStartError).details as { runId: string };

    const failed = await platform.storage.pipelines.getRun(runId);
    expect(failed).toMatchObject({ status: 'failed', failure: { type: 'WorkflowNotStarted' } });
    expect(failed?.finishedAt).toBeInstanceOf(Date);

    const up = runner(platform.client);
    const resumed = await resumePipelineRun(up, runId);
    const handle = platform.client.workflow.getHandle(resumed.workflowId);
    expect((await handle.describe()).status.name).toBe('RUNNING');
    await handle.terminate('test over');
  }, 90_000);
});

describe('a decision on a run no worker runs', () => {
  it('answers 503-class within its deadline instead of holding the request, and a retry joins the first update', async () => {
    const idle = { ...runner(platform.client), decisionTimeoutMs: 1500 };
    const { run } = await startPipelineRun(idle, { pipeline: name, trigger: 'api' });
    const started = Date.now();
    const error = await approvePipelineRun(idle, run.id, { actor: 'alice' }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(error).toBeInstanceOf(DecisionTimeoutError);
    expect(error).toMatchObject({ httpStatus: 503, code: 'decision_pending', retryable: true });
    expect((error as Error).message).toContain('is a worker running?');
    const again = await approvePipelineRun(idle, run.id, { actor: 'alice' }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(DecisionTimeoutError);
    await platform.client.workflow.getHandle(run.workflowId).terminate('test over');
  }, 60_000);
});
