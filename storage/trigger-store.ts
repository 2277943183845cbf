/**
 * Trigger events and the runs they found: what the trigger path (pipelines/triggers.ts) reads and records. One row
 * per event, keyed by its dedupe key, so a retried activity or a repeated notification finds the first answer.
 */
import { and, desc, eq, inArray } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import * as schema from '../schema/index.js';
import { pipelineRuns, pipelines, pipelineTriggers, pipelineVersions } from '../schema/index.js';
import type { PipelineTrigger, TriggerKind, TriggerStatus } from '../schema/index.js';
import type { JsonProperties } from '../schema/columns.js';
import type { Database } from './database.js';
import type { Page } from './page.js';

/** Statuses of a run still in progress: a trigger that finds one is skipped unless the pipeline allows overlap. */
export const IN_PROGRESS_RUN_STATUSES = ['pending', 'running', 'waiting_approval'] as const;

/** How long a trigger waits for its pipeline's lock before giving up (retryably); activities retry it. */
export const PIPELINE_LOCK_TIMEOUT_MS = 30_000;
/** How often a waiting trigger tries its pipeline's lock again. */
const PIPELINE_LOCK_POLL_MS = 50;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Thrown when another trigger of the pipeline held its lock for too long; worth retrying. */
export class PipelineLockTimeoutError extends DomainError {
  override readonly name = 'PipelineLockTimeoutError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('unavailable', message, { code: 'pipeline_busy', ...options });
  }
}

export interface NewTriggerEvent {
  readonly pipeline: string;
  readonly kind: TriggerKind;
  readonly source: string;
  readonly dedupeKey: string;
  readonly status: TriggerStatus;
  readonly reason?: string;
  readonly runId?: string;
  readonly details?: JsonProperties;
}

export class TriggerStore {
  constructor(private readonly db: Database) {}

  /** Over a bare pool (activities get the pool, not the Drizzle handle). */
  static over(pool: pg.Pool): TriggerStore {
    return new TriggerStore(drizzle(pool, { schema }) as Database);
  }

  async findByDedupeKey(dedupeKey: string): Promise<PipelineTrigger | undefined> {
    const [row] = await this.db.select().from(pipelineTriggers).where(eq(pipelineTriggers.dedupeKey, dedupeKey));
    return row;
  }

  /** The event that started this run of the pipeline, if a trigger started it. */
  async findByRunId(pipeline: string, runId: string): Promise<PipelineTrigger | undefined> {
    const [row] = await this.db
      .select()
      .from(pipelineTriggers)
      .where(
        and(
          eq(pipelineTriggers.pipeline, pipeline),
          eq(pipelineTriggers.runId, runId),
          eq(pipelineTriggers.status, 'started'),
        ),
      )
      .orderBy(pipelineTriggers.createdAt)
      .limit(1);
    return row;
  }

  /** The events of these dedupe keys (those recorded; at most one each). */
  async findByDedupeKeys(dedupeKeys: readonly string[]): Promise<PipelineTrigger[]> {
    if (dedupeKeys.length === 0) return [];
    return this.db
      .select()
      .from(pipelineTriggers)
      .where(inArray(pipelineTriggers.dedupeKey, [...dedupeKeys]));
  }

  /** Records an event once: a second insert with the same dedupe key returns the first row. */
  async record(event: NewTriggerEvent): Promise<PipelineTrigger> {
    const [inserted] = await this.db
      .insert(pipelineTriggers)
      .values({
        pipeline: event.pipeline,
        kind: event.kind,
        source: event.source,
        dedupeKey: event.dedupeKey,
        status: event.status,
        reason: event.reason ?? null,
        runId: event.runId ?? null,
        details: event.details ?? null,
      })
      .onConflictDoNothing({ target: pipelineTriggers.dedupeKey })
      .returning();
    if (inserted) return inserted;
    const existing = await this.findByDedupeKey(event.dedupeKey);
    if (!existing) throw new Error(`trigger ${event.dedupeKey} was neither inserted nor found`);
    return existing;
  }

