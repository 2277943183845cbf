import type { Logger } from '../core/logger.js';

/**
 * Keeps one part of `npm start` (the workers, the API) running: when it dies it is started again after an
 * exponential backoff, capped, and reset once a run has stayed up for a stable period. Pure orchestration: the
 * part's start function, the clock and the sleep are injected, so the policy is unit-tested without processes.
 */

/** One running instance of a supervised part. */
export interface SupervisedRun {
  /**
   * Settles when the instance has stopped. Any settlement the supervisor did not ask for (a rejection, or a
   * resolution while the supervisor is not stopping) is a death, and the part is restarted.
   */
  readonly finished: Promise<unknown>;
  /** Stops the instance (gracefully, bounded); called on supervisor stop, and after a death to release leftovers. */
  stop(): Promise<void>;
}

export interface BackoffPolicy {
  /** Delay before the first restart after a stable run. */
  readonly initialMs: number;
  /** Growth per consecutive failure. */
  readonly factor: number;
  /** The cap: a part that keeps dying is retried this often, for ever (the services it needs may come back). */
  readonly maxMs: number;
  /** A run that stayed up this long was healthy: the next death restarts after `initialMs` again. */
  readonly stableAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 1_000, factor: 2, maxMs: 30_000, stableAfterMs: 60_000 };

/** The delay before restart number `failures + 1` of a run of consecutive failures: initial × factor^failures, capped. */
export function backoffDelay(policy: BackoffPolicy, failures: number): number {
  return Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, failures));
}

/** What the supervisor reports about each death and restart (also logged). */
export interface SupervisorEvent {
  readonly kind: 'died' | 'restarted' | 'restart_failed';
  readonly name: string;
  /** Restarts so far, this one included for `restarted`. */
  readonly restarts: number;
  /** How long the instance that died had been running (died), or the failed start's error (restart_failed). */
  readonly ranMs?: number;
  readonly delayMs?: number;
  readonly error?: unknown;
}

export interface SuperviseOptions {
  /** For logs: "workers", "API". */
  readonly name: string;
  /** Starts one instance; resolves once it is up (the workers polling, the API listening). */
  readonly start: () => Promise<SupervisedRun>;
  readonly logger: Logger;
  readonly backoff?: Partial<BackoffPolicy>;
  /** Called after each death and restart (tests and the start banner's counters). */
  readonly onEvent?: (event: SupervisorEvent) => void;
  /** Injected in tests. */
  readonly now?: () => number;
  /** Resolves after `ms`, or early when `signal` aborts. Injected in tests. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface Supervisor {
  /** Restarts so far. */
  readonly restarts: number;
  /** The instance running now; undefined while waiting to restart. */
  readonly current: SupervisedRun | undefined;
  /** Stops supervising: cancels a pending restart, then stops the running instance. Idempotent. */
  stop(): Promise<void>;
}

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Starts `options.start()` and keeps it running. The first start is awaited and its failure thrown, so `npm start`
 * still fails fast on a broken configuration; after that, every death is logged and followed by a restart after
 * {@link backoffDelay} (a failed restart counts as one more consecutive failure). Never gives up: the cap keeps a
 * part that cannot start (its database down, say) from spinning, and it comes back when the cause goes away.
 */
export async function supervise(options: SuperviseOptions): Promise<Supervisor> {
  const policy: BackoffPolicy = { ...DEFAULT_BACKOFF, ...options.backoff };
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const { logger, name } = options;
  const stopping = new AbortController();
  let current: SupervisedRun | undefined = await options.start();
  let restarts = 0;
  let failures = 0;
  const emit = (event: SupervisorEvent) => options.onEvent?.(event);

  const loop = async () => {
    while (!stopping.signal.aborted && current) {
      const run = current;
      const startedAt = now();
      const error = await run.finished.then(
        () => undefined,
        (e: unknown) => e ?? new Error(`${name} stopped`),
      );
      if (stopping.signal.aborted) return;
      current = undefined;
      const ranMs = now() - startedAt;
      if (ranMs >= policy.stableAfterMs) failures = 0;
      let delayMs = backoffDelay(policy, failures);
      failures += 1;
      logger.error(
        { err: error, supervised: name, ranMs, restartInMs: delayMs, restarts },
        `${name} stopped unexpectedly; restarting in ${(delayMs / 1000).toFixed(1)} s`,
      );
      emit({ kind: 'died', name, restarts, ranMs, delayMs, error });
      // Whatever the dead instance still holds (connections, a child process that hangs) is released first.
      await run.stop().catch((e: unknown) => logger.warn({ err: e, supervised: name }, `${name}: cleanup failed`));
      for (;;) {
        await sleep(delayMs, stopping.signal);
        if (stopping.signal.aborted) return;
        try {
          const started = await options.start();
          if (stopping.signal.aborted) {
            await started.stop();
            return;
          }
          current = started;
          restarts += 1;
          logger.warn({ supervised: name, restarts }, `${name} restarted`);
          emit({ kind: 'restarted', name, restarts });
          break;
        } catch (e) {
          delayMs = backoffDelay(policy, failures);
          failures += 1;
          logger.error(
            { err: e, supervised: name, restartInMs: delayMs },
            `${name} could not be restarted; trying again in ${(delayMs / 1000).toFixed(1)} s`,
          );
          emit({ kind: 'restart_failed', name, restarts, delayMs, error: e });
        }
      }
    }
  };
  const looping = loop().catch((e: unknown) =>
    logger.error({ err: e, supervised: name }, `${name}: supervisor failed`),
  );

  let stopped: Promise<void> | undefined;
  return {
    get restarts() {
      return restarts;
    },
    get current() {
      return current;
    },
    stop: () =>
      (stopped ??= (async () => {
        stopping.abort();
        const run = current;
        current = undefined;
        await run?.stop();
        await looping;
      })()),
  };
}
