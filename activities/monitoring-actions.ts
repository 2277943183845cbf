/**
 * What a breached monitoring window does, per the definition's `monitoring` section: alert (a signed webhook,
 * retried by Temporal, every attempt recorded), retrain (through the trigger path, one run per window and none for a
 * window ending within the cooldown of the one that started the last) and roll back (the previous champion serves
 * again, as a revision whose reason names the window, unless the champion changed since the window). Each writes its window's action row once (unique window + kind), so a retried activity or a
 * recomputed window finds what the first one did instead of acting twice.
 */
import dns from 'node:dns/promises';
import { ApplicationFailure, Context } from '@temporalio/activity';
import {
  alertBodyOf,
  AlertTargetRefusedError,
  alertTargetRefusal,
  postAlert,
  SIGNATURE_HEADER,
  signAlertBody,
  type HostLookup,
} from '../monitoring/alert-webhook.js';
import {
  describeBreaches,
  rollbackCause,
  rollbackReasonPrefix,
  type MonitoringPolicy,
  type RollbackPolicy,
} from '../monitoring/action-policy.js';
import type { WindowSummary } from '../monitoring/types.js';
import { pipelineDefinitionSchema } from '../pipelines/definition.js';
import { fireTrigger } from '../pipelines/triggers.js';
import type { JsonProperties } from '../schema/columns.js';
import type { MonitoringAction, MonitoringActionKind } from '../schema/index.js';
import { ChampionChangedError, RolloutRunningError } from '../storage/deployment-store.js';
import { rollbackTarget } from '../storage/deployment-history.js';
import { MonitoringActionStore, type MonitoringActionStatus } from '../storage/monitoring-action-store.js';
import { RegistryConflictError, RegistryNotFoundError } from '../storage/registry-common.js';
import { TriggerStore } from '../storage/trigger-store.js';
import { activityLogger } from './activity-logger.js';
import { runnerOf, type ActivityDeps } from './deps.js';

/** The failure type of an alert delivery that did not get a 2xx answer: retried by the activity's retry policy. */
export const ALERT_DELIVERY_FAILED = 'AlertDeliveryFailed';

/** How long one alert delivery may take, connection included. */
export const ALERT_TIMEOUT_MS = 10_000;

/** Which pipeline a deployment's monitoring belongs to, and what its newest definition asks for. */
export interface MonitoringPolicyResult {
  readonly deployment: string;
  /** The pipeline that trained the serving champion; absent when it was deployed from outside a pipeline. */
  readonly pipeline?: string;
  /** The newest definition's `monitoring` section; absent when it has none. */
  readonly monitoring?: MonitoringPolicy;
}

/** One action's outcome, as its row says (the first row, when the action had already been taken). */
export interface MonitoringActionOutcome {
  readonly kind: MonitoringActionKind;
  readonly status: MonitoringActionStatus;
  readonly reason: string;
  readonly details?: Record<string, unknown>;
}

export interface DeliverAlertInput {
  readonly summary: WindowSummary;
  readonly alert: NonNullable<MonitoringPolicy['alert']>;
}

export interface RetrainInput {
  readonly summary: WindowSummary;
  readonly pipeline: string;
  /** No run for a window ending within this many seconds of the end of the window that started the last one. */
  readonly cooldownSeconds: number;
}

export interface RollbackInput {
  readonly summary: WindowSummary;
  readonly rollback: RollbackPolicy;
}

export interface MonitoringActionOptions {
  /**
   * Resolves alert hosts, to refuse those that resolve to link-local addresses; the delivery connects to the
   * addresses it answered. Default: the system resolver.
   */
  readonly lookup?: HostLookup;
}

const systemLookup: HostLookup = (host) => dns.lookup(host, { all: true });

function outcomeOf(row: MonitoringAction): MonitoringActionOutcome {
  return {
    kind: row.kind,
    status: row.status as MonitoringActionStatus,
    reason: row.reason,
    ...(row.details ? { details: row.details } : {}),
  };
}

// Chosen as the API's rollback chooses (POST /v1/deployments/{name}/rollback), so neither undoes the other's.
export { rollbackTarget };

