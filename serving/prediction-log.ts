/**
 * Prediction logs: the serving logs that monitoring reads (the `prediction_logs` table), written by the API process
 * in the background so that logging never slows or fails a prediction.
 *
 * - The request path only calls {@link PredictionLogWriter.enqueue}: synchronous, never throws, never waits. A
 *   request it queues is kept as JSON text (its instances, and its outputs as the response already wrote them), not
 *   as the parsed objects: a queue of a few thousand requests' object graphs, each alive for a batch's time, was
 *   most of what the log cost the API in garbage collection.
 * - Sampling is per request (every instance of a sampled request is logged), decided by a server-side random draw:
 *   a caller cannot force or avoid logging by the request id it sends. The decision of each recent answer is kept
 *   by its request id (a bounded map), so a shadow's copy of a request is logged exactly when the answer it is
 *   compared with is.
 * - The queue is bounded in rows. A request whose rows do not all fit is dropped whole (the newest is dropped, what
 *   is already queued keeps its place), counted in `dropped` and `mlops_serving_prediction_logs_dropped_total`.
 * - One flusher writes batches in order, one `COPY ... FROM STDIN` per batch, whenever `batchSize` rows wait or
 *   every `flushMs`, resting between batches so that writing takes at most `maxBusyShare` of the time. Rows stay
 *   queued until Postgres acknowledged them: when it is slow or down, writes back off (doubling up to `retryMaxMs`)
 *   and resume where they stopped, with one warning per outage. Rows Postgres refuses for their content (a data or
 *   constraint error) are isolated by splitting the batch, and only those are counted as `rejected`.
 * - Delivery is at least once: a batch whose commit succeeded but whose acknowledgement was lost with the connection
 *   is written again. Without that rare case, every row that is not counted as dropped or rejected lands once.
 * - Memory is bounded by `queueSize` rows (each holding its instance's and its output's JSON text).
 *
 * This file is the queue and its flusher; the records and rows are prediction-log-records.ts's, the Postgres sink and
 * the API's writer over its own connection prediction-log-postgres.ts's.
 */
import type { Logger } from '../core/logger.js';
import { rowsOf, type PredictionLogRecord, type PredictionLogRow } from './prediction-log-records.js';

/** Writes one batch atomically (all rows or none), in order; rejects when it could not. */
export type PredictionLogSink = (rows: readonly PredictionLogRow[]) => Promise<void>;

type Inc = { inc(value?: number): void };

/** The metrics the writer feeds; ServingMetrics provides them. */
export interface PredictionLogMetrics {
  readonly droppedLogs: Inc;
  readonly writtenLogs: Inc;
  readonly rejectedLogs: Inc;
  readonly logWriteErrors: Inc;
  readonly logFlushDuration: { observe(seconds: number): void };
  /** The queue depth gauge reads this when scraped (so the request path never touches it). */
  setLogQueueDepthSource(source: () => number): void;
}

export interface PredictionLogOptions {
  /** Share of requests logged, 0 to 1. Default 1 (every request). */
  readonly sampleRate?: number;
  /** Most rows waiting to be written; more are dropped and counted. Default 100 000. */
  readonly queueSize?: number;
  /** Rows per INSERT; a full batch is written at once. Default 1 000. */
  readonly batchSize?: number;
  /** Longest a row waits for its batch to fill, in ms. Default 200. */
  readonly flushMs?: number;
  /**
   * Most of the time the writer may spend writing, 0 to 1: after a batch that took d ms, the next one starts no
   * sooner than d × (1 − share) / share later. It bounds what the log takes from predictions (serialising the rows,
   * and Postgres storing them, on the same machine) when rows arrive faster than that share of the time can write
   * them: the queue then fills and the rest is dropped and counted. 1 writes back to back. Default 0.25.
   */
  readonly maxBusyShare?: number;
}

export interface PredictionLogWriterOptions extends PredictionLogOptions {
  readonly write: PredictionLogSink;
  /** First retry delay after a failed write, in ms; doubles per failure. Default 100. */
  readonly retryMinMs?: number;
  /** Longest delay between retries, in ms. Default 5 000. */
  readonly retryMaxMs?: number;
  /** Whether a write error means Postgres refuses these rows (split and isolate them) rather than being down. */
  readonly isRejected?: (error: unknown) => boolean;
  /** The sampling draw, in [0, 1); never derived from the request. Default `Math.random`. */
  readonly sample?: () => number;
  readonly metrics?: PredictionLogMetrics;
  readonly logger?: Logger;
  /** Called once by `close()` after the last write (ends the sink's connections). */
  readonly onClose?: () => Promise<void>;
}

