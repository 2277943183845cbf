import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from '../core/logger.js';
import { outageOf } from '../core/outage.js';
import type { AppEnv } from './context.js';
import { DomainError, ServiceUnavailableError, errorBody } from './errors.js';

/** Hono's validator throws an HTTPException with exactly this message when a JSON body does not parse. */
const HONO_MALFORMED_JSON = 'Malformed JSON in request body';

const codesByStatus: Partial<Record<number, readonly [code: string, message: string]>> = {
  400: ['bad_request', 'Bad request'],
  401: ['unauthorized', 'Unauthorized'],
  403: ['forbidden', 'Forbidden'],
  404: ['not_found', 'Not found'],
  405: ['method_not_allowed', 'Method not allowed'],
  408: ['request_timeout', 'Request timeout'],
  409: ['conflict', 'Conflict'],
  413: ['payload_too_large', 'Payload too large'],
  415: ['unsupported_media_type', 'Unsupported media type'],
  422: ['unprocessable_entity', 'Unprocessable entity'],
  429: ['too_many_requests', 'Too many requests'],
  503: ['service_unavailable', 'Service unavailable'],
  504: ['gateway_timeout', 'Gateway timeout'],
};

/** Seconds a client should wait after a 503 when the error does not say: long enough for a restart to finish. */
export const DEFAULT_RETRY_AFTER_SECONDS = 5;

function retryAfterOf(err: DomainError): number {
  const seconds = (err as { retryAfterSeconds?: unknown }).retryAfterSeconds;
  return typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0
    ? Math.ceil(seconds)
    : DEFAULT_RETRY_AFTER_SECONDS;
}

function isJsonRequest(c: Context): boolean {
  return /^application\/([\w.-]+\+)?json\b/i.test(c.req.header('content-type') ?? '');
}

/**
 * The parse error of the request's JSON body, or undefined when it parses or cannot be read again. Hono keeps the
 * body text it read, so this costs no second read of the stream.
 */
async function jsonSyntaxProblem(c: Context): Promise<string | undefined> {
  try {
    JSON.parse(await c.req.text());
    return undefined;
  } catch (error: unknown) {
    return error instanceof SyntaxError ? error.message : undefined;
  }
}

function malformedJson(c: Context, problem: string | undefined): Response {
  const message = problem ? `Request body is not valid JSON: ${problem}` : 'Request body is not valid JSON';
  return c.json(errorBody('malformed_json', message), 400);
}

function fromHttpException(c: Context, err: HTTPException): Response {
  const [code, defaultMessage] = codesByStatus[err.status] ?? [err.status >= 500 ? 'server_error' : 'http_error', ''];
  const response = c.json(errorBody(code, err.message || defaultMessage || `HTTP ${err.status}`), err.status);
  // Middleware such as basic-auth put headers the client needs (WWW-Authenticate) on the exception's own response.
  if (err.res) {
    for (const [name, value] of err.res.headers) {
      if (name !== 'content-type' && name !== 'content-length') response.headers.set(name, value);
    }
  }
  return response;
}

/**
 * The app's one error handler. Domain errors answer with their own status, code and message; HTTPExceptions keep
 * their status in our shape; a JSON body that does not parse is a 400 `malformed_json` naming the syntax error.
 * An error that means a service is down (core/outage.ts) is a 503 with `Retry-After`. Anything else is a bug: its
 * stack is logged with the request id and the caller gets a generic 500.
 */
export function createErrorHandler(fallbackLogger: Logger): ErrorHandler<AppEnv> {
  return async (thrown, c) => {
    // The request logger sets this, but an error thrown before it ran must still be logged somewhere.
    const log = (c.get('logger') as (() => Logger) | undefined)?.() ?? fallbackLogger;
    // PostgreSQL, Temporal or S3 down or restarting (core/outage.ts): a 503 with Retry-After, never a 500. The
    // caller learns which service, not its address.
    const outage = thrown instanceof DomainError || thrown instanceof HTTPException ? undefined : outageOf(thrown);
    const service = outage?.service === 'a dependency' ? 'A service this request needs' : outage?.service;
    const err = outage
      ? new ServiceUnavailableError(`${service} is unavailable right now; try again shortly`, {
          cause: thrown,
          details: { service: outage.service },
        })
      : thrown;

    if (err instanceof DomainError) {
      if (err.httpStatus >= 500) log.error({ err }, `request failed: ${err.message}`);
      const response = c.json(errorBody(err.code, err.message, err.details), err.httpStatus as ContentfulStatusCode);
      // An outage or a rate limit passes: say when to come back, so clients back off instead of hammering.
      if (err.httpStatus === 503 || err.httpStatus === 429) {
        response.headers.set('retry-after', String(retryAfterOf(err)));
      }
      return response;
    }
    if (err instanceof HTTPException) {
      if (err.status === 400 && err.message === HONO_MALFORMED_JSON) {
        return malformedJson(c, await jsonSyntaxProblem(c));
      }
      if (err.status >= 500) log.error({ err }, `request failed: ${err.message}`);
      return fromHttpException(c, err);
    }
    // A handler that read the body with c.req.json() itself gets the bare SyntaxError: still the caller's fault.
    if (err instanceof SyntaxError && isJsonRequest(c)) {
      const problem = await jsonSyntaxProblem(c);
      if (problem === err.message) return malformedJson(c, problem);
    }
    log.error({ err }, 'unhandled error while handling request');
    return c.json(errorBody('internal_error', 'Internal server error'), 500);
  };
}

/** Answers unmatched routes with a 404 in the error shape. */
export const notFoundHandler: NotFoundHandler<AppEnv> = (c) =>
  c.json(errorBody('not_found', `No route for ${c.req.method} ${c.req.path}`), 404);
