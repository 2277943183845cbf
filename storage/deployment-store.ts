// One file for one aggregate (about 940 lines): every write here is one transaction over a deployment, its revisions,
// the champion alias and the NOTIFY that tells the serving pools, with the same locks, traffic-plan checks and rollout
// reservation (the fitness-to-serve checks are in deployment-guards.ts); kept together so those invariants are read
// and changed in one place.
import { and, asc, desc, eq, gt, inArray, isNull, lte, ne, or, sql, type SQL } from 'drizzle-orm';
import {
  deploymentRevisions,
  deployments,
  registeredModels,
  modelVersions,
  type Deployment,
  type DeploymentConfig,
  type DeploymentRevision,
  type DeploymentRole,
  type DeploymentStrategy,
  type ModelVersionStatus,
} from '../schema/index.js';
import type { Database } from './database.js';
import type { Page } from './page.js';
import {
  checkServable,
  ownsCanary,
  reservationOf,
  withReservation,
  type RolloutOwner,
  type RolloutReservation,
  type ServingOverride,
} from './deployment-guards.js';
import { moveChampion } from './registry-aliases.js';
import {
  modelOrThrow,
  RegistryConflictError,
  RegistryNotFoundError,
  UUID,
  versionOfModel,
  type Transaction,
} from './registry-common.js';

/** The LISTEN/NOTIFY channel on which every committed deploy is announced (payload: {@link DeploymentNotification}). */
export const DEPLOYMENTS_CHANNEL = 'mlops_deployments';

/** The JSON payload of a notification on {@link DEPLOYMENTS_CHANNEL}. */
export interface DeploymentNotification {
  deployment: string;
  modelName: string;
  versionId: string;
  revisionId: string;
}

export interface DeployInput extends ServingOverride {
  deploymentName: string;
  modelName: string;
  versionId: string;
  actor: string;
  reason: string;
  /**
   * Deploy only while this version is the active champion, checked under the deployment row's lock (a monitoring
   * rollback names the version its window measured, so it never replaces a champion deployed since by someone
   * else). Undefined: whatever serves is replaced.
   */
  expectedChampionVersionId?: string | undefined;
  /**
   * Refuse while a canary runs or a rollout holds the deployment, checked under the deployment row's lock: a
   * rollback must not pull the traffic from under a rollout, which would then promote or roll back nothing.
   * Undefined: a canary or reservation is ended with the other revisions (a replace).
   */
  refuseDuringRollout?: boolean | undefined;
}

/** A deploy that named the champion it replaces ({@link DeployInput.expectedChampionVersionId}) found another. */
export class ChampionChangedError extends RegistryConflictError {
  constructor(
    message: string,
    /** The active champion's version when the deploy looked; null when none serves. */
    readonly currentVersionId: string | null,
  ) {
    super(message, { code: 'champion_changed' });
  }
}

/** A deploy with {@link DeployInput.refuseDuringRollout} found a canary running or a rollout holding the deployment. */
export class RolloutRunningError extends RegistryConflictError {
  constructor(
    message: string,
    /** The rollout workflow that holds the deployment; null for a canary no reservation names. */
    readonly workflowId: string | null,
  ) {
    super(message, { code: 'rollout_running' });
  }
}

export interface DeployResult {
  deployment: Deployment;
  /** The active champion revision after the call. */
  revision: DeploymentRevision;
  /** The version of the champion revision before `revision` in this deployment's history; null for the first. */
  previousVersionId: string | null;
  /** False when the version already was the active champion, in which case nothing was written. */
  changed: boolean;
}

export interface StartCanaryInput extends ServingOverride {
  deploymentName: string;
  /** The challenger: a blessed version of the deployment's model, other than the champion. */
  versionId: string;
  /** The challenger's share of the traffic, 1 to 99; the champion keeps the rest. */
  trafficPercent: number;
  /**
   * An instance field whose value decides the version deterministically (one key, one version), instead of a random
   * draw per request. Recorded in the deployment's config.
   */
  stickyKey?: string | undefined;
  /**
   * The rollout workflow running this canary: it must hold the deployment's rollout reservation, or take it when no
   * rollout holds it (and no other canary runs). Undefined: an operator's canary, refused while a rollout holds it.
   */
  rollout?: string | undefined;
  actor: string;
  reason: string;
}

export interface StartShadowInput extends ServingOverride {
  deploymentName: string;
  /** Scored on copies of the traffic, never answering: a registered or blessed version of the deployment's model. */
  versionId: string;
  actor: string;
  reason: string;
}

export interface SetChallengerTrafficInput {
  deploymentName: string;
  trafficPercent: number;
  /** When given, the active challenger must be this version. */
  versionId?: string | undefined;
  actor: string;
  reason: string;
}

