/**
 * Activities of deployment rollouts: start a canary or a shadow, compare the challenger with the champion on their
 * live traffic (prediction_logs), promote or roll back. Registry writes are idempotent (a retry after a committed
 * write changes nothing and answers the same), and the comparison only reads.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { FailureType } from '../core/constants.js';
import {
  alignLabels,
  judgeCanary,
  type CanaryMeasurements,
  type CanaryThresholds,
  type CanaryVerdict,
  type VersionTraffic,
} from '../serving/canary-comparison.js';
import { STICKY_KEY_CONFIG, type TrafficChangeResult } from '../storage/deployment-store.js';
import { reconcileRollouts, type ReconciledRollout, type ReconcileOptions } from '../pipelines/rollout-reconciler.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';

export type { CanaryThresholds, CanaryVerdict, CanaryCheck, VersionTraffic } from '../serving/canary-comparison.js';
export type { ReconciledRollout, ReconcileOptions } from '../pipelines/rollout-reconciler.js';

export interface StartCanaryActivityInput {
  readonly deploymentName: string;
  readonly versionId: string;
  readonly trafficPercent: number;
  readonly stickyKey?: string | undefined;
  /** The rollout workflow running the canary: it holds (or takes) the deployment's rollout reservation. */
  readonly rollout?: string | undefined;
  /** Serve the version although it is not blessed or its approval was rejected (the request said so). */
  readonly allowUnblessed?: boolean | undefined;
  readonly actor: string;
  readonly reason: string;
}

/** What a traffic change left serving. */
export interface TrafficState {
  readonly deploymentName: string;
  readonly modelName: string;
  readonly strategy: string;
  readonly changed: boolean;
  /** The active revisions, champion first. */
  readonly active: readonly {
    readonly revisionId: string;
    readonly versionId: string;
    readonly role: string;
    readonly trafficPercent: number;
    readonly startedAt: string;
  }[];
}

export interface StartCanaryResult extends TrafficState {
  readonly championVersionId: string;
  readonly challengerVersionId: string;
  /** The versions' numbers, for the rollout's steps; absent from results recorded before they were added. */
  readonly championVersion?: number;
  readonly challengerVersion?: number;
  readonly trafficPercent: number;
  readonly stickyKey?: string;
  /** When the challenger's revision started: the comparison window's start. */
  readonly since: string;
}

export interface StartShadowActivityInput {
  readonly deploymentName: string;
  readonly versionId: string;
  readonly actor: string;
  readonly reason: string;
}

export interface EndCanaryInput {
  readonly deploymentName: string;
  /** The challenger's version: promotion and rollback touch this canary only. */
  readonly versionId: string;
  /** The rollout workflow: a rollout that no longer holds the deployment changes nothing; the holder releases it. */
  readonly rollout?: string | undefined;
  /** Rollback: only when `rollout` holds the deployment (its canary never started). */
  readonly heldOnly?: boolean | undefined;
  /** Promotion: the canary was allowed to serve an unblessed version. */
  readonly allowUnblessed?: boolean | undefined;
  readonly actor: string;
  readonly reason: string;
}

export interface CompareCanaryInput {
  readonly deploymentName: string;
  readonly championVersionId: string;
  readonly challengerVersionId: string;
  /** ISO time: only predictions logged from then on count (the canary's start). */
  readonly since: string;
  readonly minRequests: number;
  readonly thresholds: CanaryThresholds;
}

export interface CanaryComparison extends CanaryVerdict {
  readonly champion: VersionTraffic;
  readonly challenger: VersionTraffic;
  readonly since: string;
  /** When the comparison read the logs. */
  readonly comparedAt: string;
  readonly labels?: CanaryMeasurements['labels'];
  readonly scores?: CanaryMeasurements['scores'];
}

/** Bins of the score histogram. */
export const SCORE_BINS = 10;

/**
 * The score of a logged prediction: the positive class's probability for a binary classifier, the value for a
 * regressor, else null. `p` is the prediction_logs alias.
 */
const SCORE = `case
  when jsonb_typeof(p.outputs->'probabilities') = 'array' and jsonb_array_length(p.outputs->'probabilities') = 2
    then (p.outputs->'probabilities'->>1)::float8
  when jsonb_typeof(p.outputs->'prediction') = 'number' then (p.outputs->>'prediction')::float8
end`;

