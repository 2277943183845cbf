import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { loadConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { startStack } from '../stack/stack.js';

/**
 * Starts one isolated stack for the whole integration run: real Temporal, PostgreSQL and MinIO on free random
 * ports with a fresh data directory, so a test run never touches a developer's running stack or data.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-test-'));
  // mkdtemp makes it private to root; the PostgreSQL server runs as `postgres` and must be able to enter it.
  fs.chmodSync(dataDir, 0o755);
  const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn', name: 'test-stack' });
  const config = loadConfig({ ...process.env, NODE_ENV: 'test', MLOPS_DATA_DIR: dataDir });
  const started = Date.now();
  // Random ports are picked free, then bound by the servers a moment later; another process on the machine can take
  // one in between. One more try, on fresh ports, rather than failing the whole run on that race.
  const stack = await startStack(config, { logger, ports: 'random' }).catch((error: unknown) => {
    if (!String((error as Error)?.message).includes('address already in use')) throw error;
    logger.warn({ err: error }, 'a random port was taken while the stack started; starting again on other ports');
    return startStack(config, { logger, ports: 'random' });
  });
  logger.info({ ms: Date.now() - started, managed: stack.managed, dataDir }, 'test stack ready');
  project.provide('stack', stack.endpoints);
  project.provide('stackDataDir', dataDir);
  return async () => {
    await stack.stop();
    if (!process.env.KEEP_TEST_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
  };
}