/** Ends the active challenger (promotion, rollback) or shadows; `versionId` narrows it to that version. */
export interface EndRevisionInput {
  deploymentName: string;
  versionId?: string | undefined;
  /**
   * Promotion and rollback: the rollout they act for ({@link RolloutOwner}). A rollout that no longer holds the
   * deployment's reservation changes nothing (rollback) or is refused (promotion); the holder's change also clears it.
   */
  rollout?: RolloutOwner;
  /**
   * Rollback: act only when `rollout` holds the reservation (a rollout whose canary never started must not end a
   * canary it did not start).
   */
  heldOnly?: boolean | undefined;
  /** Promotion: the canary was started with {@link ServingOverride.allowUnblessed}. */
  allowUnblessed?: boolean | undefined;
  actor: string;
  reason: string;
}

export interface TrafficChangeResult {
  deployment: Deployment;
  modelName: string;
  /** The active revisions after the call, champion first. */
  active: DeploymentRevision[];
  /** False when the deployment already was in the asked state, in which case nothing was written. */
  changed: boolean;
}

/** The deployment config key naming the instance field that makes canary routing sticky. */
export const STICKY_KEY_CONFIG = 'stickyKey';

export interface ReserveRolloutInput extends ServingOverride {
  deploymentName: string;
  /** The rollout workflow's id. */
  workflowId: string;
  /** The challenger it will canary. */
  versionId: string;
}

/** A deployment with the name of the model it serves. */
export type DeploymentSummary = Deployment & { modelName: string };

/** A revision with the number of the version it serves. */
export type RevisionSummary = DeploymentRevision & { version: number };

/** A revision of {@link DeploymentStore.deploymentHistory}: with its version's registry status now (not then). */
export type HistoryRevision = RevisionSummary & { versionStatus: ModelVersionStatus };

/**
 * Deployments: which versions of a registered model each deployment serves (the champion, a canary challenger with a
 * share of the traffic, shadows scored on copies of it), and the revision history of what served when, by whom and
 * why. Every write is idempotent (an activity retried after its write committed gets the same answer without writing
 * again), runs in one transaction with the deployment row locked, and is announced on {@link DEPLOYMENTS_CHANNEL} on
 * commit.
 */
