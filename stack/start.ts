import { loadConfig, type AppConfig } from '../core/config.js';
import { createLogger, type Logger } from '../core/logger.js';
import { exitWithError } from '../core/shutdown.js';
import { startApi } from '../server/start-api.js';
import type { ApiServer } from '../server/serve.js';
import { startDemo, type RunningDemo } from '../demo/flights.js';
import { startWorkers, type RunningWorkers } from '../workers/run-workers.js';
import { ManagedProcess } from './managed-process.js';
import { startStack, type Stack } from './stack.js';

/**
 * `npm start`: the whole platform in one command. Starts (or connects to) Temporal, PostgreSQL and S3, applies
 * migrations, starts the main and training workers and the API in this process, and prints where to look. Ctrl-C
 * or SIGTERM stops the API, then the workers (gracefully), then the services this command started, and only those.
 */
async function main(): Promise<void> {
  const startedAt = Date.now();
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (error) {
    exitWithError(createLogger({ level: 'info', name: 'start' }), error);
  }
  const logger = createLogger({ level: config.logLevel, name: 'start' });

  let stack: Stack | undefined;
  let workers: RunningWorkers | undefined;
  let api: ApiServer | undefined;
  let demo: RunningDemo | undefined;
  let stopping = false;
  const stopAll = async () => {
    await demo?.stop();
    await api?.close().catch((error: unknown) => logger.error({ err: error }, 'API did not close cleanly'));
    await workers?.shutdown().catch((error: unknown) => logger.error({ err: error }, 'workers did not stop cleanly'));
    if (stack) await stack.stop();
    else await ManagedProcess.stopAll();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: stopping services without waiting for workers');
      void ManagedProcess.stopAll().finally(() => process.exit(130));
      return;
    }
    stopping = true;
    logger.info({ signal }, 'stopping temporal-mlops');
    stopAll().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => exitWithError(logger, error),
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    stack = await startStack(config, { logger, ports: 'configured' });
    if (stopping) return;
    workers = await startWorkers({ config, endpoints: stack.endpoints, logger, roles: ['main', 'training'] });
    if (stopping) return;
    api = await startApi({ config, endpoints: stack.endpoints, logger });
    if (stopping) return;
    printReady(logger, config, stack, api, Date.now() - startedAt);
    // The flight-delay demo (MLOPS_DEMO=false skips it): runs in the background; a failure never stops the platform.
    if (config.demo) demo = startDemo({ config, endpoints: stack.endpoints, apiUrl: api.url, logger });
    workers.finished.catch(() => onSignal('SIGTERM'));
  } catch (error) {
    if (stopping) return;
    stopping = true;
    await stopAll().catch(() => undefined);
    exitWithError(logger, error);
  }
}

function printReady(logger: Logger, config: AppConfig, stack: Stack, api: ApiServer, ms: number): void {
  const { endpoints } = stack;
  const lines = [
    `temporal-mlops is ready in ${(ms / 1000).toFixed(1)} s`,
    `  API          ${api.url}`,
    `  API docs     ${api.url}/docs`,
    `  Temporal UI  ${endpoints.temporal.uiUrl ?? '(external Temporal: use its UI)'}`,
    `  Temporal     ${endpoints.temporal.address} (namespace ${endpoints.temporal.namespace})`,
    `  S3           ${endpoints.s3.endpoint} (bucket ${endpoints.s3.bucket})`,
    `  PostgreSQL   ${endpoints.databaseUrl.replace(/\/\/([^:/]+):[^@]*@/, '//$1:***@')}`,
    `  Data         ${config.dataDir} (service logs in ${config.dataDir}/logs)`,
    `  Started here ${stack.managed.length > 0 ? stack.managed.join(', ') : 'nothing (all services external)'}`,
    'Press Ctrl-C to stop.',
  ];
  logger.info({ ready: true, ms, api: api.url, temporalUi: endpoints.temporal.uiUrl }, 'temporal-mlops is ready');
  process.stdout.write(`\n${lines.join('\n')}\n\n`);
}

void main();
