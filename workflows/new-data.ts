/**
 * New-data triggers: a settle workflow per pipeline turns a burst of new objects in its watched prefix into one run,
 * and the polling fallback's workflow lists the prefix on a schedule. Whoever sees new objects (the S3 webhook, a
 * poll) records them (storage/watched-object-store.ts) and then signals {@link newDataTrigger} with signalWithStart
 * under its fixed id, so there is at most one settle workflow per pipeline and a signal never starts a second one.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  continueAsNew,
  defineSignal,
  proxyActivities,
  setHandler,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { ClaimNewObjectsResult, MainActivities, PollNewObjectsResult } from '../activities/index.js';

/** The settle workflow's fixed id for a pipeline: signalWithStart joins the running one, or starts it. */
export function newDataWorkflowId(pipeline: string): string {
  return `new-data:${pipeline}`;
}

/** The polling fallback's schedule id for a pipeline (its workflows' ids start with it). */
export function pollScheduleId(pipeline: string): string {
  return `poll:${pipeline}`;
}

/** What a signal says: objects wait for a trigger; the newest settle time and watched prefix win. */
export interface NewDataNotice {
  readonly settleSeconds: number;
  /** The watched prefix, `s3://bucket/prefix`: recorded as the trigger's source. */
  readonly source: string;
  /**
   * How many objects the sender saw for the first time. Only a notice with new objects restarts the quiet period; a
   * repeated one (a duplicate notification, a poll of objects still waiting) only makes sure a cycle follows.
   */
  readonly added?: number;
}

/** Sent by whoever recorded new objects of the pipeline (with signalWithStart). */
export const newDataSignal = defineSignal<[NewDataNotice]>('newData');

export interface NewDataTriggerInput {
  readonly pipeline: string;
  readonly settleSeconds: number;
  readonly source: string;
}

/** One settled burst: the trigger event it recorded (started or skipped, with why). */
export interface NewDataCycle {
  readonly objects: number;
  readonly dedupeKey: string;
  readonly triggerId: string;
  readonly status: 'started' | 'skipped';
  readonly runId?: string;
  readonly reason?: string;
}

/** Cycles one execution runs before it continues as new, keeping its history small. */
export const NEW_DATA_CYCLES_PER_RUN = 50;

/** Batches of orphaned claims (each up to 20) a cycle adopts at most; the rest wait for the next cycle. */
const MAX_ADOPTION_ROUNDS = 10;

/**
 * The longest a cycle waits for a quiet period, from its start: a steady trickle of objects (one every few seconds,
 * never `settleSeconds` apart) would otherwise restart the quiet period for ever and never trigger. Ten settle
 * periods, and at least a minute.
 */
export function maxSettleWaitSeconds(settleSeconds: number): number {
  return Math.max(10 * settleSeconds, 60);
}

/**
 * The claim, the trigger and the link are bookkeeping that must happen once the objects are claimed: they retry
 * until they succeed (an outage of the database or Temporal only delays them), backing off to a minute. A domain
 * error no retry can fix (the pipeline is gone) ends an attempt at once (activities/failure-contract.ts) and is
 * handled below.
 */
const settleActivity = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute' },
} as const;

/** Failure types of {@link fireTrigger} that no retry changes: the set is recorded as skipped instead. */
function finalFailureOf(error: unknown): ApplicationFailure | undefined {
  const cause = error instanceof ActivityFailure ? error.cause : undefined;
  return cause instanceof ApplicationFailure && cause.nonRetryable ? cause : undefined;
}

/**
 * Waits until `settleSeconds` pass without a signal announcing new objects (or {@link maxSettleWaitSeconds} from
 * the cycle's start, whichever comes first), claims every unclaimed watched object of the pipeline and fires one
 * `new_data` trigger for them (dedupe key: the pipeline and the sha256 of the claimed `key@etag` list), then ends,
 * unless signals came while it claimed, in which case it settles again. Exactly one trigger per claimed set: the
 * claim is idempotent under a claim id fixed in the history, and the trigger under its dedupe key, so retried
 * activities and replays start nothing twice. Continues as new after {@link NEW_DATA_CYCLES_PER_RUN} cycles.
 *
 * A claim is never left without its trigger: claim, fire and link retry without a limit, and each cycle first adopts
 * the claims an earlier execution left behind (terminated, or failed between claim and link) and fires them again
 * under the dedupe key rebuilt from the same set, which records (or finds) that set's one trigger. When the trigger
 * cannot fire at all (the pipeline or its version was deleted: a non-retryable failure), the set is recorded as a
 * skipped trigger with the failure as its reason and linked to it, so its objects count as handled and nothing loops;
 * they are not released to a later claim (a pipeline created again under the name starts from the objects it sees
 * after that).
 */
