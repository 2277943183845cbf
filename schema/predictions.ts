/**
 * Prediction logs: the serving logs monitoring reads (drift, live metrics once labels arrive, canary comparisons).
 * Append-only and written in batches by the API process; no foreign keys, so a burst of inserts never waits on locks
 * of the registry tables and a deleted version keeps its history.
 *
 * `prediction_logs` is partitioned by day (migration 0007, `PARTITION BY RANGE (logged_at)`, UTC days): one partition
 * per day in the schema `prediction_log_partitions`, created ahead by the maintenance schedule, and a DEFAULT
 * partition that catches rows of a day without one (storage/prediction-log-partitions.ts). Days older than the
 * retention are exported to Parquet in S3 and their partitions dropped; `prediction_log_exports` records each export.
 * drizzle-kit does not model partitioning: the snapshot describes the parent table only (its columns, the key, the
 * indexes, which Postgres makes partitioned indexes), so `drizzle-kit generate` sees no change; the partitions live
 * outside `public`, where neither drizzle-kit nor the schema tests look.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  check,
  date,
  index,
  integer,
  json,
  jsonb,
  pgTable,
  primaryKey,
  real,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { oneOf } from './columns.js';
import { DEPLOYMENT_ROLES } from './deployments.js';

export const predictionLogs = pgTable(
  'prediction_logs',
  {
    /** Unique on its own (one sequence), but the key must hold the partition key too: (id, logged_at). */
    id: bigserial('id', { mode: 'number' }).notNull(),
    requestId: text('request_id').notNull(),
    /** When the prediction was made (not when the row was written). */
    loggedAt: timestamp('logged_at', { withTimezone: true }).notNull(),
    /** The deployment addressed; null when a model version was addressed directly. */
    deployment: text('deployment'),
    model: text('model').notNull(),
    versionId: uuid('version_id').notNull(),
    version: integer('version').notNull(),
    /** Which role answered: champion, challenger (canary share) or shadow (scored on a copy, never returned). */
    role: text('role', { enum: DEPLOYMENT_ROLES }).notNull(),
    /**
     * One instance's raw feature values, as received. `json`, not `jsonb`: stored as text after a syntax check, which
     * cut Postgres's time per logged row by about a quarter (measured: 100,000 rows in batches of 1,000, 1.15 s
     * instead of 1.61 s); monitoring reads features in periodic aggregates, where parsing them again is cheap.
     */
    features: json('features').$type<Record<string, unknown>>().notNull(),
    /** label/probabilities or prediction, as answered. */
    outputs: jsonb('outputs').$type<Record<string, unknown>>(),
    latencyMs: real('latency_ms').notNull(),
    /** Set when the model failed on this instance (a shadow's failure never reaches the caller). */
    error: text('error'),
  },
  (t) => [
    primaryKey({ name: 'prediction_logs_pk', columns: [t.id, t.loggedAt] }),
    index('prediction_logs_deployment_logged_idx').on(t.deployment, t.loggedAt),
    index('prediction_logs_version_logged_idx').on(t.versionId, t.loggedAt),
    // Feedback joins labels to logged predictions by request id.
    index('prediction_logs_request_idx').on(t.requestId),
    check('prediction_logs_role_check', oneOf(t.role, DEPLOYMENT_ROLES)),
    check('prediction_logs_latency_nonnegative', sql`${t.latencyMs} >= 0`),
  ],
);

export type PredictionLog = typeof predictionLogs.$inferSelect;
export type NewPredictionLog = typeof predictionLogs.$inferInsert;

/**
 * One export of a day partition of `prediction_logs` to Parquet in S3 (the serving-log warehouse). Written after the
 * object was uploaded and verified (row count, size, sha256), before the partition is dropped; `droppedAt` is set in
 * the transaction that drops it. Readers take an export's rows from S3 only once `droppedAt` is set: until then they
 * are still in Postgres. A day can have several exports: rows that arrive for a day whose partition was already
 * dropped land in the DEFAULT partition and are exported later under another key (`part-<minId>-<maxId>`).
 */
export const predictionLogExports = pgTable(
  'prediction_log_exports',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    /** The UTC day the rows were logged on. */
    day: date('day', { mode: 'string' }).notNull(),
    /** The partition exported (`prediction_log_partitions.pYYYYMMDD`). */
    partition: text('partition').notNull(),
    /** `s3://bucket/key` of the Parquet file. */
    uri: text('uri').notNull(),
    rows: bigint('rows', { mode: 'number' }).notNull(),
    /** Smallest and largest row id exported (null when none): with `rows`, what the drop checks is still there. */
    minId: bigint('min_id', { mode: 'number' }),
    maxId: bigint('max_id', { mode: 'number' }),
    bytes: bigint('bytes', { mode: 'number' }).notNull(),
    sha256: text('sha256').notNull(),
    exportedAt: timestamp('exported_at', { withTimezone: true }).notNull().defaultNow(),
    droppedAt: timestamp('dropped_at', { withTimezone: true }),
  },
  (t) => [
    // A retried export of the same rows writes the same key: it finds its first record.
    unique('prediction_log_exports_uri_unique').on(t.uri),
    // At most one export per day waits for its partition's drop; a re-export (rows arrived since) replaces it.
    uniqueIndex('prediction_log_exports_pending_day_idx')
      .on(t.day)
      .where(sql`${t.droppedAt} is null`),
    index('prediction_log_exports_day_idx').on(t.day),
    check('prediction_log_exports_rows_nonnegative', sql`${t.rows} >= 0 and ${t.bytes} >= 0`),
  ],
);

export type PredictionLogExport = typeof predictionLogExports.$inferSelect;
export type NewPredictionLogExport = typeof predictionLogExports.$inferInsert;
