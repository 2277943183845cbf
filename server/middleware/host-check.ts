import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../context.js';
import { ForbiddenError } from '../errors.js';

/** The host part of a Host header, lowercased: `[::1]:3000` → `[::1]`, `LocalHost:80` → `localhost`. */
export function hostName(header: string): string {
  const value = header.trim().toLowerCase();
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    return end === -1 ? value : value.slice(0, end + 1);
  }
  const colon = value.lastIndexOf(':');
  return colon === -1 ? value : value.slice(0, colon);
}

/**
 * Answers only requests whose Host is one of `allowed`. An API on loopback is reachable from a browser page on any
 * site that rebinds its own DNS name to 127.0.0.1; such a request carries that site's name as its Host, so checking
 * the Host closes that door.
 */
export function hostCheck(allowed: readonly string[]): MiddlewareHandler<AppEnv> {
  const names = new Set(allowed.map((h) => h.toLowerCase()));
  return async (c, next) => {
    const header = c.req.header('host') ?? new URL(c.req.url).host;
    if (!names.has(hostName(header))) {
      throw new ForbiddenError(
        `the Host header "${header.slice(0, 100)}" is not one this API answers; set API_ALLOWED_HOSTS to add it`,
        { code: 'host_not_allowed' },
      );
    }
    return next();
  };
}