/** The writer's counters, for tests and shutdown reports. */
export interface PredictionLogStats {
  /** Rows waiting (queued or being written). */
  readonly depth: number;
  readonly written: number;
  /** Rows that did not fit in the queue, or were still unwritten when `close` gave up. */
  readonly dropped: number;
  /** Rows Postgres refused for their content. */
  readonly rejected: number;
  /** Requests not logged by sampling. */
  readonly sampledOut: number;
  /** Failed write attempts (each retry counts). */
  readonly writeErrors: number;
}

/** Sampling decisions remembered for shadows (a shadow scores its copy within moments of the answer). */
const REMEMBERED_DECISIONS = 10_000;

export const PREDICTION_LOG_DEFAULTS = {
  sampleRate: 1,
  queueSize: 100_000,
  batchSize: 1_000,
  flushMs: 200,
  maxBusyShare: 0.25,
} as const satisfies Required<PredictionLogOptions>;

/** Default bound on `close()`, in ms. */
export const PREDICTION_LOG_CLOSE_TIMEOUT_MS = 5_000;

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation): the rows, not the server. */
export function isRejectedRowsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}

/**
 * The bounded, batching, retrying writer of prediction logs (see the module comment). It starts flushing when
 * constructed; `close()` stops it.
 */
export class PredictionLogWriter {
  readonly #write: PredictionLogSink;
  readonly #sampleRate: number;
  readonly #queueSize: number;
  readonly #batchSize: number;
  readonly #flushMs: number;
  /** Rest after a write, per ms the write took. */
  readonly #restPerWriteMs: number;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;
  readonly #isRejected: (error: unknown) => boolean;
  readonly #sample: () => number;
  /** The sampling decisions of recent answers by request id, oldest first: their shadows' records follow them. */
  readonly #decisions = new Map<string, boolean>();
  readonly #metrics: PredictionLogMetrics | undefined;
  readonly #logger: Logger | undefined;
  readonly #onClose: (() => Promise<void>) | undefined;

  /** Queued requests' rows from `#head` on (earlier slots are already taken). */
  #requests: (readonly PredictionLogRow[] | undefined)[] = [];
  #head = 0;
  #queuedRows = 0;
  /** Rows taken from the queue and not yet acknowledged: chunks written in order (split when rows are refused). */
  readonly #inflight: PredictionLogRow[][] = [];
  #inflightRows = 0;

  #written = 0;
  #dropped = 0;
  #rejected = 0;
  #sampledOut = 0;
  #writeErrors = 0;

  #state: 'open' | 'closing' | 'closed' = 'open';
  /** Set when `close` gave up on the rows still in flight: a late acknowledgement must not count them again. */
  #abandoned = false;
  #closing: Promise<PredictionLogStats> | undefined;
  /** Ends the flusher's current wait early. */
  #wake: (() => void) | undefined;
  #backoffMs = 0;
  /** No batch starts before this time (performance.now()) while the writer is open: the rest after a write. */
  #restUntil = 0;
  #outage: { since: number; attempts: number } | undefined;
  /** Whether drops were already reported since the last successful write. */
  #dropWarned = false;
  readonly #loop: Promise<void>;

  constructor(options: PredictionLogWriterOptions) {
    this.#write = options.write;
    this.#sampleRate = checked('sampleRate', options.sampleRate ?? PREDICTION_LOG_DEFAULTS.sampleRate, 0, 1);
    this.#queueSize = checked('queueSize', options.queueSize ?? PREDICTION_LOG_DEFAULTS.queueSize, 1);
    this.#batchSize = checked('batchSize', options.batchSize ?? PREDICTION_LOG_DEFAULTS.batchSize, 1);
    this.#flushMs = checked('flushMs', options.flushMs ?? PREDICTION_LOG_DEFAULTS.flushMs, 0);
    const share = checked('maxBusyShare', options.maxBusyShare ?? PREDICTION_LOG_DEFAULTS.maxBusyShare, 0.01, 1);
    this.#restPerWriteMs = (1 - share) / share;
    this.#retryMinMs = checked('retryMinMs', options.retryMinMs ?? 100, 1);
    this.#retryMaxMs = Math.max(this.#retryMinMs, options.retryMaxMs ?? 5_000);
    this.#isRejected = options.isRejected ?? isRejectedRowsError;
    this.#sample = options.sample ?? Math.random;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#onClose = options.onClose;
    this.#metrics?.setLogQueueDepthSource(() => this.depth);
    this.#loop = this.#run();
  }

  /** Rows waiting to be written (queued or in flight). */
  get depth(): number {
    return this.#queuedRows + this.#inflightRows;
  }

  get stats(): PredictionLogStats {
    return {
      depth: this.depth,
      written: this.#written,
      dropped: this.#dropped,
      rejected: this.#rejected,
      sampledOut: this.#sampledOut,
      writeErrors: this.#writeErrors,
    };
  }

