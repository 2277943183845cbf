import { z } from '@hono/zod-openapi';
import type { ValidationTargets } from 'hono';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import type { ZodError } from 'zod';

/** The one JSON shape of every error response. */
export interface ErrorBody {
  readonly error: {
    /** Stable, snake_case, safe to branch on (`not_found`, `invalid_request`, ...). */
    readonly code: string;
    /** For people; may change between versions. */
    readonly message: string;
    readonly details?: unknown;
  };
}

/** The error shape as an OpenAPI component, for routes that declare their error responses. */
export const errorBodySchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'not_found' }),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .openapi('Error');

/** Builds an {@link ErrorBody}, leaving `details` out when there are none. */
export function errorBody(code: string, message: string, details?: unknown): ErrorBody {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}

export { DomainError, type DomainErrorOptions } from '../core/errors.js';

/** Thrown when the request itself is wrong: a malformed field, an impossible combination of parameters. */
export class ValidationError extends DomainError {
  override readonly name = 'ValidationError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('invalid', message, options);
  }
}

/** Thrown when a request carries no API key, or one that is unknown or revoked. */
export class UnauthorizedError extends DomainError {
  override readonly name = 'UnauthorizedError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('unauthorized', message, options);
  }
}

/** Thrown when the caller is known but a policy (its key's scopes, the data access policy) refuses the request. */
export class ForbiddenError extends DomainError {
  override readonly name = 'ForbiddenError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('forbidden', message, options);
  }
}

/** Thrown when a key made more requests than its rate allows; the answer says when to try again. */
export class RateLimitedError extends DomainError {
  override readonly name = 'RateLimitedError';
  constructor(
    message: string,
    /** Whole seconds until a request would be accepted again (the `Retry-After` header). */
    readonly retryAfterSeconds: number,
    options?: DomainErrorOptions,
  ) {
    super('rate_limited', message, options);
  }
}

/** Thrown when the addressed resource does not exist. */
export class NotFoundError extends DomainError {
  override readonly name = 'NotFoundError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('not_found', message, options);
  }
}

/** Thrown when the request conflicts with the resource's current state (a duplicate name, a stale transition). */
export class ConflictError extends DomainError {
  override readonly name = 'ConflictError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('conflict', message, options);
  }
}

/** Thrown when a request body is larger than the server accepts. */
export class PayloadTooLargeError extends DomainError {
  override readonly name = 'PayloadTooLargeError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('too_large', message, options);
  }
}

/** Thrown when a service the request needs (Temporal, Postgres, S3) cannot be reached right now; worth retrying. */
export class ServiceUnavailableError extends DomainError {
  override readonly name = 'ServiceUnavailableError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('unavailable', message, options);
  }
}

/**
 * The client closed its connection before the answer was ready (499, nginx's "client closed request"): nobody reads
 * the response, the status labels the request in logs and metrics.
 */
export class ClientClosedRequestError extends DomainError {
  override readonly name = 'ClientClosedRequestError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('client_closed', message, options);
  }
}

/** Where in the request an invalid value was found. */
export type RequestLocation = 'body' | 'query' | 'path' | 'header' | 'cookie';

/** One invalid field, as listed in an `invalid_request` error's `details`. */
export interface FieldProblem {
  readonly location: RequestLocation;
  /** Dotted path inside the location, with array indices in brackets (`rows[2].distance`); '' for the whole value. */
  readonly path: string;
  readonly problem: string;
}

const locations: Record<keyof ValidationTargets, RequestLocation> = {
  json: 'body',
  form: 'body',
  query: 'query',
  param: 'path',
  header: 'header',
  cookie: 'cookie',
};

function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) => {
    if (typeof key === 'number') return `${out}[${key}]`;
    const name = String(key);
    return out === '' ? name : `${out}.${name}`;
  }, '');
}

/**
 * Turns a failed zod parse of one part of the request into a {@link ValidationError} whose details list every
 * invalid field, and whose message names the first one.
 */
export function validationErrorFromZod(error: ZodError, target: keyof ValidationTargets): ValidationError {
  const location = locations[target];
  const problems: FieldProblem[] = error.issues.map((issue) => ({
    location,
    path: formatPath(issue.path),
    problem: issue.message,
  }));
  const first = problems[0];
  const where = first && first.path !== '' ? `${first.location}.${first.path}` : location;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  const message = first ? `Invalid request: ${where}: ${first.problem}${more}` : `Invalid request ${location}`;
  return new ValidationError(message, { details: problems, cause: error });
}
