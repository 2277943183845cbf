import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../context.js';

export interface RequestIdOptions {
  /** Header read from the request and written on the response. Default `x-request-id`. */
  readonly headerName?: string;
  /**
   * Which incoming ids to trust. The default accepts 1-128 characters of letters, digits and `._:-` (UUIDs, ULIDs,
   * trace ids), so an id written into logs can never carry newlines or markup.
   */
  readonly isValid?: (id: string) => boolean;
  /** Makes an id when the request has none or an invalid one. Default `crypto.randomUUID`. */
  readonly generate?: () => string;
}

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/**
 * Gives every request an id: the caller's when valid (so one id follows a call across services), otherwise a new
 * UUID. Stores it as `c.var.requestId` and echoes it in the response header, error responses included.
 */
export function requestId(options: RequestIdOptions = {}): MiddlewareHandler<AppEnv> {
  const headerName = options.headerName ?? 'x-request-id';
  const isValid = options.isValid ?? ((id: string) => SAFE_ID.test(id));
  const generate = options.generate ?? randomUUID;
  return async (c, next) => {
    const incoming = c.req.header(headerName);
    const id = incoming !== undefined && isValid(incoming) ? incoming : generate();
    c.set('requestId', id);
    // Set before the response exists, so Hono writes it with the response instead of rebuilding one afterwards.
    c.header(headerName, id);
    await next();
    // A handler that returned its own Response object bypassed the prepared headers.
    if (c.res.headers.get(headerName) !== id) c.res.headers.set(headerName, id);
  };
}
