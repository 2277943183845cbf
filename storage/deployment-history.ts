/**
 * Reading a deployment's revision history (deployment-store.ts `deploymentHistory`, newest first) as pure functions:
 * which champion a rollback serves again. The API's rollback and the monitoring rollback choose with the same one.
 */
import type { ModelVersionStatus } from '../schema/index.js';
import type { HistoryRevision } from './deployment-store.js';

/**
 * How every rollback's revision reason starts, the API's and monitoring's (`rollback: monitoring window ...`, in
 * monitoring/action-policy.ts) alike: a later rollback reads it to tell which versions were rolled back from.
 */
export const ROLLBACK_REASON_PREFIX = 'rollback: ';

/** Whether a revision's reason says a rollback (the API's or monitoring's) made it. */
export function isRollbackReason(reason: string): boolean {
  return reason.startsWith(ROLLBACK_REASON_PREFIX);
}

/** Which earlier champions {@link rollbackTarget} may choose. */
export interface RollbackTargetOptions {
  /** A version that is not blessed (registered or rejected) may be chosen; an archived one never is. */
  readonly allowUnblessed?: boolean | undefined;
}

/** Whether a version in this status may serve again: blessed, or not archived when unblessed ones are allowed. */
function servable(status: ModelVersionStatus, options: RollbackTargetOptions): boolean {
  return status === 'blessed' || (options.allowUnblessed === true && status !== 'archived');
}

/**
 * The version to serve again instead of `current`: the newest earlier champion of another version that no rollback
 * has already moved away from, so two bad versions do not take turns and a repeated rollback does not undo the last
 * one, and whose version may serve now (blessed; not archived when `allowUnblessed`), so an archived or unblessed
 * previous champion is passed over for an older one. Undefined when there is none. `history` is newest first. An
 * approval rejected in a pipeline run is not seen here: the deploy still refuses it.
 *
 * @example
 * // v1, then v2, then v3 served; a rollback from v3 serves v2, and a second one v1 (never v3 again).
 * rollbackTarget(await deployments.deploymentHistory('flights'), currentChampion.versionId);
 */
export function rollbackTarget(
  history: readonly HistoryRevision[],
  current: string,
  options: RollbackTargetOptions = {},
): HistoryRevision | undefined {
  const champions = history.filter((r) => r.role === 'champion');
  const rolledBackFrom = new Set<string>();
  // Oldest first, in one pass: `last` is the version of the latest champion so far, `other` the latest one of
  // another version than `last`; the champion a revision replaced is `last`, or `other` when it is the same version.
  let last: string | undefined;
  let other: string | undefined;
  for (let i = champions.length - 1; i >= 0; i--) {
    const revision = champions[i]!;
    const before = last === revision.versionId ? other : last;
    if (isRollbackReason(revision.reason) && before !== undefined) rolledBackFrom.add(before);
    if (last !== revision.versionId) {
      other = last;
      last = revision.versionId;
    }
  }
  return champions.find(
    (r) => r.versionId !== current && !rolledBackFrom.has(r.versionId) && servable(r.versionStatus, options),
  );
}
