import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Where secrets sit in the objects a log line could be handed (the config, the stack's endpoints, their parts, an API
 * key, a request's Authorization header, a pg client's options, a connection's password): censored if they ever are. Explicit paths only: a wildcard (`*.secretKey`) makes pino walk every field of every
 * line, which doubled the cost of the request log's line per request (6.1 instead of 2.8 µs).
 */
export const REDACTED_PATHS = [
  'password',
  'secretKey',
  'databaseUrl',
  's3.secretKey',
  'config.s3.secretKey',
  'config.database.url',
  'endpoints.databaseUrl',
  'endpoints.s3.secretKey',
  // API keys and the headers that carry them, should a request or its headers be logged.
  'token',
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  // A pg client's or pool's options, and a data connection's password as a request gives it.
  'connectionString',
  'secret.value',
  'connectionsKey',
  'config.dataAccess.connectionsKey',
] as const;

/**
 * The process-wide structured logger. Lines are JSON (pino); pipe through `pino-pretty` to read them in a terminal.
 * Child loggers carry the workflow id, run id and stage where they exist.
 */
export function createLogger(options: { level: string; name?: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      base: options.name ? { service: options.name } : {},
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
    },
    // Asynchronous writes: lines logged while a write is in flight go out together in the next one, instead of one
    // blocking write(2) per line on the thread that serves requests (a line per request cost about 13 % of the
    // prediction route's throughput). pino flushes what is buffered when the process exits.
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
