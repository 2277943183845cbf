/**
 * The model registry (MLflow's model: registered models, numbered versions, movable aliases). Every status change of
 * a version is also a row in model_version_transitions, with who or what caused it.
 */
import { relations, sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgTable, primaryKey, text, unique, uuid } from 'drizzle-orm/pg-core';
import { createdAt, oneOf, updatedAt, type JsonProperties } from './columns.js';
import { artifacts } from './metadata.js';
import { pipelineRuns } from './pipelines.js';

export const MODEL_VERSION_STATUSES = ['registered', 'blessed', 'rejected', 'archived'] as const;
export type ModelVersionStatus = (typeof MODEL_VERSION_STATUSES)[number];

/** One named input or output of the ONNX graph; serving validates requests against these. */
export interface SignatureField {
  name: string;
  /** ONNX element type name: float, double, int64, string, bool, ... */
  type: string;
  /** Dimensions; null (or a symbolic name) for a dynamic axis such as the batch. */
  shape?: (number | string | null)[];
}

export interface ModelSignature {
  inputs: SignatureField[];
  outputs: SignatureField[];
}

/** The evaluator's verdict (TFX's blessing): why this version may or may not be deployed. */
export interface ModelBlessing {
  blessed: boolean;
  reason: string;
  /** The version compared against (the champion at evaluation time), if any. */
  baselineVersionId?: string;
  metrics?: Record<string, number>;
  thresholds?: Record<string, number>;
  evaluatedAt: string;
}

export const registeredModels = pgTable('registered_models', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull().unique(),
  description: text('description'),
  tags: jsonb('tags').$type<Record<string, string>>().notNull().default({}),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

export const modelVersions = pgTable(
  'model_versions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    modelId: uuid('model_id')
      .notNull()
      .references(() => registeredModels.id, { onDelete: 'cascade' }),
    version: integer('version').notNull(),
    /** The Model artifact in the metadata store, which links the version to its lineage. */
    artifactId: uuid('artifact_id').references(() => artifacts.id),
    onnxUri: text('onnx_uri').notNull(),
    sha256: text('sha256').notNull(),
    signature: jsonb('signature').$type<ModelSignature>().notNull(),
    metrics: jsonb('metrics').$type<Record<string, number>>().notNull().default({}),
    params: jsonb('params').$type<JsonProperties>().notNull().default({}),
    blessing: jsonb('blessing').$type<ModelBlessing>(),
    status: text('status', { enum: MODEL_VERSION_STATUSES }).notNull().default('registered'),
    codeVersion: text('code_version'),
    sourceRunId: uuid('source_run_id').references(() => pipelineRuns.id, { onDelete: 'set null' }),
    description: text('description'),
    tags: jsonb('tags').$type<Record<string, string>>().notNull().default({}),
    createdAt: createdAt(),
  },
  (t) => [
    unique('model_versions_model_version_unique').on(t.modelId, t.version),
    // The same ONNX bytes registered twice under one model is the same version: this is what makes a retried
    // register activity idempotent, the way pipeline_versions are keyed by their definition's hash.
    unique('model_versions_model_sha256_unique').on(t.modelId, t.sha256),
    index('model_versions_source_run_idx').on(t.sourceRunId),
    index('model_versions_artifact_idx').on(t.artifactId),
    check('model_versions_status_check', oneOf(t.status, MODEL_VERSION_STATUSES)),
    check('model_versions_version_positive', sql`${t.version} >= 1`),
  ],
);

/**
 * Movable names (champion, staging, ...) that resolve to one version of a model. The primary key is what makes an
 * alias name one version: concurrent moves of one alias upsert the same row, and the last to commit wins.
 */
export const modelAliases = pgTable(
  'model_aliases',
  {
    modelId: uuid('model_id')
      .notNull()
      .references(() => registeredModels.id, { onDelete: 'cascade' }),
    alias: text('alias').notNull(),
    versionId: uuid('version_id')
      .notNull()
      .references(() => modelVersions.id),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.modelId, t.alias] }), index('model_aliases_version_idx').on(t.versionId)],
);

