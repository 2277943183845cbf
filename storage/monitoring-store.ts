import { and, desc, eq, gt, lt, lte, sql } from 'drizzle-orm';
import { monitoringWindows, type JsonProperties, type MonitoringWindow } from '../schema/index.js';
import type { Database } from './database.js';
import { UUID } from './registry-common.js';

/** A window's row as the monitor writes it; the id is the table's. */
export interface WindowRecord {
  readonly deployment: string;
  readonly model: string;
  readonly versionId: string;
  readonly version: number;
  readonly windowStart: Date;
  readonly windowEnd: Date;
  readonly rows: number;
  readonly labelledRows: number;
  readonly breached: boolean;
  readonly summary: JsonProperties;
  readonly reportUri: string;
  readonly reportSha256: string;
}

export interface ListWindowsOptions {
  /** Windows ending after this instant. */
  readonly from?: Date | undefined;
  /** Windows starting before this instant. */
  readonly to?: Date | undefined;
  readonly limit: number;
  readonly offset: number;
}

/**
 * Monitoring windows of deployments: one row per deployment and span (the table's unique constraint), so a window
 * computed again (a retried activity, a recomputation after late feedback) updates its row and keeps its id.
 */
export class MonitoringStore {
  constructor(private readonly db: Database) {}

  /**
   * Writes the window's row, or updates the row of the same deployment and span in place. Idempotent: the same
   * span always answers the same id, and no second row is ever written for it.
   */
  async upsertWindow(record: WindowRecord): Promise<MonitoringWindow> {
    const [row] = await this.db
      .insert(monitoringWindows)
      .values(record)
      .onConflictDoUpdate({
        target: [monitoringWindows.deployment, monitoringWindows.windowStart, monitoringWindows.windowEnd],
        set: {
          model: sql`excluded.model`,
          versionId: sql`excluded.version_id`,
          version: sql`excluded.version`,
          rows: sql`excluded.rows`,
          labelledRows: sql`excluded.labelled_rows`,
          breached: sql`excluded.breached`,
          summary: sql`excluded.summary`,
          reportUri: sql`excluded.report_uri`,
          reportSha256: sql`excluded.report_sha256`,
        },
      })
      .returning();
    return row!;
  }

  /** The deployment's latest window ending at or before `end` (the previous window of one starting at `end`). */
  async previousWindow(deployment: string, end: Date): Promise<MonitoringWindow | undefined> {
    const [row] = await this.db
      .select()
      .from(monitoringWindows)
      .where(and(eq(monitoringWindows.deployment, deployment), lte(monitoringWindows.windowEnd, end)))
      .orderBy(desc(monitoringWindows.windowEnd), desc(monitoringWindows.windowStart))
      .limit(1);
    return row;
  }

  /** The deployment's windows, the latest first (by end, then start), within `from` and `to` when given. */
  async listWindows(deployment: string, options: ListWindowsOptions): Promise<MonitoringWindow[]> {
    return this.db
      .select()
      .from(monitoringWindows)
      .where(
        and(
          eq(monitoringWindows.deployment, deployment),
          options.from ? gt(monitoringWindows.windowEnd, options.from) : undefined,
          options.to ? lt(monitoringWindows.windowStart, options.to) : undefined,
        ),
      )
      .orderBy(desc(monitoringWindows.windowEnd), desc(monitoringWindows.windowStart))
      .limit(options.limit)
      .offset(options.offset);
  }

  /** One window of the deployment; undefined for an unknown id, another deployment's, or an id that is no UUID. */
  async getWindow(deployment: string, id: string): Promise<MonitoringWindow | undefined> {
    if (!UUID.test(id)) return undefined;
    const [row] = await this.db
      .select()
      .from(monitoringWindows)
      .where(and(eq(monitoringWindows.id, id), eq(monitoringWindows.deployment, deployment)));
    return row;
  }
}

/** The monitoring windows on Postgres. Holds nothing but the database. */
export function createMonitoringStore(db: Database): MonitoringStore {
  return new MonitoringStore(db);
}
