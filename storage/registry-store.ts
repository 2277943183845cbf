import { and, asc, desc, eq, isNull, sql } from 'drizzle-orm';
import {
  deploymentRevisions,
  deployments,
  modelAliases,
  modelVersions,
  modelVersionTransitions,
  registeredModels,
  type JsonProperties,
  type ModelAlias,
  type ModelBlessing,
  type ModelSignature,
  type ModelVersion,
  type ModelVersionStatus,
  type ModelVersionTransition,
  type RegisteredModel,
} from '../schema/index.js';
import type { Database } from './database.js';
import type { Page } from './page.js';
import { withNotFound as withForeignKeyCheck } from './sql-errors.js';
import {
  CHAMPION_ALIAS,
  RegistryConflictError,
  RegistryNotFoundError,
  UUID,
  versionOfModel,
  type Transaction,
} from './registry-common.js';

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

/**
 * The model registry: registered models, their numbered, content-keyed versions with an audited status (every
 * transition records who or what made it and why), and movable aliases. Every write is idempotent, so an activity
 * retried after its write committed gets the same answer without writing again. What each deployment serves is the
 * DeploymentStore's (deployment-store.ts); the `champion` alias follows it.
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
  /** Every registered model, by name. */
  listModels(page?: Page): Promise<RegisteredModel[]>;
  /** The model's versions, newest first; empty when the model does not exist. */
  listVersions(modelName: string, page?: Page): Promise<ModelVersion[]>;
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
   * Points `alias` of the model at the version. Idempotent.
   *
   * `actor` and `reason` are accepted for the API's audit trail, but model_aliases has no columns for them yet, so
   * they are not stored; deployments record theirs in deployment_revisions.
   *
   * @throws RegistryNotFoundError when the model does not exist or the version is not one of its versions.
   * @throws RegistryConflictError for the `champion` alias, which only the DeploymentStore moves (it must name what
   *   serves).
   */
  setAlias(modelName: string, alias: string, versionId: string, actor: string, reason: string): Promise<ModelAlias>;
  /**
   * Moves the version to status `to`, recording the transition (from its current status) with who and why; a no-op
   * returning the version unchanged when it already is in that status.
   *
   * @throws RegistryNotFoundError when there is no version `versionId`.
   * @throws RegistryConflictError when leaving `blessed` while a deployment serves the version: an unblessed version
   *   is never deployed, so deploy another version first.
   */
  transitionStatus(versionId: string, to: ModelVersionStatus, actor: string, reason: string): Promise<ModelVersion>;
  /** The version's status changes, oldest first (the registration first). */
  transitions(versionId: string): Promise<ModelVersionTransition[]>;
}

// Transitions written in one transaction would share now(); the wall clock keeps their order readable.
const transitionTime = sql`clock_timestamp()`;

/**
 * The RegistryStore on Postgres; each guarantee documented on the interface rests on a constraint in schema/registry.ts.
 * The one read of the deployments' tables is transitionStatus's check that no deployment serves a version it unblesses,
 * made in the same transaction as the status change.
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

  async listModels(page?: Page): Promise<RegisteredModel[]> {
    const query = this.db.select().from(registeredModels).orderBy(asc(registeredModels.name)).$dynamic();
    return page ? query.limit(page.limit).offset(page.offset) : query;
  }

  async listVersions(modelName: string, page?: Page): Promise<ModelVersion[]> {
    const query = this.db
      .select({ version: modelVersions })
      .from(modelVersions)
      .innerJoin(registeredModels, eq(registeredModels.id, modelVersions.modelId))
      .where(eq(registeredModels.name, modelName))
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

  async setAlias(
    modelName: string,
    alias: string,
    versionId: string,
    _actor: string,
    _reason: string,
  ): Promise<ModelAlias> {
    if (alias === CHAMPION_ALIAS) {
      throw new RegistryConflictError(`the ${CHAMPION_ALIAS} alias follows deployments: deploy the version instead`);
    }
    const version = await versionOfModel(this.db, modelName, versionId);
    const [row] = await this.db
      .insert(modelAliases)
      .values({ modelId: version.modelId, alias, versionId })
      .onConflictDoUpdate({ target: [modelAliases.modelId, modelAliases.alias], set: { versionId } })
      .returning();
    return row!;
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
      if (version.status === 'blessed') {
        const [active] = await tx
          .select({ deployment: deployments.name })
          .from(deploymentRevisions)
          .innerJoin(deployments, eq(deployments.id, deploymentRevisions.deploymentId))
          .where(and(eq(deploymentRevisions.versionId, versionId), isNull(deploymentRevisions.endedAt)))
          .limit(1);
        if (active) {
          throw new RegistryConflictError(
            `model version ${version.version} is served by deployment ${active.deployment}; deploy another version before marking it ${to}`,
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
