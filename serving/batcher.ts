/**
 * Micro-batching: concurrent requests to one model share one `session.run`.
 *
 * When nothing runs, a request runs at once (no added latency when idle). While a run is in flight, arrivals queue;
 * when it finishes they run together, at most `maxBatchRows` rows per run, optionally after waiting up to
 * `maxWaitMs` for more to arrive (only while the batch is not full). Each caller gets a slice of the batch's result:
 * the shared result object with its own row offset and count, so splitting copies nothing.
 *
 * onnxruntime-node runs a session synchronously on the thread that calls it (serving's inference thread, see
 * inference-thread.ts), so one run at a time per model is what that thread allows anyway; the gain is fewer, larger
 * runs: one message, one native call, one set of tensors, one pass of the graph's per-call overhead for many requests.
 */

import { DomainError, type DomainErrorOptions } from '../core/errors.js';

/** A caller's part of a batch's result: rows `offset` to `offset + rows - 1` of `result`. */
export interface BatchSlice<R> {
  readonly result: R;
  readonly offset: number;
  readonly rows: number;
}

export interface MicroBatcherOptions {
  /**
   * Most rows in one run. Requests are never split: a request with more rows than this runs alone. Default 256.
   */
  readonly maxBatchRows?: number;
  /**
   * How long a batch that formed while a run was in flight may wait for more arrivals before it runs, in
   * milliseconds, unless it is full. 0 (the default) runs it as soon as the previous run finishes: under load the
   * queue fills while the model is busy, so waiting only adds latency.
   */
  readonly maxWaitMs?: number;
  /** Rows queued at most; a request that would exceed it is refused with {@link BatcherOverloadedError}. Default 10 000. */
  readonly maxQueuedRows?: number;
  /** Called once per run with its rows and requests (metrics). */
  readonly onBatch?: (rows: number, requests: number) => void;
}

/** Runs one batch: the items in arrival order, `rows` rows in all. */
export type ExecuteBatch<I, R> = (items: readonly I[], rows: number) => Promise<R>;

/** Thrown to callers when the queue is full: the model cannot keep up; worth retrying later. */
export class BatcherOverloadedError extends DomainError {
  override readonly name = 'BatcherOverloadedError';
  constructor(problem: string) {
    super('unavailable', `the model is overloaded: ${problem}`, { code: 'overloaded' });
  }
}

/** Thrown to a caller whose request was abandoned (its `abandoned()` said so) before it ran: it never runs. */
export class AbandonedRequestError extends DomainError {
  override readonly name = 'AbandonedRequestError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('client_closed', message, options);
  }
}

interface Pending<I, R> {
  readonly item: I;
  readonly rows: number;
  readonly resolve: (slice: BatchSlice<R>) => void;
  readonly reject: (error: unknown) => void;
  readonly abandoned: (() => boolean) | undefined;
}

