import { FailureType } from './constants.js';

/**
 * What kind of refusal a {@link DomainError} is. The kind fixes the HTTP status, the default API code, the Temporal
 * failure type an activity reports, and whether retrying can help, so no layer keeps its own table of errors.
 */
export type DomainErrorKind =
  | 'invalid'
  | 'invalid_data'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'too_large'
  | 'rate_limited'
  | 'integrity'
  | 'unavailable'
  | 'client_closed';

interface KindContract {
  readonly httpStatus: number;
  readonly code: string;
  /** The ApplicationFailure type runs record; workflows branch on it (see FailureType). */
  readonly failureType: string;
  readonly retryable: boolean;
}

const CONTRACT: Record<DomainErrorKind, KindContract> = {
  invalid: { httpStatus: 400, code: 'invalid_request', failureType: FailureType.InvalidInput, retryable: false },
  invalid_data: { httpStatus: 422, code: 'invalid_data', failureType: FailureType.DataValidation, retryable: false },
  unauthorized: { httpStatus: 401, code: 'unauthorized', failureType: 'Unauthorized', retryable: false },
  // Refused by a policy (a key's scopes, the data access policy): no retry changes the answer.
  forbidden: { httpStatus: 403, code: 'forbidden', failureType: 'Forbidden', retryable: false },
  not_found: { httpStatus: 404, code: 'not_found', failureType: FailureType.NotFound, retryable: false },
  // A write that contradicts stored state is a bad request for the stage that made it: no retry fixes it.
  conflict: { httpStatus: 409, code: 'conflict', failureType: FailureType.InvalidInput, retryable: false },
  too_large: { httpStatus: 413, code: 'payload_too_large', failureType: FailureType.InvalidInput, retryable: false },
  rate_limited: { httpStatus: 429, code: 'rate_limited', failureType: 'RateLimited', retryable: true },
  integrity: {
    httpStatus: 500,
    code: 'artifact_integrity',
    failureType: FailureType.ArtifactIntegrity,
    retryable: false,
  },
  unavailable: { httpStatus: 503, code: 'service_unavailable', failureType: 'ServiceUnavailable', retryable: true },
  // nginx's "client closed request": nobody reads the answer; the status labels the request in logs and metrics.
  client_closed: { httpStatus: 499, code: 'client_closed_request', failureType: 'ClientClosed', retryable: true },
};

export interface DomainErrorOptions extends ErrorOptions {
  /** Overrides the kind's default code with a more specific one, for example `model_version_not_found`. */
  readonly code?: string;
  /** Returned to the caller as `error.details` and kept in the failure's details: never secrets or internal state. */
  readonly details?: unknown;
  /** Overrides the kind's failure type (a data problem found while preparing is DataValidation, ...). */
  readonly failureType?: string;
  /** Overrides whether retrying can help (an object that changed while read is worth reading again). */
  readonly retryable?: boolean;
}

/**
 * Base of every error that code throws on purpose: a refusal of a request, a stage or a write that the caller should
 * see as written. It carries its own HTTP status and code (the API's one error handler answers with them), its
 * Temporal failure type and retryability (one `toApplicationFailure` turns it into an activity failure), so neither
 * routes nor activities translate errors. Process-level failures (configuration, a service that cannot start) are
 * not domain errors: they end `npm start` with a message, not a response.
 */
export abstract class DomainError extends Error {
  override readonly name: string = 'DomainError';
  readonly kind: DomainErrorKind;
  readonly httpStatus: number;
  readonly code: string;
  readonly details: unknown;
  readonly failureType: string;
  readonly retryable: boolean;

  protected constructor(kind: DomainErrorKind, message: string, options: DomainErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const contract = CONTRACT[kind];
    this.kind = kind;
    this.httpStatus = contract.httpStatus;
    this.code = options.code ?? contract.code;
    this.details = options.details;
    this.failureType = options.failureType ?? contract.failureType;
    this.retryable = options.retryable ?? contract.retryable;
  }
}

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