export async function newDataTrigger(input: NewDataTriggerInput): Promise<NewDataCycle[]> {
  const { claimNewObjects, fireTrigger, linkNewObjects, orphanNewDataClaims, skipNewObjects } =
    proxyActivities<MainActivities>(settleActivity);
  let notices = 0;
  let fresh = 0;
  let { settleSeconds, source } = input;
  setHandler(newDataSignal, (notice) => {
    notices += 1;
    if ((notice.added ?? 1) > 0) fresh += 1;
    settleSeconds = notice.settleSeconds;
    source = notice.source;
  });
  const cycles: NewDataCycle[] = [];

  /** Fires the trigger of a claimed set and points its objects at it. */
  const fire = async (claimId: string, claim: ClaimNewObjectsResult, adopted: boolean): Promise<void> => {
    const details = {
      objects: claim.objects,
      firstKeys: [...claim.firstKeys],
      claimId,
      ...(adopted ? { adopted: true } : {}),
    };
    let outcome: Omit<NewDataCycle, 'objects' | 'dedupeKey'>;
    try {
      const fired = await fireTrigger({
        pipeline: input.pipeline,
        kind: 'new_data',
        source,
        dedupeKey: claim.dedupeKey,
        details,
      });
      outcome = {
        triggerId: fired.triggerId,
        status: fired.status,
        ...(fired.runId ? { runId: fired.runId } : {}),
        ...(fired.reason ? { reason: fired.reason } : {}),
      };
    } catch (error) {
      const final = finalFailureOf(error);
      if (!final) throw error;
      const reason = `the trigger could not start a run: ${final.message}`;
      const triggerId = await skipNewObjects({
        pipeline: input.pipeline,
        claimId,
        source,
        dedupeKey: claim.dedupeKey,
        reason,
        details: { ...details, failureType: final.type ?? 'Error' },
      });
      cycles.push({ objects: claim.objects, dedupeKey: claim.dedupeKey, triggerId, status: 'skipped', reason });
      return;
    }
    await linkNewObjects({ pipeline: input.pipeline, claimId, triggerId: outcome.triggerId });
    cycles.push({ objects: claim.objects, dedupeKey: claim.dedupeKey, ...outcome });
  };

  for (let cycle = 1; ; cycle += 1) {
    // Settle: each notice of new objects restarts the quiet period, up to the longest wait from the cycle's start.
    const deadline = Date.now() + maxSettleWaitSeconds(settleSeconds) * 1000;
    let last = fresh;
    while (settleSeconds > 0) {
      const left = deadline - Date.now();
      if (left <= 0 || !(await condition(() => fresh !== last, Math.min(settleSeconds * 1000, left)))) break;
      last = fresh;
    }
    const atClaim = notices;
    // Claims an earlier execution left without a trigger: fired again first, under the same set's dedupe key.
    for (let round = 0; round < MAX_ADOPTION_ROUNDS; round += 1) {
      const orphans = await orphanNewDataClaims({ pipeline: input.pipeline });
      if (orphans.length === 0) break;
      for (const orphan of orphans) await fire(orphan.claimId, orphan, true);
    }
    const claimId = uuid4();
    const claim = await claimNewObjects({ pipeline: input.pipeline, claimId });
    if (claim.objects > 0) await fire(claimId, claim, false);
    // Nothing arrived while claiming: done (a later signal starts a fresh execution under the same id).
    if (notices === atClaim) return cycles;
    if (cycle >= NEW_DATA_CYCLES_PER_RUN || workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof newDataTrigger>({ pipeline: input.pipeline, settleSeconds, source });
    }
  }
}

/**
 * The polling fallback: lists the pipeline's watched prefix (bounded), records the objects it has not seen and
 * signals {@link newDataTrigger} when any is unclaimed. Started by the pipeline's schedule ({@link pollScheduleId});
 * does nothing when the newest definition no longer asks for polling.
 */
export async function pollWatchedPrefix(input: { readonly pipeline: string }): Promise<PollNewObjectsResult> {
  const { pollNewObjects } = proxyActivities<MainActivities>({
    startToCloseTimeout: '5 minutes',
    heartbeatTimeout: '2 minutes',
    retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 3 },
  });
  // A prefix longer than one poll's bound is listed over several polls: the schedule hands each workflow the
  // previous one's result (its last completion result), and this poll resumes where that one stopped.
  const previous = workflowInfo().lastResult as Partial<PollNewObjectsResult> | undefined;
  const startAfter =
    previous?.pipeline === input.pipeline && typeof previous.nextStartAfter === 'string'
      ? previous.nextStartAfter
      : undefined;
  return pollNewObjects({ ...input, ...(startAfter !== undefined ? { startAfter } : {}) });
}
