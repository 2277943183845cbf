/**
 * Deployments of registered models and their revision history: which version served which share of traffic, in
 * which role, from when to when, and why.
 */
import { relations, sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { createdAt, oneOf, updatedAt, type JsonProperties } from './columns.js';
import { modelVersions, registeredModels } from './registry.js';

export const DEPLOYMENT_STRATEGIES = ['replace', 'canary', 'shadow'] as const;
export type DeploymentStrategy = (typeof DEPLOYMENT_STRATEGIES)[number];

/** champion: serves the responses; challenger: serves a canary share; shadow: scored on copies, never answers. */
export const DEPLOYMENT_ROLES = ['champion', 'challenger', 'shadow'] as const;
export type DeploymentRole = (typeof DEPLOYMENT_ROLES)[number];

/** Strategy settings (canary steps, shadow sample rate, prediction-log sampling); owned by the deploy workflow. */
export type DeploymentConfig = JsonProperties;

export const deployments = pgTable(
  'deployments',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    name: text('name').notNull().unique(),
    modelId: uuid('model_id')
      .notNull()
      .references(() => registeredModels.id),
    strategy: text('strategy', { enum: DEPLOYMENT_STRATEGIES }).notNull().default('replace'),
    config: jsonb('config').$type<DeploymentConfig>().notNull().default({}),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('deployments_model_idx').on(t.modelId),
    check('deployments_strategy_check', oneOf(t.strategy, DEPLOYMENT_STRATEGIES)),
  ],
);

/** A revision is active while `endedAt` is null; changing traffic ends revisions and starts new ones. */
export const deploymentRevisions = pgTable(
  'deployment_revisions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    deploymentId: uuid('deployment_id')
      .notNull()
      .references(() => deployments.id, { onDelete: 'cascade' }),
    versionId: uuid('version_id')
      .notNull()
      .references(() => modelVersions.id),
    role: text('role', { enum: DEPLOYMENT_ROLES }).notNull(),
    trafficPercent: integer('traffic_percent').notNull(),
    reason: text('reason').notNull(),
    actor: text('actor').notNull(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    endedAt: timestamp('ended_at', { withTimezone: true }),
  },
  (t) => [
    index('deployment_revisions_deployment_started_idx').on(t.deploymentId, t.startedAt),
    index('deployment_revisions_version_idx').on(t.versionId),
    // Serving must never see two champions, or one version in two roles, at the same time.
    uniqueIndex('deployment_revisions_one_active_champion')
      .on(t.deploymentId)
      .where(sql`${t.role} = 'champion' and ${t.endedAt} is null`),
    uniqueIndex('deployment_revisions_active_version_unique')
      .on(t.deploymentId, t.versionId)
      .where(sql`${t.endedAt} is null`),
    check('deployment_revisions_role_check', oneOf(t.role, DEPLOYMENT_ROLES)),
    check('deployment_revisions_traffic_percent_range', sql`${t.trafficPercent} between 0 and 100`),
  ],
);

export const deploymentsRelations = relations(deployments, ({ one, many }) => ({
  model: one(registeredModels, { fields: [deployments.modelId], references: [registeredModels.id] }),
  revisions: many(deploymentRevisions),
}));

export const deploymentRevisionsRelations = relations(deploymentRevisions, ({ one }) => ({
  deployment: one(deployments, { fields: [deploymentRevisions.deploymentId], references: [deployments.id] }),
  version: one(modelVersions, { fields: [deploymentRevisions.versionId], references: [modelVersions.id] }),
}));

export type Deployment = typeof deployments.$inferSelect;
export type NewDeployment = typeof deployments.$inferInsert;
export type DeploymentRevision = typeof deploymentRevisions.$inferSelect;
export type NewDeploymentRevision = typeof deploymentRevisions.$inferInsert;