export interface DeploymentStore {
  /**
   * Makes the version the deployment's champion with all of the traffic (strategy `replace`), in one transaction:
   * creates the deployment if needed, ends every active revision, starts a champion revision at 100 %, moves the
   * model's `champion` alias, and notifies {@link DEPLOYMENTS_CHANNEL} (delivered on commit only).
   *
   * Idempotent: when the version already is the active champion, nothing is written and `changed` is false; this is
   * answered before the fitness and `refuseDuringRollout` checks (only `expectedChampionVersionId` is checked first),
   * so a retry is not refused for a canary started or a status changed since. Concurrent deploys to one deployment are serialised by a lock on the deployment row, so exactly one champion
   * is active afterwards.
   *
   * @throws RegistryNotFoundError when the model does not exist or the version is not one of its versions.
   * @throws RegistryConflictError when the version is not blessed (an unblessed version is never deployed), or the
   *   deployment already serves another model.
   * @throws ChampionChangedError when `expectedChampionVersionId` is given and is not the active champion's version.
   * @throws RolloutRunningError when `refuseDuringRollout` is given and a canary runs or a rollout holds the deployment.
   */
  deploy(input: DeployInput): Promise<DeployResult>;
  /**
   * Starts a canary: the version becomes the deployment's challenger with `trafficPercent` % of the requests and the
   * champion keeps the rest (its revision is ended and a new one started at 100 - p), in one transaction with the
   * deployment row locked, notified on {@link DEPLOYMENTS_CHANNEL}. `stickyKey` is recorded in the deployment's
   * config (removed when not given). A version running as a shadow moves to the challenger role.
   *
   * Idempotent: the same version at the same share and sticky key changes nothing; the same version at another share
   * changes the shares (like {@link setChallengerTraffic}).
   *
   * @throws RegistryNotFoundError when the deployment does not exist or the version is not one of its model's.
   * @throws RegistryConflictError when the version is not blessed, is the champion, another canary is running, the
   *   deployment has no champion, or the share is not an integer from 1 to 99.
   */
  startCanary(input: StartCanaryInput): Promise<TrafficChangeResult>;
  /**
   * Changes the shares of the running canary: the champion and challenger revisions are ended and started again at
   * 100 - p and p. Idempotent: the same share changes nothing.
   *
   * @throws RegistryNotFoundError when the deployment does not exist.
   * @throws RegistryConflictError when no canary runs (or one of another version than `versionId`), or the share is
   *   not an integer from 1 to 99.
   */
  setChallengerTraffic(input: SetChallengerTrafficInput): Promise<TrafficChangeResult>;
  /**
   * Promotes the running canary: the challenger becomes the champion with all of the traffic, the old champion's
   * revision ends, the model's `champion` alias moves, the sticky key is dropped from the config; shadows keep
   * running. One transaction, notified.
   *
   * Idempotent: when no canary runs and `versionId` already is the champion (a retried promotion), nothing is
   * written and `changed` is false.
   *
   * @throws RegistryNotFoundError when the deployment does not exist.
   * @throws RegistryConflictError when no canary (of `versionId`) runs, or its version is no longer blessed.
   */
  promoteChallenger(input: EndRevisionInput): Promise<TrafficChangeResult>;
  /**
   * Rolls the running canary back: the challenger's revision ends and the champion gets all of the traffic again
   * (a new champion revision at 100 %, with the reason), the sticky key is dropped from the config. One transaction,
   * notified.
   *
   * Idempotent: when no canary (of `versionId`, when given) runs, nothing is written and `changed` is false.
   *
   * @throws RegistryNotFoundError when the deployment does not exist.
   */
  rollbackChallenger(input: EndRevisionInput): Promise<TrafficChangeResult>;
  /**
   * Starts scoring the version in shadow: a shadow revision at 0 % (it never answers); the champion and a canary are
   * unchanged. One transaction, notified. Idempotent: a version already in shadow changes nothing.
   *
   * @throws RegistryNotFoundError when the deployment does not exist or the version is not one of its model's.
   * @throws RegistryConflictError when the version is rejected or archived, or already serves as champion or
   *   challenger, or the deployment has no champion.
   */
  startShadow(input: StartShadowInput): Promise<TrafficChangeResult>;
  /**
   * Stops the deployment's shadows (or the one of `versionId`): their revisions end, and the champion's revision is
   * started again (same version and share) to record when and why. One transaction, notified. Idempotent: when no
   * such shadow runs, nothing is written and `changed` is false.
   *
   * @throws RegistryNotFoundError when the deployment does not exist.
   */
  stopShadow(input: EndRevisionInput): Promise<TrafficChangeResult>;
  /**
   * Reserves the deployment for one rollout workflow, before it is started: in one transaction with the deployment
   * row locked, so of two concurrent requests exactly one gets the reservation. The version must be fit to serve
   * (or the override allow it), other than the champion, and no canary or other reservation may be in place.
   * Idempotent for the same workflow id. Cleared by the rollout's promotion or rollback, by
   * {@link releaseRollout}, or by the reconciler.
   *
   * @throws RegistryNotFoundError when the deployment does not exist or the version is not one of its model's.
   * @throws RegistryConflictError when another rollout holds the deployment, a canary runs, the deployment has no
   *   champion, the version is the champion, or it is not fit to serve.
   */
  reserveRollout(input: ReserveRolloutInput): Promise<RolloutReservation>;
  /**
   * Clears the reservation when `workflowId` holds it (a rollout that could not be started, or the reconciler's
   * cleanup after the canary is gone); true when it did. Leaves the traffic alone.
   */
  releaseRollout(deploymentName: string, workflowId: string): Promise<boolean>;
  /** The deployment's active revisions (champion first), with version numbers; empty when it does not exist. */
  activeRevisions(deploymentName: string): Promise<RevisionSummary[]>;
  /**
   * Every revision of the deployment, newest first, with version numbers and the versions' statuses now: what served
   * when, by whom and why.
   */
  deploymentHistory(deploymentName: string): Promise<HistoryRevision[]>;
  /**
   * The revisions that were active at `at` (started at or before it, not ended by then), champion first, with
   * version numbers: what served, with which shares and roles, at that time. Compared in milliseconds, the precision
   * the API shows and parses times in (revisions are stored in microseconds): at a revision's reported `startedAt`
   * it is active, at its reported `endedAt` it is not. Empty when nothing served then or the deployment does not
   * exist.
   */
  revisionsAt(deploymentName: string, at: Date): Promise<RevisionSummary[]>;
  /** The deployment named `name`, with its model's name, or undefined. */
  getDeployment(name: string): Promise<DeploymentSummary | undefined>;
  /** Every deployment, by name, with its model's name. */
  listDeployments(page?: Page): Promise<DeploymentSummary[]>;
}

/** Orders revisions champion first, then the challenger, then shadows. */
const roleOrder = sql`case ${deploymentRevisions.role} when 'champion' then 0 when 'challenger' then 1 else 2 end`;

/**
 * The DeploymentStore on Postgres; the champion alias it moves lives in the registry's model_aliases, written in the
 * same transaction as the revisions.
 */
class DrizzleDeploymentStore implements DeploymentStore {
  constructor(private readonly db: Database) {}

