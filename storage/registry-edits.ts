/**
 * Descriptions and key/value tags of registered models and versions: their bounds, and the one statement that
 * applies an edit, so concurrent edits of different keys both land.
 */
import { sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import { RegistryConflictError } from './registry-common.js';

/** Tags one model or version may carry. */
export const MAX_TAGS = 50;
/** A tag's value, in characters. */
export const MAX_TAG_VALUE_LENGTH = 256;
/** A description, in characters. */
export const MAX_DESCRIPTION_LENGTH = 5000;
/**
 * A tag key: letters, digits and `_./-`, at most 64, never `:`, which separates the key from the value in a search's
 * `tag=key:value`.
 */
export const TAG_KEY_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_./-]{0,63}$/;

/** An edit of a model's or version's description and tags; what it leaves out is kept. */
export interface RegistryPatch {
  /** Replaces the description; null clears it. */
  readonly description?: string | null | undefined;
  /** Merged into the tags, like a JSON merge patch: a string sets the key, null removes it. */
  readonly tags?: Readonly<Record<string, string | null>> | undefined;
}

/**
 * The `set` of an update applying `patch` to a row with these columns, or undefined when the patch changes nothing.
 * The tags are merged by Postgres from the row as it is when the update locks it, not as it was read.
 */
export function patchSet(
  columns: { readonly description: AnyPgColumn; readonly tags: AnyPgColumn },
  patch: RegistryPatch,
): { description?: string | null; tags?: SQL } | undefined {
  const set: { description?: string | null; tags?: SQL } = {};
  if (patch.description !== undefined) set.description = patch.description;
  if (patch.tags !== undefined) {
    const entries = Object.entries(patch.tags);
    const added = Object.fromEntries(entries.filter(([, v]) => v !== null));
    const removed = entries.filter(([, v]) => v === null).map(([k]) => k);
    set.tags = sql`(${columns.tags} || ${JSON.stringify(added)}::jsonb) - ${sql.param(removed)}::text[]`;
  }
  return Object.keys(set).length === 0 ? undefined : set;
}

/**
 * Refuses tags past {@link MAX_TAGS} after an edit (thrown inside the edit's transaction, so nothing is kept).
 *
 * @throws RegistryConflictError naming the count.
 */
export function checkTagCount(what: string, tags: Readonly<Record<string, string>>): void {
  const count = Object.keys(tags).length;
  if (count > MAX_TAGS) {
    throw new RegistryConflictError(
      `tags: the edit would leave ${what} with ${count} tags; at most ${MAX_TAGS} (remove some with null values)`,
    );
  }
}
