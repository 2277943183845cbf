/**
 * Rolling a deployment back from outside a workflow (the HTTP API): an earlier version serves again through the
 * deployment path that the monitoring rollback (activities/monitoring-actions.ts) and a `replace` rollout take, so it
 * is a champion revision with its reason and actor, the `champion` alias moves and serving is told.
 */
import type { Logger } from '../core/logger.js';
import type { ModelVersion } from '../schema/index.js';
import { isRollbackReason, rollbackTarget, ROLLBACK_REASON_PREFIX } from '../storage/deployment-history.js';
import {
  ChampionChangedError,
  type DeployResult,
  type DeploymentStore,
  type DeploymentSummary,
  type HistoryRevision,
} from '../storage/deployment-store.js';
import { RegistryConflictError, RegistryNotFoundError } from '../storage/registry-common.js';
import type { RegistryStore } from '../storage/registry-store.js';
import { reconcileRollouts } from './rollout-reconciler.js';
import type { RolloutRunnerDeps } from './rollouts.js';

export interface RollbackDeps {
  readonly registry: Pick<RegistryStore, 'getVersion' | 'getVersionById'>;
  readonly deployments: DeploymentStore;
  /** When given, a canary whose rollout workflow no longer runs is rolled back first, so it does not refuse this. */
  readonly rollouts?: RolloutRunnerDeps | undefined;
  /** Where a reconcile that failed (Temporal unreachable) is logged; the rollback goes on without it. */
  readonly logger?: Logger | undefined;
}

export interface RollbackRequest {
  readonly deploymentName: string;
  /** The version to serve: its number or id. Default: {@link rollbackTarget}, the previous champion. */
  readonly to?: number | string | undefined;
  /**
   * The champion the caller rolls back from: its number or id. When given, the rollback is made only while it is the
   * champion, so a retry whose first answer was lost does not go back a second time: when the champion serving now
   * was started by a rollback that replaced `from` (and is `to`, when named), the answer is that rollback with
   * `deploy.changed` false; otherwise ChampionChangedError.
   */
  readonly from?: number | string | undefined;
  /** Serve a version that is not blessed or whose approval was rejected (never an archived one). */
  readonly allowUnblessed?: boolean | undefined;
  readonly actor: string;
  readonly reason: string;
}

export interface RollbackOutcome {
  readonly deploy: DeployResult;
  /** The champion that served before. */
  readonly from: { readonly versionId: string; readonly version: number };
  /** The champion that serves now. */
  readonly to: { readonly versionId: string; readonly version: number };
}

/**
 * Serves `to` (default: the previous champion that no rollback has moved away from) as the deployment's champion.
 * The deploy names the champion read here, so a deploy by someone else in between is never rolled over; it is
 * refused, like a version not fit to serve, and while a canary runs or a rollout holds the deployment. Idempotent
 * for an explicit `to`: when it already is the champion, nothing is written (`deploy.changed` false), even while a
 * rollout holds the deployment. A default rollback is idempotent only with `from` (see {@link RollbackRequest.from}).
 * A reconcile of the rollouts that fails (Temporal unreachable) is logged and the rollback goes on: the deploy still
 * refuses, under the deployment row's lock, while a rollout holds the deployment.
 *
 * @throws RegistryNotFoundError (404) for an unknown deployment, or a `to` that is not a version of its model.
 * @throws RegistryConflictError (409) when nothing serves, there is no earlier champion, the version is not fit to
 *   serve (archived; not blessed or rejected at approval without `allowUnblessed`), a rollout or canary runs, or the
 *   champion changed meanwhile or is not `from` (ChampionChangedError, code `champion_changed`).
 */
