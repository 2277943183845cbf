import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../../core/logger.js';
import type { AppEnv } from '../context.js';

export interface RequestLoggerOptions {
  /** Parent of the per-request child loggers. */
  readonly logger: Logger;
  /**
   * Paths whose completion lines are logged at debug level: probes hit them every few seconds and would drown the
   * log. Their failures (5xx) are still logged as errors. Default `['/healthz', '/readyz']`.
   */
  readonly quietPaths?: readonly string[];
}

/**
 * Puts a maker of a child logger bound to `requestId`, `method` and `path` on `c.var.logger`, and logs one line per request
 * when it completes with `status` and `durationMs` (milliseconds, two decimals): error for 5xx, warn for 4xx, info
 * otherwise. Must run after the request id middleware. The query string is left out: it may carry tokens.
 */
export function requestLogger(options: RequestLoggerOptions): MiddlewareHandler<AppEnv> {
  const quietPaths = new Set(options.quietPaths ?? ['/healthz', '/readyz']);
  const parent = options.logger;
  return async (c, next) => {
    const started = performance.now();
    let child: Logger | undefined;
    const log = () =>
      (child ??= parent.child({ requestId: c.get('requestId'), method: c.req.method, path: c.req.path }));
    c.set('logger', log);
    await next();
    const status = c.res.status;
    const [level, message] =
      status >= 500
        ? (['error', 'request failed'] as const)
        : status >= 400
          ? (['warn', 'request rejected'] as const)
          : ([quietPaths.has(c.req.path) ? 'debug' : 'info', 'request completed'] as const);
    if (!parent.isLevelEnabled(level)) return;
    const durationMs = Math.round((performance.now() - started) * 100) / 100;
    // Without a child made by a handler, one call on the parent with every field writes the same line without
    // building a child per request.
    // Who asked, by key name (never the key): the access log is an audit trail too.
    const actor = c.get('principal')?.name;
    const who = actor === undefined ? {} : { actor };
    const [target, fields] =
      child === undefined
        ? [
            parent,
            { requestId: c.get('requestId'), method: c.req.method, path: c.req.path, status, durationMs, ...who },
          ]
        : [child, { status, durationMs, ...who }];
    target[level](fields, message);
  };
}
