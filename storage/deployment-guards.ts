/**
 * The checks deployment-store.ts makes inside its transactions, kept apart from the traffic changes themselves:
 *
 * - whether a version may serve (blessed, and its approval not rejected), and how an explicit override is recorded;
 * - the rollout reservation: the deployment's config names the one rollout workflow that may run a canary on it.
 */
import { eq } from 'drizzle-orm';
import { modelVersions, pipelineRuns, type DeploymentConfig, type ModelVersion } from '../schema/index.js';
import type { Database } from './database.js';
import { RegistryConflictError, type Transaction } from './registry-common.js';

/** How a traffic change treats a version that is not fit to serve. */
export interface ServingOverride {
  /**
   * Serve the version although it is not blessed or its approval was rejected. Recorded in the revision's reason.
   * An archived version is never served.
   */
  readonly allowUnblessed?: boolean | undefined;
  /**
   * The pipeline run whose own approval (or automatic policy) allows this deploy (the deploy stage's): a rejection in
   * the run that registered the same bytes earlier does not refuse it. The version must still be blessed.
   */
  readonly approvedInRun?: string | undefined;
}

/** Why a version is not fit to serve, or undefined when it is. */
export async function unfitToServe(
  tx: Transaction | Database,
  version: ModelVersion,
  override: ServingOverride = {},
): Promise<string | undefined> {
  if (version.status !== 'blessed') return `is ${version.status}, not blessed`;
  // A pipeline's deploy stage runs after its own run's approval (or automatic policy): an earlier rejection of the same
  // bytes, in the run that registered them, does not overrule it.
  if (version.sourceRunId && override.approvedInRun === undefined) {
    const [run] = await tx
      .select({ outcome: pipelineRuns.outcome, workflowId: pipelineRuns.workflowId })
      .from(pipelineRuns)
      .where(eq(pipelineRuns.id, version.sourceRunId));
    if (run?.outcome === 'rejected') return `was rejected at approval (run ${run.workflowId})`;
  }
  return undefined;
}

/**
 * Refuses to serve a version that is not fit to, unless the override allows it; returns the note to append to the
 * revision's reason (empty when no override was needed).
 *
 * @throws RegistryConflictError naming the version's state when it may not serve.
 */
export async function checkServable(
  tx: Transaction,
  modelName: string,
  version: ModelVersion,
  override: ServingOverride | undefined,
  what: string,
): Promise<string> {
  const unfit = await unfitToServe(tx, version, override);
  if (unfit === undefined) return '';
  const label = `model ${modelName} version ${version.version}`;
  if (version.status === 'archived') throw new RegistryConflictError(`${label} is archived: it is never ${what}`);
  if (!override?.allowUnblessed) {
    throw new RegistryConflictError(
      `${label} ${unfit}: it is not ${what} unless the request allows an unblessed version explicitly (allowUnblessed)`,
    );
  }
  return ` [override: version ${version.version} ${unfit}, served because the request allowed it (allowUnblessed)]`;
}

/** The deployment config key holding the {@link RolloutReservation}. */
export const ROLLOUT_CONFIG = 'rollout';

/**
 * The one rollout that may run a canary on a deployment, written in the deployment's config under the deployment
 * row's lock: a second rollout is refused while it is there. Cleared by the rollout's own promotion or rollback, or
 * by the reconciler once its workflow no longer runs.
 */
export interface RolloutReservation {
  /** The rollout workflow's id. */
  readonly workflowId: string;
  /** The challenger the rollout canaries. */
  readonly versionId: string;
  /** ISO time of the reservation. */
  readonly reservedAt: string;
  /** The canary may serve a version that is not blessed (the request said so). */
  readonly allowUnblessed?: boolean;
}

/** The deployment's rollout reservation, or undefined. */
export function reservationOf(config: DeploymentConfig): RolloutReservation | undefined {
  const value = config[ROLLOUT_CONFIG];
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Partial<RolloutReservation>;
  if (typeof r.workflowId !== 'string' || typeof r.versionId !== 'string') return undefined;
  return {
    workflowId: r.workflowId,
    versionId: r.versionId,
    reservedAt: typeof r.reservedAt === 'string' ? r.reservedAt : new Date(0).toISOString(),
    ...(r.allowUnblessed ? { allowUnblessed: true } : {}),
  };
}

/** The config with the reservation set, or without one for null. */
export function withReservation(config: DeploymentConfig, reservation: RolloutReservation | null): DeploymentConfig {
  const { [ROLLOUT_CONFIG]: _previous, ...rest } = config;
  return reservation === null ? rest : { ...rest, [ROLLOUT_CONFIG]: { ...reservation } };
}

/**
 * Which rollout a traffic change acts for: a workflow id (it must hold the reservation, or none be held), null (only
 * while no rollout holds it: the reconciler's orphans), or undefined (reservations ignored: an operator's change).
 */
export type RolloutOwner = string | null | undefined;

/** Whether a change acting for `owner` may touch the deployment's canary. */
export function ownsCanary(config: DeploymentConfig, owner: RolloutOwner): boolean {
  if (owner === undefined) return true;
  const held = reservationOf(config);
  return held === undefined || held.workflowId === owner;
}

/**
 * Why version `versionId` may not be scored on request (a request naming it by number or alias), or undefined when
 * it may: the same rule as serving it through a deployment (blessed, its approval not rejected); no such version is
 * left to the caller's lookup.
 */
export async function servingRefusal(db: Database, versionId: string): Promise<string | undefined> {
  const [version] = await db.select().from(modelVersions).where(eq(modelVersions.id, versionId));
  return version && unfitToServe(db, version);
}
