/**
 * Ground truth for logged predictions (`prediction_feedback`, one label per request id), and what recording it needs
 * to know about the requests it labels: which model versions answered them, as `prediction_logs` says. The rules
 * (which labels a version accepts, how a batch is answered) are monitoring/feedback.ts's; this file reads and writes.
 */
import { DomainError } from '../core/errors.js';
import { sql, type SQL, type SQLWrapper } from 'drizzle-orm';
import { modelVersions, predictionFeedback, predictionLogs, type ModelSignature } from '../schema/index.js';
import type { Database } from './database.js';

/** A label as stored: a class as the training data had it (text, number or boolean), or a regression target. */
export type FeedbackLabel = string | number | boolean;

/** One model version that logged a prediction for a request id. */
export interface LoggedVersion {
  readonly versionId: string;
  readonly model: string;
  readonly version: number;
  /** Whether every row of this version for the request was a shadow's (scored on a copy, never answered). */
  readonly shadowOnly: boolean;
  /** What the logged outputs say: `prediction` is a regressor's, `label` a classifier's; undefined when all failed. */
  readonly loggedTask: 'classification' | 'regression' | undefined;
  /** The registered version; undefined when it was deleted since (logs have no foreign keys). */
  readonly registered:
    { readonly signature: ModelSignature; readonly onnxUri: string; readonly sha256: string } | undefined;
}

/** The outcome of {@link FeedbackStore.record}. */
export type RecordOutcome =
  | {
      readonly ok: true;
      /** Request ids whose label this call stored. */
      readonly inserted: readonly string[];
      /** Request ids that already had exactly this label (nothing written for them). */
      readonly unchanged: readonly string[];
    }
  | {
      /** Some request ids already have another label: nothing of the call was written. */
      readonly ok: false;
      readonly conflicts: readonly { readonly requestId: string; readonly stored: FeedbackLabel }[];
    };

/**
 * `column = any($1::text[])`: a list of any length as one array parameter. Postgres parses and plans it in a
 * fraction of the time of `IN ($1, ..., $10000)` (measured: a lookup of 10,000 request ids went from about 550 ms
 * to a few tens), and no list can pass the 65,535 parameters of a statement.
 */
function anyOf(column: SQLWrapper, values: readonly string[], type: 'text' | 'uuid'): SQL {
  return sql`${column} = any(${sql.param([...values])}::${sql.raw(type)}[])`;
}

/** Labels are JSON scalars: equal when of one type and value (jsonb gives numbers back as JavaScript numbers). */
function sameLabel(a: unknown, b: unknown): boolean {
  return typeof a === typeof b && a === b;
}

/** Thrown inside the transaction to roll a conflicting batch back; never leaves this file. */
class Conflicts extends DomainError {
  constructor(readonly found: { requestId: string; stored: FeedbackLabel }[]) {
    super('conflict', 'conflicting feedback');
  }
}

export class FeedbackStore {
  constructor(private readonly db: Database) {}

  /**
   * The model versions that logged each of `requestIds` (several when a caller reused a request id, or a shadow
   * scored a copy); a request id without any logged row is absent from the map. Prediction logs are written in the
   * background (serving/prediction-log.ts), so a prediction answered a moment ago may not be there yet.
   */
  async loggedVersions(requestIds: readonly string[]): Promise<Map<string, LoggedVersion[]>> {
    const found = new Map<string, LoggedVersion[]>();
    if (requestIds.length === 0) return found;
    // One row per (request, version): a request of many instances logged one row per instance.
    const rows = await this.db
      .select({
        requestId: predictionLogs.requestId,
        versionId: predictionLogs.versionId,
        model: sql<string>`min(${predictionLogs.model})`,
        version: sql<number>`min(${predictionLogs.version})`.mapWith(Number),
        shadowOnly: sql<boolean>`bool_and(${predictionLogs.role} = 'shadow')`,
        // jsonb_exists is the `?` operator, spelled so that no reader takes it for a placeholder.
        regression: sql<boolean>`coalesce(bool_or(jsonb_exists(${predictionLogs.outputs}, 'prediction')), false)`,
        classification: sql<boolean>`coalesce(bool_or(jsonb_exists(${predictionLogs.outputs}, 'label')), false)`,
      })
      .from(predictionLogs)
      .where(anyOf(predictionLogs.requestId, [...new Set(requestIds)], 'text'))
      .groupBy(predictionLogs.requestId, predictionLogs.versionId);
    const versionIds = [...new Set(rows.map((r) => r.versionId))];
    const registered = new Map<string, LoggedVersion['registered']>();
    if (versionIds.length > 0) {
      const versions = await this.db
        .select({
          id: modelVersions.id,
          signature: modelVersions.signature,
          onnxUri: modelVersions.onnxUri,
          sha256: modelVersions.sha256,
        })
        .from(modelVersions)
        .where(anyOf(modelVersions.id, versionIds, 'uuid'));
      for (const v of versions) registered.set(v.id, { signature: v.signature, onnxUri: v.onnxUri, sha256: v.sha256 });
    }
    for (const row of rows) {
      const list = found.get(row.requestId) ?? [];
      list.push({
        versionId: row.versionId,
        model: row.model,
        version: row.version,
        shadowOnly: row.shadowOnly,
        loggedTask: row.regression ? 'regression' : row.classification ? 'classification' : undefined,
        registered: registered.get(row.versionId),
      });
      found.set(row.requestId, list);
    }
    return found;
  }

