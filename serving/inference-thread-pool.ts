/**
 * The inference threads of the loaded versions: one session per thread at a time (a thread runs one thing at a time,
 * so a deploy's new version is created while the version it replaces keeps scoring on its own thread), and threads
 * kept for reuse instead of started and ended with each version.
 *
 * Starting a thread costs about 40 ms of CPU (an isolate, and onnxruntime's bindings loaded into it) and ending one
 * more; on a busy API both came out of the requests in flight during a hot swap. With one spare thread ready, a
 * deploy takes the spare, and the replaced version's thread becomes the next spare: a swap starts and ends no
 * thread.
 *
 * The number of threads is bounded (`maxThreads`): once that many run, a new version's session goes to the thread
 * holding the fewest sessions (a thread holds any number of them; it runs one call at a time).
 */
import type * as ort from 'onnxruntime-node';
import { InferenceThread } from './inference-thread.js';
import type { ServingSession } from './load-model.js';

export interface InferenceThreadPoolOptions {
  /** Idle threads kept ready for the next version. Default 1. */
  readonly spares?: number;
  /** Most threads started at once (spares included); versions share threads beyond. Default: no bound. */
  readonly maxThreads?: number;
}

export class InferenceThreadPool {
  readonly #spares: number;
  readonly #maxThreads: number;
  /** Threads with no session, most recently freed last. */
  readonly #idle: InferenceThread[] = [];
  readonly #all = new Set<InferenceThread>();
  /** Sessions open (or being created) in each busy thread. */
  readonly #sessions = new Map<InferenceThread, number>();
  #primed = false;
  #closed = false;

  constructor(options: InferenceThreadPoolOptions = {}) {
    const maxThreads = options.maxThreads ?? Infinity;
    if (!(maxThreads >= 1)) throw new RangeError(`maxThreads must be at least 1, got ${maxThreads}`);
    this.#maxThreads = Math.floor(maxThreads);
    this.#spares = Math.min(options.spares ?? 1, this.#maxThreads - 1);
  }

  /** The most threads this pool starts. */
  get maxThreads(): number {
    return this.#maxThreads;
  }

  /** Threads started and not ended (busy and idle). */
  get size(): number {
    return this.#all.size;
  }

  /** Idle threads. */
  get idle(): number {
    return this.#idle.length;
  }

  /**
   * Creates a session in an idle thread, or in a new one. Releasing the session frees the thread for the next one
   * (or ends it when enough are idle, or it has failed).
   */
  async createSession(bytes: Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<ServingSession> {
    if (this.#closed) throw new Error('the inference threads are closed');
    const thread = this.#takeIdle() ?? (this.#all.size < this.#maxThreads ? this.#start() : this.#leastBusy());
    this.#sessions.set(thread, (this.#sessions.get(thread) ?? 0) + 1);
    // The first session also starts the spare: at start-up, not during a later deploy.
    if (!this.#primed) {
      this.#primed = true;
      while (this.#idle.length < this.#spares && this.#all.size < this.#maxThreads) this.#idle.push(this.#start());
    }
    try {
      const session = await thread.createSession(bytes, options);
      let released: Promise<void> | undefined;
      return {
        ...session,
        release: () =>
          (released ??= (async () => {
            try {
              await session.release();
            } finally {
              await this.#free(thread);
            }
          })()),
      };
    } catch (error) {
      // Failed to load (a bad model, or the thread died): a thread whose load failed is not trusted again, once
      // the sessions it shares with other versions are gone.
      if (this.#release(thread) === 0 || thread.failed) await this.#end(thread);
      throw error;
    }
  }

  /** Ends every thread; sessions still open fail. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#idle.length = 0;
    await Promise.all([...this.#all].map((thread) => this.#end(thread)));
  }

  /** The running thread with the fewest sessions (the pool is full, so none is idle). */
  #leastBusy(): InferenceThread {
    let best: InferenceThread | undefined;
    let fewest = Infinity;
    for (const thread of this.#all) {
      const n = this.#sessions.get(thread) ?? 0;
      if (!thread.failed && n < fewest) {
        best = thread;
        fewest = n;
      }
    }
    return best ?? this.#start();
  }

  /** One session of the thread ended; the sessions it still holds. */
  #release(thread: InferenceThread): number {
    const left = (this.#sessions.get(thread) ?? 1) - 1;
    if (left > 0) this.#sessions.set(thread, left);
    else this.#sessions.delete(thread);
    return left;
  }

  #takeIdle(): InferenceThread | undefined {
    while (this.#idle.length > 0) {
      const thread = this.#idle.pop()!;
      if (!thread.failed) return thread;
      void this.#end(thread);
    }
    return undefined;
  }

  #start(): InferenceThread {
    const thread = new InferenceThread();
    this.#all.add(thread);
    return thread;
  }

  async #free(thread: InferenceThread): Promise<void> {
    if (this.#release(thread) > 0 && !thread.failed) return;
    if (this.#closed || thread.failed || this.#idle.length >= this.#spares) await this.#end(thread);
    else this.#idle.push(thread);
  }

  async #end(thread: InferenceThread): Promise<void> {
    this.#all.delete(thread);
    this.#sessions.delete(thread);
    await thread.close();
  }
}