/** The rows of the two versions in the window: answered by them through the deployment, shadows excluded. */
const WINDOW = `p.deployment = $1 and p.version_id = any($2::uuid[]) and p.logged_at >= $3::timestamptz
  and p.role in ('champion', 'challenger')`;

const TRAFFIC_SQL = `with requests as (
  select p.version_id, p.request_id, count(*)::int as rows, bool_or(p.error is not null) as failed,
    max(p.latency_ms)::float8 as latency_ms
  from prediction_logs p where ${WINDOW}
  group by p.version_id, p.request_id
)
select version_id::text as version_id, count(*)::int as requests, sum(rows)::int as rows,
  (count(*) filter (where failed))::int as errors,
  percentile_cont(0.5) within group (order by latency_ms) as p50,
  percentile_cont(0.99) within group (order by latency_ms) as p99
from requests group by version_id`;

const LABELS_SQL = `select p.version_id::text as version_id, p.outputs->>'label' as label, count(*)::int as n
from prediction_logs p where ${WINDOW} and p.error is null and p.outputs ? 'label'
group by 1, 2`;

const SCORE_RANGE_SQL = `select min(s.score) as lo, max(s.score) as hi, bool_and(s.probability) as probability
from (select ${SCORE} as score,
  jsonb_typeof(p.outputs->'probabilities') = 'array' as probability
  from prediction_logs p where ${WINDOW} and p.error is null) s
where s.score is not null`;

const SCORE_BINS_SQL = `select s.version_id, least(greatest(width_bucket(s.score, $4::float8, $5::float8, $6::int), 1), $6::int) as bin,
  count(*)::int as n
from (select p.version_id::text as version_id, ${SCORE} as score from prediction_logs p where ${WINDOW} and p.error is null) s
where s.score is not null
group by 1, 2`;

