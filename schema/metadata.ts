/**
 * The ML Metadata (MLMD) model: artifacts are produced and consumed by executions, linked by events; contexts group
 * both (a pipeline, a pipeline run, an experiment). Rows are keyed by natural keys (artifact uri, execution
 * external id, context type + name) so that every write can be an idempotent upsert from a retried activity.
 */
import { relations, sql } from 'drizzle-orm';
import { bigint, check, index, jsonb, pgTable, primaryKey, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import { createdAt, oneOf, type JsonProperties } from './columns.js';

/** Well-known artifact types; the column is open text so a new stage can add its own. */
export const ArtifactType = {
  Dataset: 'Dataset',
  Statistics: 'Statistics',
  Schema: 'Schema',
  Anomalies: 'Anomalies',
  Transform: 'Transform',
  Model: 'Model',
  Evaluation: 'Evaluation',
  Report: 'Report',
} as const;

/** `pending`: registered before the upload finished; `deleted`: the object is gone but lineage keeps the row. */
export const ARTIFACT_STATES = ['pending', 'live', 'deleted'] as const;
export type ArtifactState = (typeof ARTIFACT_STATES)[number];

/** `cached`: the stage reused the outputs of an earlier execution instead of running. */
export const EXECUTION_STATES = ['running', 'complete', 'failed', 'cached', 'cancelled'] as const;
export type ExecutionState = (typeof EXECUTION_STATES)[number];

export const EVENT_TYPES = ['input', 'output'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export const CONTEXT_TYPES = ['pipeline', 'pipeline_run', 'experiment'] as const;
export type ContextType = (typeof CONTEXT_TYPES)[number];

export const artifacts = pgTable(
  'artifacts',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    type: text('type').notNull(),
    /** Content-addressed object URI (s3://bucket/key); one row per object. */
    uri: text('uri').notNull().unique(),
    sha256: text('sha256'),
    bytes: bigint('bytes', { mode: 'number' }),
    contentType: text('content_type'),
    properties: jsonb('properties').$type<JsonProperties>().notNull().default({}),
    state: text('state', { enum: ARTIFACT_STATES }).notNull().default('live'),
    createdAt: createdAt(),
  },
  (t) => [
    index('artifacts_type_created_idx').on(t.type, t.createdAt),
    index('artifacts_sha256_idx').on(t.sha256),
    check('artifacts_state_check', oneOf(t.state, ARTIFACT_STATES)),
    check('artifacts_bytes_nonnegative', sql`${t.bytes} >= 0`),
  ],
);

export const executions = pgTable(
  'executions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** The component that ran: ExampleGen, StatisticsGen, Trainer, Evaluator, ... */
    type: text('type').notNull(),
    name: text('name'),
    /** Idempotency key derived from the workflow id and stage; a retried activity finds its own execution. */
    externalId: text('external_id').notNull().unique(),
    workflowId: text('workflow_id'),
    temporalRunId: text('temporal_run_id'),
    stage: text('stage'),
    state: text('state', { enum: EXECUTION_STATES }).notNull().default('running'),
    properties: jsonb('properties').$type<JsonProperties>().notNull().default({}),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    index('executions_workflow_idx').on(t.workflowId, t.stage),
    check('executions_state_check', oneOf(t.state, EXECUTION_STATES)),
  ],
);

/** The edges of the lineage graph. Rows are never cascaded away: lineage outlives the objects it describes. */
export const events = pgTable(
  'events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    artifactId: uuid('artifact_id')
      .notNull()
      .references(() => artifacts.id),
    executionId: uuid('execution_id')
      .notNull()
      .references(() => executions.id),
    type: text('type', { enum: EVENT_TYPES }).notNull(),
    /** The input or output name on the execution (for example `examples`, `model`); part of the key, so not null. */
    role: text('role').notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    unique('events_artifact_execution_type_role_unique').on(t.artifactId, t.executionId, t.type, t.role),
    // A lineage walk takes one side of an artifact or an execution: an artifact's producers without reading each
    // of its (possibly thousands of) consumers' entries first, and an execution's inputs or outputs alone.
    index('events_artifact_type_idx').on(t.artifactId, t.type),
    index('events_execution_type_idx').on(t.executionId, t.type),
    check('events_type_check', oneOf(t.type, EVENT_TYPES)),
  ],
);

export const contexts = pgTable(
  'contexts',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    type: text('type', { enum: CONTEXT_TYPES }).notNull(),
    name: text('name').notNull(),
    properties: jsonb('properties').$type<JsonProperties>().notNull().default({}),
    createdAt: createdAt(),
  },
  (t) => [
    unique('contexts_type_name_unique').on(t.type, t.name),
    check('contexts_type_check', oneOf(t.type, CONTEXT_TYPES)),
  ],
);

export const attributions = pgTable(
  'attributions',
  {
    contextId: uuid('context_id')
      .notNull()
      .references(() => contexts.id, { onDelete: 'cascade' }),
    artifactId: uuid('artifact_id')
      .notNull()
      .references(() => artifacts.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.contextId, t.artifactId] }), index('attributions_artifact_idx').on(t.artifactId)],
);

export const associations = pgTable(
  'associations',
  {
    contextId: uuid('context_id')
      .notNull()
      .references(() => contexts.id, { onDelete: 'cascade' }),
    executionId: uuid('execution_id')
      .notNull()
      .references(() => executions.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.contextId, t.executionId] }), index('associations_execution_idx').on(t.executionId)],
);

export const artifactsRelations = relations(artifacts, ({ many }) => ({
  events: many(events),
  attributions: many(attributions),
}));

export const executionsRelations = relations(executions, ({ many }) => ({
  events: many(events),
  associations: many(associations),
}));

export const eventsRelations = relations(events, ({ one }) => ({
  artifact: one(artifacts, { fields: [events.artifactId], references: [artifacts.id] }),
  execution: one(executions, { fields: [events.executionId], references: [executions.id] }),
}));

export const contextsRelations = relations(contexts, ({ many }) => ({
  attributions: many(attributions),
  associations: many(associations),
}));

export const attributionsRelations = relations(attributions, ({ one }) => ({
  context: one(contexts, { fields: [attributions.contextId], references: [contexts.id] }),
  artifact: one(artifacts, { fields: [attributions.artifactId], references: [artifacts.id] }),
}));

export const associationsRelations = relations(associations, ({ one }) => ({
  context: one(contexts, { fields: [associations.contextId], references: [contexts.id] }),
  execution: one(executions, { fields: [associations.executionId], references: [executions.id] }),
}));

export type Artifact = typeof artifacts.$inferSelect;
export type NewArtifact = typeof artifacts.$inferInsert;
export type Execution = typeof executions.$inferSelect;
export type NewExecution = typeof executions.$inferInsert;
/** Named MetadataEvent so it never shadows the DOM/Node global `Event`. */
export type MetadataEvent = typeof events.$inferSelect;
export type NewMetadataEvent = typeof events.$inferInsert;
/** Named MetadataContext so it is not confused with Temporal's or Hono's `Context`. */
export type MetadataContext = typeof contexts.$inferSelect;
export type NewMetadataContext = typeof contexts.$inferInsert;
export type Attribution = typeof attributions.$inferSelect;
export type Association = typeof associations.$inferSelect;
