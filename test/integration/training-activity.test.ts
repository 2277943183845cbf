import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTrainingActivities,
  type TrainingHeartbeat,
  type TrainModelInput,
  type TrainModelResult,
} from '../../activities/index.js';
import { connectTestPlatform, type TestPlatform } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';
import { trainingTransform, writeTrainingSplit } from '../support/training-fixture.js';

// The training activity's own logic, run directly in a mocked activity context on the real S3 and Postgres:
// resuming from the checkpoint a heartbeat names, and stopping when cancelled.
let platform: TestPlatform;
let dir: string;
let input: Omit<TrainModelInput, 'trainer' | 'params'>;

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-training-activity-'));
  const train = await writeTrainingSplit(fs.mkdtempSync(path.join(dir, 'train-')), 5_000);
  const evalSplit = await writeTrainingSplit(fs.mkdtempSync(path.join(dir, 'eval-')), 1_000);
  const parquet = { kind: 'split.parquet', contentType: 'application/vnd.apache.parquet' };
  input = {
    dataset: `activity-${randomUUID().slice(0, 8)}`,
    train: await platform.artifacts.putFile(train, parquet),
    eval: await platform.artifacts.putFile(evalSplit, parquet),
    transform: await platform.artifacts.put(JSON.stringify(trainingTransform), {
      kind: 'transform.json',
      contentType: 'application/json',
    }),
    checkpointEvery: 4,
    verificationRows: 200,
  };
});

afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await platform?.close();
});

const ignore = () => undefined;
// The SDK's activity logger, which the mocked context would print to the console (the refusal below, say).
const quiet = { log: ignore, trace: ignore, debug: ignore, info: ignore, warn: ignore, error: ignore };

/** A mocked activity context of its own workflow (each records its stage once) and attempt. */
function environment(heartbeatDetails?: TrainingHeartbeat, attempt = 1) {
  const workflowId = `training-activity-${randomUUID()}`;
  const env = new MockActivityEnvironment(
    { attempt, heartbeatDetails, workflowExecution: { workflowId, runId: randomUUID() } },
    { logger: quiet },
  );
  const heartbeats: TrainingHeartbeat[] = [];
  env.on('heartbeat', (details: TrainingHeartbeat) => heartbeats.push(details));
  return { env, heartbeats };
}

describe('the trainModel activity', () => {
  /** Runs trainModel in `env` (the mocked environment's `run` does not carry the result type through). */
  const train = (env: MockActivityEnvironment, request: TrainModelInput): Promise<TrainModelResult> =>
    env.run(createTrainingActivities(platform.activityDeps).trainModel, request) as Promise<TrainModelResult>;
  const gbt = { trainer: 'gradient_boosted_trees' as const, params: { maxIterations: 12, earlyStopping: false } };

  it('resumes from the checkpoint its heartbeat names and ends with the same model as an uninterrupted run', async () => {
    const first = environment();
    const whole = await train(first.env, { ...input, ...gbt });
    expect(whole.resumedFromIteration).toBeNull();
    const checkpoint = first.heartbeats.find((h) => h.checkpoint && h.checkpoint.iteration < 12)?.checkpoint;
    expect(checkpoint).toBeDefined();

    // A retry on another worker gets the last heartbeat's details: it loads that checkpoint and continues.
    const retry = environment({ iteration: checkpoint!.iteration, checkpoint: checkpoint! }, 2);
    const resumed = await train(retry.env, { ...input, ...gbt });
    expect(resumed.resumedFromIteration).toBe(checkpoint!.iteration);
    expect(resumed.attempt).toBe(2);
    expect(resumed.curve[0]!.iteration).toBeGreaterThan(checkpoint!.iteration);
    // Content-addressed: the same bytes give the same URI.
    expect(resumed.model.uri).toBe(whole.model.uri);
  });

  it('stops when cancelled, reports the cancellation as such, and keeps the checkpoint in its heartbeat', async () => {
    const { env, heartbeats } = environment();
    env.on('heartbeat', (details: TrainingHeartbeat) => {
      if (details.checkpoint) env.cancel('CANCELLED');
    });
    const long = {
      trainer: 'gradient_boosted_trees' as const,
      params: { maxIterations: 100_000, earlyStopping: false },
    };
    const started = performance.now();
    const error = await train(env, { ...input, ...long }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CancelledFailure);
    expect(performance.now() - started).toBeLessThan(20_000);
    expect(heartbeats.some((h) => h.checkpoint !== undefined)).toBe(true);
  });

  it('fails at once, not retryably, on parameters the trainer refuses', async () => {
    const { env } = environment();
    const error = await train(env, {
      ...input,
      trainer: 'gradient_boosted_trees',
      params: { maxIterations: -1 },
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ type: 'InvalidInput', nonRetryable: true });
  });
});
