/**
 * Datasets as the data stages see them (TFX's SchemaGen + ExampleValidator state): the versioned schema each
 * snapshot is validated against, who changed it and why, and the statistics of the last accepted training snapshot
 * that drift is measured against.
 */
import { relations, sql } from 'drizzle-orm';
import { check, index, integer, pgTable, text, unique, uuid } from 'drizzle-orm/pg-core';
import { createdAt, updatedAt } from './columns.js';
import { artifacts } from './metadata.js';

export const datasets = pgTable('datasets', {
  /** The dataset's name, usually the pipeline's. */
  name: text('name').primaryKey(),
  /** The schema version in force; null until the first snapshot infers one. */
  currentSchemaVersion: integer('current_schema_version'),
  /** Statistics of the last snapshot that passed validation: the baseline of drift checks. */
  baselineStatisticsArtifactId: uuid('baseline_statistics_artifact_id').references(() => artifacts.id),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

export const SCHEMA_CHANGE_KINDS = ['inferred', 'accepted'] as const;
export type SchemaChangeKind = (typeof SCHEMA_CHANGE_KINDS)[number];

export const datasetSchemaVersions = pgTable(
  'dataset_schema_versions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    dataset: text('dataset')
      .notNull()
      .references(() => datasets.name, { onDelete: 'cascade' }),
    version: integer('version').notNull(),
    /** The schema JSON, stored as a Schema artifact in S3. */
    artifactId: uuid('artifact_id')
      .notNull()
      .references(() => artifacts.id),
    /** `inferred` from the first snapshot, or `accepted`: an explicit widening after anomalies. */
    kind: text('kind', { enum: SCHEMA_CHANGE_KINDS }).notNull(),
    /** Who or what made this version (a user, or `system` for inference). */
    actor: text('actor').notNull(),
    reason: text('reason').notNull(),
    /** For `accepted`: the validation report whose anomalies were accepted. */
    reportArtifactId: uuid('report_artifact_id').references(() => artifacts.id),
    createdAt: createdAt(),
  },
  (t) => [
    unique('dataset_schema_versions_dataset_version_unique').on(t.dataset, t.version),
    check('dataset_schema_versions_version_positive', sql`${t.version} > 0`),
    index('dataset_schema_versions_artifact_idx').on(t.artifactId),
  ],
);

export const datasetsRelations = relations(datasets, ({ many, one }) => ({
  schemaVersions: many(datasetSchemaVersions),
  baselineStatistics: one(artifacts, {
    fields: [datasets.baselineStatisticsArtifactId],
    references: [artifacts.id],
  }),
}));

export const datasetSchemaVersionsRelations = relations(datasetSchemaVersions, ({ one }) => ({
  dataset: one(datasets, { fields: [datasetSchemaVersions.dataset], references: [datasets.name] }),
  artifact: one(artifacts, { fields: [datasetSchemaVersions.artifactId], references: [artifacts.id] }),
}));

export type Dataset = typeof datasets.$inferSelect;
export type NewDataset = typeof datasets.$inferInsert;
export type DatasetSchemaVersion = typeof datasetSchemaVersions.$inferSelect;
export type NewDatasetSchemaVersion = typeof datasetSchemaVersions.$inferInsert;
