/**
 * Named data connections: a Postgres URL that pipeline sources refer to by name. The URL is stored without its
 * password; the password is sealed in the row (AES-256-GCM, secret-box.ts) or named (an environment variable, a
 * file) and read only when a query runs. Nothing here ever returns a secret except `connectionString`, which the
 * extract stage and the definition probe call at the moment they connect.
 */
import { existsSync } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { asc, eq, sql } from 'drizzle-orm';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import { connections, type Connection, type SecretSource } from '../schema/index.js';
import type { Database } from './database.js';
import { SecretBox } from './secret-box.js';
import { sqlState } from './sql-errors.js';

/** The built-in connection to the platform database, as its read-only role; sources that name none use it. */
export const PLATFORM_CONNECTION = 'platform';
/** The platform database's read-only role (created by the embedded stack, stack/reader-role.ts). */
export const PLATFORM_READER_ROLE = 'mlops_reader';
/** The schema of the platform database whose tables the read-only role may read. */
export const PLATFORM_SOURCES_SCHEMA = 'sources';

/** Where the embedded stack keeps the read-only role's password. */
export function platformReaderPasswordFile(dataDir: string): string {
  return path.join(dataDir, 'secrets', 'platform-reader.password');
}

/** Where the connection key is generated when `CONNECTIONS_KEY` is not set. */
export function connectionsKeyFile(dataDir: string): string {
  return path.join(dataDir, 'secrets', 'connections.key');
}

/**
 * The built-in `platform` connection: the platform database as the read-only role, when the embedded stack made
 * that role (its password file exists); undefined otherwise (an external database: create connections instead).
 */
export function platformConnection(databaseUrl: string, dataDir: string): BuiltinConnection | undefined {
  const passwordFile = platformReaderPasswordFile(dataDir);
  if (!existsSync(passwordFile)) return undefined;
  const url = new URL(databaseUrl);
  url.username = PLATFORM_READER_ROLE;
  url.password = '';
  return {
    name: PLATFORM_CONNECTION,
    url: url.toString(),
    description: `The platform database as the read-only role ${PLATFORM_READER_ROLE} (tables of the schema ${PLATFORM_SOURCES_SCHEMA})`,
    passwordFile,
  };
}

/**
 * The connection store of a process: secrets sealed under `CONNECTIONS_KEY` or the data directory's key file, and
 * the built-in `platform` connection when the embedded stack made its role.
 */
export function openConnectionStore(options: {
  db: Database;
  dataDir: string;
  databaseUrl: string;
  connectionsKey: string | undefined;
}): ConnectionStore {
  const box = SecretBox.fromSettings({ key: options.connectionsKey, keyFile: connectionsKeyFile(options.dataDir) });
  const platform = platformConnection(options.databaseUrl, options.dataDir);
  return new ConnectionStore(options.db, box, platform ? [platform] : [], [path.resolve(options.dataDir)]);
}

/** The prefix of the environment variables a connection may read its password from. */
export const CONNECTION_ENV_PREFIX = 'MLOPS_CONNECTION_';

/** Where a connection's password comes from, as a caller gives it. */
export type SecretInput =
  | { readonly source: 'encrypted'; readonly value: string }
  | { readonly source: 'env'; readonly variable: string }
  | { readonly source: 'file'; readonly path: string };

export interface ConnectionInput {
  /** `postgres://user@host:port/db?params`; a password in it is taken out and sealed (unless `secret` is given). */
  readonly url: string;
  readonly description?: string | undefined;
  /** undefined: on create no password, on update keep the current one; null: no password. */
  readonly secret?: SecretInput | null | undefined;
}

