import { and, asc, desc, eq, inArray, isNull, sql } from 'drizzle-orm';
import {
  deploymentRevisions,
  deployments,
  modelAliases,
  modelVersions,
  modelVersionTransitions,
  registeredModels,
  type JsonProperties,
  type ModelBlessing,
  type ModelSignature,
  type ModelVersion,
  type ModelVersionStatus,
  type ModelVersionTransition,
  type RegisteredModel,
} from '../schema/index.js';
import type { Database } from './database.js';
import { ROLLOUT_CONFIG } from './deployment-guards.js';
import type { Page } from './page.js';
import { withNotFound as withForeignKeyCheck } from './sql-errors.js';
import {
  checkAliasWritable,
  moveAlias,
  readAliasChanges,
  readAliases,
  removeAlias,
  type AliasChangeView,
  type AliasView,
} from './registry-aliases.js';
import {
  CHAMPION_ALIAS,
  modelOrThrow,
  RegistryConflictError,
  RegistryNotFoundError,
  UUID,
  versionOfModel,
  type Transaction,
} from './registry-common.js';
import { checkTagCount, patchSet, type RegistryPatch } from './registry-edits.js';
import { modelConditions, versionConditions, type ModelFilter, type VersionFilter } from './registry-search.js';

export interface RegisterVersionInput {
  modelName: string;
  onnxUri: string;
  /** The ONNX bytes' sha256: registering the same bytes again under the same model returns the existing version. */
  sha256: string;
  signature: ModelSignature;
  metrics: Record<string, number>;
  params: JsonProperties;
  /** Decides the status: blessed or rejected, with `blessing.reason` as the transition's reason. */
  blessing: ModelBlessing;
  codeVersion?: string;
  /** The pipeline run (pipeline_runs.id) that trained it. */
  sourceRunId?: string;
  /** The Model artifact in the metadata store. */
  artifactId?: string;
  actor: string;
  /** Why it was registered (the registration transition's reason). */
  reason: string;
}

/** A version by id and number. */
export interface VersionRef {
  readonly versionId: string;
  readonly version: number;
}

/** What an alias write did: the alias as it is now, the version it named before, whether anything changed. */
export interface AliasWrite {
  readonly alias: AliasView;
  /** Null for a new alias. */
  readonly from: VersionRef | null;
  /** False when the alias already named the version: nothing was written, no move recorded. */
  readonly changed: boolean;
}

/**
 * The model registry: registered models, their numbered, content-keyed versions with an audited status (every
 * transition records who or what made it and why), movable aliases (every move recorded), descriptions and tags. Every
 * write is idempotent, so an activity retried after its write committed gets the same answer without writing again.
 * What each deployment serves is the DeploymentStore's (deployment-store.ts); the `champion` alias follows it, and
 * `previous` names the champion before it.
 */
