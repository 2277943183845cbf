import { Worker } from 'node:worker_threads';
import { DomainError } from '../core/errors.js';
import type { TrainingJob, TrainingThreadMessage } from './training-job.js';
import type { TrainedModel, TrainingProgress } from './types.js';

const BOOTSTRAP = new URL('./thread-bootstrap.js', import.meta.url);
/** How long a thread that reported its outcome may take to exit on its own before it is terminated. */
const EXIT_GRACE_MS = 5_000;
const ENTRY = new URL('./training-thread.ts', import.meta.url).href;

/** Thrown when training was cancelled: the thread is stopped; the last checkpoint stays where it was stored. */
export class TrainingCancelledError extends Error {
  override readonly name = 'TrainingCancelledError';
}

/**
 * Thrown when the training thread failed; `causeName` is the thrown error's class (TrainingParameterError, ...).
 * Bad parameters are final; anything else the thread met (a damaged split, memory) is worth another attempt.
 */
export class TrainingFailedError extends DomainError {
  override readonly name = 'TrainingFailedError';
  constructor(
    readonly causeName: string,
    message: string,
    readonly parameter?: string,
    readonly threadStack?: string,
  ) {
    super('invalid', message, {
      retryable: causeName !== 'TrainingParameterError',
      ...(parameter === undefined ? {} : { details: { parameter } }),
    });
  }
}

export interface TrainingThreadHooks {
  readonly onLoaded?: (info: { rows: number; seconds: number }) => void;
  readonly onProgress?: (progress: TrainingProgress) => void;
  /** Stores a checkpoint; the next one is not taken before this resolves (the thread keeps training meanwhile). */
  readonly onCheckpoint?: (checkpoint: { iteration: number; state: unknown }) => Promise<void>;
  readonly signal?: AbortSignal;
  /** Called once the thread is gone: `terminated` when it had to be stopped after the grace period. */
  readonly onThreadEnd?: (end: { terminated: boolean }) => void;
}

/**
 * Runs one training job in a worker thread, so the activity's thread stays free to heartbeat and to notice
 * cancellation while the CPU-bound loop runs. Cancellation rejects at once and asks the thread to stop at its next
 * progress report (terminating it after a grace period if it does not); the last checkpoint remains. Resolves with the trained model and the training time in seconds, once the thread
 * has exited on its own (it closes its native resources first; terminating it then could abort the process), or
 * been terminated after a grace period.
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
    // Raised to cancel; the thread stops at its next progress report (see training-thread.ts).
    const cancel = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
    const thread = new Worker(BOOTSTRAP, { workerData: { entry: ENTRY, job, cancel } });
    let settled = false;
    // Set once the thread reported its model: its exit after that is the expected end, not a failure.
    let reportedDone = false;
    let checkpointing: Promise<void> = Promise.resolve();
    let terminated = false;
    const exited = new Promise<void>((resolve) => thread.once('exit', () => resolve()));
    void exited.then(() => hooks.onThreadEnd?.({ terminated }));
    /** The thread's end after it reported: its own exit, or terminate() once the grace period is over. */
    const ended = () => {
      const timer = setTimeout(() => {
        terminated = true;
        void thread.terminate();
      }, EXIT_GRACE_MS);
      return exited.finally(() => clearTimeout(timer));
    };
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      hooks.signal?.removeEventListener('abort', onAbort);
      outcome();
    };
    const onAbort = () => {
      // The thread stops itself and closes DuckDB; one still busy after the grace period (a long iteration) is
      // terminated. The activity is answered at once either way.
      Atomics.store(new Int32Array(cancel), 0, 1);
      reportedDone = true;
      void ended();
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
            // A checkpoint that failed to store is reported with the outcome; until then its rejection is held
            // here, so it is never unhandled (an unhandled rejection takes the whole worker process down).
            checkpointing.catch(() => undefined);
          }
          break;
        case 'done':
          reportedDone = true;
          // The model is final only once the last checkpoint before it is stored (or failed loudly).
          Promise.all([checkpointing, ended()]).then(
            () => finish(() => resolve({ model: message.model, seconds: message.seconds })),
            (error: unknown) => finish(() => reject(error)),
          );
          break;
        case 'error':
          reportedDone = true;
          void ended().then(() =>
            finish(() =>
              reject(new TrainingFailedError(message.name, message.message, message.parameter, message.stack)),
            ),
          );
          break;
      }
    });
    thread.on('error', (error) => finish(() => reject(error)));
    thread.on('exit', (code) => {
      if (!reportedDone) finish(() => reject(new Error(`training thread exited with code ${code} before it finished`)));
    });
  });
}
