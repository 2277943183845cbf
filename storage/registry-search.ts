/**
 * Searching the registry: the filters `listModels` and `listVersions` take, and the SQL conditions they become. Every
 * value is a bind parameter; the only text spliced into SQL is a comparison operator from {@link METRIC_OPERATORS}.
 */
import { and, eq, sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import { modelAliases, modelVersions, registeredModels, type ModelVersionStatus } from '../schema/index.js';

/** The comparisons a metric filter may make. */
export const METRIC_OPERATORS = ['>=', '<=', '>', '<', '='] as const;
export type MetricOperator = (typeof METRIC_OPERATORS)[number];

/** `key:value` (the tag has that value) or `key` alone (the tag is set, to anything). */
export interface TagFilter {
  readonly key: string;
  readonly value?: string | undefined;
}

/** `auc>=0.7`: the version's metric `name` compared with `value`; a version without the metric never matches. */
export interface MetricFilter {
  readonly name: string;
  readonly operator: MetricOperator;
  readonly value: number;
}

/** Which versions of a model to list; every given condition must hold. */
export interface VersionFilter {
  readonly status?: ModelVersionStatus | undefined;
  /** The version this alias names (so at most one). */
  readonly alias?: string | undefined;
  readonly tags?: readonly TagFilter[] | undefined;
  readonly metrics?: readonly MetricFilter[] | undefined;
}

/** Which registered models to list; every given condition must hold. */
export interface ModelFilter {
  /** Names starting with this, case-sensitively. */
  readonly namePrefix?: string | undefined;
  readonly tags?: readonly TagFilter[] | undefined;
}

function tagCondition(tags: AnyPgColumn, tag: TagFilter): SQL {
  return tag.value === undefined
    ? sql`jsonb_exists(${tags}, ${tag.key}::text)`
    : sql`${tags} @> jsonb_build_object(${tag.key}::text, ${tag.value}::text)`;
}

/** The conditions of `filter` on model_versions (beside the model's own). */
export function versionConditions(filter: VersionFilter): SQL[] {
  const conditions: SQL[] = [];
  if (filter.status !== undefined) conditions.push(eq(modelVersions.status, filter.status));
  if (filter.alias !== undefined) {
    conditions.push(
      sql`exists (select 1 from ${modelAliases} where ${and(
        eq(modelAliases.modelId, modelVersions.modelId),
        eq(modelAliases.versionId, modelVersions.id),
        eq(modelAliases.alias, filter.alias),
      )})`,
    );
  }
  for (const tag of filter.tags ?? []) conditions.push(tagCondition(modelVersions.tags, tag));
  for (const metric of filter.metrics ?? []) {
    if (!METRIC_OPERATORS.includes(metric.operator)) throw new Error(`unknown metric operator ${metric.operator}`);
    // A metric stored as anything but a number (never written by the platform) is null, no match, rather than a
    // cast error: a case, because Postgres may evaluate the operands of an `and` in either order.
    const value = sql`case when jsonb_typeof(${modelVersions.metrics} -> ${metric.name}::text) = 'number'
      then (${modelVersions.metrics} ->> ${metric.name}::text)::float8 end`;
    conditions.push(sql`${value} ${sql.raw(metric.operator)} ${metric.value}::float8`);
  }
  return conditions;
}

/** The conditions of `filter` on registered_models. */
export function modelConditions(filter: ModelFilter): SQL[] {
  const conditions: SQL[] = [];
  if (filter.namePrefix !== undefined) {
    conditions.push(sql`starts_with(${registeredModels.name}, ${filter.namePrefix}::text)`);
  }
  for (const tag of filter.tags ?? []) conditions.push(tagCondition(registeredModels.tags, tag));
  return conditions;
}
