import { FINAL_FAILURE_TYPES } from '../core/stages.js';
import {
  ApplicationFailure,
  CancellationScope,
  ContinueAsNew,
  continueAsNew,
  defineQuery,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type {
  CanaryComparison,
  CanaryThresholds,
  MainActivities,
  StartCanaryResult,
  TrafficState,
} from '../activities/index.js';
import { FailureType, SearchAttributeKeys } from '../core/constants.js';
import { rootCause } from '../core/failure.js';

export interface DeploymentRolloutInput {
  readonly deploymentName: string;
  /** The challenger: a blessed version of the deployment's model. */
  readonly versionId: string;
  readonly strategy: 'canary';
  /** The challenger's share of the traffic during the canary, 1 to 99. */
  readonly trafficPercent: number;
  /** An instance field that makes routing sticky (one key, one version). */
  readonly stickyKey?: string;
  /** How long the canary runs before the final comparison. */
  readonly durationSeconds: number;
  /** Compare this often during the canary and roll back at once when the challenger fails; default: only at the end. */
  readonly checkEverySeconds?: number;
  /** Requests each version must have answered for a verdict; fewer at the end rolls back. */
  readonly minRequests: number;
  readonly thresholds: CanaryThresholds;
  /** Who asked for the rollout (recorded in the canary's revisions); default the workflow. */
  readonly requestedBy?: string;
  /** Why (recorded in the canary's revisions). */
  readonly reason?: string;
  /** Canary a version that is not blessed, or whose approval was rejected (the request said so explicitly). */
  readonly allowUnblessed?: boolean;
  /** Checks per run before the rollout continues as new; default {@link CHECKS_PER_RUN}. */
  readonly checksPerRun?: number;
  /** Set by the rollout itself when it continues as new: where the canary stands. */
  readonly resume?: RolloutResume;
}

/** What a rollout carries into its next run when it continues as new. */
export interface RolloutResume {
  readonly state: RolloutState;
  readonly started: StartCanaryResult;
  /** Epoch ms at which the canary is judged. */
  readonly judgeAt: number;
}

/** Checks in one run before the rollout continues as new (sooner when Temporal suggests it). */
const CHECKS_PER_RUN = 500;

/** Periodic checks kept in the state (older ones are counted in `checksDropped`), so it stays small. */
const KEPT_CHECKS = 20;

export type RolloutPhase =
  'starting' | 'canary' | 'promoting' | 'rolling_back' | 'promoted' | 'rolled_back' | 'failed' | 'cancelled';

export type RolloutOutcome = 'promoted' | 'rolled_back';

/** One recorded step of a rollout. */
export interface RolloutStep {
  readonly step: 'canary_started' | 'checked' | 'compared' | 'promoted' | 'rolled_back' | 'failed' | 'cancelled';
  readonly at: string;
  readonly detail: string;
  readonly comparison?: CanaryComparison;
  /** What serves after a traffic change. */
  readonly traffic?: TrafficState;
}

export interface RolloutState {
  readonly deploymentName: string;
  readonly versionId: string;
  readonly trafficPercent: number;
  readonly durationSeconds: number;
  phase: RolloutPhase;
  modelName?: string;
  championVersionId?: string;
  /** The challenger's and champion's version numbers, once the canary started (absent in older rollouts). */
  version?: number;
  championVersion?: number;
  /** When the canary started (the comparison window's start) and when it is due to be judged. */
  canaryStartedAt?: string;
  judgeAt?: string;
  outcome?: RolloutOutcome;
  /** Why it ended the way it did. */
  reason?: string;
  lastComparison?: CanaryComparison;
  /** Periodic checks no longer in `steps` (only the latest {@link KEPT_CHECKS} are kept). */
  checksDropped?: number;
  /** How many times the rollout continued as new. */
  continuedAsNew?: number;
  readonly steps: RolloutStep[];
}

export type DeploymentRolloutResult = RolloutState & { outcome: RolloutOutcome; reason: string };

export const rolloutStateQuery = defineQuery<RolloutState>('rolloutState');

/**
 * A canary rollout of one version on a deployment: start the canary (the challenger gets `trafficPercent` % of the
 * requests) → wait `durationSeconds` on Temporal timers, comparing every `checkEverySeconds` and rolling back at
 * once when the challenger already fails → compare the challenger with the champion on their live error rate, p99
 * latency and prediction distribution → promote it when it passes, roll it back when it fails or had too little
 * traffic to judge. Every step is recorded (the result and the `rolloutState` query); the revisions record each
 * change of traffic with its reason. Cancelled, or failing after the canary started, it rolls back first.
 *
 * The rollout holds the deployment's rollout reservation (taken by the API, or by its own startCanary): promotion and
 * rollback release it, and act only while this rollout holds it. After {@link CHECKS_PER_RUN} checks, or when Temporal
 * suggests it, the rollout continues as new with its state (`resume`), so a long canary's history stays bounded. A
 * rollout that ends without its own rollback (terminated, timed out) is rolled back by the reconciler.
 */
export async function deploymentRollout(input: DeploymentRolloutInput): Promise<DeploymentRolloutResult> {
  const { workflowId } = workflowInfo();
  const actor = `workflow:${workflowId}`;
  const resume = input.resume;
  const state: RolloutState = resume
    ? { ...resume.state, steps: [...resume.state.steps] }
    : {
        deploymentName: input.deploymentName,
        versionId: input.versionId,
        trafficPercent: input.trafficPercent,
        durationSeconds: input.durationSeconds,
        phase: 'starting',
        steps: [],
      };
  setHandler(rolloutStateQuery, () => state);
  const record = (step: Omit<RolloutStep, 'at'>) => {
    state.steps.push({ ...step, at: new Date().toISOString() });
    if (step.step !== 'checked') return;
    const checks = state.steps.filter((s) => s.step === 'checked');
    if (checks.length > KEPT_CHECKS) {
      state.steps.splice(state.steps.indexOf(checks[0]!), 1);
      state.checksDropped = (state.checksDropped ?? 0) + 1;
    }
  };
  const stage = (phase: RolloutPhase) => {
    state.phase = phase;
    upsertSearchAttributes([{ key: SearchAttributeKeys.stage, value: phase }]);
  };

  if (input.strategy !== 'canary') {
    throw ApplicationFailure.create({
      type: FailureType.InvalidInput,
      message: `a rollout workflow runs canaries only, not ${String(input.strategy)}`,
      nonRetryable: true,
    });
  }
  const activities = proxyActivities<MainActivities>({
    startToCloseTimeout: '1 minute',
    retry: {
      initialInterval: '1s',
      maximumInterval: '30s',
      maximumAttempts: 20,
      nonRetryableErrorTypes: [...FINAL_FAILURE_TYPES],
    },
  });
  const overrideAllowed = input.allowUnblessed ? { allowUnblessed: true } : {};
  const endCanary = { deploymentName: input.deploymentName, versionId: input.versionId, rollout: workflowId, actor };
  let started: StartCanaryResult;
  if (resume) {
    started = resume.started;
  } else {
    stage('starting');
    try {
      started = await activities.startCanary({
        deploymentName: input.deploymentName,
        versionId: input.versionId,
        trafficPercent: input.trafficPercent,
        ...(input.stickyKey ? { stickyKey: input.stickyKey } : {}),
        rollout: workflowId,
        ...overrideAllowed,
        actor: input.requestedBy ?? actor,
        reason:
          input.reason ??
          `canary rollout ${workflowId}: ${input.trafficPercent}% of the traffic for ${input.durationSeconds}s`,
      });
    } catch (error) {
      // The canary may have started before the failure reached us: end it and release the reservation, but only
      // while this rollout holds the deployment (another rollout's canary is not ours to end).
      if (patched('rollout-release-on-start-failure')) {
        await CancellationScope.nonCancellable(async () => {
          const cancelled = isCancellation(error);
          const why = cancelled ? 'the rollout was cancelled' : `the rollout failed: ${describeError(error)}`;
          const traffic = await activities.rollbackCanary({
            ...endCanary,
            heldOnly: true,
            reason: `rolled back because ${why} (rollout ${workflowId})`,
          });
          record({ step: cancelled ? 'cancelled' : 'failed', detail: why, traffic });
          stage(cancelled ? 'cancelled' : 'failed');
        });
      }
      throw error;
    }
    state.modelName = started.modelName;
    state.championVersionId = started.championVersionId;
    if (started.challengerVersion !== undefined) state.version = started.challengerVersion;
    if (started.championVersion !== undefined) state.championVersion = started.championVersion;
    state.canaryStartedAt = started.since;
    upsertSearchAttributes([{ key: SearchAttributeKeys.model, value: started.modelName }]);
    stage('canary');
    record({
      step: 'canary_started',
      detail: `challenger ${versionLabel(started.challengerVersion, input.versionId)} serves ${started.trafficPercent}% beside champion ${versionLabel(started.championVersion, started.championVersionId)}${started.stickyKey ? ` (sticky by ${started.stickyKey})` : ''}`,
      traffic: stateOf(started),
    });
  }

  const compare = () =>
    activities.compareCanary({
      deploymentName: input.deploymentName,
      championVersionId: started.championVersionId,
      challengerVersionId: input.versionId,
      since: started.since,
      minRequests: input.minRequests,
      thresholds: input.thresholds,
    });
  const rollBack = async (reason: string): Promise<void> => {
    stage('rolling_back');
    const traffic = await activities.rollbackCanary({ ...endCanary, reason });
    state.outcome = 'rolled_back';
    state.reason = reason;
    record({ step: 'rolled_back', detail: reason, traffic });
    stage('rolled_back');
  };

  try {
    const durationMs = Math.max(0, input.durationSeconds * 1000);
    const stepMs = input.checkEverySeconds && input.checkEverySeconds > 0 ? input.checkEverySeconds * 1000 : durationMs;
    const startedAt = Date.now();
    const judgeAt = resume?.judgeAt ?? startedAt + durationMs;
    state.judgeAt = new Date(judgeAt).toISOString();
    let verdict: CanaryComparison | undefined;
    let checks = 0;
    for (let now = startedAt; now < judgeAt; now = Date.now()) {
      await sleep(Math.min(stepMs, judgeAt - now));
      if (Date.now() >= judgeAt) break;
      const check = await compare();
      state.lastComparison = check;
      record({ step: 'checked', detail: check.summary, comparison: check });
      if (check.verdict === 'fail') {
        verdict = check;
        break;
      }
      checks++;
      if (
        (checks >= (input.checksPerRun ?? CHECKS_PER_RUN) || workflowInfo().continueAsNewSuggested) &&
        Date.now() < judgeAt &&
        patched('rollout-continue-as-new')
      ) {
        state.continuedAsNew = (state.continuedAsNew ?? 0) + 1;
        const next: DeploymentRolloutInput = { ...input, resume: { state, started, judgeAt } };
        await continueAsNew<typeof deploymentRollout>(next);
      }
    }
    verdict ??= await compare();
    state.lastComparison = verdict;
    record({ step: 'compared', detail: verdict.summary, comparison: verdict });

    if (verdict.verdict === 'pass') {
      stage('promoting');
      const reason = `canary passed, promoted by rollout ${workflowId}: ${verdict.summary}`;
      const traffic = await activities.promoteCanary({ ...endCanary, ...overrideAllowed, reason });
      state.outcome = 'promoted';
      state.reason = reason;
      record({ step: 'promoted', detail: reason, traffic });
      stage('promoted');
    } else {
      const early = state.steps.some((s) => s.step === 'checked' && s.comparison === verdict);
      await rollBack(
        `canary ${verdict.verdict === 'fail' ? 'failed' : 'had too little traffic'}${early ? ' (early check)' : ''}, rolled back by rollout ${workflowId}: ${verdict.summary}`,
      );
    }
    return { ...state, outcome: state.outcome!, reason: state.reason! };
  } catch (error) {
    if (error instanceof ContinueAsNew) throw error;
    const cancelled = isCancellation(error);
    const why = cancelled ? 'the rollout was cancelled' : `the rollout failed: ${describeError(error)}`;
    // Whatever happened, the challenger must not keep serving unattended.
    await CancellationScope.nonCancellable(async () => {
      if (state.outcome !== 'promoted') await rollBack(`rolled back because ${why} (rollout ${workflowId})`);
      record({ step: cancelled ? 'cancelled' : 'failed', detail: why });
      stage(cancelled ? 'cancelled' : 'failed');
    });
    throw error;
  }
}

function stateOf(started: StartCanaryResult): TrafficState {
  return {
    deploymentName: started.deploymentName,
    modelName: started.modelName,
    strategy: started.strategy,
    changed: started.changed,
    active: started.active,
  };
}

/** `v3 (<uuid>)`: the number people know the version by, beside the id; the id alone when the number is unknown. */
function versionLabel(version: number | undefined, versionId: string): string {
  return version === undefined ? versionId : `v${version} (${versionId})`;
}

function describeError(error: unknown): string {
  const cause = rootCause(error);
  if (cause instanceof TimeoutFailure) return 'an activity timed out';
  return cause instanceof Error ? cause.message : String(cause);
}