  async deploy(input: DeployInput): Promise<DeployResult> {
    return this.db.transaction(async (tx) => {
      const model = await modelOrThrow(tx, input.modelName);
      await tx
        .insert(deployments)
        .values({ name: input.deploymentName, modelId: model.id, strategy: 'replace' })
        .onConflictDoNothing({ target: deployments.name });
      const [deployment] = await tx
        .select()
        .from(deployments)
        .where(eq(deployments.name, input.deploymentName))
        .for('update');
      if (!deployment) throw new Error(`deployment ${input.deploymentName} vanished after it was upserted`);
      if (deployment.modelId !== model.id) {
        throw new RegistryConflictError(
          `deployment ${input.deploymentName} serves another model than ${input.modelName}`,
        );
      }
      // A share lock: transitionStatus cannot unbless the version until this deploy has committed.
      const version = await versionOfModel(tx, input.modelName, input.versionId, 'share');

      const active = await tx
        .select()
        .from(deploymentRevisions)
        .where(and(eq(deploymentRevisions.deploymentId, deployment.id), isNull(deploymentRevisions.endedAt)));
      const current = active.find((r) => r.role === 'champion');
      if (input.expectedChampionVersionId !== undefined && current?.versionId !== input.expectedChampionVersionId) {
        const numbers = await versionNumbers(tx, [input.expectedChampionVersionId, current?.versionId]);
        throw new ChampionChangedError(
          `deployment ${input.deploymentName} no longer serves ` +
            `${versionLabel(numbers, input.expectedChampionVersionId)} as champion ` +
            `(now ${current ? versionLabel(numbers, current.versionId) : 'none'})`,
          current?.versionId ?? null,
        );
      }
      // What already serves is answered before the rollout and fitness checks: a retried deploy (or rollback) whose
      // first answer was lost gets its answer, not a refusal for a canary started or a status changed since.
      if (current && current.versionId === input.versionId) {
        return {
          deployment,
          revision: current,
          previousVersionId: await previousChampion(tx, deployment.id, current),
          changed: false,
        };
      }
      if (input.refuseDuringRollout) {
        const held = reservationOf(deployment.config);
        const challenger = active.find((r) => r.role === 'challenger');
        if (held || challenger) {
          const numbers = await versionNumbers(tx, [held?.versionId, challenger?.versionId]);
          const canary = held ?? challenger!;
          throw new RolloutRunningError(
            `deployment ${input.deploymentName} ${held ? `is held by rollout ${held.workflowId}` : 'runs a canary'} ` +
              `of ${versionLabel(numbers, canary.versionId)}: cancel the rollout (or promote or roll back the ` +
              'canary) first',
            held?.workflowId ?? null,
          );
        }
      }
      const override = await checkServable(tx, input.modelName, version, input, 'deployed');

      // Read after the lock, so a deploy that waited for another starts after the one it replaces.
      const at = await clockNow(tx);
      if (active.length > 0) {
        await tx
          .update(deploymentRevisions)
          .set({ endedAt: at })
          .where(and(eq(deploymentRevisions.deploymentId, deployment.id), isNull(deploymentRevisions.endedAt)));
      }
      const [revision] = await tx
        .insert(deploymentRevisions)
        .values({
          deploymentId: deployment.id,
          versionId: input.versionId,
          role: 'champion',
          trafficPercent: 100,
          reason: input.reason + override,
          actor: input.actor,
          startedAt: at,
        })
        .returning();
      if (!revision) throw new Error(`deployment ${input.deploymentName}: the new revision was not returned`);
      const [updated] = await tx
        .update(deployments)
        .set({ strategy: 'replace' })
        .where(eq(deployments.id, deployment.id))
        .returning();
      await moveChampionAlias(tx, model.id, input.versionId, input.actor, input.reason + override);
      await notify(tx, {
        deployment: input.deploymentName,
        modelName: input.modelName,
        versionId: input.versionId,
        revisionId: revision.id,
      });
      return {
        deployment: updated ?? deployment,
        revision,
        previousVersionId: current?.versionId ?? (await previousChampion(tx, deployment.id, revision)),
        changed: true,
      };
    });
  }

  async startCanary(input: StartCanaryInput): Promise<TrafficChangeResult> {
    checkShare(input.trafficPercent);
    return this.changeTraffic(input.deploymentName, async ({ tx, deployment, modelName, active }) => {
      const version = await versionOfModel(tx, modelName, input.versionId, 'share');
      const held = reservationOf(deployment.config);
      if (held && held.workflowId !== input.rollout) {
        throw new RegistryConflictError(
          `deployment ${input.deploymentName} is held by rollout ${held.workflowId}; it must end before another canary starts`,
        );
      }
      const override = await checkServable(
        tx,
        modelName,
        version,
        { allowUnblessed: input.allowUnblessed || (held?.versionId === input.versionId && held.allowUnblessed) },
        'canaried',
      );
      const champion = championOf(input.deploymentName, active);
      if (champion.versionId === input.versionId) {
        throw new RegistryConflictError(
          `model ${modelName} version ${version.version} already is the champion of deployment ${input.deploymentName}`,
        );
      }
      const challenger = active.find((r) => r.role === 'challenger');
      if (challenger && challenger.versionId !== input.versionId) {
        throw new RegistryConflictError(
          `deployment ${input.deploymentName} already runs a canary of another version; promote or roll it back first`,
        );
      }
      // A rollout takes the deployment only when no canary runs: one it does not hold is someone else's.
      if (challenger && input.rollout !== undefined && !held) {
        throw new RegistryConflictError(
          `deployment ${input.deploymentName} already runs a canary that rollout ${input.rollout} did not start`,
        );
      }
      const stickyKey = input.stickyKey ?? null;
      const reservation: RolloutReservation | undefined =
        input.rollout === undefined
          ? undefined
          : (held ?? {
              workflowId: input.rollout,
              versionId: input.versionId,
              reservedAt: new Date().toISOString(),
              ...(input.allowUnblessed ? { allowUnblessed: true } : {}),
            });
      const config = withStickyKey(
        reservation ? withReservation(deployment.config, reservation) : deployment.config,
        stickyKey,
      );
      if (
        challenger &&
        challenger.trafficPercent === input.trafficPercent &&
        (deployment.config[STICKY_KEY_CONFIG] ?? null) === stickyKey
      ) {
        return null;
      }
      const shadow = active.find((r) => r.role === 'shadow' && r.versionId === input.versionId);
      return {
        end: [champion, ...(challenger ? [challenger] : []), ...(shadow ? [shadow] : [])],
        start: [
          { versionId: champion.versionId, role: 'champion', trafficPercent: 100 - input.trafficPercent },
          { versionId: input.versionId, role: 'challenger', trafficPercent: input.trafficPercent },
        ],
        config,
        actor: input.actor,
        reason: input.reason + override,
        versionId: input.versionId,
      };
    });
  }

