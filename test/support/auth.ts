import type { ApiScope } from '../../schema/index.js';
import type { AuthMode, Principal } from '../../server/auth.js';

/**
 * An AuthMode with fixed keys for tests that need to act as someone (the audit trail records a key's name) without a
 * key store: the token of the key named `alice` is `test-key-alice`.
 */
export function fixedKeys(keys: Record<string, readonly ApiScope[]>): {
  auth: AuthMode;
  /** The Authorization header of a key. */
  as(name: string): { authorization: string };
} {
  const principals = new Map<string, Principal>(
    Object.entries(keys).map(([name, scopes]) => [`test-key-${name}`, { name, scopes, keyId: `id-${name}` }]),
  );
  return {
    auth: { kind: 'keys', keys: { authenticate: (token) => Promise.resolve(principals.get(token)) } },
    as: (name) => ({ authorization: `Bearer test-key-${name}` }),
  };
}

/**
 * An AuthMode in which `Bearer test-key-<name>` is a key named `<name>` with every scope, for tests that record
 * actors under several names; requests without a key are still refused.
 */
export const anyNamedKey: AuthMode = {
  kind: 'keys',
  keys: {
    authenticate: (token) => {
      const name = /^test-key-([A-Za-z0-9._@-]{1,100})$/.exec(token)?.[1];
      return Promise.resolve(name ? { name, scopes: ['admin'], keyId: `id-${name}` } : undefined);
    },
  },
};

/** Request options with the key named `name` (default `api`) unless they carry an Authorization header already. */
export function withKey(init: RequestInit = {}, name = 'api'): RequestInit {
  const headers = new Headers(init.headers);
  if (!headers.has('authorization')) headers.set('authorization', `Bearer test-key-${name}`);
  return { ...init, headers };
}

/** The Authorization header of the key named `name` under {@link anyNamedKey}. */
export function keyOf(name: string): { authorization: string } {
  return { authorization: `Bearer test-key-${name}` };
}