/** A connection as the API shows it: never its secret. */
export interface ConnectionInfo {
  readonly name: string;
  readonly kind: 'postgres';
  /** Without a password. */
  readonly url: string;
  readonly description: string | null;
  readonly secretSource: SecretSource | null;
  readonly hasSecret: boolean;
  /** Defined by the platform (the platform database's read-only connection): it cannot be changed or deleted. */
  readonly builtin: boolean;
  readonly createdBy: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A connection the platform defines itself, not stored in the table. */
export interface BuiltinConnection {
  readonly name: string;
  readonly url: string;
  readonly description: string;
  /** The file holding its password, read when it is used. */
  readonly passwordFile: string;
}

/** Thrown when no connection has the name a source or request gives. */
export class ConnectionNotFoundError extends DomainError {
  override readonly name = 'ConnectionNotFoundError';
  constructor(connectionName: string, options?: DomainErrorOptions) {
    super('not_found', `no connection named "${connectionName}" (create it with POST /v1/connections)`, {
      code: 'connection_not_found',
      ...options,
    });
  }
}

/** Thrown when a connection's name is taken, or a built-in connection would be changed. */
export class ConnectionConflictError extends DomainError {
  override readonly name = 'ConnectionConflictError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('conflict', message, { code: 'connection_conflict', ...options });
  }
}

/** Thrown when a connection's URL or secret is malformed. */
export class ConnectionInvalidError extends DomainError {
  override readonly name = 'ConnectionInvalidError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('invalid', message, { code: 'invalid_connection', ...options });
  }
}

/** Thrown when a named secret (a variable, a file) cannot be read where the connection is used. */
export class ConnectionSecretUnavailableError extends DomainError {
  override readonly name = 'ConnectionSecretUnavailableError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('unavailable', message, { code: 'connection_secret_unavailable', retryable: false, ...options });
  }
}

/**
 * The URL split into what may be stored in clear and its password.
 *
 * @throws ConnectionInvalidError for anything but a `postgres://` or `postgresql://` URL with a host.
 */
export function splitConnectionUrl(url: string): { url: string; password: string | undefined } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConnectionInvalidError('url: not a URL; expected postgres://user@host:port/database');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new ConnectionInvalidError('url: expected a postgres:// or postgresql:// URL');
  }
  if (!parsed.hostname) throw new ConnectionInvalidError('url: the URL has no host');
  let password: string | undefined;
  try {
    password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  } catch {
    throw new ConnectionInvalidError('url: the password is not valid percent-encoding (write % as %25)');
  }
  parsed.password = '';
  return { url: parsed.toString(), password };
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** Stores connections; resolves a name into its full URL when a query runs. */
export class ConnectionStore {
  readonly #builtins: ReadonlyMap<string, BuiltinConnection>;

  constructor(
    private readonly db: Database,
    private readonly box: SecretBox,
    builtins: readonly BuiltinConnection[] = [],
    /** Folders a file secret may not be read from (the data directory, with the platform's own keys). */
    private readonly protectedDirs: readonly string[] = [],
  ) {
    this.#builtins = new Map(builtins.map((b) => [b.name, b]));
  }

  /**
   * Creates a connection.
   *
   * @throws ConnectionConflictError when the name is taken (or built in); ConnectionInvalidError for a bad URL.
   */
  async create(name: string, input: ConnectionInput, actor: string): Promise<ConnectionInfo> {
    this.refuseBuiltin(name);
    const row = await this.rowValues(name, input, undefined);
    try {
      const [created] = await this.db
        .insert(connections)
        .values({ name, kind: 'postgres', ...row, createdBy: actor })
        .returning();
      return toInfo(created!);
    } catch (error) {
      if (sqlState(error) === '23505') {
        throw new ConnectionConflictError(`a connection named "${name}" exists; change it with PUT`, { cause: error });
      }
      throw error;
    }
  }

  /**
   * Replaces a connection's URL and description; its secret is replaced when `secret` is given, removed when it is
   * null, and kept otherwise.
   *
   * @throws ConnectionNotFoundError; ConnectionConflictError for a built-in connection.
   */
  async update(name: string, input: ConnectionInput): Promise<ConnectionInfo> {
    this.refuseBuiltin(name);
    const current = await this.row(name);
    const row = await this.rowValues(name, input, current);
    const [updated] = await this.db
      .update(connections)
      .set({ ...row, updatedAt: sql`now()` })
      .where(eq(connections.name, name))
      .returning();
    if (!updated) throw new ConnectionNotFoundError(name);
    return toInfo(updated);
  }