export interface RegistryStore {
  /** Creates the registered model, or returns it; a given description replaces the stored one. Idempotent. */
  ensureModel(name: string, description?: string): Promise<RegisteredModel>;
  /**
   * Registers the ONNX model with this sha256 as the model's next version (creating the model when needed), with
   * the status its blessing decides and two transitions (null → registered, registered → blessed or rejected), all
   * in one transaction. Idempotent by (model, sha256): the same bytes again return the existing version with
   * `created: false` and write nothing. Concurrent registrations get consecutive numbers.
   *
   * @throws RegistryNotFoundError when `sourceRunId` or `artifactId` does not exist.
   */
  registerVersion(input: RegisterVersionInput): Promise<{ version: ModelVersion; created: boolean }>;
  /** The registered model named `name`, or undefined. */
  getModel(name: string): Promise<RegisteredModel | undefined>;
  /** Every registered model (those `filter` matches), by name. */
  listModels(page?: Page, filter?: ModelFilter): Promise<RegisteredModel[]>;
  /** The model's versions (those `filter` matches), newest first; empty when the model does not exist. */
  listVersions(modelName: string, page?: Page, filter?: VersionFilter): Promise<ModelVersion[]>;
  /**
   * One version of the model: a number is the version number, a string is an alias (`champion`, ...). A numeric
   * string is an alias too; the caller parses path parameters. Undefined when there is no such version.
   */
  getVersion(modelName: string, ref: number | string): Promise<ModelVersion | undefined>;
  /** The version with this id (of any model), or undefined, also for a string that is not a UUID. */
  getVersionById(id: string): Promise<ModelVersion | undefined>;
  /** The version the `champion` alias names (the one the last deploy made current), or undefined. */
  champion(modelName: string): Promise<ModelVersion | undefined>;
  /**
   * Points `alias` of the model at the version, in one transaction with the move's record (from which version, who,
   * why; {@link aliasChanges}). Idempotent: an alias that already names the version is left as it is, unrecorded.
   * Concurrent moves of one alias are serialised on its row: one row per alias always, the last commit wins.
   *
   * @throws RegistryNotFoundError when the model does not exist or the version is not one of its versions.
   * @throws RegistryConflictError for `champion` and `previous`, which only the DeploymentStore moves (`champion`
   *   must name what serves; `previous`, the champion before it).
   */
  setAlias(modelName: string, alias: string, versionId: string, actor: string, reason: string): Promise<AliasWrite>;
  /**
   * Deletes the alias, recording it; the version it named. A repeated delete finds nothing and says so (not found),
   * writing nothing.
   *
   * @throws RegistryNotFoundError when the model or the alias does not exist.
   * @throws RegistryConflictError for `champion` and `previous` (see {@link setAlias}).
   */
  deleteAlias(modelName: string, alias: string, actor: string, reason: string): Promise<VersionRef>;
  /** The model's aliases, by name, with their versions' numbers; empty when the model does not exist. */
  aliases(modelName: string): Promise<AliasView[]>;
  /** The recorded moves of the model's aliases (of `alias` alone, when given), newest first. */
  aliasChanges(modelName: string, page: Page, alias?: string): Promise<AliasChangeView[]>;
  /**
   * Edits the model's description and tags; tags are merged (null removes a key). Concurrent edits of different
   * tags both land.
   *
   * @throws RegistryNotFoundError when the model does not exist.
   * @throws RegistryConflictError when the edit would leave more than MAX_TAGS tags (nothing is changed).
   */
  updateModel(name: string, patch: RegistryPatch): Promise<RegisteredModel>;
  /**
   * Edits the version's description and tags, like {@link updateModel}.
   *
   * @throws RegistryNotFoundError when there is no version `versionId`.
   * @throws RegistryConflictError when the edit would leave more than MAX_TAGS tags (nothing is changed).
   */
  updateVersion(versionId: string, patch: RegistryPatch): Promise<ModelVersion>;
  /** The numbers of the versions with these ids (ids of no version left out), for answers that show both. */
  versionNumbers(ids: readonly string[]): Promise<Map<string, number>>;
  /**
   * Moves the version to status `to`, recording the transition (from its current status) with who and why; a no-op
   * returning the version unchanged when it already is in that status.
   *
   * @throws RegistryNotFoundError when there is no version `versionId`.
   * @throws RegistryConflictError when leaving `blessed`, or archiving, while a deployment serves the version (as
   *   champion, challenger or shadow) or a rollout holds a deployment to canary it: an unblessed version is never
   *   deployed, and an archived one never serves again, so deploy another version first.
   */
  transitionStatus(versionId: string, to: ModelVersionStatus, actor: string, reason: string): Promise<ModelVersion>;
  /** The version's status changes, oldest first (the registration first). */
  transitions(versionId: string): Promise<ModelVersionTransition[]>;
}

// Transitions written in one transaction would share now(); the wall clock keeps their order readable.
const transitionTime = sql`clock_timestamp()`;

/**
 * The RegistryStore on Postgres; each guarantee documented on the interface rests on a constraint in schema/registry.ts.
 * The one read of the deployments' tables is transitionStatus's check that no deployment serves (or a rollout holds) a
 * version it unblesses or archives, made in the same transaction as the status change.
 */
class DrizzleRegistryStore implements RegistryStore {
  constructor(private readonly db: Database) {}

