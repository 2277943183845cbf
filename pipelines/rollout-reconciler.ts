/**
 * The rollout reconciler: a canary's challenger serves only while the rollout workflow that started it runs. One
 * whose workflow was terminated, timed out, failed without its own rollback, or never started, is rolled back here
 * (a revision with the reason), and the deployment's rollout reservation is released, so a new canary is accepted.
 * Run by the `reconcileDeploymentRollouts` workflow on a schedule (workers/schedules.ts), and by the API for one
 * deployment before it refuses a canary.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Logger } from '../core/logger.js';
import { reservationOf } from '../storage/deployment-guards.js';
import type { DeploymentStore, DeploymentSummary } from '../storage/deployment-store.js';

/** The actor of the reconciler's revisions. */
export const RECONCILER_ACTOR = 'rollout-reconciler';

/** Default grace: a reservation or canary younger than this whose workflow is not found yet is left alone. */
export const DEFAULT_RECONCILE_GRACE_SECONDS = 60;

export interface RolloutReconcilerDeps {
  readonly client: Client;
  readonly deployments: Pick<
    DeploymentStore,
    'listDeployments' | 'getDeployment' | 'activeRevisions' | 'rollbackChallenger' | 'releaseRollout'
  >;
  readonly logger?: Logger;
}

export interface ReconcileOptions {
  /** Only this deployment (default: every deployment). */
  readonly deploymentName?: string | undefined;
  /**
   * How long after a reservation (or a canary without one) its workflow may still be missing: the API reserves
   * before it starts the workflow. Default {@link DEFAULT_RECONCILE_GRACE_SECONDS}.
   */
  readonly graceSeconds?: number | undefined;
}

/** What the reconciler did to one deployment. */
export interface ReconciledRollout {
  readonly deployment: string;
  /** The rollout workflow that held the deployment; null for a canary no reservation named. */
  readonly workflowId: string | null;
  /** What Temporal says of it: terminated, timed_out, failed, completed, cancelled, not_found, or none. */
  readonly workflowStatus: string;
  /** rolled_back: the challenger left the traffic; released: only the reservation was cleared. */
  readonly action: 'rolled_back' | 'released';
  readonly reason: string;
}

const ROLLOUT_WORKFLOW_TYPE = 'deploymentRollout';

/** Temporal's status of a workflow, lower-cased (`running`, `terminated`, ...), or `not_found`. */
async function workflowStatus(client: Client, workflowId: string): Promise<string> {
  try {
    const description = await client.workflow.getHandle(workflowId).describe();
    // The latest run of the chain: a rollout that continued as new is running.
    return description.status.name.toLowerCase();
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return 'not_found';
    throw error;
  }
}

/**
 * Rolls back every challenger whose rollout workflow no longer runs, and releases reservations of workflows that
 * ended or never started. Idempotent, and safe beside running rollouts: every change is conditional on the same
 * reservation still being held (a rollout that took the deployment meanwhile is left alone).
 */
export async function reconcileRollouts(
  deps: RolloutReconcilerDeps,
  options: ReconcileOptions = {},
): Promise<ReconciledRollout[]> {
  const graceMs = (options.graceSeconds ?? DEFAULT_RECONCILE_GRACE_SECONDS) * 1000;
  const now = Date.now();
  let deployments: DeploymentSummary[];
  if (options.deploymentName !== undefined) {
    const one = await deps.deployments.getDeployment(options.deploymentName);
    deployments = one ? [one] : [];
  } else {
    deployments = await deps.deployments.listDeployments();
  }
  let running: Set<string> | undefined;
  const runningRollouts = async () => {
    if (running) return running;
    running = new Set();
    const query = `WorkflowType = '${ROLLOUT_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'`;
    for await (const execution of deps.client.workflow.list({ query })) running.add(execution.workflowId);
    return running;
  };

  const done: ReconciledRollout[] = [];
  for (const deployment of deployments) {
    const held = reservationOf(deployment.config);
    const challenger = (await deps.deployments.activeRevisions(deployment.name)).find((r) => r.role === 'challenger');
    if (!held && !challenger) continue;
    let status: string;
    if (held) {
      status = await workflowStatus(deps.client, held.workflowId);
      if (status === 'running' || status === 'continued_as_new') continue;
      if (status === 'not_found' && now - Date.parse(held.reservedAt) < graceMs) continue;
    } else {
      // A canary no reservation names (started before reservations, or by an operator): it is kept while a rollout
      // workflow of this deployment runs.
      if (now - challenger!.startedAt.getTime() < graceMs) continue;
      const prefix = `rollout-${deployment.name}-`;
      const ids = await runningRollouts();
      if ([...ids].some((id) => id.startsWith(prefix) && id.length === prefix.length + 36)) continue;
      status = 'none';
    }
    const reason = held
      ? `rolled back by the rollout reconciler: rollout workflow ${held.workflowId} is ${status.replace('_', ' ')}`
      : `rolled back by the rollout reconciler: no rollout workflow runs the canary of version ${challenger!.version}`;
    const result = await deps.deployments.rollbackChallenger({
      deploymentName: deployment.name,
      ...(held ? { rollout: held.workflowId } : { rollout: null, versionId: challenger!.versionId }),
      actor: RECONCILER_ACTOR,
      reason,
    });
    if (!result.changed) continue;
    const rolledBack = challenger !== undefined && !result.active.some((r) => r.role === 'challenger');
    const entry: ReconciledRollout = {
      deployment: deployment.name,
      workflowId: held?.workflowId ?? null,
      workflowStatus: status,
      action: rolledBack ? 'rolled_back' : 'released',
      reason,
    };
    deps.logger?.warn(entry, 'rollout reconciled');
    done.push(entry);
  }
  return done;
}