  /** @throws ConnectionNotFoundError */
  async get(name: string): Promise<ConnectionInfo> {
    const builtin = this.#builtins.get(name);
    if (builtin) return builtinInfo(builtin);
    return toInfo(await this.row(name));
  }

  /** Connections, built-in ones first, then by name; `limit` (default 100) from `offset` (default 0). */
  async list(page: { limit?: number; offset?: number } = {}): Promise<ConnectionInfo[]> {
    const limit = page.limit ?? 100;
    const offset = page.offset ?? 0;
    const builtins = [...this.#builtins.values()].map(builtinInfo).slice(offset, offset + limit);
    const rows = await this.db
      .select()
      .from(connections)
      .orderBy(asc(connections.name))
      .limit(limit - builtins.length)
      .offset(Math.max(0, offset - this.#builtins.size));
    return [...builtins, ...rows.map(toInfo)];
  }

  /** @throws ConnectionNotFoundError; ConnectionConflictError for a built-in connection. */
  async delete(name: string): Promise<void> {
    this.refuseBuiltin(name);
    const deleted = await this.db
      .delete(connections)
      .where(eq(connections.name, name))
      .returning({ name: connections.name });
    if (deleted.length === 0) throw new ConnectionNotFoundError(name);
  }

  /**
   * The full URL of a connection, password included, read from where it lives now. Only for opening the connection:
   * never log, return or persist it.
   *
   * @throws ConnectionNotFoundError; ConnectionSecretUnavailableError when a named secret cannot be read;
   *   SecretIntegrityError when a sealed one does not open.
   */
  async connectionString(name: string): Promise<string> {
    const builtin = this.#builtins.get(name);
    if (builtin) return withPassword(builtin.url, await readSecretFile(builtin.passwordFile, name, undefined));
    const row = await this.row(name);
    if (!row.secretSource || row.secret === null) return row.url;
    switch (row.secretSource) {
      case 'encrypted':
        return withPassword(row.url, await this.box.open(row.secret, `connection:${name}`));
      case 'env': {
        const value = process.env[row.secret];
        if (value === undefined || value === '') {
          throw new ConnectionSecretUnavailableError(
            `the password of connection "${name}" comes from the environment variable ${row.secret}, which is not set`,
          );
        }
        return withPassword(row.url, value);
      }
      case 'file':
        return withPassword(row.url, await readSecretFile(row.secret, name, this.protectedDirs));
    }
  }

  private refuseBuiltin(name: string): void {
    if (this.#builtins.has(name)) {
      throw new ConnectionConflictError(`"${name}" is a built-in connection; it cannot be created, changed or deleted`);
    }
  }

  private async row(name: string): Promise<Connection> {
    const [row] = await this.db.select().from(connections).where(eq(connections.name, name));
    if (!row) throw new ConnectionNotFoundError(name);
    return row;
  }

  private async rowValues(
    name: string,
    input: ConnectionInput,
    current: Connection | undefined,
  ): Promise<Pick<Connection, 'url' | 'description' | 'secretSource' | 'secret'>> {
    const { url, password } = splitConnectionUrl(input.url);
    if (password !== undefined && input.secret) {
      throw new ConnectionInvalidError('give the password either in url or in secret, not both');
    }
    const secret: SecretInput | null | undefined =
      password !== undefined ? { source: 'encrypted', value: password } : input.secret;
    let stored: Pick<Connection, 'secretSource' | 'secret'>;
    if (secret === undefined) {
      stored = current ? { secretSource: current.secretSource, secret: current.secret } : nothing();
    } else if (secret === null) stored = nothing();
    else if (secret.source === 'encrypted') {
      if (secret.value === '') throw new ConnectionInvalidError('secret.value: the password is empty');
      stored = { secretSource: 'encrypted', secret: await this.box.seal(secret.value, `connection:${name}`) };
    } else if (secret.source === 'env') {
      // Only variables made for connections: an admin key must not be able to send the platform's own secrets
      // (S3_SECRET_KEY, DATABASE_URL) to a server it controls, which a Postgres server may ask for in clear text.
      if (!ENV_NAME.test(secret.variable) || !secret.variable.startsWith(CONNECTION_ENV_PREFIX)) {
        throw new ConnectionInvalidError(
          `secret.variable: expected a variable named ${CONNECTION_ENV_PREFIX}<NAME> (letters, digits and _)`,
        );
      }
      stored = { secretSource: 'env', secret: secret.variable };
    } else {
      if (!secret.path.startsWith('/')) throw new ConnectionInvalidError('secret.path: expected an absolute path');
      await checkSecretFile(secret.path, this.protectedDirs);
      stored = { secretSource: 'file', secret: secret.path };
    }
    return { url, description: input.description ?? null, ...stored };
  }
}

function nothing(): Pick<Connection, 'secretSource' | 'secret'> {
  return { secretSource: null, secret: null };
}

function withPassword(url: string, password: string): string {
  const parsed = new URL(url);
  parsed.password = encodeURIComponent(password);
  return parsed.toString();
}

/** A password file is small; a larger one is not a password (or is a device that never ends). */
const MAX_SECRET_FILE_BYTES = 4096;

/** System folders whose files hold the process's own environment and state, never a connection's password. */
const SYSTEM_DIRS = ['/proc', '/sys', '/dev'];

/**
 * Refuses a password file that could hand the platform's own secrets to a connection's server: one under the data
 * directory (its keys), or a system file (`/proc/self/environ` holds every variable). Resolved through symbolic
 * links, so a link cannot lead there.
 */
async function checkSecretFile(file: string, protectedDirs: readonly string[]): Promise<void> {
  let real: string;
  try {
    real = await realpath(file);
  } catch {
    // Not there yet (written by a deployment tool later): the check runs again when it is read.
    real = path.resolve(file);
  }
  const inside = (dir: string) => real === dir || real.startsWith(`${dir}${path.sep}`);
  if ([...SYSTEM_DIRS, ...protectedDirs].some(inside)) {
    throw new ConnectionInvalidError(
      'secret.path: a password file may not be a system file or lie in the platform data directory, which holds ' +
        "the platform's own secrets",
    );
  }
}

/** `protectedDirs` undefined: the platform's own file (a built-in connection's), read as it is. */
async function readSecretFile(
  file: string,
  name: string,
  protectedDirs: readonly string[] | undefined,
): Promise<string> {
  if (protectedDirs) await checkSecretFile(file, protectedDirs);
  try {
    const info = await stat(file);
    if (!info.isFile() || info.size > MAX_SECRET_FILE_BYTES) {
      throw new Error(`not a regular file of at most ${MAX_SECRET_FILE_BYTES} bytes`);
    }
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    throw new ConnectionSecretUnavailableError(`the password file of connection "${name}" cannot be read`, {
      cause: error,
    });
  }
}

function toInfo(row: Connection): ConnectionInfo {
  return {
    name: row.name,
    kind: row.kind,
    url: row.url,
    description: row.description,
    secretSource: row.secretSource,
    hasSecret: row.secret !== null,
    builtin: false,
    createdBy: row.createdBy,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

function builtinInfo(builtin: BuiltinConnection): ConnectionInfo {
  const epoch = new Date(0);
  return {
    name: builtin.name,
    kind: 'postgres',
    url: builtin.url,
    description: builtin.description,
    secretSource: 'file',
    hasSecret: true,
    builtin: true,
    createdBy: 'platform',
    createdAt: epoch,
    updatedAt: epoch,
  };
}