  async ensureModel(name: string, description?: string): Promise<RegisteredModel> {
    const [row] = await this.db
      .insert(registeredModels)
      .values({ name, description: description ?? null })
      .onConflictDoUpdate({
        target: registeredModels.name,
        set: { description: sql`excluded.description` },
        // Only a real change is written, so updatedAt means "last changed", not "last asked for".
        setWhere: sql`excluded.description is not null and excluded.description is distinct from ${registeredModels.description}`,
      })
      .returning();
    if (row) return row;
    const existing = await this.getModel(name);
    if (!existing) throw new Error(`registered model ${name} vanished after it was upserted`);
    return existing;
  }

  async registerVersion(input: RegisterVersionInput): Promise<{ version: ModelVersion; created: boolean }> {
    return withNotFound(`pipeline run ${input.sourceRunId ?? '-'} or artifact ${input.artifactId ?? '-'}`, () =>
      this.db.transaction(async (tx) => {
        const model = await lockModel(tx, input.modelName);
        const [existing] = await tx
          .select()
          .from(modelVersions)
          .where(and(eq(modelVersions.modelId, model.id), eq(modelVersions.sha256, input.sha256)));
        if (existing) return { version: existing, created: false };

        // The model row lock serialises registrations of one model, so max + 1 cannot be taken twice.
        const [next] = await tx
          .select({ version: sql<number>`coalesce(max(${modelVersions.version}), 0) + 1` })
          .from(modelVersions)
          .where(eq(modelVersions.modelId, model.id));
        const status: ModelVersionStatus = input.blessing.blessed ? 'blessed' : 'rejected';
        const [version] = await tx
          .insert(modelVersions)
          .values({
            modelId: model.id,
            version: next?.version ?? 1,
            artifactId: input.artifactId ?? null,
            onnxUri: input.onnxUri,
            sha256: input.sha256,
            signature: input.signature,
            metrics: input.metrics,
            params: input.params,
            blessing: input.blessing,
            status,
            codeVersion: input.codeVersion ?? null,
            sourceRunId: input.sourceRunId ?? null,
          })
          .returning();
        if (!version) throw new Error(`model ${input.modelName}: the new version was not returned`);
        await tx.insert(modelVersionTransitions).values([
          {
            versionId: version.id,
            fromStatus: null,
            toStatus: 'registered',
            actor: input.actor,
            reason: input.reason,
            createdAt: transitionTime,
          },
          {
            versionId: version.id,
            fromStatus: 'registered',
            toStatus: status,
            actor: input.actor,
            reason: input.blessing.reason,
            createdAt: transitionTime,
          },
        ]);
        await tx
          .update(registeredModels)
          .set({ updatedAt: sql`now()` })
          .where(eq(registeredModels.id, model.id));
        return { version, created: true };
      }),
    );
  }

  async getModel(name: string): Promise<RegisteredModel | undefined> {
    const [row] = await this.db.select().from(registeredModels).where(eq(registeredModels.name, name));
    return row;
  }

  async listModels(page?: Page, filter: ModelFilter = {}): Promise<RegisteredModel[]> {
    const query = this.db
      .select()
      .from(registeredModels)
      .where(and(...modelConditions(filter)))
      .orderBy(asc(registeredModels.name))
      .$dynamic();
    return page ? query.limit(page.limit).offset(page.offset) : query;
  }

  async listVersions(modelName: string, page?: Page, filter: VersionFilter = {}): Promise<ModelVersion[]> {
    const query = this.db
      .select({ version: modelVersions })
      .from(modelVersions)
      .innerJoin(registeredModels, eq(registeredModels.id, modelVersions.modelId))
      .where(and(eq(registeredModels.name, modelName), ...versionConditions(filter)))
      .orderBy(desc(modelVersions.version))
      .$dynamic();
    const rows = await (page ? query.limit(page.limit).offset(page.offset) : query);
    return rows.map((r) => r.version);
  }

  async getVersion(modelName: string, ref: number | string): Promise<ModelVersion | undefined> {
    if (typeof ref === 'number') {
      const [row] = await this.db
        .select({ version: modelVersions })
        .from(modelVersions)
        .innerJoin(registeredModels, eq(registeredModels.id, modelVersions.modelId))
        .where(and(eq(registeredModels.name, modelName), eq(modelVersions.version, ref)));
      return row?.version;
    }
    const [row] = await this.db
      .select({ version: modelVersions })
      .from(modelAliases)
      .innerJoin(registeredModels, eq(registeredModels.id, modelAliases.modelId))
      .innerJoin(modelVersions, eq(modelVersions.id, modelAliases.versionId))
      .where(and(eq(registeredModels.name, modelName), eq(modelAliases.alias, ref)));
    return row?.version;
  }

