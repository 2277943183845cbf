/**
 * The platform database's read-only role: what Postgres sources that name no connection query as (the built-in
 * `platform` connection), so a source query never runs as the superuser. The role logs in with a password kept in
 * a file under the data directory (mode 0600); it cannot write (`default_transaction_read_only`), is no superuser,
 * holds no `pg_read_server_files` (so no `pg_read_file`), and may read only the tables of the `sources` schema.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { isErrnoException } from '../core/errors.js';
import { readOrCreateSecret } from '../core/secret-file.js';
import { PLATFORM_READER_ROLE, PLATFORM_SOURCES_SCHEMA } from '../storage/connection-store.js';

/**
 * Creates (or brings back in line) the read-only role and the `sources` schema it may read, on the database of
 * `adminUrl` (a superuser's URL). Idempotent, and safe when two starters race.
 */
export async function ensureReaderRole(adminUrl: string, passwordFile: string): Promise<void> {
  const password = await readOrCreateSecret(passwordFile, () => randomBytes(24).toString('base64url'));
  const role = pg.escapeIdentifier(PLATFORM_READER_ROLE);
  const schema = pg.escapeIdentifier(PLATFORM_SOURCES_SCHEMA);
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ database: string }>('select current_database() as database');
    const database = pg.escapeIdentifier(rows[0]!.database);
    const { rowCount } = await client.query('select 1 from pg_roles where rolname = $1', [PLATFORM_READER_ROLE]);
    if (rowCount === 0) {
      await client.query(`create role ${role} login`).catch((error: unknown) => {
        // 42710: another starter created it meanwhile.
        if (!(isErrnoException(error) && (error.code === '42710' || error.code === '23505'))) throw error;
      });
    }
    await client.query(
      `alter role ${role} with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls ` +
        `password ${pg.escapeLiteral(password)}`,
    );
    await client.query(`alter role ${role} set default_transaction_read_only = on`);
    await client.query(`revoke pg_read_server_files, pg_write_server_files, pg_execute_server_program from ${role}`);
    await client.query(`grant connect on database ${database} to ${role}`);
    await client.query(`create schema if not exists ${schema}`).catch((error: unknown) => {
      if (!(isErrnoException(error) && (error.code === '42P06' || error.code === '23505'))) throw error;
    });
    await client.query(`grant usage on schema ${schema} to ${role}`);
    await client.query(`grant select on all tables in schema ${schema} to ${role}`);
    await client.query(`alter default privileges in schema ${schema} grant select on tables to ${role}`);
  } finally {
    await client.end().catch(() => undefined);
  }
}
