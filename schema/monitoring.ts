/**
 * Closing the loop: what started (or declined to start) a run, which watched objects were seen, the ground truth
 * callers send back for logged predictions, and the monitoring windows computed over what serves, with the actions
 * they took. No foreign keys to the registry or prediction logs: these rows outlive a deleted version, and feedback
 * may arrive for a prediction whose log row is not written yet.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uuid,
} from 'drizzle-orm/pg-core';
import { createdAt, oneOf, type JsonProperties } from './columns.js';

/** What can start a run on its own (an HTTP call is recorded on the run itself, as `http`). */
export const TRIGGER_KINDS = ['schedule', 'new_data', 'monitoring'] as const;
export type TriggerKind = (typeof TRIGGER_KINDS)[number];

export const TRIGGER_STATUSES = ['started', 'skipped'] as const;
export type TriggerStatus = (typeof TRIGGER_STATUSES)[number];

/**
 * One row per trigger event: a schedule action, a settled burst of new objects, a monitoring window's retrain.
 * `dedupeKey` is the run's idempotency key too, so one event starts at most one run however often it is retried.
 */
export const pipelineTriggers = pgTable(
  'pipeline_triggers',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    pipeline: text('pipeline').notNull(),
    kind: text('kind', { enum: TRIGGER_KINDS }).notNull(),
    /** What fired it: a schedule id, a watched prefix, a monitoring window id. */
    source: text('source').notNull(),
    dedupeKey: text('dedupe_key').notNull().unique(),
    status: text('status', { enum: TRIGGER_STATUSES }).notNull(),
    /** Why it was skipped (a run in progress, a cooldown), or what it started. */
    reason: text('reason'),
    runId: uuid('run_id'),
    details: jsonb('details').$type<JsonProperties>(),
    createdAt: createdAt(),
  },
  (t) => [
    index('pipeline_triggers_pipeline_created_idx').on(t.pipeline, t.createdAt),
    check('pipeline_triggers_kind_check', oneOf(t.kind, TRIGGER_KINDS)),
    check('pipeline_triggers_status_check', oneOf(t.status, TRIGGER_STATUSES)),
  ],
);

/**
 * Objects seen under a pipeline's watched prefix. One (key, ETag) is new once: a second notification or poll of the
 * same object inserts nothing, so it cannot start a second run. `triggerId` is set when a settled burst used it.
 */
export const watchedObjects = pgTable(
  'watched_objects',
  {
    pipeline: text('pipeline').notNull(),
    key: text('key').notNull(),
    etag: text('etag').notNull(),
    size: bigint('size', { mode: 'number' }),
    /** notification or poll: which path saw it first. */
    seenBy: text('seen_by').notNull(),
    seenAt: timestamp('seen_at', { withTimezone: true }).notNull().defaultNow(),
    triggerId: uuid('trigger_id'),
  },
  (t) => [
    primaryKey({ name: 'watched_objects_pk', columns: [t.pipeline, t.key, t.etag] }),
    index('watched_objects_pending_idx').on(t.pipeline, t.seenAt),
  ],
);

/** Ground truth for a logged prediction, by request id; one label per request id (a different one is refused). */
export const predictionFeedback = pgTable('prediction_feedback', {
  requestId: text('request_id').primaryKey(),
  /** A class of the answering version (text, number or boolean, as its classes are) or a regression target. */
  label: jsonb('label').$type<string | number | boolean>().notNull(),
  receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
  actor: text('actor').notNull(),
});

/**
 * One monitoring window of a deployment: distances per feature (skew against the training snapshot, drift against
 * the previous window), live and estimated performance, and the report artifact holding the details. Unique per
 * deployment and span, so a retried or recomputed window finds its row instead of writing a second one.
 */
export const monitoringWindows = pgTable(
  'monitoring_windows',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    deployment: text('deployment').notNull(),
    model: text('model').notNull(),
    versionId: uuid('version_id').notNull(),
    version: integer('version').notNull(),
    windowStart: timestamp('window_start', { withTimezone: true }).notNull(),
    windowEnd: timestamp('window_end', { withTimezone: true }).notNull(),
    rows: integer('rows').notNull(),
    labelledRows: integer('labelled_rows').notNull().default(0),
    /** Any distance above its threshold, or a live metric below its floor. */
    breached: boolean('breached').notNull().default(false),
    /** Per-feature distances, live metrics, estimates and breaches: the report's headline, for time series. */
    summary: jsonb('summary').$type<JsonProperties>().notNull(),
    reportUri: text('report_uri'),
    reportSha256: text('report_sha256'),
    createdAt: createdAt(),
  },
  (t) => [
    unique('monitoring_windows_deployment_span_unique').on(t.deployment, t.windowStart, t.windowEnd),
    index('monitoring_windows_deployment_end_idx').on(t.deployment, t.windowEnd),
    check('monitoring_windows_span_check', sql`${t.windowEnd} > ${t.windowStart}`),
    check('monitoring_windows_rows_nonnegative', sql`${t.rows} >= 0 and ${t.labelledRows} >= 0`),
  ],
);

export const MONITORING_ACTION_KINDS = ['alert', 'retrain', 'rollback'] as const;
export type MonitoringActionKind = (typeof MONITORING_ACTION_KINDS)[number];

/** What a window's breach did, once per window and kind: its reason, and the run, revision or deliveries it made. */
export const monitoringActions = pgTable(
  'monitoring_actions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    windowId: uuid('window_id')
      .notNull()
      .references(() => monitoringWindows.id, { onDelete: 'cascade' }),
    deployment: text('deployment').notNull(),
    kind: text('kind', { enum: MONITORING_ACTION_KINDS }).notNull(),
    /** done, skipped (cooldown, below the minimum rows, nothing to roll back to) or failed. */
    status: text('status').notNull(),
    reason: text('reason').notNull(),
    details: jsonb('details').$type<JsonProperties>(),
    createdAt: createdAt(),
  },
  (t) => [
    unique('monitoring_actions_window_kind_unique').on(t.windowId, t.kind),
    index('monitoring_actions_deployment_created_idx').on(t.deployment, t.createdAt),
    check('monitoring_actions_kind_check', oneOf(t.kind, MONITORING_ACTION_KINDS)),
  ],
);

/** Every attempt to deliver an alert webhook, whatever its answer. */
export const alertDeliveries = pgTable(
  'alert_deliveries',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    actionId: uuid('action_id')
      .notNull()
      .references(() => monitoringActions.id, { onDelete: 'cascade' }),
    url: text('url').notNull(),
    attempt: integer('attempt').notNull(),
    /** The HTTP status answered; null when the request failed before an answer. */
    status: integer('status'),
    error: text('error'),
    durationMs: integer('duration_ms').notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('alert_deliveries_action_idx').on(t.actionId)],
);

export type PipelineTrigger = typeof pipelineTriggers.$inferSelect;
export type WatchedObject = typeof watchedObjects.$inferSelect;
export type PredictionFeedback = typeof predictionFeedback.$inferSelect;
export type MonitoringWindow = typeof monitoringWindows.$inferSelect;
export type MonitoringAction = typeof monitoringActions.$inferSelect;
export type AlertDelivery = typeof alertDeliveries.$inferSelect;
