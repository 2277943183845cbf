import { loadConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { exitOnSignal, exitWithError } from '../core/shutdown.js';
import { resolveEndpoints } from '../stack/endpoints.js';
import { startWorkers, type QueueRole } from './run-workers.js';

/**
 * A worker process on its own (a container, a GPU host): connects to the configured services, serves its queues
 * until SIGINT/SIGTERM, then shuts down gracefully (in-flight activities finish within WORKER_SHUTDOWN_GRACE_SECONDS,
 * the rest are handed back to Temporal for another worker).
 */
export async function runWorkerProcess(roles: readonly QueueRole[], name: string): Promise<void> {
  const bootLogger = createLogger({ level: 'info', name });
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    exitWithError(bootLogger, error);
  }
  const logger = createLogger({ level: config.logLevel, name });
  try {
    const running = await startWorkers({ config, endpoints: resolveEndpoints(config), logger, roles });
    exitOnSignal(logger, () => running.shutdown());
    logger.info({ roles }, 'worker running');
    await running.finished;
  } catch (error) {
    exitWithError(logger, error);
  }
}
