/**
 * The JSON shapes of the registry's routes (models.ts, model-aliases.ts, model-edits.ts) and how the registry's rows
 * become them. Wherever a version's id is shown, its number is beside it.
 */
import { z } from '@hono/zod-openapi';
import type { ModelVersion, ModelVersionTransition, RegisteredModel } from '../../schema/index.js';
import { MODEL_VERSION_STATUSES } from '../../schema/index.js';
import type { AliasChangeView, AliasView } from '../../storage/registry-aliases.js';
import type { RegistryStore } from '../../storage/registry-store.js';
import { iso } from './common.js';

const dateTime = z.string().openapi({ format: 'date-time' });
const tagsSchema = z
  .record(z.string(), z.string())
  .openapi({ description: 'Key/value tags.', example: { team: 'ops' } });

export const modelSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    tags: tagsSchema,
    createdAt: dateTime,
    updatedAt: dateTime,
  })
  .openapi('RegisteredModel');

export const modelVersionSchema = z
  .object({
    id: z.string(),
    model: z.string(),
    version: z.number().int(),
    status: z.enum(MODEL_VERSION_STATUSES),
    aliases: z.array(z.string()).openapi({ description: 'The aliases that name this version, by name.' }),
    description: z.string().nullable(),
    tags: tagsSchema,
    onnxUri: z.string(),
    sha256: z.string(),
    signature: z.record(z.string(), z.unknown()),
    metrics: z.record(z.string(), z.number()),
    params: z.record(z.string(), z.unknown()),
    blessing: z
      .record(z.string(), z.unknown())
      .nullable()
      .openapi({ description: 'The evaluator’s verdict; `baselineVersion` is the number of `baselineVersionId`.' }),
    codeVersion: z.string().nullable(),
    sourceRunId: z.string().nullable().openapi({ description: 'The pipeline run that trained it.' }),
    artifactId: z.string().nullable(),
    createdAt: dateTime,
  })
  .openapi('ModelVersion');

export const transitionSchema = z
  .object({
    fromStatus: z.enum(MODEL_VERSION_STATUSES).nullable(),
    toStatus: z.enum(MODEL_VERSION_STATUSES),
    actor: z.string(),
    reason: z.string(),
    createdAt: dateTime,
  })
  .openapi('ModelVersionTransition');

export const modelVersionDetailsSchema = modelVersionSchema
  .extend({ transitions: z.array(transitionSchema) })
  .openapi('ModelVersionDetails');

export const aliasSchema = z
  .object({
    alias: z.string(),
    version: z.number().int(),
    versionId: z.string(),
    updatedAt: dateTime,
  })
  .openapi('ModelAlias');

const versionRefSchema = z.object({ version: z.number().int(), versionId: z.string() });

export const aliasChangeSchema = z
  .object({
    alias: z.string(),
    from: versionRefSchema.nullable().openapi({ description: 'Null when the alias was created.' }),
    to: versionRefSchema.nullable().openapi({ description: 'Null when the alias was deleted.' }),
    actor: z.string(),
    reason: z.string(),
    createdAt: dateTime,
  })
  .openapi('ModelAliasChange');

export function modelJson(model: RegisteredModel): z.infer<typeof modelSchema> {
  return {
    id: model.id,
    name: model.name,
    description: model.description,
    tags: model.tags,
    createdAt: iso(model.createdAt),
    updatedAt: iso(model.updatedAt),
  };
}

/** What a version's JSON shows beside its own row: its aliases, and the numbers of the versions it names by id. */
export interface VersionContext {
  readonly aliases: ReadonlyMap<string, readonly string[]>;
  readonly numbers: ReadonlyMap<string, number>;
}

/** The context of these versions of the model: two reads, whatever their count. */
export async function versionContext(
  registry: Pick<RegistryStore, 'aliases' | 'versionNumbers'>,
  modelName: string,
  versions: readonly ModelVersion[],
): Promise<VersionContext> {
  const baselines = versions.flatMap((v) => (v.blessing?.baselineVersionId ? [v.blessing.baselineVersionId] : []));
  const [aliases, numbers] = await Promise.all([registry.aliases(modelName), registry.versionNumbers(baselines)]);
  const byVersion = new Map<string, string[]>();
  for (const a of aliases) byVersion.set(a.versionId, [...(byVersion.get(a.versionId) ?? []), a.alias]);
  return { aliases: byVersion, numbers };
}

export function versionJson(
  model: string,
  v: ModelVersion,
  context: VersionContext,
): z.infer<typeof modelVersionSchema> {
  const baseline = v.blessing?.baselineVersionId;
  return {
    id: v.id,
    model,
    version: v.version,
    status: v.status,
    aliases: [...(context.aliases.get(v.id) ?? [])],
    description: v.description,
    tags: v.tags,
    onnxUri: v.onnxUri,
    sha256: v.sha256,
    signature: { ...v.signature },
    metrics: v.metrics,
    params: v.params,
    blessing: v.blessing
      ? { ...v.blessing, ...(baseline ? { baselineVersion: context.numbers.get(baseline) ?? null } : {}) }
      : null,
    codeVersion: v.codeVersion,
    sourceRunId: v.sourceRunId,
    artifactId: v.artifactId,
    createdAt: iso(v.createdAt),
  };
}

export function transitionJson(t: ModelVersionTransition): z.infer<typeof transitionSchema> {
  return {
    fromStatus: t.fromStatus,
    toStatus: t.toStatus,
    actor: t.actor,
    reason: t.reason,
    createdAt: iso(t.createdAt),
  };
}

export function aliasJson(a: AliasView): z.infer<typeof aliasSchema> {
  return { alias: a.alias, version: a.version, versionId: a.versionId, updatedAt: iso(a.updatedAt) };
}

export function aliasChangeJson(c: AliasChangeView): z.infer<typeof aliasChangeSchema> {
  return {
    alias: c.alias,
    from: c.from && { version: c.from.version, versionId: c.from.versionId },
    to: c.to && { version: c.to.version, versionId: c.to.versionId },
    actor: c.actor,
    reason: c.reason,
    createdAt: iso(c.createdAt),
  };
}