  async setChallengerTraffic(input: SetChallengerTrafficInput): Promise<TrafficChangeResult> {
    checkShare(input.trafficPercent);
    return this.changeTraffic(input.deploymentName, async ({ tx, active }) => {
      const champion = championOf(input.deploymentName, active);
      const challenger = await challengerOf(tx, input.deploymentName, active, input.versionId);
      if (challenger.trafficPercent === input.trafficPercent) return null;
      return {
        end: [champion, challenger],
        start: [
          { versionId: champion.versionId, role: 'champion', trafficPercent: 100 - input.trafficPercent },
          { versionId: challenger.versionId, role: 'challenger', trafficPercent: input.trafficPercent },
        ],
        actor: input.actor,
        reason: input.reason,
        versionId: challenger.versionId,
      };
    });
  }

  async promoteChallenger(input: EndRevisionInput): Promise<TrafficChangeResult> {
    return this.changeTraffic(input.deploymentName, async ({ tx, deployment, modelName, active }) => {
      if (!ownsCanary(deployment.config, input.rollout)) {
        throw new RegistryConflictError(
          `deployment ${input.deploymentName} is held by rollout ${reservationOf(deployment.config)?.workflowId}, not ${input.rollout}`,
        );
      }
      const champion = championOf(input.deploymentName, active);
      const running = active.find((r) => r.role === 'challenger');
      const config = releasedBy(deployment.config, input.rollout);
      if (!running && input.versionId !== undefined && champion.versionId === input.versionId) {
        return config === deployment.config ? null : configOnly(config, input, champion.versionId);
      }
      const challenger = await challengerOf(tx, input.deploymentName, active, input.versionId);
      const version = await versionOfModel(tx, modelName, challenger.versionId, 'share');
      const override = await checkServable(tx, modelName, version, input, 'made the champion');
      return {
        end: [champion, challenger],
        start: [{ versionId: challenger.versionId, role: 'champion', trafficPercent: 100 }],
        config: withStickyKey(config, null),
        championVersionId: challenger.versionId,
        actor: input.actor,
        reason: input.reason + override,
        versionId: challenger.versionId,
      };
    });
  }

  async rollbackChallenger(input: EndRevisionInput): Promise<TrafficChangeResult> {
    return this.changeTraffic(input.deploymentName, async ({ deployment, active }) => {
      // A rollout that no longer holds the deployment must not end the canary of the one that does.
      if (!ownsCanary(deployment.config, input.rollout)) return null;
      if (input.heldOnly && reservationOf(deployment.config)?.workflowId !== input.rollout) return null;
      const config = releasedBy(deployment.config, input.rollout);
      const challenger = active.find((r) => r.role === 'challenger');
      if (!challenger || (input.versionId !== undefined && challenger.versionId !== input.versionId)) {
        const champion = active.find((r) => r.role === 'champion');
        return config === deployment.config || !champion ? null : configOnly(config, input, champion.versionId);
      }
      const champion = championOf(input.deploymentName, active);
      return {
        end: [champion, challenger],
        start: [{ versionId: champion.versionId, role: 'champion', trafficPercent: 100 }],
        config: withStickyKey(config, null),
        actor: input.actor,
        reason: input.reason,
        versionId: challenger.versionId,
      };
    });
  }

  async startShadow(input: StartShadowInput): Promise<TrafficChangeResult> {
    return this.changeTraffic(input.deploymentName, async ({ tx, modelName, active }) => {
      const version = await versionOfModel(tx, modelName, input.versionId, 'share');
      const override = await checkServable(tx, modelName, version, input, 'run in shadow');
      championOf(input.deploymentName, active);
      const current = active.find((r) => r.versionId === input.versionId);
      if (current?.role === 'shadow') return null;
      if (current) {
        throw new RegistryConflictError(
          `model ${modelName} version ${version.version} already serves deployment ${input.deploymentName} as ${current.role}`,
        );
      }
      return {
        end: [],
        start: [{ versionId: input.versionId, role: 'shadow', trafficPercent: 0 }],
        actor: input.actor,
        reason: input.reason + override,
        versionId: input.versionId,
      };
    });
  }

