import { Context } from '@temporalio/activity';
import { SourceNotAllowedError } from '../data/access-policy.js';
import {
  isWatchAllowed,
  isWatched,
  newDataDedupeKey,
  noteNewObjects,
  watchOfStored,
  type NotedObjects,
} from '../pipelines/new-data.js';
import { deletePollSchedule } from '../pipelines/poll-schedules.js';
import type { JsonProperties } from '../schema/columns.js';
import { TriggerStore } from '../storage/trigger-store.js';
import { WatchedObjectStore, type WatchedObjectRef } from '../storage/watched-object-store.js';
import { temporalOf, type ActivityDeps } from './deps.js';

/** Keys of a claimed set shown in the trigger's details. */
const FIRST_KEYS = 5;

/**
 * Pages (of the policy's `maxFiles` keys each) one poll lists at most. A longer prefix is listed over several polls:
 * each poll resumes after the last key the previous one listed (the schedule hands the previous result on).
 */
export const POLL_PAGES = 10;

export interface ClaimNewObjectsResult {
  readonly objects: number;
  readonly dedupeKey: string;
  readonly firstKeys: readonly string[];
}

/** A claim left by a settle cycle that died before its trigger was recorded and linked, to fire again. */
export interface OrphanClaimResult extends ClaimNewObjectsResult {
  readonly claimId: string;
}

function claimResult(pipeline: string, objects: readonly WatchedObjectRef[]): ClaimNewObjectsResult {
  return {
    objects: objects.length,
    dedupeKey: objects.length > 0 ? newDataDedupeKey(pipeline, objects) : '',
    firstKeys: objects.slice(0, FIRST_KEYS).map((o) => o.key),
  };
}

/** UTF-8 binary order, S3's: the order `StartAfter` resumes in. */
function utf8Compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export interface PollNewObjectsResult {
  readonly pipeline: string;
  /** Why nothing was listed (no such pipeline, polling no longer configured). */
  readonly skipped?: string;
  readonly listed: number;
  /** Where this poll's listing started (after this key); absent: at the start of the prefix. */
  readonly startAfter?: string;
  /**
   * Whether the listing stopped at its bound ({@link POLL_PAGES} pages of the policy's `maxFiles`) before the end of
   * the prefix: the keys after {@link nextStartAfter} are listed by the next poll, which resumes there.
   */
  readonly truncated: boolean;
  /** Where the next poll resumes (the last key listed) when this one was truncated. */
  readonly nextStartAfter?: string;
  readonly added: number;
  readonly unclaimed: number;
  readonly signalled: boolean;
}

