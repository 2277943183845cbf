import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import type { Logger } from '../core/logger.js';

let installed = false;

/**
 * SDK warnings that describe what the platform does on purpose: the training queue's worker runs activities only.
 * Logged at debug, so a terminal does not show them as problems.
 */
const EXPECTED_WARNINGS = new Set(['No workflows registered, not polling for workflow tasks']);

const levels: Record<string, LogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
  fatal: 'ERROR',
  silent: 'ERROR',
};

/**
 * Routes the Temporal SDK's own logs (worker lifecycle, workflow and activity loggers) into our pino logger, so a
 * process writes one structured stream. The runtime is process-wide and can be installed once; later calls no-op.
 */
export function installTemporalRuntime(logger: Logger, level: string): void {
  if (installed) return;
  installed = true;
  Runtime.install({
    logger: new DefaultLogger(levels[level] ?? 'INFO', (entry) => {
      const { meta, message } = entry;
      // pino serializes errors only under `err`; the SDK puts them under `error`.
      const { error, ...rest } = (meta ?? {}) as Record<string, unknown>;
      const line = { ...rest, ...(error !== undefined ? { err: error } : {}), sdk: true };
      const level = entry.level === 'WARN' && EXPECTED_WARNINGS.has(message) ? 'DEBUG' : entry.level;
      switch (level) {
        case 'TRACE':
          logger.trace(line, message);
          break;
        case 'DEBUG':
          logger.debug(line, message);
          break;
        case 'INFO':
          logger.info(line, message);
          break;
        case 'WARN':
          logger.warn(line, message);
          break;
        case 'ERROR':
          logger.error(line, message);
          break;
      }
    }),
  });
}
