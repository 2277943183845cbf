/**
 * `npm run migrate`: applies the committed migrations to the external Postgres named by DATABASE_URL (the compose
 * `migrate` job, or an operator before an upgrade). `npm start` applies them itself, embedded Postgres included.
 */
import { loadConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { createDatabase, runMigrations, waitForDatabase } from '../storage/database.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger({ level: config.logLevel, name: 'migrate' });
  const url = config.database.url;
  if (url === undefined) {
    log.error('DATABASE_URL is not set: set it to the Postgres to migrate, or use `npm start`, which runs migrations');
    process.exitCode = 1;
    return;
  }
  await waitForDatabase(url, {
    timeoutMs: config.serviceStartTimeoutSeconds * 1000,
    onRetry: ({ attempt, delayMs, error }) =>
      log.warn({ attempt, delayMs, err: error.message }, 'Postgres not reachable yet, retrying'),
  });
  const { db, close } = createDatabase(url, { max: 1, applicationName: 'temporal-mlops-migrate' });
  try {
    const started = Date.now();
    await runMigrations(db);
    log.info({ durationMs: Date.now() - started }, 'migrations applied');
  } finally {
    await close();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
