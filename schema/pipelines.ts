import { relations, sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgTable, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import { createdAt, oneOf, updatedAt, type JsonProperties } from './columns.js';

export const PIPELINE_RUN_STATUSES = [
  'pending',
  'running',
  'waiting_approval',
  'succeeded',
  'failed',
  'cancelled',
] as const;
export type PipelineRunStatus = (typeof PIPELINE_RUN_STATUSES)[number];

/** A stage row exists once the run reaches the stage; `cached` means its outputs were reused from an earlier run. */
export const PIPELINE_STAGE_STATUSES = ['running', 'succeeded', 'failed', 'cached', 'skipped', 'cancelled'] as const;
export type PipelineStageStatus = (typeof PIPELINE_STAGE_STATUSES)[number];

/** Why a run or stage stopped; `type` is one of the stable failure type strings (core/constants.ts `FailureType`). */
export interface RunFailure {
  type: string;
  message: string;
  stage?: string;
}

/** Concrete spans of a run's sliding window, ISO 8601 bounds, `from` inclusive and `to` exclusive. */
export interface ResolvedSpans {
  column: string;
  train: { from: string; to: string };
  eval?: { from: string; to: string };
  /** What the window was measured back from: the newest event time in the source, or the trigger time. */
  anchor: { kind: 'data' | 'trigger'; at: string };
}

export const pipelines = pgTable('pipelines', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull().unique(),
  description: text('description'),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

/**
 * Immutable definitions. The definition's sha256 is unique per pipeline so that submitting the same definition twice
 * (a retried request or activity) returns the existing version instead of creating a new one.
 */
export const pipelineVersions = pgTable(
  'pipeline_versions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    pipelineId: uuid('pipeline_id')
      .notNull()
      .references(() => pipelines.id, { onDelete: 'cascade' }),
    version: integer('version').notNull(),
    definition: jsonb('definition').$type<JsonProperties>().notNull(),
    definitionSha256: text('definition_sha256').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    unique('pipeline_versions_pipeline_version_unique').on(t.pipelineId, t.version),
    unique('pipeline_versions_pipeline_definition_unique').on(t.pipelineId, t.definitionSha256),
    check('pipeline_versions_version_positive', sql`${t.version} >= 1`),
  ],
);

/** One row per Temporal workflow execution of a pipeline version. */
export const pipelineRuns = pgTable(
  'pipeline_runs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    pipelineVersionId: uuid('pipeline_version_id')
      .notNull()
      .references(() => pipelineVersions.id),
    workflowId: text('workflow_id').notNull().unique(),
    temporalRunId: text('temporal_run_id'),
    /** What started the run: http, schedule, new_data, drift, manual, ... (open-ended, so no check). */
    trigger: text('trigger').notNull(),
    triggeredBy: text('triggered_by'),
    /** A client-supplied key; a repeated trigger request with the same key finds the existing run. */
    idempotencyKey: text('idempotency_key').unique(),
    status: text('status', { enum: PIPELINE_RUN_STATUSES }).notNull().default('pending'),
    failure: jsonb('failure').$type<RunFailure>(),
    /** What became of the candidate when the run succeeded: deployed, not_blessed, rejected, ... */
    outcome: text('outcome'),
    /**
     * The definition's sliding window resolved to concrete spans when the run started (train and eval `[from, to)`
     * on the window's column); a resumed run reads them here, so it trains on the data its first attempt chose.
     */
    resolvedSpans: jsonb('resolved_spans').$type<ResolvedSpans>(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    index('pipeline_runs_version_started_idx').on(t.pipelineVersionId, t.startedAt.desc()),
    index('pipeline_runs_status_idx').on(t.status),
    check('pipeline_runs_status_check', oneOf(t.status, PIPELINE_RUN_STATUSES)),
  ],
);

export const pipelineRunStages = pgTable(
  'pipeline_run_stages',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => pipelineRuns.id, { onDelete: 'cascade' }),
    stage: text('stage').notNull(),
    status: text('status', { enum: PIPELINE_STAGE_STATUSES }).notNull().default('running'),
    attempt: integer('attempt').notNull().default(1),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
    /** Small typed records only (artifact references, metrics); data lives in S3. */
    outputs: jsonb('outputs').$type<JsonProperties>().notNull().default({}),
    failure: jsonb('failure').$type<RunFailure>(),
  },
  (t) => [
    unique('pipeline_run_stages_run_stage_unique').on(t.runId, t.stage),
    check('pipeline_run_stages_status_check', oneOf(t.status, PIPELINE_STAGE_STATUSES)),
    check('pipeline_run_stages_attempt_positive', sql`${t.attempt} >= 1`),
  ],
);

export const pipelinesRelations = relations(pipelines, ({ many }) => ({
  versions: many(pipelineVersions),
}));

export const pipelineVersionsRelations = relations(pipelineVersions, ({ one, many }) => ({
  pipeline: one(pipelines, { fields: [pipelineVersions.pipelineId], references: [pipelines.id] }),
  runs: many(pipelineRuns),
}));

export const pipelineRunsRelations = relations(pipelineRuns, ({ one, many }) => ({
  pipelineVersion: one(pipelineVersions, {
    fields: [pipelineRuns.pipelineVersionId],
    references: [pipelineVersions.id],
  }),
  stages: many(pipelineRunStages),
}));

export const pipelineRunStagesRelations = relations(pipelineRunStages, ({ one }) => ({
  run: one(pipelineRuns, { fields: [pipelineRunStages.runId], references: [pipelineRuns.id] }),
}));

export type Pipeline = typeof pipelines.$inferSelect;
export type NewPipeline = typeof pipelines.$inferInsert;
export type PipelineVersion = typeof pipelineVersions.$inferSelect;
export type NewPipelineVersion = typeof pipelineVersions.$inferInsert;
export type PipelineRun = typeof pipelineRuns.$inferSelect;
export type NewPipelineRun = typeof pipelineRuns.$inferInsert;
export type PipelineRunStage = typeof pipelineRunStages.$inferSelect;
export type NewPipelineRunStage = typeof pipelineRunStages.$inferInsert;