  async stopShadow(input: EndRevisionInput): Promise<TrafficChangeResult> {
    return this.changeTraffic(input.deploymentName, async ({ active }) => {
      const shadows = active.filter(
        (r) => r.role === 'shadow' && (input.versionId === undefined || r.versionId === input.versionId),
      );
      if (shadows.length === 0) return null;
      const champion = championOf(input.deploymentName, active);
      return {
        end: [champion, ...shadows],
        start: [{ versionId: champion.versionId, role: 'champion', trafficPercent: champion.trafficPercent }],
        actor: input.actor,
        reason: input.reason,
        versionId: shadows[0]!.versionId,
      };
    });
  }

  /**
   * One change of a deployment's traffic: in one transaction with the deployment row locked, `plan` reads the active
   * revisions and says which to end and which to start (null: nothing to do); then the revisions are ended and
   * started at one clock_timestamp(), the strategy follows the active roles (canary while a challenger serves, shadow
   * while only shadows run beside the champion, else replace), the config and `champion` alias are updated when the
   * plan says so, and the change is notified on {@link DEPLOYMENTS_CHANNEL} (delivered on commit).
   */
  private async changeTraffic(
    deploymentName: string,
    plan: (state: {
      tx: Transaction;
      deployment: Deployment;
      modelName: string;
      active: DeploymentRevision[];
    }) => Promise<TrafficPlan | null>,
  ): Promise<TrafficChangeResult> {
    return this.db.transaction(async (tx) => {
      const [deployment] = await tx
        .select()
        .from(deployments)
        .where(eq(deployments.name, deploymentName))
        .for('update');
      if (!deployment) throw new RegistryNotFoundError(`deployment ${deploymentName} does not exist`);
      const [model] = await tx
        .select({ name: registeredModels.name })
        .from(registeredModels)
        .where(eq(registeredModels.id, deployment.modelId));
      if (!model) throw new Error(`deployment ${deploymentName}: its model vanished`);
      const readActive = () =>
        tx
          .select()
          .from(deploymentRevisions)
          .where(and(eq(deploymentRevisions.deploymentId, deployment.id), isNull(deploymentRevisions.endedAt)))
          .orderBy(roleOrder, asc(deploymentRevisions.startedAt));
      const active = await readActive();
      const change = await plan({ tx, deployment, modelName: model.name, active });
      if (!change) return { deployment, modelName: model.name, active, changed: false };

      if (change.start.length === 0 && change.end.length === 0) {
        // Only the config changes (a rollout reservation released): nothing for serving to reload.
        const [updated] = await tx
          .update(deployments)
          .set({ config: change.config ?? deployment.config })
          .where(eq(deployments.id, deployment.id))
          .returning();
        return { deployment: updated ?? deployment, modelName: model.name, active, changed: true };
      }
      const at = await clockNow(tx);
      if (change.end.length > 0) {
        await tx
          .update(deploymentRevisions)
          .set({ endedAt: at })
          .where(
            and(
              inArray(
                deploymentRevisions.id,
                change.end.map((r) => r.id),
              ),
              isNull(deploymentRevisions.endedAt),
            ),
          );
      }
      const started = await tx
        .insert(deploymentRevisions)
        .values(
          change.start.map((s) => ({
            deploymentId: deployment.id,
            versionId: s.versionId,
            role: s.role,
            trafficPercent: s.trafficPercent,
            reason: change.reason,
            actor: change.actor,
            startedAt: at,
          })),
        )
        .returning();
      const after = await readActive();
      const strategy: DeploymentStrategy = after.some((r) => r.role === 'challenger')
        ? 'canary'
        : after.some((r) => r.role === 'shadow')
          ? 'shadow'
          : 'replace';
      const [updated] = await tx
        .update(deployments)
        .set({ strategy, ...(change.config ? { config: change.config } : {}) })
        .where(eq(deployments.id, deployment.id))
        .returning();
      if (change.championVersionId !== undefined) {
        await moveChampionAlias(tx, deployment.modelId, change.championVersionId, change.actor, change.reason);
      }
      await notify(tx, {
        deployment: deploymentName,
        modelName: model.name,
        versionId: change.versionId,
        revisionId: started[0]?.id ?? '',
      });
      return { deployment: updated ?? deployment, modelName: model.name, active: after, changed: true };
    });
  }

  async reserveRollout(input: ReserveRolloutInput): Promise<RolloutReservation> {
    let reservation: RolloutReservation | undefined;
    await this.changeTraffic(input.deploymentName, async ({ tx, deployment, modelName, active }) => {
      const held = reservationOf(deployment.config);
      if (held?.workflowId === input.workflowId) {
        reservation = held;
        return null;
      }
      if (held) {
        throw new RegistryConflictError(
          `deployment ${input.deploymentName} already runs rollout ${held.workflowId}; it must end before another starts`,
        );
      }
      const version = await versionOfModel(tx, modelName, input.versionId, 'share');
      await checkServable(tx, modelName, version, input, 'canaried');
      const champion = championOf(input.deploymentName, active);
      if (champion.versionId === input.versionId) {
        throw new RegistryConflictError(
          `version ${version.version} already is the champion of deployment ${input.deploymentName}`,
        );
      }
      const challenger = active.find((r) => r.role === 'challenger');
      if (challenger) {
        const [number] = await tx
          .select({ version: modelVersions.version })
          .from(modelVersions)
          .where(eq(modelVersions.id, challenger.versionId));
        throw new RegistryConflictError(
          `deployment ${input.deploymentName} already runs a canary of version ${number?.version ?? challenger.versionId}; it must end before another starts`,
        );
      }
      reservation = {
        workflowId: input.workflowId,
        versionId: input.versionId,
        reservedAt: new Date().toISOString(),
        ...(input.allowUnblessed ? { allowUnblessed: true } : {}),
      };
      return configOnly(withReservation(deployment.config, reservation), { actor: '', reason: '' }, input.versionId);
    });
    return reservation!;
  }

