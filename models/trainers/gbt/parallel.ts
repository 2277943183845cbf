/**
 * Helper threads for the boosting passes (executor.ts): they share the training arrays through SharedArrayBuffers
 * and claim chunks of each task with Atomics, so a task costs a notify and a wait, not messages. The main thread
 * claims chunks too, so a helper that is slow to wake (a busy machine) delays nothing but its own share.
 */
import { Worker } from 'node:worker_threads';
import type { LabelTask } from '../../types.js';
import {
  SerialExecutor,
  SLOT_CHUNKS,
  SLOT_DONE,
  SLOT_END,
  SLOT_FAILED,
  SLOT_FEATURE,
  SLOT_GENERATION,
  SLOT_HELPERS_ASLEEP,
  SLOT_MAIN_ASLEEP,
  SLOT_NEXT,
  SLOT_OFFSET,
  SLOT_START,
  SLOT_TASK,
  SPIN_POLLS,
  TASK_EXIT,
  claimChunks,
  type Control,
  type SharedArrays,
} from './executor.js';
import type { GbtLoss } from './losses.js';

// Helpers load TypeScript modules, so they start through the project's thread bootstrap (which registers tsx).
const BOOTSTRAP = new URL('../../thread-bootstrap.js', import.meta.url);
const ENTRY = new URL('./worker.ts', import.meta.url).href;

/** How long helpers may take to load before training goes on without them. */
const START_TIMEOUT_MS = 20_000;

/** What a helper needs: the shared arrays and control block, and the loss to compute gradients with. */
export interface HelperInit {
  readonly arrays: SharedArrays;
  readonly control: Control;
  readonly task: LabelTask;
  readonly numClasses: number;
}

/** Messages from a helper thread. */
export type HelperMessage = { readonly type: 'loaded' } | { readonly type: 'ready' };

/** Helper threads, started early (loading takes a few hundred milliseconds) and attached once the arrays exist. */
export class HelperThreads {
  private readonly workers: Worker[] = [];
  private readonly loaded: Promise<boolean>[] = [];
  private failed = false;

  private constructor(count: number) {
    for (let i = 0; i < count; i++) {
      try {
        const worker = new Worker(BOOTSTRAP, { workerData: { entry: ENTRY } });
        this.workers.push(worker);
        this.loaded.push(this.next(worker, 'loaded'));
      } catch {
        // No threads here (a restricted runtime): training runs on the calling thread.
        this.failed = true;
      }
    }
  }

  /** Starts `count` helper threads. */
  static start(count: number): HelperThreads {
    return new HelperThreads(count);
  }

  get count(): number {
    return this.workers.length;
  }

  /**
   * Hands the shared state to every helper and waits until each is waiting for tasks.
   *
   * @returns false when a helper failed to start (training then runs on the calling thread alone).
   */
  async attach(init: HelperInit): Promise<boolean> {
    if (!(await Promise.all(this.loaded)).every(Boolean) || this.failed) return false;
    const ready = this.workers.map((w) => this.next(w, 'ready'));
    for (const worker of this.workers) worker.postMessage(init);
    return (await Promise.all(ready)).every(Boolean) && !this.failed;
  }

  async terminate(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private next(worker: Worker, type: HelperMessage['type']): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), START_TIMEOUT_MS);
      const onMessage = (message: HelperMessage) => {
        if (message.type === type) done(true);
      };
      const onError = () => {
        this.failed = true;
        done(false);
      };
      const done = (ok: boolean) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onError);
        resolve(ok);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onError);
    });
  }
}

/** The executor with helpers: each task is published in shared memory and its chunks claimed by every thread. */
export class ParallelExecutor extends SerialExecutor {
  private generation = 0;

  constructor(
    arrays: SharedArrays,
    loss: GbtLoss,
    control: Control,
    private readonly helpers: HelperThreads,
  ) {
    super(arrays, loss, control);
  }

  override async close(): Promise<void> {
    this.publish(TASK_EXIT, 0, 0, 0, 0, 0);
    await this.helpers.terminate();
  }

  protected override parallel(): boolean {
    return true;
  }

  protected override run(task: number, chunks: number, start: number, end: number, offset: number, feature: number) {
    const generation = this.publish(task, chunks, start, end, offset, feature);
    claimChunks(this.arrays, this.loss, this.control, generation);
    const ints = this.control.ints;
    for (let polls = 0; ; polls++) {
      const done = Atomics.load(ints, SLOT_DONE);
      if (done >= chunks) break;
      if (Atomics.load(ints, SLOT_FAILED) !== 0) throw new Error('a gradient-boosting helper thread failed');
      if (polls < SPIN_POLLS) continue;
      // Announce the sleep, then sleep only if no chunk finished meanwhile (wait compares atomically); bounded, so
      // that a failed helper is noticed.
      Atomics.store(ints, SLOT_MAIN_ASLEEP, 1);
      Atomics.wait(ints, SLOT_DONE, done, 100);
      Atomics.store(ints, SLOT_MAIN_ASLEEP, 0);
    }
  }

  /** Writes the task, opens its chunks for claiming and wakes the helpers; returns its generation. */
  private publish(task: number, chunks: number, start: number, end: number, offset: number, feature: number) {
    const ints = this.control.ints;
    // Generations are 23 bits (they share SLOT_NEXT with the chunk index) and never 0, the helpers' initial view.
    this.generation = (this.generation % 0x7fffff) + 1;
    ints[SLOT_TASK] = task;
    ints[SLOT_CHUNKS] = chunks;
    ints[SLOT_START] = start;
    ints[SLOT_END] = end;
    ints[SLOT_OFFSET] = offset;
    ints[SLOT_FEATURE] = feature;
    Atomics.store(ints, SLOT_DONE, 0);
    Atomics.store(ints, SLOT_NEXT, this.generation << 8);
    Atomics.store(ints, SLOT_GENERATION, this.generation);
    // A helper counts itself asleep before it waits, and its wait returns at once if the generation moved: a
    // helper missed here cannot sleep through this task.
    if (Atomics.load(ints, SLOT_HELPERS_ASLEEP) > 0) Atomics.notify(ints, SLOT_GENERATION);
    return this.generation;
  }
}