export async function rollbackDeployment(deps: RollbackDeps, request: RollbackRequest): Promise<RollbackOutcome> {
  const { deploymentName: name } = request;
  const deployment = await deps.deployments.getDeployment(name);
  if (!deployment) throw new RegistryNotFoundError(`deployment ${name} does not exist`);
  if (deps.rollouts) {
    try {
      await reconcileRollouts(
        { ...deps.rollouts, deployments: deps.deployments, ...(deps.logger ? { logger: deps.logger } : {}) },
        { deploymentName: name },
      );
    } catch (error) {
      // A canary whose rollout workflow ended is then not rolled back first: the deploy below refuses it, under the
      // deployment row's lock, as it refuses one that runs.
      deps.logger?.warn(
        { deployment: name, err: error },
        'rollback: the rollouts could not be reconciled (Temporal unreachable?); going on',
      );
    }
  }
  const history = await deps.deployments.deploymentHistory(name);
  const champions = history.filter((r) => r.role === 'champion');
  const champion = champions.find((r) => r.endedAt === null);
  if (!champion) throw new RegistryConflictError(`deployment ${name} serves nothing to roll back from`);
  if (request.from !== undefined && !isVersion(champion, request.from)) {
    // A retry whose first answer was lost: answered with the rollback that answer reported, nothing written.
    const made = rollbackMadeFrom(champions, champion, request.from, request.to);
    if (made) {
      return {
        deploy: { deployment, revision: champion, previousVersionId: made.versionId, changed: false },
        from: ref(made),
        to: ref(champion),
      };
    }
    const expected = typeof request.from === 'number' ? `version ${request.from}` : `version id ${request.from}`;
    throw new ChampionChangedError(
      `deployment ${name} serves version ${champion.version} (${champion.versionId}) as champion, not ${expected} ` +
        `(\`from\`), and no rollback from ${expected} started it: nothing was changed`,
      champion.versionId,
    );
  }

  const target =
    request.to === undefined
      ? defaultTarget(history, champion, name, request.allowUnblessed)
      : await explicitTarget(deps.registry, deployment, request.to);
  const reason =
    `${ROLLBACK_REASON_PREFIX}version ${target.version} serves again instead of ${champion.version}, ` +
    `requested by ${request.actor}: ${request.reason}`;
  const deploy = await deps.deployments.deploy({
    deploymentName: name,
    modelName: deployment.modelName,
    versionId: target.versionId,
    ...(request.allowUnblessed ? { allowUnblessed: true } : {}),
    actor: request.actor,
    reason,
    expectedChampionVersionId: champion.versionId,
    refuseDuringRollout: true,
  });
  return { deploy, from: ref(champion), to: target };
}

/** Whether the revision serves the version `version` names: its number or id. */
function isVersion(revision: HistoryRevision, version: number | string): boolean {
  return typeof version === 'number' ? revision.version === version : revision.versionId === version.toLowerCase();
}

function ref(revision: HistoryRevision): { versionId: string; version: number } {
  return { versionId: revision.versionId, version: revision.version };
}

/**
 * The champion revision that `champion` replaced, when `champion` was started by a rollback (its reason says so)
 * from the version `from` names, and is `to` when one is named: the rollback a retried request made. `champions`
 * is newest first; undefined otherwise.
 */
function rollbackMadeFrom(
  champions: readonly HistoryRevision[],
  champion: HistoryRevision,
  from: number | string,
  to: number | string | undefined,
): HistoryRevision | undefined {
  if (!isRollbackReason(champion.reason) || (to !== undefined && !isVersion(champion, to))) return undefined;
  const replaced = champions[champions.indexOf(champion) + 1];
  return replaced && isVersion(replaced, from) ? replaced : undefined;
}

/** The version `to` (a number or an id) of the deployment's model. */
async function explicitTarget(
  registry: RollbackDeps['registry'],
  deployment: DeploymentSummary,
  to: number | string,
): Promise<{ versionId: string; version: number }> {
  let version: ModelVersion | undefined;
  if (typeof to === 'number') {
    version = await registry.getVersion(deployment.modelName, to);
  } else {
    version = await registry.getVersionById(to);
    // An id of another model's version is no version of this deployment's.
    if (version?.modelId !== deployment.modelId) version = undefined;
  }
  if (!version) throw new RegistryNotFoundError(`model ${deployment.modelName} has no version ${to}`);
  return { versionId: version.id, version: version.version };
}

function defaultTarget(
  history: readonly HistoryRevision[],
  champion: HistoryRevision,
  name: string,
  allowUnblessed: boolean | undefined,
): { versionId: string; version: number } {
  const target = rollbackTarget(history, champion.versionId, { allowUnblessed });
  if (!target) {
    throw new RegistryConflictError(
      `deployment ${name} has no earlier champion to roll back to from version ${champion.version} ` +
        '(none served before it, a rollback already moved away from each, or none may serve now: archived, or ' +
        'not blessed without `allowUnblessed`); name one with `to`',
    );
  }
  return { versionId: target.versionId, version: target.version };
}
