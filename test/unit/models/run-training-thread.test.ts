import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTrainingThread, TrainingCancelledError, TrainingFailedError } from '../../../models/run-training-thread.js';
import type { TrainingJob } from '../../../models/training-job.js';
import { trainingTransform, writeTrainingSplit } from '../../support/training-fixture.js';

let dir: string;
let trainPath: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-training-thread-'));
  trainPath = await writeTrainingSplit(dir, 20_000);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const job = (overrides: Partial<TrainingJob>): TrainingJob => ({
  trainer: 'logistic_regression',
  params: { maxIterations: 5 },
  trainPath,
  transform: trainingTransform,
  workDir: dir,
  ...overrides,
});

/** Resolves with how the thread ended, once it has. */
function threadEnd() {
  let report!: (end: { terminated: boolean }) => void;
  const ended = new Promise<{ terminated: boolean }>((resolve) => (report = resolve));
  return { ended, onThreadEnd: report };
}

describe('runTrainingThread', () => {
  it('resolves with the model once every checkpoint is stored and the thread has exited on its own', async () => {
    const stored: number[] = [];
    const { ended, onThreadEnd } = threadEnd();
    let progress = 0;
    const trained = await runTrainingThread(job({ checkpointEvery: 2 }), {
      onProgress: () => progress++,
      onCheckpoint: async ({ iteration }) => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        stored.push(iteration);
      },
      onThreadEnd,
    });
    expect(trained.model.kind).toBe('linear');
    expect(progress).toBeGreaterThan(0);
    expect(stored.length).toBeGreaterThan(0);
    expect(stored).toEqual([...stored].sort((a, b) => a - b));
    // The outcome is given only after the thread closed DuckDB and exited: never terminated inside native code.
    expect(await ended).toEqual({ terminated: false });
  });

  it('stops a cancelled training at its next report: rejects at once, and the thread exits by itself', async () => {
    const controller = new AbortController();
    const { ended, onThreadEnd } = threadEnd();
    let reports = 0;
    const training = runTrainingThread(
      job({ trainer: 'gradient_boosted_trees', params: { maxIterations: 100_000, earlyStopping: false } }),
      {
        signal: controller.signal,
        onProgress: () => {
          reports++;
          if (reports === 2) controller.abort();
        },
        onThreadEnd,
      },
    );
    await expect(training).rejects.toBeInstanceOf(TrainingCancelledError);
    const cancelledAt = performance.now();
    expect(await ended).toEqual({ terminated: false });
    expect(performance.now() - cancelledAt).toBeLessThan(4_000);
    expect(reports).toBeLessThan(50);
  });

  it('rejects with the store error when a checkpoint cannot be stored, without an unhandled rejection', async () => {
    const { ended, onThreadEnd } = threadEnd();
    const training = runTrainingThread(job({ checkpointEvery: 1 }), {
      onCheckpoint: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:9000')),
      onThreadEnd,
    });
    await expect(training).rejects.toThrow('ECONNREFUSED');
    expect(await ended).toEqual({ terminated: false });
  });

  it("reports a trainer's own error by its class, after the thread has exited", async () => {
    const { ended, onThreadEnd } = threadEnd();
    const training = runTrainingThread(job({ trainer: 'ridge' }), { onThreadEnd });
    const error = await training.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TrainingFailedError);
    expect(error).toMatchObject({ causeName: 'TrainingParameterError', parameter: 'trainer' });
    expect(await ended).toEqual({ terminated: false });
  });
});
