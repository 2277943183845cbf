import { loadConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { exitOnSignal, exitWithError } from '../core/shutdown.js';
import { resolveEndpoints } from '../stack/endpoints.js';
import { startApi } from './start-api.js';

/** The API process on its own (containers, clusters): connects to the configured services; starts none. */
async function main(): Promise<void> {
  const bootLogger = createLogger({ level: 'info', name: 'api' });
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    exitWithError(bootLogger, error);
  }
  const logger = createLogger({ level: config.logLevel, name: 'api' });
  try {
    const api = await startApi({ config, endpoints: resolveEndpoints(config), logger });
    exitOnSignal(logger, () => api.close());
  } catch (error) {
    exitWithError(logger, error);
  }
}

void main();
