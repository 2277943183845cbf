/**
 * Starting and reading deployment rollouts from outside a workflow (the HTTP API, tests): a canary runs as a
 * `deploymentRollout` workflow whose id is derived from the deployment and a rollout id.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { SearchAttributeKeys } from '../core/constants.js';
import {
  deploymentRollout,
  rolloutStateQuery,
  type DeploymentRolloutInput,
  type DeploymentRolloutResult,
  type RolloutState,
} from '../workflows/index.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import type { DeploymentStore } from '../storage/deployment-store.js';
import type { Page } from '../storage/page.js';
import { reconcileRollouts } from './rollout-reconciler.js';

export interface RolloutRunnerDeps {
  readonly client: Client;
  /** The main task queue, where the rollout workflow and its activities run. */
  readonly taskQueue: string;
}

const ROLLOUT_WORKFLOW_TYPE = 'deploymentRollout';

/** How long a read waits for a rollout's state query (a worker must answer it). */
const ROLLOUT_QUERY_TIMEOUT_MS = 2_000;

/** A rollout id: what follows the deployment's prefix in its workflow id. */
const UUID_SUFFIX = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The workflow id of a rollout: one per deployment and rollout id. */
function rolloutWorkflowId(deploymentName: string, rolloutId: string): string {
  return `rollout-${deploymentName}-${rolloutId}`;
}

/** The rollout id in a rollout workflow's id of the deployment, or undefined when it is no such id. */
export function rolloutIdOf(deploymentName: string, workflowId: string): string | undefined {
  const prefix = rolloutWorkflowId(deploymentName, '');
  const id = workflowId.slice(prefix.length);
  return workflowId.startsWith(prefix) && UUID_SUFFIX.test(id) ? id : undefined;
}

export interface StartedRollout {
  readonly rolloutId: string;
  readonly workflowId: string;
}

/** Starts a canary rollout workflow; `modelName` is its search attribute. */
export async function startDeploymentRollout(
  deps: RolloutRunnerDeps,
  input: DeploymentRolloutInput,
  modelName: string,
  rolloutId: string = randomUUID(),
): Promise<StartedRollout> {
  const workflowId = rolloutWorkflowId(input.deploymentName, rolloutId);
  await deps.client.workflow.start(deploymentRollout, {
    workflowId,
    taskQueue: deps.taskQueue,
    args: [input],
    typedSearchAttributes: [
      { key: SearchAttributeKeys.model, value: modelName },
      { key: SearchAttributeKeys.stage, value: 'starting' },
    ],
    staticSummary: `canary of ${modelName} on ${input.deploymentName}: ${input.trafficPercent}% for ${input.durationSeconds}s`,
  });
  return { rolloutId, workflowId };
}

/**
 * Starts a canary the way the API does, one rollout per deployment at a time: first rolls back this deployment's
 * canary if its rollout workflow no longer runs (the reconciler, for this deployment), then reserves the deployment
 * for the new rollout in one locked transaction (of two concurrent requests, exactly one gets it), then starts the
 * workflow; if the start fails, the reservation is released.
 *
 * @throws RegistryConflictError (409) when another rollout holds the deployment, a canary runs, the version is the
 *   champion or not fit to serve (unless `input.allowUnblessed`); RegistryNotFoundError (404) for an unknown
 *   deployment or version.
 */
export async function requestCanaryRollout(
  deps: RolloutRunnerDeps & { readonly deployments: DeploymentStore },
  input: DeploymentRolloutInput,
  modelName: string,
): Promise<StartedRollout> {
  const rolloutId = randomUUID();
  const workflowId = rolloutWorkflowId(input.deploymentName, rolloutId);
  await reconcileRollouts(deps, { deploymentName: input.deploymentName });
  await deps.deployments.reserveRollout({
    deploymentName: input.deploymentName,
    workflowId,
    versionId: input.versionId,
    ...(input.allowUnblessed ? { allowUnblessed: true } : {}),
  });
  try {
    return await startDeploymentRollout(deps, input, modelName, rolloutId);
  } catch (error) {
    await deps.deployments.releaseRollout(input.deploymentName, workflowId).catch(() => undefined);
    throw error;
  }
}

export type RolloutStatus = 'running' | 'completed' | 'failed' | 'cancelled' | 'terminated' | 'timed_out' | 'unknown';

export interface RolloutView {
  readonly rolloutId: string;
  readonly workflowId: string;
  readonly status: RolloutStatus;
  /** The workflow's state (its result once completed); absent when it could not be read. */
  readonly state?: RolloutState | DeploymentRolloutResult;
  /** Why it failed, when it did. */
  readonly failure?: string;
}

const STATUSES: Record<string, RolloutStatus> = {
  RUNNING: 'running',
  COMPLETED: 'completed',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  TERMINATED: 'terminated',
  TIMED_OUT: 'timed_out',
  CONTINUED_AS_NEW: 'running',
};

/** Thrown when a rollout cannot be cancelled because it has already ended. */
export class RolloutStateError extends DomainError {
  override readonly name = 'RolloutStateError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('conflict', message, options);
  }
}