  async getVersionById(id: string): Promise<ModelVersion | undefined> {
    if (!UUID.test(id)) return undefined;
    const [row] = await this.db.select().from(modelVersions).where(eq(modelVersions.id, id));
    return row;
  }

  async champion(modelName: string): Promise<ModelVersion | undefined> {
    return this.getVersion(modelName, CHAMPION_ALIAS);
  }

  async setAlias(modelName: string, alias: string, versionId: string, actor: string, reason: string) {
    checkAliasWritable(alias, 'moved');
    return this.db.transaction(async (tx): Promise<AliasWrite> => {
      // A share lock, as a deploy takes: the version's status cannot change under the move.
      const version = await versionOfModel(tx, modelName, versionId, 'share');
      const move = await moveAlias(tx, { modelId: version.modelId, alias, versionId, actor, reason });
      const [view] = (await readAliases(tx, version.modelId)).filter((a) => a.alias === alias);
      if (!view) throw new Error(`alias ${alias} of model ${modelName} vanished in its own transaction`);
      const from =
        move.fromVersionId === null
          ? null
          : { versionId: move.fromVersionId, version: await numberOf(tx, move.fromVersionId) };
      return { alias: view, from, changed: move.changed };
    });
  }

  async deleteAlias(modelName: string, alias: string, actor: string, reason: string): Promise<VersionRef> {
    checkAliasWritable(alias, 'deleted');
    return this.db.transaction(async (tx) => {
      const model = await modelOrThrow(tx, modelName);
      const versionId = await removeAlias(tx, { modelId: model.id, alias, actor, reason });
      if (versionId === undefined) throw new RegistryNotFoundError(`model ${modelName} has no alias ${alias}`);
      return { versionId, version: await numberOf(tx, versionId) };
    });
  }

  async aliases(modelName: string): Promise<AliasView[]> {
    const model = await this.getModel(modelName);
    return model ? readAliases(this.db, model.id) : [];
  }

  async aliasChanges(modelName: string, page: Page, alias?: string): Promise<AliasChangeView[]> {
    const model = await this.getModel(modelName);
    return model ? readAliasChanges(this.db, model.id, alias, page) : [];
  }

  async updateModel(name: string, patch: RegistryPatch): Promise<RegisteredModel> {
    return this.db.transaction(async (tx) => {
      const set = patchSet(registeredModels, patch);
      const model = await modelOrThrow(tx, name);
      if (!set) return model;
      const [updated] = await tx.update(registeredModels).set(set).where(eq(registeredModels.id, model.id)).returning();
      if (!updated) throw new RegistryNotFoundError(`registered model ${name} does not exist`);
      checkTagCount(`model ${name}`, updated.tags);
      return updated;
    });
  }

  async updateVersion(versionId: string, patch: RegistryPatch): Promise<ModelVersion> {
    const missing = () => new RegistryNotFoundError(`model version ${versionId} does not exist`);
    if (!UUID.test(versionId)) throw missing();
    return this.db.transaction(async (tx) => {
      const set = patchSet(modelVersions, patch);
      const [updated] = set
        ? await tx.update(modelVersions).set(set).where(eq(modelVersions.id, versionId)).returning()
        : await tx.select().from(modelVersions).where(eq(modelVersions.id, versionId));
      if (!updated) throw missing();
      checkTagCount(`version ${updated.version}`, updated.tags);
      return updated;
    });
  }

  async versionNumbers(ids: readonly string[]): Promise<Map<string, number>> {
    const wanted = [...new Set(ids.filter((id) => UUID.test(id)))];
    if (wanted.length === 0) return new Map();
    const rows = await this.db
      .select({ id: modelVersions.id, version: modelVersions.version })
      .from(modelVersions)
      .where(inArray(modelVersions.id, wanted));
    return new Map(rows.map((r) => [r.id, r.version]));
  }

