import { proxyActivities } from '@temporalio/workflow';
import type { MainActivities, ReconciledRollout, ReconcileOptions } from '../activities/index.js';

/** The schedule that runs {@link reconcileDeploymentRollouts}, and the id prefix of its workflows. */
export const ROLLOUT_RECONCILER_SCHEDULE_ID = 'reconcile-deployment-rollouts';

/**
 * One pass of the rollout reconciler: rolls back every challenger whose rollout workflow no longer runs (terminated,
 * timed out, failed without its rollback) and releases stale rollout reservations, each with a revision naming the
 * reason (pipelines/rollout-reconciler.ts). Started by a schedule every minute or so; safe to run at any time, and
 * concurrently with rollouts.
 */
export async function reconcileDeploymentRollouts(input: ReconcileOptions = {}): Promise<ReconciledRollout[]> {
  const { reconcileRollouts } = proxyActivities<MainActivities>({
    startToCloseTimeout: '2 minutes',
    retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 5 },
  });
  return reconcileRollouts(input);
}