  /**
   * Queues a request's rows unless sampling skips it; true when queued. Never throws, never waits: when the queue
   * cannot hold every row of the request, the request is dropped and counted. After `close()`, rows are dropped.
   */
  enqueue(record: PredictionLogRecord): boolean {
    const rows = record.instances.length;
    if (this.#sampleRate < 1 && !this.#sampled(record)) {
      this.#sampledOut++;
      return false;
    }
    if (rows === 0) return false;
    if (this.#state !== 'open' || this.#queuedRows + this.#inflightRows + rows > this.#queueSize) {
      this.#drop(rows, this.#state === 'open' ? 'the queue is full' : 'the writer is closed');
      return false;
    }
    let queued: PredictionLogRow[];
    try {
      queued = rowsOf(record);
    } catch (error) {
      // Instances parsed from JSON always serialise; anything else handed over by mistake is not logged.
      this.#rejected += rows;
      this.#metrics?.rejectedLogs.inc(rows);
      this.#logger?.warn(
        { err: error, requestId: record.requestId },
        'prediction logs: a request could not be serialised',
      );
      return false;
    }
    this.#requests.push(queued);
    this.#queuedRows += rows;
    if (this.#queuedRows >= this.#batchSize && this.#backoffMs === 0) this.#wakeUp();
    return true;
  }