  /** A pipeline's trigger events, newest first; `filter` narrows them to one kind or one source (a schedule id). */
  async list(
    pipeline: string,
    page: Page = { limit: 100, offset: 0 },
    filter: { readonly kind?: TriggerKind; readonly source?: string } = {},
  ): Promise<PipelineTrigger[]> {
    return this.db
      .select()
      .from(pipelineTriggers)
      .where(
        and(
          eq(pipelineTriggers.pipeline, pipeline),
          filter.kind === undefined ? undefined : eq(pipelineTriggers.kind, filter.kind),
          filter.source === undefined ? undefined : eq(pipelineTriggers.source, filter.source),
        ),
      )
      .orderBy(desc(pipelineTriggers.createdAt), desc(pipelineTriggers.id))
      .limit(page.limit)
      .offset(page.offset);
  }

  /** The run a given idempotency key started, if any. */
  async runByIdempotencyKey(key: string): Promise<{ id: string; status: string } | undefined> {
    const [row] = await this.db
      .select({ id: pipelineRuns.id, status: pipelineRuns.status })
      .from(pipelineRuns)
      .where(eq(pipelineRuns.idempotencyKey, key));
    return row;
  }

  /** A run of the pipeline that is still pending, running or waiting for approval, if any. */
  async runInProgress(pipeline: string): Promise<{ id: string; status: string } | undefined> {
    const [row] = await this.db
      .select({ id: pipelineRuns.id, status: pipelineRuns.status })
      .from(pipelineRuns)
      .innerJoin(pipelineVersions, eq(pipelineVersions.id, pipelineRuns.pipelineVersionId))
      .innerJoin(pipelines, eq(pipelines.id, pipelineVersions.pipelineId))
      .where(and(eq(pipelines.name, pipeline), inArray(pipelineRuns.status, [...IN_PROGRESS_RUN_STATUSES])))
      .orderBy(desc(pipelineRuns.startedAt))
      .limit(1);
    return row;
  }

  /**
   * Runs `work` holding a session advisory lock for the pipeline, so two triggers of one pipeline do not both see
   * "no run in progress" and both start one. The lock is released when `work` settles (or its session ends).
   *
   * The lock is taken with `pg_try_advisory_lock`, polled, never with a blocking `pg_advisory_lock`: a waiter holds
   * no connection while it waits (the work inside needs connections of its own from the same pool), and it gives up
   * after `timeoutMs`, so a stuck holder cannot pile up waiters (an activity's timeout does not stop its JavaScript).
   *
   * @throws PipelineLockTimeoutError (retryable, 503) when the lock stayed held for `timeoutMs`.
   */
  async withPipelineLock<T>(
    pipeline: string,
    work: () => Promise<T>,
    options: { readonly timeoutMs?: number; readonly pollMs?: number } = {},
  ): Promise<T> {
    const key = `pipeline-trigger:${pipeline}`;
    const timeoutMs = options.timeoutMs ?? PIPELINE_LOCK_TIMEOUT_MS;
    const pollMs = options.pollMs ?? PIPELINE_LOCK_POLL_MS;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const client = await this.db.$client.connect();
      let locked: boolean;
      try {
        const { rows } = await client.query<{ locked: boolean }>(
          'select pg_try_advisory_lock(hashtext($1)) as locked',
          [key],
        );
        locked = rows[0]?.locked === true;
      } catch (error) {
        client.release(error instanceof Error ? error : true);
        throw error;
      }
      if (locked) {
        let broken: Error | undefined;
        try {
          return await work();
        } finally {
          try {
            await client.query('select pg_advisory_unlock(hashtext($1))', [key]);
          } catch (error) {
            // The session is dropped instead of returned to the pool: its end releases the lock.
            broken = error instanceof Error ? error : new Error(String(error));
          }
          client.release(broken ?? undefined);
        }
      }
      client.release();
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new PipelineLockTimeoutError(
          `another trigger of pipeline ${pipeline} held its lock for more than ${timeoutMs / 1000} s; retry later`,
        );
      }
      // A little jitter, so waiters of one pipeline do not poll in step.
      await sleep(Math.min(left, pollMs * (0.5 + Math.random())));
    }
  }
}
