import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The process-wide structured logger. Lines are JSON (pino); pipe through `pino-pretty` to read them in a terminal.
 * Child loggers carry the workflow id, run id and stage where they exist.
 */
export function createLogger(options: { level: string; name?: string }): Logger {
  return pino({
    level: options.level,
    base: options.name ? { service: options.name } : {},
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ['*.secretKey', '*.password', 'databaseUrl', '*.databaseUrl'], censor: '[redacted]' },
  });
}
