import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { DataEngine } from '../data/engine.js';
import { trainFromParquet } from './train.js';
import type { TrainingJob, TrainingThreadMessage } from './training-job.js';
import { TrainingParameterError } from './types.js';

/** The body of a training thread: load the split, train, and report progress, checkpoints and the model. */
async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('training-thread.ts runs as a worker thread (see run-training-thread.ts)');
  const post = (message: TrainingThreadMessage) => port.postMessage(message);
  const { job } = workerData as { job: TrainingJob };
  const started = performance.now();
  // Checkpoint formats differ per trainer; the iteration they were taken at is the last one reported.
  let lastIteration = 0;
  const engine = await DataEngine.open({ workDir: job.workDir, readableDirs: [path.dirname(job.trainPath)] });
  try {
    const model = await trainFromParquet(engine, job.trainer, job.params, job.trainPath, job.transform, {
      onLoaded: (rows, seconds) => post({ type: 'loaded', rows, seconds }),
      onProgress: (progress) => {
        lastIteration = progress.iteration;
        post({ type: 'progress', progress });
      },
      onCheckpoint: (state) => post({ type: 'checkpoint', iteration: lastIteration, state }),
      ...(job.checkpointEvery ? { checkpointEvery: job.checkpointEvery } : {}),
      ...(job.resumeFrom !== undefined ? { resumeFrom: job.resumeFrom } : {}),
    });
    post({ type: 'done', model, seconds: (performance.now() - started) / 1000 });
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    post({
      type: 'error',
      name: e.name,
      message: e.message,
      ...(e instanceof TrainingParameterError ? { parameter: e.parameter } : {}),
      ...(e.stack ? { stack: e.stack } : {}),
    });
  } finally {
    engine.close();
  }
}

void main();