  /**
   * Stores one label per request id, all or nothing: a request id with no label yet gets this one, one that already
   * has an equal label is left as it is, and when any already has another label nothing of the call is written and
   * the conflicts are returned. Two statements whatever the count (an insert of the arrays' rows that skips taken
   * request ids, then a read of those ids' labels). Idempotent: calling again with the same labels inserts nothing
   * and reports them as unchanged. Safe against concurrent calls: the primary key decides, and rows are inserted in
   * request id order, so two overlapping batches cannot deadlock. The labels must already be validated and each
   * request id given once.
   */
  async record(labels: readonly { requestId: string; label: FeedbackLabel }[], actor: string): Promise<RecordOutcome> {
    const sorted = [...labels].sort((a, b) => (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0));
    if (sorted.length === 0) return { ok: true, inserted: [], unchanged: [] };
    try {
      return await this.db.transaction(async (tx) => {
        const ids = sorted.map((l) => l.requestId);
        const inserted = await tx.execute<{ request_id: string }>(sql`
          insert into ${predictionFeedback} (request_id, label, actor)
          select item.request_id, item.label::jsonb, ${actor}
          from unnest(${sql.param(ids)}::text[], ${sql.param(sorted.map((l) => JSON.stringify(l.label)))}::text[])
            with ordinality as item(request_id, label, position)
          order by item.position
          on conflict (request_id) do nothing
          returning request_id`);
        const insertedIds = inserted.rows.map((r) => r.request_id);
        if (insertedIds.length === sorted.length) return { ok: true as const, inserted: insertedIds, unchanged: [] };
        const insertedSet = new Set(insertedIds);
        const existing = sorted.filter((l) => !insertedSet.has(l.requestId));
        const stored = await tx
          .select({ requestId: predictionFeedback.requestId, label: predictionFeedback.label })
          .from(predictionFeedback)
          .where(
            anyOf(
              predictionFeedback.requestId,
              existing.map((l) => l.requestId),
              'text',
            ),
          );
        const storedById = new Map(stored.map((s) => [s.requestId, s.label as FeedbackLabel]));
        const unchanged: string[] = [];
        const conflicts: { requestId: string; stored: FeedbackLabel }[] = [];
        for (const l of existing) {
          const label = storedById.get(l.requestId);
          if (label === undefined) throw new Error(`feedback for ${l.requestId} was neither inserted nor found`);
          if (sameLabel(label, l.label)) unchanged.push(l.requestId);
          else conflicts.push({ requestId: l.requestId, stored: label });
        }
        if (conflicts.length > 0) throw new Conflicts(conflicts);
        return { ok: true as const, inserted: insertedIds, unchanged };
      });
    } catch (error) {
      if (error instanceof Conflicts) return { ok: false, conflicts: error.found };
      throw error;
    }
  }

  /** The stored labels of `requestIds` (absent: none yet). */
  async labels(requestIds: readonly string[]): Promise<Map<string, FeedbackLabel>> {
    const out = new Map<string, FeedbackLabel>();
    if (requestIds.length === 0) return out;
    const rows = await this.db
      .select({ requestId: predictionFeedback.requestId, label: predictionFeedback.label })
      .from(predictionFeedback)
      .where(anyOf(predictionFeedback.requestId, [...new Set(requestIds)], 'text'));
    for (const row of rows) out.set(row.requestId, row.label as FeedbackLabel);
    return out;
  }
}
