/**
 * Alias moves, shared by the registry (the aliases people name) and the deployments (`champion`, and `previous`
 * with it). Every move locks the alias's row before it writes, so concurrent moves of one alias are serialised: each
 * sees the version the one before it left, the last to commit wins, and model_alias_changes records every move with
 * the version it replaced.
 */
import { and, asc, desc, eq, sql } from 'drizzle-orm';
import { alias as aliased } from 'drizzle-orm/pg-core';
import { modelAliasChanges, modelAliases, modelVersions } from '../schema/index.js';
import type { Database } from './database.js';
import type { Page } from './page.js';
import { CHAMPION_ALIAS, RegistryConflictError, type Transaction } from './registry-common.js';

/**
 * The alias that names the version that was champion before the current one: moved with `champion`, in the same
 * transaction, whenever the champion changes, so "go back" has a name.
 */
export const PREVIOUS_ALIAS = 'previous';

/**
 * An alias name: a letter first, so that it never reads as a version number (`/versions/3` is version 3, never an
 * alias), then letters, digits and `._-`; at most 64.
 */
export const ALIAS_PATTERN = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;

/**
 * Refuses a registry write of an alias only the deployment path moves: `champion` and `previous`.
 *
 * @throws RegistryConflictError saying how that alias moves.
 */
export function checkAliasWritable(alias: string, what: 'moved' | 'deleted'): void {
  if (alias === CHAMPION_ALIAS) {
    throw new RegistryConflictError(
      `the ${CHAMPION_ALIAS} alias names what deployments serve and is ${what} only through the deployment path: ` +
        'deploy a version (a rollout) or roll a deployment back',
    );
  }
  if (alias === PREVIOUS_ALIAS) {
    throw new RegistryConflictError(
      `the ${PREVIOUS_ALIAS} alias names the champion before the current one and is ${what} only with ${CHAMPION_ALIAS}, ` +
        'through the deployment path: deploy a version (a rollout) or roll a deployment back',
    );
  }
}

/** One alias of a model and the version it names, by id and number. */
export interface AliasView {
  readonly alias: string;
  readonly versionId: string;
  readonly version: number;
  readonly updatedAt: Date;
}

/** One recorded move: `from` null for a new alias, `to` null for a deleted one. */
export interface AliasChangeView {
  readonly alias: string;
  readonly from: { readonly versionId: string; readonly version: number } | null;
  readonly to: { readonly versionId: string; readonly version: number } | null;
  readonly actor: string;
  readonly reason: string;
  readonly createdAt: Date;
}

/** What one move did. */
export interface AliasMove {
  /** The version the alias named before; null when it did not exist. */
  readonly fromVersionId: string | null;
  /** False when the alias already named the version: nothing was written. */
  readonly changed: boolean;
}

interface MoveInput {
  readonly modelId: string;
  readonly alias: string;
  readonly versionId: string;
  readonly actor: string;
  readonly reason: string;
}

// A move retries when the alias it found was deleted before it could lock it; each retry means another transaction
// committed, so a handful is plenty.
const MOVE_ATTEMPTS = 5;

/**
 * Points the alias at the version inside `tx`, recording the move; a no-op (nothing written) when it already names
 * it. The version must be one of the model's (the caller checks). The alias's row stays locked until `tx` ends.
 */
export async function moveAlias(tx: Transaction, move: MoveInput): Promise<AliasMove> {
  const { modelId, alias, versionId } = move;
  const where = and(eq(modelAliases.modelId, modelId), eq(modelAliases.alias, alias));
  for (let attempt = 1; attempt <= MOVE_ATTEMPTS; attempt++) {
    // Waits for a concurrent insert of the same alias to end, so a second creator becomes a mover of the first's row.
    const [created] = await tx
      .insert(modelAliases)
      .values({ modelId, alias, versionId })
      .onConflictDoNothing({ target: [modelAliases.modelId, modelAliases.alias] })
      .returning();
    if (created) {
      await record(tx, move, null, versionId);
      return { fromVersionId: null, changed: true };
    }
    const [current] = await tx.select().from(modelAliases).where(where).for('update');
    if (!current) continue;
    if (current.versionId === versionId) return { fromVersionId: versionId, changed: false };
    await tx.update(modelAliases).set({ versionId }).where(where);
    await record(tx, move, current.versionId, versionId);
    return { fromVersionId: current.versionId, changed: true };
  }
  throw new Error(
    `alias ${alias} of model ${modelId} was deleted and recreated ${MOVE_ATTEMPTS} times during one move`,
  );
}

