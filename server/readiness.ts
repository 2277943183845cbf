import type { Connection } from '@temporalio/client';
import type { Client as MinioClient } from 'minio';
import type pg from 'pg';

/**
 * One dependency that must answer before the API is ready to serve. `check` resolves when the dependency is usable
 * and rejects with a message saying why not; it should stop work when `signal` aborts (the per-check timeout).
 */
export interface ReadinessCheck {
  /** Key in the /readyz response; unique per app. */
  readonly name: string;
  check(signal: AbortSignal): Promise<void>;
}

/** The outcome of one check; `latencyMs` is wall time in milliseconds, two decimals. */
export type ReadinessResult =
  | { readonly ok: true; readonly latencyMs: number }
  | { readonly ok: false; readonly latencyMs: number; readonly error: string };

export interface ReadinessReport {
  /** True when every check passed (and when there are none). */
  readonly ready: boolean;
  readonly checks: Record<string, ReadinessResult>;
}

/** Default bound on one check, in milliseconds. */
export const DEFAULT_READINESS_TIMEOUT_MS = 2_000;

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

async function runOne(check: ReadinessCheck, timeoutMs: number): Promise<ReadinessResult> {
  const controller = new AbortController();
  const started = performance.now();
  const elapsed = () => Math.round((performance.now() - started) * 100) / 100;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new Error(`timed out after ${timeoutMs} ms`);
      controller.abort(error);
      reject(error);
    }, timeoutMs);
  });
  try {
    // Through a then() so that a check throwing synchronously is reported like one that rejects.
    await Promise.race([Promise.resolve().then(() => check.check(controller.signal)), timedOut]);
    return { ok: true, latencyMs: elapsed() };
  } catch (error: unknown) {
    return { ok: false, latencyMs: elapsed(), error: describe(error) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs every check in parallel, each bounded by `timeoutMs` (a check still running then is aborted and reported as
 * timed out), so the whole report takes at most about `timeoutMs`. Never throws.
 */
export async function runReadinessChecks(
  checks: readonly ReadinessCheck[],
  options: { readonly timeoutMs?: number } = {},
): Promise<ReadinessReport> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_READINESS_TIMEOUT_MS;
  const results = await Promise.all(checks.map(async (c) => [c.name, await runOne(c, timeoutMs)] as const));
  return { ready: results.every(([, r]) => r.ok), checks: Object.fromEntries(results) };
}

/**
 * Temporal is ready when its frontend answers `GetSystemInfo` (the call the SDK itself uses to verify a
 * connection). The call is cancelled when the check is aborted and carries a gRPC deadline of `timeoutMs` (default:
 * the readiness default), because a cancel alone does not stop the SDK's retry interceptor from retrying an
 * unreachable server in the background; the deadline ends those retries within one backoff interval (under 2 s with
 * the SDK defaults). Known SDK behaviour: a retry timer that fires after `Connection.close()` throws an uncaught
 * "Channel has been shut down", so on shutdown close the connection a moment after the last call has finished.
 */
export function temporalReadiness(
  connection: Connection,
  options: { readonly timeoutMs?: number } = {},
): ReadinessCheck {
  const timeoutMs = options.timeoutMs ?? DEFAULT_READINESS_TIMEOUT_MS;
  return {
    name: 'temporal',
    async check(signal) {
      await connection.withDeadline(Date.now() + timeoutMs, () =>
        connection.withAbortSignal(signal, () => connection.workflowService.getSystemInfo({})),
      );
    },
  };
}

/**
 * Postgres is ready when the pool can hand out a connection that runs `select 1`. pg cannot cancel a waiting
 * query, so a timed-out check finishes in the background under the pool's own timeouts.
 */
export function postgresReadiness(pool: pg.Pool): ReadinessCheck {
  return {
    name: 'postgres',
    async check() {
      await pool.query('select 1');
    },
  };
}

/**
 * Online serving is ready once its model pool has read the deployments and loaded their versions (see
 * `ModelPool.initialLoadDone`).
 */
export function servingReadiness(pool: { readonly initialLoadDone: boolean }): ReadinessCheck {
  return {
    name: 'serving',
    check() {
      if (!pool.initialLoadDone) return Promise.reject(new Error('the deployed models are still loading'));
      return Promise.resolve();
    },
  };
}

/** S3 is ready when the artifact bucket exists and the credentials may see it. */
export function s3Readiness(client: MinioClient, bucket: string): ReadinessCheck {
  return {
    name: 's3',
    async check() {
      if (!(await client.bucketExists(bucket))) throw new Error(`bucket "${bucket}" does not exist`);
    },
  };
}