/** The monitor workflow's actions; served by the main task queue. */
export function createMonitoringActionActivities(deps: ActivityDeps, options: MonitoringActionOptions = {}) {
  const actions = MonitoringActionStore.over(deps.pgPool);
  const triggers = TriggerStore.over(deps.pgPool);
  const lookup = options.lookup ?? systemLookup;

  return {
    /**
     * The monitoring policy of a deployment: the pipeline that trained its champion (the model version's source run)
     * and that pipeline's newest definition's `monitoring` section. Reads only.
     *
     * @throws RegistryNotFoundError when the deployment does not exist or serves no champion.
     */
    async loadMonitoringPolicy(input: { deployment: string }): Promise<MonitoringPolicyResult> {
      const [champion] = (await deps.deployments.activeRevisions(input.deployment)).filter(
        (r) => r.role === 'champion',
      );
      if (!champion) throw new RegistryNotFoundError(`deployment ${input.deployment} does not exist or serves nothing`);
      const version = await deps.registry.getVersionById(champion.versionId);
      const run = version?.sourceRunId ? await deps.pipelines.getRun(version.sourceRunId) : undefined;
      if (!run) return { deployment: input.deployment };
      const newest = await deps.pipelines.getVersion(run.pipelineName);
      const monitoring = newest ? pipelineDefinitionSchema.parse(newest.definition).monitoring : undefined;
      return { deployment: input.deployment, pipeline: run.pipelineName, ...(monitoring ? { monitoring } : {}) };
    },

    /**
     * POSTs the window's alert to the definition's URL, signed when it names a secret. Each attempt is recorded in
     * alert_deliveries; an answer other than 2xx (or none within {@link ALERT_TIMEOUT_MS}) fails the attempt with a
     * retryable {@link ALERT_DELIVERY_FAILED}, so Temporal retries it with backoff. The action row is `pending` while
     * attempts go on, `done` once delivered (a retry or a recomputed window then sends nothing), and `failed` after
     * the last attempt the retry policy allows. A refused target (link-local, metadata service; checked on the
     * addresses the request connects to) or a secret variable missing from the worker's environment is recorded as
     * failed, not retried: no retry changes either.
     */
    async deliverMonitoringAlert(input: DeliverAlertInput): Promise<MonitoringActionOutcome> {
      const { summary, alert } = input;
      const { attempt, retryPolicy } = Context.current().info;
      const { action } = await actions.record({
        windowId: summary.windowId,
        deployment: summary.deployment,
        kind: 'alert',
        status: 'pending',
        reason: 'being delivered',
        details: { url: alert.url },
      });
      // Done (or skipped): nothing to send. Pending or failed: an earlier attempt or window did not deliver it.
      if (action.status !== 'pending' && action.status !== 'failed') return outcomeOf(action);
      const fail = async (reason: string) =>
        outcomeOf((await actions.update(action.id, { status: 'failed', reason })) ?? action);

      const refusal = await alertTargetRefusal(alert.url, lookup);
      if (refusal) return fail(`alert URL refused: ${refusal}`);
      const secret = alert.secretEnv ? process.env[alert.secretEnv] : undefined;
      if (alert.secretEnv && !secret) {
        return fail(`the worker has no ${alert.secretEnv} set: an alert is never sent unsigned when a secret is named`);
      }
      const body = JSON.stringify(alertBodyOf(summary));
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'temporal-mlops' };
      if (secret) headers[SIGNATURE_HEADER] = signAlertBody(body, secret);

      const started = performance.now();
      let status: number | undefined;
      let error: string | undefined;
      let refused: string | undefined;
      try {
        // Redirects are not followed: a 3xx is a failed delivery, never a hop to an address nobody checked. The
        // host is resolved once, when connecting, and every address it answers is checked then (DNS rebinding).
        ({ status } = await postAlert(alert.url, { headers, body, timeoutMs: ALERT_TIMEOUT_MS, lookup }));
        if (status < 200 || status > 299) error = `HTTP ${status}`;
      } catch (e) {
        if (e instanceof AlertTargetRefusedError) refused = e.message;
        error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      }
      const durationMs = performance.now() - started;
      await actions.recordDelivery({
        actionId: action.id,
        url: alert.url,
        attempt,
        ...(status !== undefined ? { status } : {}),
        ...(error ? { error } : {}),
        durationMs,
      });
      const log = activityLogger(deps.logger);
      if (refused) return fail(`alert URL refused: ${refused}`);
      if (error) {
        // The last attempt the retry policy allows leaves the alert failed; until then it is still pending.
        const max = retryPolicy?.maximumAttempts;
        const last = max !== undefined && max > 0 && attempt >= max;
        await actions.update(action.id, {
          status: last ? 'failed' : 'pending',
          reason: `attempt ${attempt}: ${error}${last ? '' : '; retried'}`,
        });
        log.warn({ url: alert.url, attempt, error, window: summary.windowId }, 'alert delivery failed');
        throw ApplicationFailure.create({
          type: ALERT_DELIVERY_FAILED,
          message: `alert to ${alert.url} failed on attempt ${attempt}: ${error}`,
        });
      }
      const updated = await actions.update(action.id, {
        status: 'done',
        reason: `delivered on attempt ${attempt} (HTTP ${status})${secret ? ', signed' : ', unsigned'}`,
        details: { url: alert.url, attempt, status: status ?? null, signed: secret !== undefined },
      });
      log.info({ url: alert.url, attempt, window: summary.windowId }, 'alert delivered');
      return outcomeOf(updated ?? action);
    },

    /**
     * Starts the pipeline through the trigger path, keyed by the window (`monitoring:<windowId>`), so a retried
     * activity or a recomputed window starts one run. Skipped (with why, as a skipped trigger event too) when another
     * monitoring trigger of the pipeline started a run for a window whose end is at most `cooldownSeconds` before this
     * window's end (or after it), or when the trigger path skips (a run in progress). The cooldown is measured on
     * window ends, not the clock, and checked under the pipeline's trigger lock, so windows of one incident, however
     * far apart they are computed and however many at once, start one run per cooldown.
     */
    async retrainFromMonitoring(input: RetrainInput): Promise<MonitoringActionOutcome> {
      const { summary, pipeline, cooldownSeconds } = input;
      const existing = await actions.find(summary.windowId, 'retrain');
      if (existing) return outcomeOf(existing);
      const dedupeKey = `monitoring:${summary.windowId}`;
      const base = { windowId: summary.windowId, deployment: summary.deployment, kind: 'retrain' as const };
      const windowEnd = new Date(summary.windowEnd);
      let cooldown: JsonProperties | undefined;
      // An earlier attempt that fired the trigger but died before recording the action finds that event (and its
      // outcome) by the dedupe key: that event is this one.
      const outcome = await fireTrigger(
        {
          triggers,
          runner: runnerOf(deps),
        },
        {
          pipeline,
          kind: 'monitoring',
          source: summary.windowId,
          dedupeKey,
          details: {
            deployment: summary.deployment,
            windowEnd: summary.windowEnd,
            breaches: describeBreaches(summary),
          },
        },
        {
          guard: async () => {
            const recent = await actions.cooldownRun(pipeline, windowEnd, cooldownSeconds, dedupeKey);
            if (!recent) return undefined;
            const apart = Math.round((windowEnd.getTime() - recent.windowEnd.getTime()) / 1000);
            cooldown = {
              cooldownSeconds,
              cooldownWindowId: recent.source,
              cooldownTriggerId: recent.id,
              cooldownRunId: recent.runId,
            };
            return {
              reason:
                `cooldown: monitoring window ${recent.source} started run ${recent.runId ?? '?'} of ${pipeline}; it ` +
                `ended ${Math.abs(apart)} s ${apart >= 0 ? 'before' : 'after'} this window, within ${cooldownSeconds} s`,
              details: cooldown,
            };
          },
        },
      );
      const { action } = await actions.record({
        ...base,
        status: outcome.status === 'started' ? 'done' : 'skipped',
        reason:
          outcome.status === 'started'
            ? `started run ${outcome.runId ?? '?'} of ${pipeline}: ${describeBreaches(summary)}`
            : (outcome.reason ?? 'the trigger was skipped'),
        details: { pipeline, triggerId: outcome.triggerId, runId: outcome.runId ?? null, dedupeKey, ...cooldown },
      });
      activityLogger(deps.logger).info({ ...outcome, pipeline, window: summary.windowId }, 'monitoring retrain');
      return outcomeOf(action);
    },

    /**
     * Serves the previous champion again when the window's live metric crossed the rollback floor: a deploy through
     * the deployment store (a new champion revision, the champion alias moved, serving notified) whose reason names
     * the window and the metric. Skipped when the floor was not crossed, the champion is no longer the window's
     * version (checked again by the deploy under the deployment's lock, so a champion deployed by someone else in the
     * meantime is never replaced), there is no earlier champion to serve, or a rollout holds the deployment or a
     * canary runs on it (checked by the deploy under the lock: the traffic is never pulled from under a rollout, whose
     * own analysis decides); failed when the store refuses it (the earlier version is no longer fit to serve).
     */
    async rollbackFromMonitoring(input: RollbackInput): Promise<MonitoringActionOutcome> {
      const { summary, rollback } = input;
      const existing = await actions.find(summary.windowId, 'rollback');
      if (existing) return outcomeOf(existing);
      const base = { windowId: summary.windowId, deployment: summary.deployment, kind: 'rollback' as const };
      const record = async (status: MonitoringActionStatus, reason: string, details?: Record<string, unknown>) =>
        outcomeOf((await actions.record({ ...base, status, reason, ...(details ? { details } : {}) })).action);

      const cause = rollbackCause(summary, rollback);
      if (!cause) return record('skipped', `the live ${rollback.metric} did not cross its floor`);
      const prefix = rollbackReasonPrefix(summary.windowId);
      const history = await deps.deployments.deploymentHistory(summary.deployment);
      // An attempt whose deploy committed but whose action row was not written: the rollback happened.
      const done = history.find((r) => r.role === 'champion' && r.reason.startsWith(prefix));
      if (done) {
        return record('done', done.reason, { revisionId: done.id, versionId: done.versionId, version: done.version });
      }
      const champion = history.find((r) => r.role === 'champion' && r.endedAt === null);
      const championChanged = (now: string) =>
        record(
          'skipped',
          `${cause}, but the champion is no longer version ${summary.version} of the window (now ${now})`,
        );
      // A first look; the deploy below checks again under the deployment's lock.
      if (!champion || champion.versionId !== summary.versionId) {
        return championChanged(champion ? `version ${champion.version}` : 'none');
      }
      const target = rollbackTarget(history, champion.versionId);
      if (!target) return record('skipped', `${cause}, but there is no earlier champion to roll back to`);
      const reason =
        `${prefix}: ${cause}; version ${target.version} serves again instead of ${champion.version}` +
        (summary.reportUri ? ` (report ${summary.reportUri})` : '');
      try {
        const deployed = await deps.deployments.deploy({
          deploymentName: summary.deployment,
          modelName: summary.model,
          versionId: target.versionId,
          actor: `workflow:${Context.current().info.workflowExecution?.workflowId ?? 'monitor'}`,
          reason,
          // Read above, outside the deploy's transaction: a deploy since then must not be rolled over.
          expectedChampionVersionId: summary.versionId,
          refuseDuringRollout: true,
        });
        activityLogger(deps.logger).warn(
          { deployment: summary.deployment, from: champion.version, to: target.version, window: summary.windowId },
          'monitoring rolled the deployment back',
        );
        return record('done', reason, {
          revisionId: deployed.revision.id,
          versionId: target.versionId,
          version: target.version,
          fromVersionId: champion.versionId,
          fromVersion: champion.version,
        });
      } catch (error) {
        if (error instanceof ChampionChangedError) {
          const now = error.currentVersionId
            ? await deps.registry.getVersionById(error.currentVersionId).catch(() => undefined)
            : undefined;
          return championChanged(
            error.currentVersionId === null
              ? 'none'
              : now
                ? `version ${now.version}`
                : `version id ${error.currentVersionId}`,
          );
        }
        if (error instanceof RolloutRunningError) {
          const holder =
            error.workflowId === null
              ? 'a canary runs on the deployment'
              : `rollout ${error.workflowId} holds the deployment`;
          return record(
            'skipped',
            `${cause}, but ${holder}: its own analysis decides whether the canary is promoted or rolled back`,
            { workflowId: error.workflowId },
          );
        }
        if (!(error instanceof RegistryConflictError || error instanceof RegistryNotFoundError)) throw error;
        return record('failed', `${cause}, but version ${target.version} cannot serve again: ${error.message}`);
      }
    },
  };
}