/** The new-data trigger's activities: the settle workflow's claim and link, and the polling fallback's listing. */
export function createNewDataActivities(deps: ActivityDeps) {
  const watched = WatchedObjectStore.over(deps.pgPool);
  const triggers = TriggerStore.over(deps.pgPool);
  return {
    /**
     * Claims the pipeline's unclaimed watched objects under `claimId` and names their trigger's dedupe key.
     * Idempotent per claim id: a retry returns the set the first attempt claimed.
     */
    async claimNewObjects(input: { pipeline: string; claimId: string }): Promise<ClaimNewObjectsResult> {
      return claimResult(input.pipeline, await watched.claim(input.pipeline, input.claimId));
    },

    /**
     * The pipeline's claims that no recorded trigger points at (a settle cycle died between claim and link), with
     * the dedupe key rebuilt from each claimed set: firing it again records, or finds, the one trigger of that set.
     */
    async orphanNewDataClaims(input: { pipeline: string }): Promise<OrphanClaimResult[]> {
      const orphans = await watched.orphanClaims(input.pipeline);
      if (orphans.length > 0) {
        deps.logger.warn(
          { pipeline: input.pipeline, claims: orphans.map((o) => ({ claimId: o.claimId, objects: o.objects.length })) },
          `adopting ${orphans.length} new-data claim(s) of ${input.pipeline} that fired no trigger`,
        );
      }
      return orphans.map((o) => ({ claimId: o.claimId, ...claimResult(input.pipeline, o.objects) }));
    },

    /**
     * Records a claimed set whose trigger cannot fire (the pipeline or its version is gone: a failure no retry can
     * fix) as a skipped trigger event, with why, and links the objects to it: they are handled, and no cycle tries
     * them again. Idempotent under the set's dedupe key.
     */
    async skipNewObjects(input: {
      pipeline: string;
      claimId: string;
      source: string;
      dedupeKey: string;
      reason: string;
      details: JsonProperties;
    }): Promise<string> {
      const row = await triggers.record({
        pipeline: input.pipeline,
        kind: 'new_data',
        source: input.source,
        dedupeKey: input.dedupeKey,
        status: 'skipped',
        reason: input.reason,
        details: input.details,
      });
      await watched.link(input.pipeline, input.claimId, row.id);
      deps.logger.warn({ ...input, triggerId: row.id }, `new data of ${input.pipeline} starts no run: ${input.reason}`);
      return row.id;
    },

    /** Points the objects of a claim at the trigger event they fired. Idempotent. */
    async linkNewObjects(input: { pipeline: string; claimId: string; triggerId: string }): Promise<number> {
      return watched.link(input.pipeline, input.claimId, input.triggerId);
    },

    /**
     * Lists the pipeline's watched prefix page by page (the policy's `maxFiles` keys a page, at most
     * {@link POLL_PAGES} pages, starting after `startAfter`), records what it has not seen (`seen_by` poll) and
     * signals the settle workflow when any listed object is waiting for a trigger. A prefix longer than one poll's
     * bound is covered over several polls: the result names where the next one resumes (`nextStartAfter`), and a
     * poll that reaches the end hands on none, so the next starts over from the beginning. Reads the newest
     * definition each time, so a schedule left over from a definition that no longer polls does nothing.
     */
    async pollNewObjects(input: { pipeline: string; startAfter?: string }): Promise<PollNewObjectsResult> {
      const empty = { pipeline: input.pipeline, listed: 0, truncated: false, added: 0, unclaimed: 0, signalled: false };
      const version = await deps.pipelines.getVersion(input.pipeline);
      const watch = version ? watchOfStored(version.definition) : undefined;
      if (!version || !watch?.pollEverySeconds) {
        // A schedule left over from a definition that polled: it removes itself.
        await deletePollSchedule(temporalOf(deps).client, input.pipeline);
        const skipped = version
          ? `version ${version.version} of ${input.pipeline} does not poll for new data`
          : `pipeline ${input.pipeline} does not exist`;
        deps.logger.info({ pipeline: input.pipeline }, `${skipped}: its poll schedule was deleted`);
        return { ...empty, skipped };
      }
      if (!isWatchAllowed(deps.dataAccess.policy, watch)) {
        // A domain error: the failure contract ends the activity at once (no retry can fix a setting).
        throw new SourceNotAllowedError(
          `${watch.uri} is outside the allowed buckets (DATA_BUCKETS): it cannot be watched`,
        );
      }
      const maxKeys = deps.dataAccess.policy.maxFiles;
      // A cursor from a definition with another prefix means nothing here: start over.
      const startAfter =
        input.startAfter !== undefined && input.startAfter.startsWith(watch.prefix) ? input.startAfter : undefined;
      let cursor = startAfter;
      let listed = 0;
      let truncated = false;
      const totals = { added: 0, unclaimed: 0, signalled: false };
      for (let page = 1; ; page += 1) {
        const objects = await deps.objects.list(watch.bucket, watch.prefix, {
          maxKeys,
          ...(cursor !== undefined ? { startAfter: cursor } : {}),
        });
        listed += objects.length;
        const watchedObjects = objects
          .filter((o) => isWatched(watch, o.bucket, o.key))
          .map((o) => ({ key: o.key, etag: o.etag, size: o.size }));
        const noted: NotedObjects = await noteNewObjects(
          { watched, temporal: temporalOf(deps) },
          watch,
          watchedObjects,
          'poll',
        );
        totals.added += noted.added;
        totals.unclaimed += noted.unclaimed;
        totals.signalled ||= noted.signalled;
        if (objects.length < maxKeys) break;
        // The page's last key in the store's order (UTF-8 binary), whatever order the source returned it in.
        cursor = objects.map((o) => o.key).reduce((a, b) => (utf8Compare(a, b) >= 0 ? a : b));
        if (page >= POLL_PAGES) {
          truncated = true;
          break;
        }
        Context.current().heartbeat({ listed, cursor });
      }
      const result: PollNewObjectsResult = {
        pipeline: input.pipeline,
        ...totals,
        listed,
        ...(startAfter !== undefined ? { startAfter } : {}),
        truncated,
        ...(truncated && cursor !== undefined ? { nextStartAfter: cursor } : {}),
      };
      if (truncated) {
        deps.logger.warn(
          { ...result, prefix: watch.uri, maxKeysPerPoll: maxKeys * POLL_PAGES },
          `polled ${watch.uri} for ${input.pipeline}: stopped after ${listed} keys (the bound of one poll); ` +
            `the next poll resumes after ${cursor}`,
        );
      } else {
        deps.logger.info({ ...result, prefix: watch.uri }, `polled ${watch.uri} for ${input.pipeline}`);
      }
      return result;
    },
  };
}
