import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ServiceError } from '../core/errors.js';

/** The user and group a server runs as. */
export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

/** PostgreSQL refuses to run as root: as root, it runs as the `postgres` user. Undefined when not root. */
export function postgresUser(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) {
    throw new ServiceError(
      'PostgreSQL',
      'running as root, and there is no `postgres` user to run the server as. To fix: `useradd --system postgres`, or set DATABASE_URL to an existing server.',
    );
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** The first folder on the way down to `dir` that `user` may not enter (asked of the OS itself), or undefined. */
export function reachableBy(user: RunAs, dir: string): string | undefined {
  let current = path.resolve(dir);
  const chain: string[] = [];
  while (current !== path.dirname(current)) {
    chain.unshift(current);
    current = path.dirname(current);
  }
  for (const folder of chain) {
    if (!fs.existsSync(folder)) break;
    const probe = spawnSync('test', ['-x', folder], { uid: user.uid, gid: user.gid });
    if (probe.status !== 0) return folder;
  }
  return undefined;
}

export interface PostgresLocation {
  /** The cluster's data directory. */
  readonly clusterDir: string;
  /** Set when the cluster lives outside the data directory: the folder the `postgres` user could not enter. */
  readonly relocatedBecause?: string;
}

/** The file in the data directory that records where its PostgreSQL cluster lives when that is elsewhere. */
export function locationFile(dataDir: string): string {
  return path.join(dataDir, 'postgres.location');
}

/**
 * One folder name per data directory: readable (the checkout's name) and unique (a hash of its real path), so two
 * checkouts never share a cluster and the same checkout finds its own again.
 */
export function fallbackFolderName(dataDir: string): string {
  const real = fs.realpathSync(dataDir);
  const own = path.basename(real).replace(/^\.+/, '') || 'data';
  const readable = `${path.basename(path.dirname(real))}-${own}`.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 60);
  return `${readable}-${createHash('sha256').update(real).digest('hex').slice(0, 12)}`;
}

function hasCluster(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'PG_VERSION'));
}

/**
 * Where the embedded PostgreSQL keeps this data directory's cluster. Normally `<dataDir>/postgres`. As root, the
 * server runs as `postgres`, which cannot enter a checkout in a private home folder (`/root` is 0700): then, and
 * only for PostgreSQL's data, a persistent folder under `fallbackDir` (`/var/lib/temporal-mlops/<name>-<hash>/`)
 * owned by `postgres`, recorded in `<dataDir>/postgres.location` so every later start finds the same cluster.
 * An existing cluster is never moved or abandoned: a recorded location wins, then a cluster already in place.
 *
 * @throws ServiceError when neither the data directory nor `fallbackDir` is reachable by the `postgres` user.
 */
export function resolvePostgresCluster(options: {
  dataDir: string;
  fallbackDir: string;
  user: RunAs | undefined;
}): PostgresLocation {
  const { dataDir, fallbackDir, user } = options;
  const inDataDir = path.join(dataDir, 'postgres');
  const pointer = locationFile(dataDir);
  let recorded: string | undefined;
  try {
    recorded = fs.readFileSync(pointer, 'utf8').trim() || undefined;
  } catch {
    recorded = undefined;
  }
  if (recorded && hasCluster(recorded)) {
    const blocked = user ? reachableBy(user, dataDir) : undefined;
    return recorded === inDataDir
      ? { clusterDir: recorded }
      : { clusterDir: recorded, relocatedBecause: blocked ?? dataDir };
  }
  if (!user || hasCluster(inDataDir)) return { clusterDir: inDataDir };
  fs.mkdirSync(dataDir, { recursive: true });
  const blocked = reachableBy(user, dataDir);
  if (!blocked) return { clusterDir: inDataDir };

  if (!fs.existsSync(fallbackDir)) fs.mkdirSync(fallbackDir, { recursive: true, mode: 0o755 });
  const fallbackBlocked = reachableBy(user, fallbackDir);
  if (fallbackBlocked) {
    throw new ServiceError(
      'PostgreSQL',
      `the server runs as the \`postgres\` user, which cannot enter ${blocked} (the data directory) nor ${fallbackBlocked} (MLOPS_POSTGRES_FALLBACK_DIR). To fix: set MLOPS_POSTGRES_FALLBACK_DIR or MLOPS_DATA_DIR to a folder it can reach, or \`chmod o+x ${blocked}\`.`,
    );
  }
  const home = path.join(fallbackDir, fallbackFolderName(dataDir));
  const clusterDir = path.join(home, 'postgres');
  fs.mkdirSync(home, { recursive: true, mode: 0o755 });
  // For people who find the folder: which checkout it belongs to.
  fs.writeFileSync(path.join(home, 'data-dir.txt'), `${fs.realpathSync(dataDir)}\n`);
  fs.mkdirSync(clusterDir, { recursive: true, mode: 0o700 });
  fs.chownSync(clusterDir, user.uid, user.gid);
  fs.writeFileSync(pointer, `${clusterDir}\n`);
  return { clusterDir, relocatedBecause: blocked };
}
