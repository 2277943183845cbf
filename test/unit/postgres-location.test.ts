import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ServiceError } from '../../core/errors.js';
import {
  fallbackFolderName,
  locationFile,
  postgresUser,
  reachableBy,
  resolvePostgresCluster,
} from '../../stack/postgres-location.js';

let root: string;
/** A checkout in a private home folder: /root is 0700 on a fresh machine. */
let privateDataDir: string;
/** A data directory the `postgres` user can reach. */
let openDataDir: string;
let fallbackDir: string;
// The tests run as root here and in CI; as another user PostgreSQL runs as that user and nothing moves.
const user = postgresUser();

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-pg-location-'));
  fs.chmodSync(root, 0o755);
  const home = path.join(root, 'home');
  fs.mkdirSync(home, { mode: 0o700 });
  fs.chmodSync(home, 0o700);
  privateDataDir = path.join(home, 'checkout', '.data');
  fs.mkdirSync(privateDataDir, { recursive: true });
  openDataDir = path.join(root, 'open', '.data');
  fs.mkdirSync(openDataDir, { recursive: true });
  fallbackDir = path.join(root, 'var-lib');
});

afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('resolvePostgresCluster', () => {
  it('keeps the cluster in the data directory when the server user can reach it', () => {
    expect(resolvePostgresCluster({ dataDir: openDataDir, fallbackDir, user })).toEqual({
      clusterDir: path.join(openDataDir, 'postgres'),
    });
    expect(fs.existsSync(fallbackDir)).toBe(false);
  });

  it('moves only the cluster to the fallback folder when the data directory is private, and finds it again', () => {
    const location = resolvePostgresCluster({ dataDir: privateDataDir, fallbackDir, user });
    if (!user) {
      expect(location).toEqual({ clusterDir: path.join(privateDataDir, 'postgres') });
      return;
    }
    const folder = fallbackFolderName(privateDataDir);
    expect(folder).toMatch(/^checkout-data-[0-9a-f]{12}$/);
    expect(location).toEqual({
      clusterDir: path.join(fallbackDir, folder, 'postgres'),
      relocatedBecause: path.join(root, 'home'),
    });
    expect(reachableBy(user, location.clusterDir)).toBeUndefined();
    expect(fs.statSync(location.clusterDir).uid).toBe(user.uid);
    expect(fs.readFileSync(locationFile(privateDataDir), 'utf8').trim()).toBe(location.clusterDir);
    expect(fs.readFileSync(path.join(fallbackDir, folder, 'data-dir.txt'), 'utf8').trim()).toBe(privateDataDir);

    // Once it holds a cluster, the recorded location wins, even if the home folder is opened up later.
    fs.writeFileSync(path.join(location.clusterDir, 'PG_VERSION'), '18\n');
    fs.chmodSync(path.join(root, 'home'), 0o755);
    expect(resolvePostgresCluster({ dataDir: privateDataDir, fallbackDir, user }).clusterDir).toBe(location.clusterDir);
  });

  it('leaves an existing cluster in the data directory where it is', () => {
    const inPlace = path.join(privateDataDir, 'postgres');
    fs.mkdirSync(inPlace);
    fs.writeFileSync(path.join(inPlace, 'PG_VERSION'), '18\n');
    expect(resolvePostgresCluster({ dataDir: privateDataDir, fallbackDir, user })).toEqual({ clusterDir: inPlace });
  });

  it('gives two checkouts two clusters', () => {
    const other = path.join(root, 'home', 'other', '.data');
    fs.mkdirSync(other, { recursive: true });
    expect(fallbackFolderName(other)).not.toBe(fallbackFolderName(privateDataDir));
  });

  it('says what to do when the fallback folder is not reachable either', () => {
    if (!user) return;
    const blockedFallback = path.join(root, 'home', 'fallback');
    let error: unknown;
    try {
      resolvePostgresCluster({ dataDir: privateDataDir, fallbackDir: blockedFallback, user });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ServiceError);
    expect((error as Error).message).toContain('MLOPS_POSTGRES_FALLBACK_DIR');
    expect((error as Error).message).toContain(`chmod o+x ${path.join(root, 'home')}`);
    expect(fs.existsSync(locationFile(privateDataDir))).toBe(false);
  });
});
