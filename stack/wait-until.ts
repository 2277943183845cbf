import { ServiceError } from '../core/errors.js';
import type { ManagedProcess } from './managed-process.js';

export interface WaitOptions {
  readonly service: string;
  readonly timeoutMs: number;
  readonly intervalMs?: number;
  /** When the service is a local process, its early exit ends the wait at once, with its log tail. */
  readonly process?: ManagedProcess;
  readonly logFile?: string;
}

/**
 * Polls `probe` until it resolves true (readiness is checked, never slept for). Throws a ServiceError naming the
 * service, the last probe error and the log file on timeout or when the local process exits first.
 */
export async function waitUntil(probe: () => Promise<boolean>, options: WaitOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let interval = options.intervalMs ?? 50;
  let lastError: unknown;
  for (;;) {
    if (options.process?.hasExited) {
      const tail = options.process.tailLog();
      throw new ServiceError(
        options.service,
        `the process ${options.process.describeExit()} before it was ready${tail ? `; last log lines:\n${tail}` : ''}`,
        options.logFile,
      );
    }
    try {
      if (await probe()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new ServiceError(
        options.service,
        `not ready after ${Math.round(options.timeoutMs / 1000)} s${cause}`,
        options.logFile,
        { cause: lastError },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
    interval = Math.min(interval * 1.5, 500);
  }
}

/**
 * Retries `attempt` with exponential backoff until it succeeds or `timeoutMs` passes: for external services that
 * are briefly down while the platform starts.
 */
export async function retryWithBackoff<T>(
  attempt: () => Promise<T>,
  options: { service: string; timeoutMs: number; onRetry?: (error: unknown, delayMs: number) => void },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let delay = 200;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() + delay > deadline) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new ServiceError(
          options.service,
          `unreachable after ${Math.round(options.timeoutMs / 1000)} s: ${reason}`,
          undefined,
          { cause: error },
        );
      }
      options.onRetry?.(error, delay);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}
