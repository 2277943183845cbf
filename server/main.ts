import path from 'node:path';
import { createCliOutput } from '../core/cli-output.js';
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
  const output = createCliOutput({
    name: 'api',
    level: config.logLevel,
    format: config.logFormat,
    logDir: path.join(config.dataDir, 'logs'),
    logFileName: 'api.log',
  });
  const { logger } = output;
  try {
    const api = await startApi({ config, endpoints: resolveEndpoints(config), logger });
    exitOnSignal(logger, () => api.close());
    if (output.mode === 'human') {
      output.print(
        `API listening on ${api.url} (docs ${api.url}/docs; JSON logs in ${output.logFile}). Ctrl-C stops it.`,
      );
    }
  } catch (error) {
    exitWithError(logger, error);
  }
}

void main();
