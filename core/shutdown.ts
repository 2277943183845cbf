import type { Logger } from './logger.js';

/**
 * Runs `shutdown` once on the first SIGINT or SIGTERM, then exits (0, or 1 if shutdown failed). A second signal
 * exits at once, for a user who does not want to wait for in-flight work.
 */
export function exitOnSignal(logger: Logger, shutdown: (signal: NodeJS.Signals) => Promise<void>): void {
  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (shuttingDown) {
      logger.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(130);
    }
    shuttingDown = true;
    logger.info({ signal }, 'shutting down');
    shutdown(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/**
 * Prints a start-up failure as one readable message on stderr, whatever the log level (a user who set
 * LOG_LEVEL=silent still learns why nothing started), logs unexpected errors with their stack, and exits non-zero.
 */
export function exitWithError(logger: Logger, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  const expected =
    error instanceof Error && ['ConfigError', 'ServiceError', 'AlreadyRunningError'].includes(error.name);
  if (!expected) logger.error({ err: error }, message);
  process.stderr.write(`temporal-mlops: ${message}\n`);
  process.exit(1);
}
