/** Postgres errors as the stores see them: Drizzle wraps the pg error (with its SQLSTATE `code`) as `cause`. */

/** The SQLSTATE of a database error, looked up through its `cause` chain. */
export function sqlState(error: unknown): string | undefined {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** SQLSTATE of a foreign-key violation: the row a write refers to does not exist. */
export const FOREIGN_KEY_VIOLATION = '23503';

/**
 * Runs a write and turns a foreign-key violation into the store's own not-found error, so callers see "model X does
 * not exist" rather than a constraint name.
 */
export async function withNotFound<T>(write: () => Promise<T>, notFound: (cause: unknown) => Error): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (sqlState(error) === FOREIGN_KEY_VIOLATION) throw notFound(error);
    throw error;
  }
}