  async releaseRollout(deploymentName: string, workflowId: string): Promise<boolean> {
    const result = await this.changeTraffic(deploymentName, async ({ deployment }) => {
      const config = releasedBy(deployment.config, workflowId);
      return config === deployment.config ? null : configOnly(config, { actor: '', reason: '' }, '');
    });
    return result.changed;
  }

  async activeRevisions(deploymentName: string): Promise<RevisionSummary[]> {
    const rows = await this.db
      .select({ revision: deploymentRevisions, version: modelVersions.version })
      .from(deploymentRevisions)
      .innerJoin(deployments, eq(deployments.id, deploymentRevisions.deploymentId))
      .innerJoin(modelVersions, eq(modelVersions.id, deploymentRevisions.versionId))
      .where(and(eq(deployments.name, deploymentName), isNull(deploymentRevisions.endedAt)))
      .orderBy(roleOrder, asc(deploymentRevisions.startedAt));
    return rows.map((r) => ({ ...r.revision, version: r.version }));
  }

  async deploymentHistory(deploymentName: string): Promise<HistoryRevision[]> {
    const rows = await this.db
      .select({ revision: deploymentRevisions, version: modelVersions.version, versionStatus: modelVersions.status })
      .from(deploymentRevisions)
      .innerJoin(deployments, eq(deployments.id, deploymentRevisions.deploymentId))
      .innerJoin(modelVersions, eq(modelVersions.id, deploymentRevisions.versionId))
      .where(eq(deployments.name, deploymentName))
      .orderBy(desc(deploymentRevisions.startedAt), sql`${deploymentRevisions.endedAt} desc nulls first`, roleOrder);
    return rows.map((r) => ({ ...r.revision, version: r.version, versionStatus: r.versionStatus }));
  }

  async revisionsAt(deploymentName: string, at: Date): Promise<RevisionSummary[]> {
    // Both bounds truncated to the millisecond, half-open [started, ended): the times the API reports select the
    // revision they belong to, and the one a change ends and the one it starts (same instant) never overlap.
    const ms = (column: typeof deploymentRevisions.startedAt | typeof deploymentRevisions.endedAt) =>
      sql`date_trunc('milliseconds', ${column})`;
    const instant = sql`${at.toISOString()}::timestamptz`;
    const rows = await this.db
      .select({ revision: deploymentRevisions, version: modelVersions.version })
      .from(deploymentRevisions)
      .innerJoin(deployments, eq(deployments.id, deploymentRevisions.deploymentId))
      .innerJoin(modelVersions, eq(modelVersions.id, deploymentRevisions.versionId))
      .where(
        and(
          eq(deployments.name, deploymentName),
          lte(ms(deploymentRevisions.startedAt), instant),
          or(isNull(deploymentRevisions.endedAt), gt(ms(deploymentRevisions.endedAt), instant)),
        ),
      )
      .orderBy(roleOrder, asc(deploymentRevisions.startedAt));
    return rows.map((r) => ({ ...r.revision, version: r.version }));
  }

  async getDeployment(name: string): Promise<DeploymentSummary | undefined> {
    const [row] = await this.db
      .select({ deployment: deployments, modelName: registeredModels.name })
      .from(deployments)
      .innerJoin(registeredModels, eq(registeredModels.id, deployments.modelId))
      .where(eq(deployments.name, name));
    return row ? { ...row.deployment, modelName: row.modelName } : undefined;
  }

  async listDeployments(page?: Page): Promise<DeploymentSummary[]> {
    const query = this.db
      .select({ deployment: deployments, modelName: registeredModels.name })
      .from(deployments)
      .innerJoin(registeredModels, eq(registeredModels.id, deployments.modelId))
      .orderBy(asc(deployments.name))
      .$dynamic();
    const rows = await (page ? query.limit(page.limit).offset(page.offset) : query);
    return rows.map((r) => ({ ...r.deployment, modelName: r.modelName }));
  }
}

/** The deployments on Postgres. Holds nothing but the database, so one instance per process is enough. */
export function createDeploymentStore(db: Database): DeploymentStore {
  return new DrizzleDeploymentStore(db);
}

/** What one traffic change ends and starts (see DrizzleDeploymentStore.changeTraffic). */
interface TrafficPlan {
  end: DeploymentRevision[];
  start: { versionId: string; role: DeploymentRole; trafficPercent: number }[];
  /** The deployment's new config, when it changes. */
  config?: DeploymentConfig;
  /** Moves the model's `champion` alias to this version. */
  championVersionId?: string;
  actor: string;
  reason: string;
  /** The version the notification names. */
  versionId: string;
}

