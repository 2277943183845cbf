import type { MiddlewareHandler } from 'hono';
import type { ApiScope } from '../schema/index.js';
import type { AppEnv } from './context.js';
import { ForbiddenError, UnauthorizedError } from './errors.js';

/**
 * Who may call the API. Every route but the public ones (health, readiness, the OpenAPI document and its page)
 * needs a bearer API key; each route declares the one scope it needs with {@link scoped}, which both enforces it and
 * writes it into the OpenAPI document, so the document is the list of what each route requires.
 */

/** The caller behind a request: the key's name is the actor of every audit record the request writes. */
export interface Principal {
  readonly name: string;
  readonly scopes: readonly ApiScope[];
  /** The key's id; null when the API runs open (no keys). */
  readonly keyId: string | null;
}

/** Finds the principal of a bearer token; undefined for an unknown, malformed or revoked token. */
export interface Authenticator {
  authenticate(token: string): Promise<Principal | undefined>;
}

/**
 * `keys`: every non-public request needs a key. `open`: no keys, every caller acts as {@link OPEN_PRINCIPAL} with
 * every scope; only for a trusted network, and the start banner says so.
 */
export type AuthMode = { readonly kind: 'keys'; readonly keys: Authenticator } | { readonly kind: 'open' };

/** The actor of requests to an API that runs open. */
export const OPEN_PRINCIPAL: Principal = {
  name: 'anonymous',
  scopes: ['admin'],
  keyId: null,
};

/** The OpenAPI security scheme's name; a route's requirement lists the one scope it needs. */
export const SECURITY_SCHEME = 'apiKey';

/** Whether `principal` holds `scope`; `admin` holds every scope. */
export function hasScope(principal: Principal, scope: ApiScope): boolean {
  return principal.scopes.includes('admin') || principal.scopes.includes(scope);
}

/** The token of an `Authorization: Bearer <token>` header, or undefined when there is none or it is malformed. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer[ \t]+([\x21-\x7e]{1,512})[ \t]*$/i.exec(header);
  return match?.[1];
}

const CHALLENGE = 'Bearer realm="temporal-mlops"';

/**
 * Authenticates every request whose path is not public and puts its principal on the context (`c.var.principal`).
 * A missing, malformed, unknown or revoked key is a 401 with a `WWW-Authenticate` challenge.
 */
export function authentication(mode: AuthMode, isPublic: (path: string) => boolean): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (mode.kind === 'open') {
      c.set('principal', OPEN_PRINCIPAL);
      return next();
    }
    if (isPublic(c.req.path)) return next();
    const header = c.req.header('authorization');
    const token = bearerToken(header);
    if (!token) {
      c.header('www-authenticate', CHALLENGE);
      throw new UnauthorizedError(
        header
          ? 'the Authorization header is not `Bearer <API key>`'
          : 'an API key is required: send `Authorization: Bearer <API key>`',
      );
    }
    const principal = await mode.keys.authenticate(token);
    if (!principal) {
      c.header('www-authenticate', `${CHALLENGE}, error="invalid_token"`);
      throw new UnauthorizedError('the API key is unknown or revoked');
    }
    c.set('principal', principal);
    return next();
  };
}

/** Refuses, with a 403 naming the scope, a request whose key lacks `scope`. */
export function requireScope(scope: ApiScope): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = c.get('principal');
    if (!principal) throw new UnauthorizedError('an API key is required: send `Authorization: Bearer <API key>`');
    if (!hasScope(principal, scope)) {
      throw new ForbiddenError(`the API key "${principal.name}" lacks the "${scope}" scope this request needs`, {
        code: 'missing_scope',
        details: { required: scope, granted: principal.scopes },
      });
    }
    return next();
  };
}

/**
 * The part of a `createRoute` config that guards it with `scope`: spread it into the config.
 *
 * @example
 * const approveRoute = createRoute({ method: 'post', path: '/{id}/approve', ...scoped('approve'), ... });
 */
export function scoped(scope: ApiScope) {
  return {
    security: [{ [SECURITY_SCHEME]: [scope] }],
    middleware: requireScope(scope),
  };
}

/** The actor a request records: its key's name. */
export function actorOf(c: { get(key: 'principal'): Principal | undefined }): string {
  return c.get('principal')?.name ?? OPEN_PRINCIPAL.name;
}

/** Authentication by the platform's stored keys (storage/api-key-store.ts). */
export function storedKeys(store: {
  authenticate(token: string): Promise<{ id: string; name: string; scopes: readonly ApiScope[] } | undefined>;
}): AuthMode {
  return {
    kind: 'keys',
    keys: {
      authenticate: async (token) => {
        const key = await store.authenticate(token);
        return key && { name: key.name, scopes: key.scopes, keyId: key.id };
      },
    },
  };
}
