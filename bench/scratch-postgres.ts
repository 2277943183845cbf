import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureDatabase, PLATFORM_DATABASE, postgresUrl, startPostgresServer } from '../stack/postgres-server.js';
import { findFreePort } from '../stack/ports.js';
import { createDatabase, runMigrations } from '../storage/database.js';

export interface ScratchPostgres {
  /** The platform database, migrated. */
  readonly url: string;
  /** The scratch folder (the cluster lives in it), for the bench's own files; removed by {@link stop}. */
  readonly dir: string;
  stop(): Promise<void>;
}

/** A throwaway embedded PostgreSQL for a bench, on a free port under a temporary folder. */
export async function startScratchPostgres(name: string): Promise<ScratchPostgres> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `mlops-bench-${name}-`));
  // mkdtemp makes it private; the embedded PostgreSQL runs as `postgres` and must be able to enter it.
  fs.chmodSync(dir, 0o755);
  const port = await findFreePort();
  const server = await startPostgresServer({
    clusterDir: path.join(dir, 'postgres'),
    logFile: path.join(dir, 'postgres.log'),
    pidFile: path.join(dir, 'postgres.pid'),
    host: '127.0.0.1',
    port,
    timeoutMs: 60_000,
  });
  const stop = async () => {
    await server.process.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await ensureDatabase(postgresUrl('127.0.0.1', port, 'postgres'), PLATFORM_DATABASE);
    const database = createDatabase(server.url, { max: 1 });
    try {
      await runMigrations(database.db);
    } finally {
      await database.close();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: server.url, dir, stop };
}