  /**
   * Whether the request is logged: a fresh draw for an answer (remembered by its request id), the answer's decision
   * for a shadow's copy of it (a fresh draw when the answer is no longer remembered).
   */
  #sampled(record: PredictionLogRecord): boolean {
    if (record.role === 'shadow') {
      const decided = this.#decisions.get(record.requestId);
      if (decided !== undefined) return decided;
      return this.#sample() < this.#sampleRate;
    }
    const decision = this.#sample() < this.#sampleRate;
    this.#decisions.delete(record.requestId);
    this.#decisions.set(record.requestId, decision);
    if (this.#decisions.size > REMEMBERED_DECISIONS) {
      this.#decisions.delete(this.#decisions.keys().next().value!);
    }
    return decision;
  }

  /**
   * Stops accepting rows and writes what is queued, for at most `timeoutMs`; rows still unwritten then are counted
   * as dropped (a batch in flight at that moment may still land). Resolves with the final counters. Idempotent.
   */
  close(timeoutMs: number = PREDICTION_LOG_CLOSE_TIMEOUT_MS): Promise<PredictionLogStats> {
    this.#closing ??= this.#closeOnce(timeoutMs);
    return this.#closing;
  }

  async #closeOnce(timeoutMs: number): Promise<PredictionLogStats> {
    const deadline = performance.now() + timeoutMs;
    this.#state = 'closing';
    this.#wakeUp();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, timeoutMs));
    });
    await Promise.race([this.#loop, expired]);
    clearTimeout(timer);
    const left = this.depth;
    if (left > 0) {
      this.#abandoned = true;
      this.#dropped += left;
      this.#metrics?.droppedLogs.inc(left);
      this.#logger?.warn(
        { dropped: left, timeoutMs },
        'prediction logs: rows still unwritten at shutdown were dropped (Postgres slow or down)',
      );
    }
    this.#state = 'closed';
    this.#wakeUp();
    this.#requests = [];
    this.#head = 0;
    this.#queuedRows = 0;
    this.#inflight.length = 0;
    this.#inflightRows = 0;
    if (this.#onClose) {
      // Bounded too: ending a pool waits for a query in flight.
      const bound = Math.max(500, deadline - performance.now());
      let endTimer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#onClose().catch((error: unknown) =>
          this.#logger?.warn({ err: error }, 'prediction logs: closing the connection failed'),
        ),
        new Promise<void>((resolve) => {
          endTimer = setTimeout(resolve, bound);
        }),
      ]);
      clearTimeout(endTimer);
    }
    return this.stats;
  }

  #drop(rows: number, why: string): void {
    this.#dropped += rows;
    this.#metrics?.droppedLogs.inc(rows);
    if (!this.#dropWarned) {
      this.#dropWarned = true;
      this.#logger?.warn(
        { depth: this.depth, queueSize: this.#queueSize },
        `prediction logs: dropping rows, ${why} (counted in mlops_serving_prediction_logs_dropped_total)`,
      );
    }
  }

  #wakeUp(): void {
    const wake = this.#wake;
    if (wake !== undefined) {
      this.#wake = undefined;
      wake();
    }
  }

  /** Waits `ms`, or less when woken. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      // The API's server keeps the process alive; an idle writer must not (close() flushes on shutdown).
      timer.unref();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  /** Read after an await (TypeScript would keep the narrowing from before it). */
  get #stopped(): boolean {
    return this.#state === 'closed';
  }

  async #run(): Promise<void> {
    while (this.#state !== 'closed') {
      const closing = this.#state === 'closing';
      if (closing && this.depth === 0) return;
      // While closing, retry at once unless a write just failed (then keep backing off, within close's bound).
      await this.#sleep(this.#backoffMs > 0 ? this.#backoffMs : closing ? 0 : this.#flushMs);
      if (this.#stopped) return;
      await this.#drain();
    }
  }

  /**
   * Writes batch by batch: every row queued when the flusher woke, then more while full batches wait (everything
   * while closing); stops at the first failed write.
   */
  async #drain(): Promise<void> {
    let owed = this.#queuedRows;
    for (;;) {
      if (this.#inflight.length === 0) {
        const more = owed > 0 || this.#state !== 'open' || this.#queuedRows >= this.#batchSize;
        if (!more) return;
        await this.#rest();
        if (this.#stopped || !this.#take()) return;
        owed -= this.#inflight[0]!.length;
      }
      const started = performance.now();
      // A failed write backs off instead (#failed).
      if (!(await this.#writeInflight())) return;
      const now = performance.now();
      this.#restUntil = now + (now - started) * this.#restPerWriteMs;
    }
  }

  /** Waits out the rest after the last write (not while closing: then the queue is written as fast as it can be). */
  async #rest(): Promise<void> {
    for (;;) {
      const left = this.#restUntil - performance.now();
      if (left <= 0 || this.#state !== 'open') return;
      await this.#sleep(left);
    }
  }

  /** Moves the next batch (whole requests, at most `batchSize` rows unless one request is larger) in flight. */
  #take(): boolean {
    const requests = this.#requests;
    const batch: PredictionLogRow[] = [];
    while (this.#head < requests.length) {
      const rows = requests[this.#head]!;
      if (batch.length > 0 && batch.length + rows.length > this.#batchSize) break;
      requests[this.#head++] = undefined;
      for (const row of rows) batch.push(row);
    }
    if (this.#head === requests.length) {
      requests.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= requests.length) {
      this.#requests = requests.slice(this.#head);
      this.#head = 0;
    }
    if (batch.length === 0) return false;
    this.#queuedRows -= batch.length;
    this.#inflightRows += batch.length;
    this.#inflight.push(batch);
    return true;
  }

  /** Writes the rows in flight; false when Postgres could not be written (they stay in flight). */
  async #writeInflight(): Promise<boolean> {
    const started = performance.now();
    while (this.#inflight.length > 0) {
      const chunk = this.#inflight[0]!;
      try {
        await this.#write(chunk);
      } catch (error) {
        if (this.#abandoned) return false;
        this.#writeErrors++;
        this.#metrics?.logWriteErrors.inc();
        if (!this.#isRejected(error)) {
          this.#failed(error);
          return false;
        }
        if (chunk.length > 1) {
          // Halve until the refused rows are alone; the others are written.
          const middle = chunk.length >>> 1;
          this.#inflight.splice(0, 1, chunk.slice(0, middle), chunk.slice(middle));
        } else {
          this.#inflight.shift();
          this.#inflightRows -= 1;
          this.#rejected += 1;
          this.#metrics?.rejectedLogs.inc();
          const row = chunk[0]!;
          this.#logger?.warn(
            { err: error, requestId: row.requestId, model: row.model, version: row.version },
            'prediction logs: Postgres refused a row; it is not logged',
          );
        }
        continue;
      }
      if (this.#abandoned) return false;
      this.#inflight.shift();
      this.#inflightRows -= chunk.length;
      this.#written += chunk.length;
      this.#metrics?.writtenLogs.inc(chunk.length);
    }
    this.#metrics?.logFlushDuration.observe((performance.now() - started) / 1000);
    this.#succeeded();
    return true;
  }

  #failed(error: unknown): void {
    this.#backoffMs = this.#backoffMs === 0 ? this.#retryMinMs : Math.min(this.#retryMaxMs, this.#backoffMs * 2);
    if (this.#outage === undefined) {
      this.#outage = { since: Date.now(), attempts: 0 };
      this.#logger?.warn(
        { err: error, depth: this.depth, queueSize: this.#queueSize },
        'prediction logs: cannot write to Postgres; rows wait in the queue and the write is retried',
      );
    }
    this.#outage.attempts++;
  }

  #succeeded(): void {
    this.#backoffMs = 0;
    this.#dropWarned = false;
    if (this.#outage !== undefined) {
      this.#logger?.info(
        {
          outageMs: Date.now() - this.#outage.since,
          failedAttempts: this.#outage.attempts,
          depth: this.depth,
          dropped: this.#dropped,
        },
        'prediction logs: writing to Postgres again',
      );
      this.#outage = undefined;
    }
  }
}

function checked(name: string, value: number, min: number, max = Number.POSITIVE_INFINITY): number {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new RangeError(`prediction log ${name} must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}
