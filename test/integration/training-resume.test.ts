import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CancelledFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PrepareDataResult, TrainingHeartbeat } from '../../activities/index.js';
import { dataStages, trainModel, type TrainModelWorkflowInput } from '../../workflows/index.js';
import { connectTestPlatform, type TestPlatform } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

const repoRoot = new URL('../../', import.meta.url).pathname;
let platform: TestPlatform;
let mainWorker: Worker;
let mainRunning: Promise<void>;
let workDir: string;
let prepared: PrepareDataResult;
const children = new Set<ChildProcess>();

/** A training worker in its own process, as on a GPU host: killing it is a real crash. */
function startTrainingWorker(): ChildProcess {
  const endpoints = testEndpoints();
  const child = spawn(process.execPath, ['--import', 'tsx', 'workers/training-worker.ts'], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      LOG_LEVEL: process.env.TRAINING_WORKER_LOGS ? 'info' : 'warn',
      MLOPS_DATA_DIR: fs.mkdtempSync(path.join(workDir, 'worker-')),
      TEMPORAL_ADDRESS: endpoints.temporal.address,
      TEMPORAL_NAMESPACE: endpoints.temporal.namespace,
      TEMPORAL_TRAINING_TASK_QUEUE: platform.trainingTaskQueue,
      DATABASE_URL: endpoints.databaseUrl,
      S3_ENDPOINT: endpoints.s3.endpoint,
      S3_ACCESS_KEY: endpoints.s3.accessKey,
      S3_SECRET_KEY: endpoints.s3.secretKey,
      S3_BUCKET: endpoints.s3.bucket,
      S3_REGION: endpoints.s3.region,
    },
    stdio: ['ignore', process.env.TRAINING_WORKER_LOGS ? 'inherit' : 'ignore', 'inherit'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function syntheticCsv(rows: number): string {
  const lines = ['x1,x2,group,label'];
  let seed = 42;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < rows; i++) {
    const x1 = random() * 10;
    const x2 = random() * 5 - 2.5;
    const group = `g${Math.floor(random() * 20)}`;
    const score = Math.sin(x1) + x2 * x2 * 0.3 + (Number(group.slice(1)) % 3) * 0.4 + (random() - 0.5) * 1.5;
    lines.push(`${x1.toFixed(4)},${x2.toFixed(4)},${group},${score > 0.8 ? 1 : 0}`);
  }
  return `${lines.join('\n')}\n`;
}

async function heartbeat(handle: WorkflowHandle): Promise<TrainingHeartbeat | undefined> {
  const description = await handle.describe();
  const payload = description.raw.pendingActivities?.[0]?.heartbeatDetails?.payloads?.[0];
  return payload ? defaultPayloadConverter.fromPayload<TrainingHeartbeat>(payload) : undefined;
}

async function waitFor<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'training-resume-'));
  fs.chmodSync(workDir, 0o755);
  mainWorker = await platform.mainWorker();
  mainRunning = mainWorker.run();
  const source = path.join(workDir, 'synthetic.csv');
  fs.writeFileSync(source, syntheticCsv(150_000));
  const data = await platform.client.workflow.execute(dataStages, {
    taskQueue: platform.taskQueue,
    workflowId: `training-data-${randomUUID()}`,
    args: [
      {
        dataset: `synthetic-${randomUUID().slice(0, 8)}`,
        source,
        prepare: {
          label: { name: 'label', expression: 'label = 1', task: 'binary' },
          features: [
            { name: 'x1', expression: 'x1' },
            { name: 'x2', expression: 'x2' },
            { name: 'group', expression: '"group"' },
          ],
          split: { kind: 'hash', key: 'x1::VARCHAR || x2::VARCHAR', evalFraction: 0.2 },
        },
      },
    ],
  });
  prepared = data.prepared!;
}, 180_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  mainWorker?.shutdown();
  await mainRunning;
  await platform?.close();
  fs.rmSync(workDir, { recursive: true, force: true });
});

function trainingInput(): TrainModelWorkflowInput {
  return {
    dataset: 'synthetic',
    trainer: 'gradient_boosted_trees',
    params: { maxIterations: 400, learningRate: 0.01, earlyStopping: false, maxLeafNodes: 63, minSamplesLeaf: 5 },
    train: prepared.train,
    eval: prepared.eval,
    transform: prepared.transform,
    checkpointEvery: 10,
    trainingTaskQueue: platform.trainingTaskQueue,
    heartbeatTimeoutSeconds: 5,
  };
}

describe('training on the training task queue', () => {
  it('resumes from the last checkpoint after its worker is killed mid-training', async () => {
    const first = startTrainingWorker();
    const handle = await platform.client.workflow.start(trainModel, {
      taskQueue: platform.taskQueue,
      workflowId: `train-resume-${randomUUID()}`,
      args: [trainingInput()],
    });
    const beforeKill = await waitFor(
      async () => {
        const details = await heartbeat(handle);
        return details?.checkpoint && details.checkpoint.iteration >= 20 ? details : undefined;
      },
      'a checkpoint at iteration 20',
      120_000,
    );
    first.kill('SIGKILL');
    startTrainingWorker();
    const result = await handle.result();

    expect(result.attempt).toBeGreaterThanOrEqual(2);
    expect(result.resumedFromIteration).toBeGreaterThanOrEqual(beforeKill.checkpoint!.iteration);
    expect(result.iterations).toBe(400);
    // The finishing attempt trained only what was left after the checkpoint.
    expect(result.curve[0]!.iteration).toBeGreaterThan(result.resumedFromIteration!);
    expect(result.parity.maxAbsDiff).toBeLessThanOrEqual(1e-5);
    expect(result.signature.inputs.map((i) => i.name)).toEqual(['x1', 'x2', 'group']);
    const onnx = await platform.artifacts.get(result.model);
    expect(onnx.byteLength).toBe(result.model.bytes);
  }, 240_000);

  it('stops promptly when cancelled, freeing the worker slot for the next training', async () => {
    startTrainingWorker();
    const handle = await platform.client.workflow.start(trainModel, {
      taskQueue: platform.taskQueue,
      workflowId: `train-cancel-${randomUUID()}`,
      // Long enough that it cannot finish before the cancellation reaches it (heartbeats are throttled).
      args: [{ ...trainingInput(), params: { maxIterations: 20_000, learningRate: 0.001, earlyStopping: false } }],
    });
    await waitFor(async () => (await heartbeat(handle))?.checkpoint, 'a first checkpoint', 120_000);
    const cancelledAt = Date.now();
    await handle.cancel();
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const cause = (error as WorkflowFailedError).cause;
    expect(cause instanceof CancelledFailure || (cause as { cause?: unknown })?.cause instanceof CancelledFailure).toBe(
      true,
    );
    expect(Date.now() - cancelledAt).toBeLessThan(10_000);

    // The same single-slot worker takes the next training at once.
    const next = await platform.client.workflow.execute(trainModel, {
      taskQueue: platform.taskQueue,
      workflowId: `train-after-cancel-${randomUUID()}`,
      args: [{ ...trainingInput(), params: { maxIterations: 5, earlyStopping: false } }],
    });
    expect(next.iterations).toBe(5);
  }, 240_000);
});
