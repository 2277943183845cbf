/**
 * Objects seen under the pipelines' watched prefixes (schema/monitoring.ts `watched_objects`): what the S3 webhook
 * and the polling fallback record, and what the settle workflow claims for one trigger. One (pipeline, key, ETag) is
 * new once, whoever sees it and however often.
 */
import { and, eq, inArray, isNotNull, isNull, notExists, or, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import type { JsonProperties } from '../schema/columns.js';
import * as schema from '../schema/index.js';
import { pipelineTriggers, watchedObjects } from '../schema/index.js';
import type { Database } from './database.js';

/** Which path saw an object first. */
export type SeenBy = 'notification' | 'poll';

/** One object under a watched prefix: its key and ETag (without quotes) identify it. */
export interface WatchedObjectRef {
  readonly key: string;
  readonly etag: string;
  readonly size?: number | undefined;
}

/** What recording a batch found. */
export interface RecordedObjects {
  /** The objects not seen before (inserted now). */
  readonly added: WatchedObjectRef[];
  /**
   * How many of the given objects no trigger has been recorded for yet (the added ones included): unclaimed ones,
   * and claimed ones whose claim fired no trigger (a settle workflow that died between claim and trigger).
   */
  readonly unclaimed: number;
}

/** A claim whose objects no recorded trigger event points at: its settle cycle died before it fired or linked. */
export interface OrphanClaim {
  readonly claimId: string;
  /** In key order, then ETag: the claimed set, exactly (a claim is one transaction). */
  readonly objects: WatchedObjectRef[];
}

/** Rows per insert: 4 parameters each, well under Postgres' 65 535 per statement. */
const CHUNK = 1000;

export class WatchedObjectStore {
  constructor(private readonly db: Database) {}

  /** Over a bare pool (activities get the pool, not the Drizzle handle). */
  static over(pool: pg.Pool): WatchedObjectStore {
    return new WatchedObjectStore(drizzle(pool, { schema }) as Database);
  }

  /**
   * Records objects of a pipeline's watched prefix. Idempotent: a (key, ETag) already recorded is left as it was
   * (`ON CONFLICT DO NOTHING`), so it is returned as added only by the first call that saw it. `unclaimed` counts
   * the given objects that no recorded trigger event points at yet (never claimed, or claimed by a cycle that died
   * before its trigger was recorded and linked), so a repeated notification or a poll of an object whose first
   * signal or trigger was lost still leads to a signal, and the settle workflow adopts the orphaned claim.
   */
  async recordObjects(
    pipeline: string,
    objects: readonly WatchedObjectRef[],
    seenBy: SeenBy,
  ): Promise<RecordedObjects> {
    const added: WatchedObjectRef[] = [];
    let unclaimed = 0;
    for (let start = 0; start < objects.length; start += CHUNK) {
      const chunk = dedupe(objects.slice(start, start + CHUNK));
      const inserted = await this.db
        .insert(watchedObjects)
        .values(chunk.map((o) => ({ pipeline, key: o.key, etag: o.etag, size: o.size ?? null, seenBy })))
        .onConflictDoNothing()
        .returning({ key: watchedObjects.key, etag: watchedObjects.etag, size: watchedObjects.size });
      added.push(...inserted.map((r) => ({ key: r.key, etag: r.etag, ...(r.size !== null ? { size: r.size } : {}) })));
      const wanted = new Set(chunk.map(identity));
      const open = await this.db
        .select({ key: watchedObjects.key, etag: watchedObjects.etag })
        .from(watchedObjects)
        .where(
          and(
            eq(watchedObjects.pipeline, pipeline),
            inArray(
              watchedObjects.key,
              chunk.map((o) => o.key),
            ),
            waitingForTrigger(),
          ),
        );
      unclaimed += open.filter((r) => wanted.has(identity(r))).length;
    }
    return { added, unclaimed };
  }

  /**
   * Claims every unclaimed object of the pipeline under `claimId` (their `trigger_id`), in key order. Idempotent per
   * claim id: once anything is claimed under it, a repeated call returns that same set and claims nothing more, so a
   * retried claim cannot grow the set a trigger was already fired for.
   */
  async claim(pipeline: string, claimId: string): Promise<WatchedObjectRef[]> {
    return this.db.transaction(async (tx) => {
      const mine = await tx
        .select({ key: watchedObjects.key, etag: watchedObjects.etag, size: watchedObjects.size })
        .from(watchedObjects)
        .where(and(eq(watchedObjects.pipeline, pipeline), eq(watchedObjects.triggerId, claimId)));
      const rows =
        mine.length > 0
          ? mine
          : await tx
              .update(watchedObjects)
              .set({ triggerId: claimId })
              .where(and(eq(watchedObjects.pipeline, pipeline), isNull(watchedObjects.triggerId)))
              .returning({ key: watchedObjects.key, etag: watchedObjects.etag, size: watchedObjects.size });
      return rows
        .map((r) => ({ key: r.key, etag: r.etag, ...(r.size !== null ? { size: r.size } : {}) }))
        .sort(byKeyThenEtag);
    });
  }

  /**
   * Claims no pipeline_triggers row points at: objects claimed by a settle cycle that died (its workflow terminated,
   * an activity failed for good) before the trigger was recorded and linked; at most `limit` claims. Only the
   * pipeline's own settle workflow adopts them, between its cycles: it is the only claimer and runs one cycle at a
   * time, so no claim returned here belongs to a cycle in progress, and no grace period is needed (an attempt left
   * running by a terminated execution may still fire the same set: the dedupe key makes that one trigger).
   */
  async orphanClaims(pipeline: string, limit = 20): Promise<OrphanClaim[]> {
    const claims = await this.db
      .selectDistinct({ claimId: watchedObjects.triggerId })
      .from(watchedObjects)
      .where(and(eq(watchedObjects.pipeline, pipeline), waitingForTrigger(), isNotNull(watchedObjects.triggerId)))
      .limit(limit);
    const ids = claims.flatMap((c) => (c.claimId === null ? [] : [c.claimId]));
    if (ids.length === 0) return [];
    const rows = await this.db
      .select({
        claimId: watchedObjects.triggerId,
        key: watchedObjects.key,
        etag: watchedObjects.etag,
        size: watchedObjects.size,
      })
      .from(watchedObjects)
      .where(and(eq(watchedObjects.pipeline, pipeline), inArray(watchedObjects.triggerId, ids)));
    const byClaim = new Map<string, WatchedObjectRef[]>(ids.map((id) => [id, []]));
    for (const r of rows) {
      byClaim.get(r.claimId!)?.push({ key: r.key, etag: r.etag, ...(r.size !== null ? { size: r.size } : {}) });
    }
    return [...byClaim].map(([claimId, objects]) => ({ claimId, objects: objects.sort(byKeyThenEtag) }));
  }

  /** Points the objects claimed under `claimId` at the trigger event they fired. Idempotent. */
  async link(pipeline: string, claimId: string, triggerId: string): Promise<number> {
    const rows = await this.db
      .update(watchedObjects)
      .set({ triggerId })
      .where(and(eq(watchedObjects.pipeline, pipeline), eq(watchedObjects.triggerId, claimId)))
      .returning({ key: watchedObjects.key });
    return rows.length;
  }

  /** The objects recorded for a pipeline, in key order (tests and diagnostics). */
  async list(pipeline: string): Promise<(typeof watchedObjects.$inferSelect)[]> {
    return this.db
      .select()
      .from(watchedObjects)
      .where(eq(watchedObjects.pipeline, pipeline))
      .orderBy(watchedObjects.key, watchedObjects.etag);
  }

  /**
   * The newest definition of every pipeline whose newest version has `triggers.newData`: the pipelines that watch a
   * prefix. A pipeline whose newer version dropped the trigger is not listed.
   */
  async watchingPipelines(): Promise<{ pipeline: string; definition: JsonProperties }[]> {
    const result = await this.db.execute<{ name: string; definition: JsonProperties }>(sql`
      select p.name, v.definition
      from ${schema.pipelines} p
      join lateral (
        select definition from ${schema.pipelineVersions} pv
        where pv.pipeline_id = p.id order by pv.version desc limit 1
      ) v on true
      where v.definition -> 'triggers' -> 'newData' is not null
      order by p.name`);
    return result.rows.map((r) => ({ pipeline: r.name, definition: r.definition }));
  }
}

/** Rows no recorded trigger event points at: unclaimed, or claimed by a cycle whose trigger was never linked. */
function waitingForTrigger() {
  return or(
    isNull(watchedObjects.triggerId),
    notExists(sql`(select 1 from ${pipelineTriggers} where ${pipelineTriggers.id} = ${watchedObjects.triggerId})`),
  );
}

function identity(o: { key: string; etag: string }): string {
  return `${o.key}\n${o.etag}`;
}

function dedupe(objects: readonly WatchedObjectRef[]): WatchedObjectRef[] {
  const seen = new Map<string, WatchedObjectRef>();
  for (const o of objects) if (!seen.has(identity(o))) seen.set(identity(o), o);
  return [...seen.values()];
}

/** Key order, then ETag: the order the dedupe key's hash is taken in. */
export function byKeyThenEtag(a: WatchedObjectRef, b: WatchedObjectRef): number {
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  return a.etag < b.etag ? -1 : a.etag > b.etag ? 1 : 0;
}
