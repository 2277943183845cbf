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
  const { job, cancel } = workerData as { job: TrainingJob; cancel: SharedArrayBuffer };
  // The parent raises this flag to cancel. A busy training loop never reads messages, so the flag is shared memory,
  // looked at with each report; the trainer then stops at its next check of the signal, and the thread ends by
  // closing DuckDB itself instead of being terminated inside native code.
  const cancelFlag = new Int32Array(cancel);
  const cancellation = new AbortController();
  const abortIfCancelled = () => {
    if (Atomics.load(cancelFlag, 0) !== 0) cancellation.abort(new Error('training was cancelled'));
  };
  const started = performance.now();
  // Checkpoint formats differ per trainer; the iteration they were taken at is the last one reported.
  let lastIteration = 0;
  const engine = await DataEngine.open({ workDir: job.workDir, readableDirs: [path.dirname(job.trainPath)] });
  let outcome: TrainingThreadMessage;
  try {
    const model = await trainFromParquet(engine, job.trainer, job.params, job.trainPath, job.transform, {
      onLoaded: (rows, seconds) => {
        abortIfCancelled();
        cancellation.signal.throwIfAborted();
        post({ type: 'loaded', rows, seconds });
      },
      onProgress: (progress) => {
        lastIteration = progress.iteration;
        post({ type: 'progress', progress });
        abortIfCancelled();
      },
      signal: cancellation.signal,
      onCheckpoint: (state) => post({ type: 'checkpoint', iteration: lastIteration, state }),
      ...(job.checkpointEvery ? { checkpointEvery: job.checkpointEvery } : {}),
      ...(job.resumeFrom !== undefined ? { resumeFrom: job.resumeFrom } : {}),
    });
    outcome = { type: 'done', model, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    outcome = {
      type: 'error',
      name: e.name,
      message: e.message,
      ...(e instanceof TrainingParameterError ? { parameter: e.parameter } : {}),
      ...(e.stack ? { stack: e.stack } : {}),
    };
  }
  // DuckDB is closed before the outcome is posted, never after: the parent may end the thread once it has the
  // outcome, and a thread ended inside DuckDB's native close aborted the whole process ("terminate called after
  // throwing an instance of 'Napi::Error'").
  engine.close();
  post(outcome);
}

void main();
