/**
 * What the model registry (registry-store.ts) and the deployments (deployment-store.ts) share: their errors, the
 * `champion` alias that ties the two aggregates together, and the model and version look-ups both make inside a
 * transaction.
 */
import { eq } from 'drizzle-orm';
import { modelVersions, registeredModels, type ModelVersion, type RegisteredModel } from '../schema/index.js';
import type { Database } from './database.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

/**
 * The alias that names the version a deployment serves: only the DeploymentStore moves it (a deploy, a promotion),
 * and the RegistryStore's `setAlias` refuses it.
 */
export const CHAMPION_ALIAS = 'champion';

/** Thrown when a model, version or deployment named in a write does not exist. */
export class RegistryNotFoundError extends DomainError {
  override readonly name = 'RegistryNotFoundError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('not_found', message, options);
  }
}

/** Thrown when a write contradicts the registry's rules (deploying an unblessed version, ...); retrying cannot fix it. */
export class RegistryConflictError extends DomainError {
  override readonly name = 'RegistryConflictError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('conflict', message, options);
  }
}

/** An open transaction of the platform database, as `db.transaction` hands it to its callback. */
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

/** Matches a UUID; ids that do not are answered "not found" without asking Postgres (which would reject them). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The registered model named `name`.
 *
 * @throws RegistryNotFoundError when it does not exist.
 */
export async function modelOrThrow(tx: Database | Transaction, name: string): Promise<RegisteredModel> {
  const [model] = await tx.select().from(registeredModels).where(eq(registeredModels.name, name));
  if (!model) throw new RegistryNotFoundError(`registered model ${name} does not exist`);
  return model;
}

/**
 * The version `versionId` of the model named `modelName`; with `lock: 'share'`, its row is share-locked for the rest
 * of the transaction (a concurrent status change waits for it).
 *
 * @throws RegistryNotFoundError when the model does not exist or the version is not one of its versions.
 */
export async function versionOfModel(
  tx: Database | Transaction,
  modelName: string,
  versionId: string,
  lock?: 'share',
): Promise<ModelVersion> {
  const model = await modelOrThrow(tx, modelName);
  const missing = () => new RegistryNotFoundError(`model ${modelName} has no version ${versionId}`);
  if (!UUID.test(versionId)) throw missing();
  const query = tx.select().from(modelVersions).where(eq(modelVersions.id, versionId));
  const [version] = await (lock ? query.for(lock) : query);
  if (!version || version.modelId !== model.id) throw missing();
  return version;
}