/** Deletes the alias inside `tx`, recording it; the version it named, or undefined when there was no such alias. */
export async function removeAlias(tx: Transaction, target: Omit<MoveInput, 'versionId'>): Promise<string | undefined> {
  const [removed] = await tx
    .delete(modelAliases)
    .where(and(eq(modelAliases.modelId, target.modelId), eq(modelAliases.alias, target.alias)))
    .returning();
  if (!removed) return undefined;
  await record(tx, target, removed.versionId, null);
  return removed.versionId;
}

/**
 * Moves `champion` to the version and, when it named another one before, `previous` to that one, both recorded with
 * the deployment change's actor and reason. Always locks champion's row before previous's, so two changes never
 * deadlock on them.
 */
export async function moveChampion(tx: Transaction, move: Omit<MoveInput, 'alias'>): Promise<void> {
  const champion = await moveAlias(tx, { ...move, alias: CHAMPION_ALIAS });
  if (champion.changed && champion.fromVersionId !== null) {
    await moveAlias(tx, { ...move, alias: PREVIOUS_ALIAS, versionId: champion.fromVersionId });
  }
}

async function record(
  tx: Transaction,
  move: Omit<MoveInput, 'versionId'>,
  fromVersionId: string | null,
  toVersionId: string | null,
): Promise<void> {
  await tx.insert(modelAliasChanges).values({
    modelId: move.modelId,
    alias: move.alias,
    fromVersionId,
    toVersionId,
    actor: move.actor,
    reason: move.reason,
    // Moves in one transaction (champion, then previous) would share now(); the wall clock keeps their order.
    createdAt: sql`clock_timestamp()`,
  });
}

/** The model's aliases, by name, with the versions' numbers. */
export async function readAliases(db: Database | Transaction, modelId: string): Promise<AliasView[]> {
  return db
    .select({
      alias: modelAliases.alias,
      versionId: modelAliases.versionId,
      version: modelVersions.version,
      updatedAt: modelAliases.updatedAt,
    })
    .from(modelAliases)
    .innerJoin(modelVersions, eq(modelVersions.id, modelAliases.versionId))
    .where(eq(modelAliases.modelId, modelId))
    .orderBy(asc(modelAliases.alias));
}

/** The model's recorded alias moves (of one alias, when given), newest first. */
export async function readAliasChanges(
  db: Database,
  modelId: string,
  alias: string | undefined,
  page: Page,
): Promise<AliasChangeView[]> {
  const fromVersion = aliased(modelVersions, 'from_version');
  const toVersion = aliased(modelVersions, 'to_version');
  const rows = await db
    .select({
      change: modelAliasChanges,
      fromNumber: fromVersion.version,
      toNumber: toVersion.version,
    })
    .from(modelAliasChanges)
    .leftJoin(fromVersion, eq(fromVersion.id, modelAliasChanges.fromVersionId))
    .leftJoin(toVersion, eq(toVersion.id, modelAliasChanges.toVersionId))
    .where(
      alias === undefined
        ? eq(modelAliasChanges.modelId, modelId)
        : and(eq(modelAliasChanges.modelId, modelId), eq(modelAliasChanges.alias, alias)),
    )
    .orderBy(desc(modelAliasChanges.createdAt), desc(modelAliasChanges.id))
    .limit(page.limit)
    .offset(page.offset);
  const ref = (versionId: string | null, version: number | null) =>
    versionId === null || version === null ? null : { versionId, version };
  return rows.map(({ change, fromNumber, toNumber }) => ({
    alias: change.alias,
    from: ref(change.fromVersionId, fromNumber),
    to: ref(change.toVersionId, toNumber),
    actor: change.actor,
    reason: change.reason,
    createdAt: change.createdAt,
  }));
}
