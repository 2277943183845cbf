/** Thrown when the environment cannot be parsed into a valid configuration; names every bad variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly issues: readonly { variable: string; problem: string }[],
  ) {
    super(message);
  }
}

/**
 * Thrown when a local or external service cannot be started or reached. The message says which service, why, and
 * what to do about it; `logFile` points at the service's own log when there is one.
 */
export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  constructor(
    readonly service: string,
    message: string,
    readonly logFile?: string,
    options?: ErrorOptions,
  ) {
    super(`${service}: ${message}${logFile ? ` (log: ${logFile})` : ''}`, options);
  }
}

/** Type guard for errors that carry a Node.js system error code (ENOENT, EADDRINUSE, ...). */
export function isErrnoException(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string';
}
