/**
 * What monitoring windows did: one action row per window and kind (alert, retrain, rollback) with its status and
 * reason, and every attempt to deliver an alert. The window+kind constraint is what makes a retried action activity
 * find its first answer instead of acting twice. The windows themselves are monitoring-store.ts's.
 */
import { and, asc, desc, eq, inArray, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import * as schema from '../schema/index.js';
import { alertDeliveries, monitoringActions, pipelineTriggers } from '../schema/index.js';
import type { AlertDelivery, MonitoringAction, MonitoringActionKind, PipelineTrigger } from '../schema/index.js';
import type { JsonProperties } from '../schema/columns.js';
import type { Database } from './database.js';

/**
 * pending: in flight (an alert whose delivery is still being attempted); done: it acted; skipped: it had no reason to
 * (cooldown, nothing to roll back to, the champion changed); failed: it could not. Free text in the table (no check
 * constraint), so adding a status needs no migration.
 */
export const MONITORING_ACTION_STATUSES = ['pending', 'done', 'skipped', 'failed'] as const;
export type MonitoringActionStatus = (typeof MONITORING_ACTION_STATUSES)[number];

export interface ActionRecord {
  readonly windowId: string;
  readonly deployment: string;
  readonly kind: MonitoringActionKind;
  readonly status: MonitoringActionStatus;
  readonly reason: string;
  readonly details?: JsonProperties;
}

export interface DeliveryRecord {
  readonly actionId: string;
  readonly url: string;
  readonly attempt: number;
  readonly status?: number;
  readonly error?: string;
  readonly durationMs: number;
}

export class MonitoringActionStore {
  constructor(private readonly db: Database) {}

  /** Over a bare pool (activities get the pool, not the Drizzle handle). */
  static over(pool: pg.Pool): MonitoringActionStore {
    return new MonitoringActionStore(drizzle(pool, { schema }) as Database);
  }

  async find(windowId: string, kind: MonitoringActionKind): Promise<MonitoringAction | undefined> {
    const [row] = await this.db
      .select()
      .from(monitoringActions)
      .where(and(eq(monitoringActions.windowId, windowId), eq(monitoringActions.kind, kind)));
    return row;
  }

  /**
   * Records a window's action once: when the window already has an action of this kind, nothing is written and the
   * first row is returned (`created: false`).
   */
  async record(action: ActionRecord): Promise<{ action: MonitoringAction; created: boolean }> {
    const [inserted] = await this.db
      .insert(monitoringActions)
      .values({ ...action, details: action.details ?? null })
      .onConflictDoNothing({ target: [monitoringActions.windowId, monitoringActions.kind] })
      .returning();
    if (inserted) return { action: inserted, created: true };
    const existing = await this.find(action.windowId, action.kind);
    if (!existing) throw new Error(`monitoring action ${action.kind} of window ${action.windowId} vanished`);
    return { action: existing, created: false };
  }

  /** Sets the status, reason and details of an action row (an alert's, as its deliveries go). */
  async update(
    id: string,
    change: { status: MonitoringActionStatus; reason: string; details?: JsonProperties },
  ): Promise<MonitoringAction | undefined> {
    const [row] = await this.db
      .update(monitoringActions)
      .set({ status: change.status, reason: change.reason, ...(change.details ? { details: change.details } : {}) })
      .where(eq(monitoringActions.id, id))
      .returning();
    return row;
  }

  async recordDelivery(delivery: DeliveryRecord): Promise<AlertDelivery> {
    const [row] = await this.db
      .insert(alertDeliveries)
      .values({
        actionId: delivery.actionId,
        url: delivery.url,
        attempt: delivery.attempt,
        status: delivery.status ?? null,
        error: delivery.error ?? null,
        durationMs: Math.max(0, Math.round(delivery.durationMs)),
      })
      .returning();
    if (!row) throw new Error('the alert delivery was not returned');
    return row;
  }

  /** A window's actions (by kind) and their alert deliveries (in the order they were attempted). */
  async ofWindow(windowId: string): Promise<{ actions: MonitoringAction[]; deliveries: AlertDelivery[] }> {
    const actions = await this.db
      .select()
      .from(monitoringActions)
      .where(eq(monitoringActions.windowId, windowId))
      .orderBy(asc(monitoringActions.createdAt), asc(monitoringActions.kind));
    const ids = actions.map((a) => a.id);
    const deliveries =
      ids.length === 0
        ? []
        : await this.db
            .select()
            .from(alertDeliveries)
            .where(inArray(alertDeliveries.actionId, ids))
            .orderBy(asc(alertDeliveries.id));
    return { actions, deliveries };
  }

  /**
   * The cooldown's measure: the monitoring trigger of the pipeline, other than the one under `exceptDedupeKey`, that
   * started a run for the window with the newest end at or after `windowEnd - cooldownSeconds` (a window at most
   * the cooldown before this one, or a later one); undefined when there is none. Measured on window ends, not on
   * when the triggers fired, so windows of one incident computed seconds or hours apart compare the same. A
   * trigger's window end is its details' `windowEnd`, else its window's row (by `source`), else when it fired.
   */
  async cooldownRun(
    pipeline: string,
    windowEnd: Date,
    cooldownSeconds: number,
    exceptDedupeKey: string,
  ): Promise<(PipelineTrigger & { windowEnd: Date }) | undefined> {
    const end = sql<Date>`coalesce(
      (${pipelineTriggers.details} ->> 'windowEnd')::timestamptz,
      (select w.window_end from monitoring_windows w where w.id = case
        when ${pipelineTriggers.source} ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        then ${pipelineTriggers.source}::uuid end),
      ${pipelineTriggers.createdAt})`;
    const since = new Date(windowEnd.getTime() - cooldownSeconds * 1000);
    const [row] = await this.db
      .select({ trigger: pipelineTriggers, windowEnd: sql<string | Date>`${end}` })
      .from(pipelineTriggers)
      .where(
        and(
          eq(pipelineTriggers.pipeline, pipeline),
          eq(pipelineTriggers.kind, 'monitoring'),
          eq(pipelineTriggers.status, 'started'),
          sql`${pipelineTriggers.dedupeKey} <> ${exceptDedupeKey}`,
          sql`${end} >= ${since.toISOString()}::timestamptz`,
        ),
      )
      .orderBy(desc(end), desc(pipelineTriggers.createdAt))
      .limit(1);
    return row ? { ...row.trigger, windowEnd: new Date(row.windowEnd) } : undefined;
  }
}