/** Batches items of type `I` (each `rowsOf(item)` rows) into runs of `execute`, which yields `R` for the whole batch. */
export class MicroBatcher<I, R> {
  readonly #execute: ExecuteBatch<I, R>;
  readonly #rowsOf: (item: I) => number;
  readonly #maxBatchRows: number;
  readonly #maxWaitMs: number;
  readonly #maxQueuedRows: number;
  readonly #onBatch: ((rows: number, requests: number) => void) | undefined;
  #queue: Pending<I, R>[] = [];
  #queuedRows = 0;
  #running = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(execute: ExecuteBatch<I, R>, rowsOf: (item: I) => number, options: MicroBatcherOptions = {}) {
    this.#execute = execute;
    this.#rowsOf = rowsOf;
    this.#maxBatchRows = options.maxBatchRows ?? 256;
    this.#maxWaitMs = options.maxWaitMs ?? 0;
    this.#maxQueuedRows = options.maxQueuedRows ?? 10_000;
    this.#onBatch = options.onBatch;
    if (!(this.#maxBatchRows >= 1)) throw new RangeError(`maxBatchRows must be at least 1, got ${this.#maxBatchRows}`);
    if (!(this.#maxWaitMs >= 0)) throw new RangeError(`maxWaitMs must be at least 0, got ${this.#maxWaitMs}`);
  }

  /** Rows waiting for a run (not counting the run in flight). */
  get queuedRows(): number {
    return this.#queuedRows;
  }

  /** Whether a run is in flight. */
  get running(): boolean {
    return this.#running;
  }

  /**
   * Scores `item` in the next run and resolves with its slice of that run's result; rejects with the run's error
   * when its run fails (a failed batch of several requests is rerun request by request, so one bad request does
   * not fail the others). `abandoned`, when given, is asked while the item waits (before each batch is formed, and
   * when the queue is full): once it says true the item is taken off the queue and rejected with
   * {@link AbandonedRequestError} instead of running.
   */
  submit(item: I, abandoned?: () => boolean): Promise<BatchSlice<R>> {
    const rows = this.#rowsOf(item);
    return new Promise<BatchSlice<R>>((resolve, reject) => {
      const pending: Pending<I, R> = { item, rows, resolve, reject, abandoned };
      if (!this.#running) {
        this.#start([pending], rows);
        return;
      }
      if (this.#queuedRows + rows > this.#maxQueuedRows && this.#queue.length > 0) {
        // Full: room held by callers that have gone does not count.
        this.#dropAbandoned();
        if (this.#queuedRows + rows > this.#maxQueuedRows && this.#queue.length > 0) {
          reject(new BatcherOverloadedError(`${this.#queuedRows} rows are already waiting for the model`));
          return;
        }
      }
      this.#queue.push(pending);
      this.#queuedRows += rows;
      // A full batch waits for nothing but the run in flight.
      if (this.#timer !== undefined && this.#queuedRows >= this.#maxBatchRows) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
        this.#next();
      }
    });
  }

  #start(batch: Pending<I, R>[], rows: number): void {
    this.#running = true;
    this.#onBatch?.(rows, batch.length);
    this.#call(batch, rows).then(
      (result) => {
        // The next batch starts before these callers continue: the model is never idle while work waits.
        this.#finished();
        let offset = 0;
        for (const pending of batch) {
          pending.resolve({ result, offset, rows: pending.rows });
          offset += pending.rows;
        }
      },
      (error: unknown) => {
        if (batch.length === 1) {
          this.#finished();
          batch[0]!.reject(error);
          return;
        }
        void this.#runAlone(batch).finally(() => this.#finished());
      },
    );
  }

  /**
   * After a batch of several requests failed: each request runs again on its own, so that the error reaches only
   * the request that caused it and the others still get their answers.
   */
  async #runAlone(batch: Pending<I, R>[]): Promise<void> {
    for (const pending of batch) {
      try {
        pending.resolve({ result: await this.#call([pending], pending.rows), offset: 0, rows: pending.rows });
      } catch (error) {
        pending.reject(error);
      }
    }
  }

  #call(batch: Pending<I, R>[], rows: number): Promise<R> {
    try {
      return this.#execute(
        batch.map((p) => p.item),
        rows,
      );
    } catch (error) {
      // A synchronous throw (building the feeds) fails the batch like a rejected run.
      return Promise.reject(error);
    }
  }

  #finished(): void {
    this.#running = false;
    if (this.#queue.length === 0) return;
    if (this.#maxWaitMs > 0 && this.#queuedRows < this.#maxBatchRows) {
      this.#running = true; // arrivals keep queueing while the batch fills
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#next();
      }, this.#maxWaitMs);
      return;
    }
    this.#next();
  }

  /**
   * Takes requests whose caller has gone (a client that closed its connection while they waited) off the queue and
   * fails them, so they neither run nor hold queue room. Returns how many rows that freed.
   */
  #dropAbandoned(): number {
    // Called before every batch: a scan that allocates nothing unless a caller has gone.
    if (!this.#queue.some((pending) => pending.abandoned?.() === true)) return 0;
    let freed = 0;
    const kept: Pending<I, R>[] = [];
    for (const pending of this.#queue) {
      if (pending.abandoned?.() === true) {
        freed += pending.rows;
        pending.reject(new AbandonedRequestError('the caller went away before the request ran'));
      } else {
        kept.push(pending);
      }
    }
    if (freed > 0) {
      this.#queue = kept;
      this.#queuedRows -= freed;
    }
    return freed;
  }

  /** Takes the next batch off the queue (at least one request, at most `maxBatchRows` rows) and runs it. */
  #next(): void {
    this.#dropAbandoned();
    if (this.#queue.length === 0) {
      this.#running = false;
      return;
    }
    const queue = this.#queue;
    let rows = queue[0]!.rows;
    let count = 1;
    while (count < queue.length && rows + queue[count]!.rows <= this.#maxBatchRows) {
      rows += queue[count]!.rows;
      count++;
    }
    const batch = count === queue.length ? queue : queue.slice(0, count);
    this.#queue = count === queue.length ? [] : queue.slice(count);
    this.#queuedRows -= rows;
    this.#start(batch, rows);
  }
}
