import { Worker } from 'node:worker_threads';
import type { TrainingJob, TrainingThreadMessage } from './training-job.js';
import type { TrainedModel, TrainingProgress } from './types.js';

const BOOTSTRAP = new URL('./thread-bootstrap.js', import.meta.url);
const ENTRY = new URL('./training-thread.ts', import.meta.url).href;

/** Thrown when training was cancelled: the thread is stopped; the last checkpoint stays where it was stored. */
export class TrainingCancelledError extends Error {
  override readonly name = 'TrainingCancelledError';
}

/** Thrown when the training thread failed; `causeName` is the thrown error's class (TrainingParameterError, ...). */
export class TrainingFailedError extends Error {
  override readonly name = 'TrainingFailedError';
  constructor(
    readonly causeName: string,
    message: string,
    readonly parameter?: string,
    readonly threadStack?: string,
  ) {
    super(message);
  }
}

export interface TrainingThreadHooks {
  readonly onLoaded?: (info: { rows: number; seconds: number }) => void;
  readonly onProgress?: (progress: TrainingProgress) => void;
  /** Stores a checkpoint; the next one is not taken before this resolves (the thread keeps training meanwhile). */
  readonly onCheckpoint?: (checkpoint: { iteration: number; state: unknown }) => Promise<void>;
  readonly signal?: AbortSignal;
}

/**
 * Runs one training job in a worker thread, so the activity's thread stays free to heartbeat and to notice
 * cancellation while the CPU-bound loop runs. Cancellation terminates the thread at once (the worker slot is freed;
 * the last checkpoint remains). Resolves with the trained model and the training time in seconds.
 */
export function runTrainingThread(
  job: TrainingJob,
  hooks: TrainingThreadHooks = {},
): Promise<{ model: TrainedModel; seconds: number }> {
  return new Promise((resolve, reject) => {
    if (hooks.signal?.aborted) {
      reject(new TrainingCancelledError('training was cancelled before it started'));
      return;
    }
    const thread = new Worker(BOOTSTRAP, { workerData: { entry: ENTRY, job } });
    let settled = false;
    // Set once the thread reported its model: its exit after that is the expected end, not a failure.
    let reportedDone = false;
    let checkpointing: Promise<void> = Promise.resolve();
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      hooks.signal?.removeEventListener('abort', onAbort);
      outcome();
    };
    const onAbort = () => {
      void thread.terminate();
      finish(() => reject(new TrainingCancelledError('training was cancelled')));
    };
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    thread.on('message', (message: TrainingThreadMessage) => {
      switch (message.type) {
        case 'loaded':
          hooks.onLoaded?.({ rows: message.rows, seconds: message.seconds });
          break;
        case 'progress':
          hooks.onProgress?.(message.progress);
          break;
        case 'checkpoint':
          if (hooks.onCheckpoint) {
            const store = hooks.onCheckpoint;
            checkpointing = checkpointing.then(() => store({ iteration: message.iteration, state: message.state }));
          }
          break;
        case 'done':
          reportedDone = true;
          // The model is final only once the last checkpoint before it is stored (or failed loudly).
          checkpointing.then(
            () => finish(() => resolve({ model: message.model, seconds: message.seconds })),
            (error: unknown) => finish(() => reject(error)),
          );
          void thread.terminate();
          break;
        case 'error':
          finish(() =>
            reject(new TrainingFailedError(message.name, message.message, message.parameter, message.stack)),
          );
          void thread.terminate();
          break;
      }
    });
    thread.on('error', (error) => finish(() => reject(error)));
    thread.on('exit', (code) => {
      if (!reportedDone) finish(() => reject(new Error(`training thread exited with code ${code} before it finished`)));
    });
  });
}