/**
 * Asks a running rollout to stop: its workflow takes the challenger out of traffic (the champion serves 100 % again)
 * and records the step, then ends as cancelled. Returns the rollout as it is when the request is made (still
 * running; read it again to see the rollback), or undefined when there is no such rollout.
 *
 * @throws RolloutStateError when the rollout has already ended (promoted, rolled back, failed or cancelled).
 */
export async function cancelDeploymentRollout(
  deps: RolloutRunnerDeps,
  deploymentName: string,
  rolloutId: string,
): Promise<RolloutView | undefined> {
  const view = await getDeploymentRollout(deps, deploymentName, rolloutId);
  if (!view) return undefined;
  if (view.status !== 'running') {
    throw new RolloutStateError(
      `rollout ${rolloutId} of deployment ${deploymentName} has already ended (${view.status})`,
    );
  }
  await deps.client.workflow.getHandle(view.workflowId).cancel();
  return view;
}

/** The rollout's status and state, or undefined when there is no such rollout. */
export async function getDeploymentRollout(
  deps: RolloutRunnerDeps,
  deploymentName: string,
  rolloutId: string,
): Promise<RolloutView | undefined> {
  const workflowId = rolloutWorkflowId(deploymentName, rolloutId);
  let description;
  try {
    description = await deps.client.workflow.getHandle(workflowId).describe();
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
  if (description.type !== ROLLOUT_WORKFLOW_TYPE) return undefined;
  return readRollout(deps, rolloutId, workflowId, description.status.name);
}

/**
 * The status of the rollout workflow `workflowId` (one describe call, no query: cheap enough to show beside a
 * deployment), or `unknown` when Temporal has no such workflow.
 */
export async function rolloutWorkflowStatus(deps: RolloutRunnerDeps, workflowId: string): Promise<RolloutStatus> {
  try {
    const description = await deps.client.workflow.getHandle(workflowId).describe();
    return STATUSES[description.status.name] ?? 'unknown';
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return 'unknown';
    throw error;
  }
}

/** A rollout of a deployment's list: its view, and when its workflow started and (the latest run) closed. */
export interface ListedRollout extends RolloutView {
  readonly startedAt: Date;
  readonly closedAt: Date | null;
}

/**
 * A page of the deployment's rollouts, newest first: the running one (at most one holds a deployment), then the
 * others by when they ended, as Temporal's visibility orders them. A rollout that continued as new is listed once,
 * with its latest run. Reads only; each rollout's state is read as {@link getDeploymentRollout} reads it.
 */
export async function listDeploymentRollouts(
  deps: RolloutRunnerDeps,
  deploymentName: string,
  page: Page,
): Promise<ListedRollout[]> {
  const prefix = rolloutWorkflowId(deploymentName, '');
  // Deployment names have no quotes (NAME_PATTERN), so the prefix cannot break out of the string literal.
  const query = `WorkflowType = '${ROLLOUT_WORKFLOW_TYPE}' AND WorkflowId STARTS_WITH '${prefix}'`;
  const seen = new Set<string>();
  const found: { rolloutId: string; workflowId: string; status: string; startedAt: Date; closedAt: Date | null }[] = [];
  for await (const execution of deps.client.workflow.list({
    query,
    pageSize: Math.min(100, page.offset + page.limit),
  })) {
    // `rollout-a-` also prefixes the rollouts of a deployment named `a-b`: only a UUID after it is one of `a`'s.
    const rolloutId = rolloutIdOf(deploymentName, execution.workflowId);
    if (rolloutId === undefined || seen.has(execution.workflowId)) continue;
    seen.add(execution.workflowId);
    if (seen.size <= page.offset) continue;
    found.push({
      rolloutId,
      workflowId: execution.workflowId,
      status: execution.status.name,
      startedAt: execution.startTime,
      closedAt: execution.closeTime ?? null,
    });
    if (found.length >= page.limit) break;
  }
  return Promise.all(
    found.map(async (f) => ({
      ...(await readRollout(deps, f.rolloutId, f.workflowId, f.status)),
      startedAt: f.startedAt,
      closedAt: f.closedAt,
    })),
  );
}

/** The rollout's state: its result once completed, else what its query answers, and why it failed. */
async function readRollout(
  deps: RolloutRunnerDeps,
  rolloutId: string,
  workflowId: string,
  statusName: string,
): Promise<RolloutView> {
  const handle = deps.client.workflow.getHandle(workflowId);
  const status = STATUSES[statusName] ?? 'unknown';
  const base = { rolloutId, workflowId, status };
  if (status === 'completed') {
    return { ...base, state: (await handle.result()) as DeploymentRolloutResult };
  }
  // Running, or ended without a result: the query still answers (a worker replays the closed history). Without a
  // worker it would wait for one; bounded, the rollout is answered without its state instead.
  let state: RolloutState | undefined;
  try {
    state = await deps.client.withDeadline(Date.now() + ROLLOUT_QUERY_TIMEOUT_MS, () =>
      handle.query(rolloutStateQuery),
    );
  } catch {
    state = undefined;
  }
  let failure: string | undefined;
  if (status === 'failed' || status === 'timed_out' || status === 'terminated') {
    failure = await handle.result().then(
      () => undefined,
      (error: unknown) =>
        error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error),
    );
  }
  return { ...base, ...(state ? { state } : {}), ...(failure ? { failure } : {}) };
}
