import { sql, type SQL } from 'drizzle-orm';
import { timestamp, type AnyPgColumn } from 'drizzle-orm/pg-core';

/** Free-form JSON properties (MLMD's custom properties, stage outputs, parameters). */
export type JsonProperties = Record<string, unknown>;

/** `created_at timestamptz not null default now()`; a new builder per call because Drizzle builders are mutable. */
export function createdAt() {
  return timestamp('created_at', { withTimezone: true }).notNull().defaultNow();
}

/** Like {@link createdAt}, and Drizzle sets it on every `update()` so callers cannot forget. */
export function updatedAt() {
  return timestamp('updated_at', { withTimezone: true })
    .notNull()
    .defaultNow()
    .$onUpdate(() => new Date());
}

/**
 * `column in ('a', 'b', ...)` for a check constraint. Status columns are text plus a check rather than a pgEnum
 * because adding or retiring a value is then one migration that replaces the constraint, with no enum type to alter.
 * The values are literals in DDL (no bind parameters there), so they are quoted here; they come from our own
 * constants, never from input.
 */
export function oneOf(column: AnyPgColumn, values: readonly string[]): SQL {
  const list = values.map((v) => `'${v.replaceAll("'", "''")}'`).join(', ');
  return sql`${column} in (${sql.raw(list)})`;
}