/** Append-only audit of status changes; `fromStatus` is null for the registration itself. */
export const modelVersionTransitions = pgTable(
  'model_version_transitions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    versionId: uuid('version_id')
      .notNull()
      .references(() => modelVersions.id, { onDelete: 'cascade' }),
    fromStatus: text('from_status', { enum: MODEL_VERSION_STATUSES }),
    toStatus: text('to_status', { enum: MODEL_VERSION_STATUSES }).notNull(),
    /** A user, or a workflow (`workflow:<workflowId>`), or a policy. */
    actor: text('actor').notNull(),
    reason: text('reason').notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    index('model_version_transitions_version_created_idx').on(t.versionId, t.createdAt),
    check(
      'model_version_transitions_from_status_check',
      sql`${t.fromStatus} is null or ${oneOf(t.fromStatus, MODEL_VERSION_STATUSES)}`,
    ),
    check('model_version_transitions_to_status_check', oneOf(t.toStatus, MODEL_VERSION_STATUSES)),
  ],
);

/**
 * Append-only audit of alias moves, with who or what moved each and why: `fromVersionId` null for a new alias,
 * `toVersionId` null for a deleted one. The `champion` and `previous` aliases' moves are the deployments' (their
 * revisions hold the same actor and reason).
 */
export const modelAliasChanges = pgTable(
  'model_alias_changes',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    modelId: uuid('model_id')
      .notNull()
      .references(() => registeredModels.id, { onDelete: 'cascade' }),
    alias: text('alias').notNull(),
    fromVersionId: uuid('from_version_id').references(() => modelVersions.id, { onDelete: 'cascade' }),
    toVersionId: uuid('to_version_id').references(() => modelVersions.id, { onDelete: 'cascade' }),
    actor: text('actor').notNull(),
    reason: text('reason').notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    index('model_alias_changes_model_alias_created_idx').on(t.modelId, t.alias, t.createdAt),
    check('model_alias_changes_moves', sql`${t.fromVersionId} is not null or ${t.toVersionId} is not null`),
  ],
);

export const registeredModelsRelations = relations(registeredModels, ({ many }) => ({
  versions: many(modelVersions),
  aliases: many(modelAliases),
}));

export const modelVersionsRelations = relations(modelVersions, ({ one, many }) => ({
  model: one(registeredModels, { fields: [modelVersions.modelId], references: [registeredModels.id] }),
  artifact: one(artifacts, { fields: [modelVersions.artifactId], references: [artifacts.id] }),
  sourceRun: one(pipelineRuns, { fields: [modelVersions.sourceRunId], references: [pipelineRuns.id] }),
  aliases: many(modelAliases),
  transitions: many(modelVersionTransitions),
}));

export const modelAliasesRelations = relations(modelAliases, ({ one }) => ({
  model: one(registeredModels, { fields: [modelAliases.modelId], references: [registeredModels.id] }),
  version: one(modelVersions, { fields: [modelAliases.versionId], references: [modelVersions.id] }),
}));

export const modelVersionTransitionsRelations = relations(modelVersionTransitions, ({ one }) => ({
  version: one(modelVersions, { fields: [modelVersionTransitions.versionId], references: [modelVersions.id] }),
}));

export type RegisteredModel = typeof registeredModels.$inferSelect;
export type NewRegisteredModel = typeof registeredModels.$inferInsert;
export type ModelVersion = typeof modelVersions.$inferSelect;
export type NewModelVersion = typeof modelVersions.$inferInsert;
export type ModelAlias = typeof modelAliases.$inferSelect;
export type NewModelAlias = typeof modelAliases.$inferInsert;
export type ModelAliasChange = typeof modelAliasChanges.$inferSelect;
export type NewModelAliasChange = typeof modelAliasChanges.$inferInsert;
export type ModelVersionTransition = typeof modelVersionTransitions.$inferSelect;
export type NewModelVersionTransition = typeof modelVersionTransitions.$inferInsert;