  async transitionStatus(
    versionId: string,
    to: ModelVersionStatus,
    actor: string,
    reason: string,
  ): Promise<ModelVersion> {
    if (!UUID.test(versionId)) throw new RegistryNotFoundError(`model version ${versionId} does not exist`);
    return this.db.transaction(async (tx) => {
      // The row lock orders this against deploy, which reads the status under a share lock.
      const [version] = await tx.select().from(modelVersions).where(eq(modelVersions.id, versionId)).for('update');
      if (!version) throw new RegistryNotFoundError(`model version ${versionId} does not exist`);
      if (version.status === to) return version;
      if (version.status === 'blessed' || to === 'archived') {
        const serving = await servingUse(tx, versionId);
        if (serving) {
          throw new RegistryConflictError(
            `model version ${version.version} ${serving}; deploy another version before marking it ${to}`,
          );
        }
      }
      await tx.insert(modelVersionTransitions).values({
        versionId,
        fromStatus: version.status,
        toStatus: to,
        actor,
        reason,
        createdAt: transitionTime,
      });
      const [updated] = await tx
        .update(modelVersions)
        .set({ status: to })
        .where(eq(modelVersions.id, versionId))
        .returning();
      return updated!;
    });
  }

  async transitions(versionId: string): Promise<ModelVersionTransition[]> {
    if (!UUID.test(versionId)) return [];
    return this.db
      .select()
      .from(modelVersionTransitions)
      .where(eq(modelVersionTransitions.versionId, versionId))
      .orderBy(asc(modelVersionTransitions.createdAt), sql`${modelVersionTransitions.fromStatus} is not null`);
  }
}

/**
 * How a deployment uses the version (`is served by deployment x as shadow`, `is canaried by rollout y of deployment
 * x`), or undefined when none does. Read after the version's row lock: a deploy share-locks it before serving it.
 */
async function servingUse(tx: Transaction, versionId: string): Promise<string | undefined> {
  const [active] = await tx
    .select({ deployment: deployments.name, role: deploymentRevisions.role })
    .from(deploymentRevisions)
    .innerJoin(deployments, eq(deployments.id, deploymentRevisions.deploymentId))
    .where(and(eq(deploymentRevisions.versionId, versionId), isNull(deploymentRevisions.endedAt)))
    .limit(1);
  if (active) return `is served by deployment ${active.deployment} as ${active.role}`;
  // A rollout holds its deployment for the challenger before the canary's first revision starts (deployment-guards.ts).
  const [held] = await tx
    .select({
      deployment: deployments.name,
      workflowId: sql<string>`${deployments.config} -> ${ROLLOUT_CONFIG}::text ->> 'workflowId'`,
    })
    .from(deployments)
    .where(sql`${deployments.config} -> ${ROLLOUT_CONFIG}::text ->> 'versionId' = ${versionId}::text`)
    .limit(1);
  return held ? `is canaried by rollout ${held.workflowId} of deployment ${held.deployment}` : undefined;
}

/** The number of the version with this id, which the caller knows exists. */
async function numberOf(tx: Transaction, versionId: string): Promise<number> {
  const [row] = await tx
    .select({ version: modelVersions.version })
    .from(modelVersions)
    .where(eq(modelVersions.id, versionId));
  if (!row) throw new Error(`model version ${versionId} vanished in a transaction that references it`);
  return row.version;
}

/** Creates the model if needed and locks its row for the rest of the transaction. */
async function lockModel(tx: Transaction, name: string): Promise<RegisteredModel> {
  await tx.insert(registeredModels).values({ name }).onConflictDoNothing({ target: registeredModels.name });
  const [model] = await tx.select().from(registeredModels).where(eq(registeredModels.name, name)).for('update');
  if (!model) throw new Error(`registered model ${name} vanished after it was upserted`);
  return model;
}

/** Runs a write and turns a foreign-key violation into RegistryNotFoundError naming `what`. */
function withNotFound<T>(what: string, write: () => Promise<T>): Promise<T> {
  return withForeignKeyCheck(write, (cause) => new RegistryNotFoundError(`${what} does not exist`, { cause }));
}

/** The model registry on Postgres. Holds nothing but the database, so one instance per process is enough. */
export function createRegistryStore(db: Database): RegistryStore {
  return new DrizzleRegistryStore(db);
}