function asNumber(value: unknown): number | null {
  if (value === null || value === undefined) return null;
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

function trafficState(deploymentName: string, result: TrafficChangeResult): TrafficState {
  return {
    deploymentName,
    modelName: result.modelName,
    strategy: result.deployment.strategy,
    changed: result.changed,
    active: result.active.map((r) => ({
      revisionId: r.id,
      versionId: r.versionId,
      role: r.role,
      trafficPercent: r.trafficPercent,
      startedAt: r.startedAt.toISOString(),
    })),
  };
}

export function createDeploymentActivities(deps: ActivityDeps) {
  const { deployments } = deps;

  /** Reads the two versions' traffic, predicted labels and score histogram in the window. */
  async function measure(input: CompareCanaryInput): Promise<CanaryMeasurements> {
    const params = [input.deploymentName, [input.championVersionId, input.challengerVersionId], input.since];
    const traffic = await deps.pgPool.query<{
      version_id: string;
      requests: number;
      rows: number;
      errors: number;
      p50: unknown;
      p99: unknown;
    }>(TRAFFIC_SQL, params);
    const trafficOf = (versionId: string): VersionTraffic => {
      const row = traffic.rows.find((r) => r.version_id === versionId);
      return {
        versionId,
        requests: row?.requests ?? 0,
        rows: row?.rows ?? 0,
        errors: row?.errors ?? 0,
        latencyP50Ms: asNumber(row?.p50),
        latencyP99Ms: asNumber(row?.p99),
      };
    };

    const labelRows = await deps.pgPool.query<{ version_id: string; label: string; n: number }>(LABELS_SQL, params);
    const countsOf = (versionId: string) =>
      Object.fromEntries(labelRows.rows.filter((r) => r.version_id === versionId).map((r) => [r.label, r.n]));
    const labels =
      labelRows.rows.length > 0
        ? alignLabels(countsOf(input.championVersionId), countsOf(input.challengerVersionId))
        : undefined;

    let scores: CanaryMeasurements['scores'];
    const range = (
      await deps.pgPool.query<{ lo: unknown; hi: unknown; probability: boolean | null }>(SCORE_RANGE_SQL, params)
    ).rows[0];
    let lo = asNumber(range?.lo);
    let hi = asNumber(range?.hi);
    if (range?.probability) {
      lo = 0;
      hi = 1;
    }
    if (lo !== null && hi !== null) {
      if (!(hi > lo)) hi = lo + 1; // One value only: every score lands in the first bin.
      const bins = await deps.pgPool.query<{ version_id: string; bin: number; n: number }>(SCORE_BINS_SQL, [
        ...params,
        lo,
        hi,
        SCORE_BINS,
      ]);
      const histogram = (versionId: string) => {
        const counts = new Array<number>(SCORE_BINS).fill(0);
        for (const r of bins.rows) if (r.version_id === versionId) counts[r.bin - 1] = r.n;
        return counts;
      };
      scores = {
        edges: Array.from({ length: SCORE_BINS + 1 }, (_, i) => lo! + ((hi! - lo!) * i) / SCORE_BINS),
        champion: histogram(input.championVersionId),
        challenger: histogram(input.challengerVersionId),
      };
    }
    return {
      champion: trafficOf(input.championVersionId),
      challenger: trafficOf(input.challengerVersionId),
      ...(labels ? { labels } : {}),
      ...(scores ? { scores } : {}),
    };
  }

  return {
    /** Starts (or, retried, finds) the canary; its result names the champion and the comparison window's start. */
    async startCanary(input: StartCanaryActivityInput): Promise<StartCanaryResult> {
      const result = await deployments.startCanary(input);
      const champion = result.active.find((r) => r.role === 'champion');
      const challenger = result.active.find((r) => r.role === 'challenger' && r.versionId === input.versionId);
      if (!champion || !challenger) {
        throw ApplicationFailure.create({
          type: FailureType.InvalidInput,
          message: `deployment ${input.deploymentName} has no canary of version id ${input.versionId} after starting it`,
          nonRetryable: true,
        });
      }
      const stickyKey = result.deployment.config[STICKY_KEY_CONFIG];
      const [championVersion, challengerVersion] = await Promise.all(
        [champion.versionId, challenger.versionId].map(async (id) => (await deps.registry.getVersionById(id))?.version),
      );
      activityLogger(deps.logger).info(
        { deployment: input.deploymentName, versionId: input.versionId, trafficPercent: input.trafficPercent },
        result.changed ? 'canary started' : 'canary already running',
      );
      return {
        ...trafficState(input.deploymentName, result),
        championVersionId: champion.versionId,
        challengerVersionId: challenger.versionId,
        ...(championVersion !== undefined ? { championVersion } : {}),
        ...(challengerVersion !== undefined ? { challengerVersion } : {}),
        trafficPercent: challenger.trafficPercent,
        ...(typeof stickyKey === 'string' ? { stickyKey } : {}),
        since: challenger.startedAt.toISOString(),
      };
    },

    async startShadow(input: StartShadowActivityInput): Promise<TrafficState> {
      return trafficState(input.deploymentName, await deployments.startShadow(input));
    },

    /** Measures both versions' live traffic since the canary started, and judges it against the thresholds. */
    async compareCanary(input: CompareCanaryInput): Promise<CanaryComparison> {
      const measured = await measure(input);
      const verdict = judgeCanary(measured, input.thresholds, input.minRequests);
      activityLogger(deps.logger).info(
        {
          deployment: input.deploymentName,
          verdict: verdict.verdict,
          championRequests: measured.champion.requests,
          challengerRequests: measured.challenger.requests,
        },
        `canary compared: ${verdict.summary}`,
      );
      return { ...measured, ...verdict, since: input.since, comparedAt: new Date().toISOString() };
    },

    /** The challenger becomes the champion; a retry after the promotion committed changes nothing. */
    async promoteCanary(input: EndCanaryInput): Promise<TrafficState> {
      return trafficState(input.deploymentName, await deployments.promoteChallenger(input));
    },

    /** The champion takes all of the traffic back; nothing to do when this canary no longer runs. */
    async rollbackCanary(input: EndCanaryInput): Promise<TrafficState> {
      return trafficState(input.deploymentName, await deployments.rollbackChallenger(input));
    },

    /**
     * Rolls back every challenger whose rollout workflow no longer runs, and releases stale rollout reservations
     * (pipelines/rollout-reconciler.ts); asks Temporal through the worker's own client. Idempotent.
     */
    async reconcileRollouts(input: ReconcileOptions = {}): Promise<ReconciledRollout[]> {
      return reconcileRollouts({ client: Context.current().client, deployments, logger: deps.logger }, input);
    },
  };
}

export type DeploymentActivities = ReturnType<typeof createDeploymentActivities>;