function checkShare(percent: number): void {
  if (!Number.isInteger(percent) || percent < 1 || percent > 99) {
    throw new RegistryConflictError(`a canary's share of the traffic is an integer from 1 to 99, got ${percent}`);
  }
}

function championOf(deploymentName: string, active: readonly DeploymentRevision[]): DeploymentRevision {
  const champion = active.find((r) => r.role === 'champion');
  if (!champion)
    throw new RegistryConflictError(`deployment ${deploymentName} has no active champion; deploy one first`);
  return champion;
}

async function challengerOf(
  tx: Transaction,
  deploymentName: string,
  active: readonly DeploymentRevision[],
  versionId: string | undefined,
): Promise<DeploymentRevision> {
  const challenger = active.find((r) => r.role === 'challenger');
  if (!challenger) throw new RegistryConflictError(`deployment ${deploymentName} runs no canary`);
  if (versionId !== undefined && challenger.versionId !== versionId) {
    const numbers = await versionNumbers(tx, [versionId, challenger.versionId]);
    throw new RegistryConflictError(
      `deployment ${deploymentName} runs a canary of another version: ${versionLabel(numbers, challenger.versionId)}, ` +
        `not ${versionLabel(numbers, versionId)}`,
    );
  }
  return challenger;
}

/** The config without the rollout reservation when `owner` holds it; the same object otherwise. */
function releasedBy(config: DeploymentConfig, owner: RolloutOwner): DeploymentConfig {
  return owner && reservationOf(config)?.workflowId === owner ? withReservation(config, null) : config;
}

/** A plan that changes the config only (no revision ends or starts). */
function configOnly(config: DeploymentConfig, by: { actor: string; reason: string }, versionId: string): TrafficPlan {
  return { end: [], start: [], config, actor: by.actor, reason: by.reason, versionId };
}

/** The config with the sticky key set to `stickyKey`, or without one for null. */
function withStickyKey(config: DeploymentConfig, stickyKey: string | null): DeploymentConfig {
  const { [STICKY_KEY_CONFIG]: _previous, ...rest } = config;
  return stickyKey === null ? rest : { ...rest, [STICKY_KEY_CONFIG]: stickyKey };
}

/**
 * The transaction's clock_timestamp() as a timestamptz parameter: the revisions one change ends and starts share it,
 * and a change that waited for the deployment lock reads it after the change it follows.
 */
async function clockNow(tx: Transaction): Promise<SQL> {
  const now = await tx.execute<{ now: string }>(sql`select clock_timestamp()::text as now`);
  return sql`${now.rows[0]?.now}::timestamptz`;
}

/** The numbers of the versions with these ids (undefined ids skipped), for messages. */
async function versionNumbers(tx: Transaction, ids: readonly (string | undefined)[]): Promise<Map<string, number>> {
  const wanted = ids.filter((id): id is string => id !== undefined && UUID.test(id));
  if (wanted.length === 0) return new Map();
  const rows = await tx
    .select({ id: modelVersions.id, version: modelVersions.version })
    .from(modelVersions)
    .where(inArray(modelVersions.id, wanted));
  return new Map(rows.map((r) => [r.id, r.version]));
}

/** `version 3 (<uuid>)`, or `version id <uuid>` when its number is unknown. */
function versionLabel(numbers: ReadonlyMap<string, number>, id: string): string {
  const number = numbers.get(id);
  return number === undefined ? `version id ${id}` : `version ${number} (${id})`;
}

/**
 * Points the model's `champion` alias at the version, and `previous` at the champion it replaces (the registry's
 * model_aliases, each move recorded with the change's actor and reason), in the change's transaction.
 */
async function moveChampionAlias(
  tx: Transaction,
  modelId: string,
  versionId: string,
  actor: string,
  reason: string,
): Promise<void> {
  await moveChampion(tx, { modelId, versionId, actor, reason });
}

/** Announces the change on {@link DEPLOYMENTS_CHANNEL}; Postgres delivers it when the transaction commits. */
async function notify(tx: Transaction, notification: DeploymentNotification): Promise<void> {
  await tx.execute(sql`select pg_notify(${DEPLOYMENTS_CHANNEL}, ${JSON.stringify(notification)})`);
}

/** The version of the latest champion revision that started before `revision`, or null. */
async function previousChampion(
  tx: Transaction,
  deploymentId: string,
  revision: DeploymentRevision,
): Promise<string | null> {
  const [row] = await tx
    .select({ versionId: deploymentRevisions.versionId })
    .from(deploymentRevisions)
    .where(
      and(
        eq(deploymentRevisions.deploymentId, deploymentId),
        eq(deploymentRevisions.role, 'champion'),
        ne(deploymentRevisions.id, revision.id),
        // Compared in SQL: a Date parameter would drop the microseconds that order revisions within one millisecond.
        sql`${deploymentRevisions.startedAt} <= (select r.started_at from ${deploymentRevisions} r where r.id = ${revision.id})`,
      ),
    )
    .orderBy(desc(deploymentRevisions.startedAt))
    .limit(1);
  return row?.versionId ?? null;
}
