import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { and, asc, eq, isNull, sql } from 'drizzle-orm';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import { apiKeys, type ApiKey, type ApiScope } from '../schema/index.js';
import type { Database } from './database.js';
import { sqlState } from './sql-errors.js';

/**
 * API keys: bearer tokens `mlk_<8-character id>_<43-character secret>`. The id part is stored in clear as the
 * key's `prefix` (how a request's key is found and how lists show it); only a sha256 of the whole token is stored,
 * so a database dump holds no usable token. A token is shown once, when it is created.
 */

const TOKEN_PATTERN = /^mlk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$/;
const PREFIX_LENGTH = 'mlk_'.length + 8;

/** A key as the API shows it: never its token nor its hash. */
export type ApiKeyInfo = Omit<ApiKey, 'hash'>;

/** A key as authentication sees it. */
export interface AuthenticatedKey {
  readonly id: string;
  readonly name: string;
  readonly scopes: readonly ApiScope[];
}

/** Thrown when a live key already has the name asked for. */
export class ApiKeyNameTakenError extends DomainError {
  override readonly name = 'ApiKeyNameTakenError';
  constructor(keyName: string, options?: DomainErrorOptions) {
    super('conflict', `an API key named "${keyName}" exists; revoke it first or choose another name`, {
      code: 'api_key_name_taken',
      ...options,
    });
  }
}

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomId(length: number): string {
  // 62 does not divide 256: reject the bytes that would bias the first characters.
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += ALPHANUMERIC[byte % 62];
    }
  }
  return out;
}

/** A new token: 8 random alphanumerics to find it by, 256 random bits to prove it. */
export function generateToken(): string {
  return `mlk_${randomId(8)}_${randomBytes(32).toString('base64url')}`;
}

/** Whether a string has the shape of a token (say, before a lookup). */
export function isTokenShaped(token: string): boolean {
  return TOKEN_PATTERN.test(token);
}

function hashOf(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export interface ApiKeyStoreOptions {
  /**
   * How long an authenticated key is trusted without asking the database again. A key revoked through this store
   * is dropped at once; one revoked by another process stops working within this time. Default 5000 ms.
   */
  readonly cacheTtlMs?: number;
  /** The smallest interval between two writes of a key's `last_used_at`. Default 60 000 ms. */
  readonly lastUsedResolutionMs?: number;
  readonly now?: () => number;
}

interface CachedKey {
  readonly key: AuthenticatedKey;
  readonly hash: Buffer;
  readonly until: number;
}

const infoColumns = {
  id: apiKeys.id,
  name: apiKeys.name,
  prefix: apiKeys.prefix,
  scopes: apiKeys.scopes,
  createdBy: apiKeys.createdBy,
  createdAt: apiKeys.createdAt,
  lastUsedAt: apiKeys.lastUsedAt,
  revokedAt: apiKeys.revokedAt,
};

export class ApiKeyStore {
  private readonly cache = new Map<string, CachedKey>();
  private readonly lastUsedWritten = new Map<string, number>();
  private readonly cacheTtlMs: number;
  private readonly lastUsedResolutionMs: number;
  private readonly now: () => number;

  constructor(
    private readonly db: Database,
    options: ApiKeyStoreOptions = {},
  ) {
    this.cacheTtlMs = options.cacheTtlMs ?? 5000;
    this.lastUsedResolutionMs = options.lastUsedResolutionMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  /**
   * Creates a key and returns it with its token, the only time the token is seen.
   *
   * @throws ApiKeyNameTakenError when a live key has this name.
   */
  async create(input: {
    name: string;
    scopes: readonly ApiScope[];
    createdBy: string;
    /**
     * The token to store, for a service whose token had to exist before the database did (MinIO's webhook target
     * is configured when MinIO starts); default a new one. Must be {@link isTokenShaped}.
     */
    token?: string;
  }): Promise<{ key: ApiKeyInfo; token: string }> {
    const token = input.token ?? generateToken();
    if (!isTokenShaped(token)) throw new RangeError('not an API key token');
    try {
      const [key] = await this.db
        .insert(apiKeys)
        .values({
          name: input.name,
          prefix: token.slice(0, PREFIX_LENGTH),
          hash: hashOf(token).toString('hex'),
          scopes: [...new Set(input.scopes)].sort(),
          createdBy: input.createdBy,
        })
        .returning(infoColumns);
      return { key: key!, token };
    } catch (error) {
      if (sqlState(error) === '23505') throw new ApiKeyNameTakenError(input.name, { cause: error });
      throw error;
    }
  }

  /** Every key, live ones first, then by name; `includeRevoked` false leaves revoked ones out. */
  async list(options: { includeRevoked?: boolean; limit?: number; offset?: number } = {}): Promise<ApiKeyInfo[]> {
    return this.db
      .select(infoColumns)
      .from(apiKeys)
      .where(options.includeRevoked ? undefined : isNull(apiKeys.revokedAt))
      .orderBy(sql`${apiKeys.revokedAt} is not null`, asc(apiKeys.name), asc(apiKeys.createdAt))
      .limit(options.limit ?? 100)
      .offset(options.offset ?? 0);
  }

  async get(id: string): Promise<ApiKeyInfo | undefined> {
    const [key] = await this.db.select(infoColumns).from(apiKeys).where(eq(apiKeys.id, id));
    return key;
  }

  /** Revokes a key (idempotent); undefined when there is no such key. */
  async revoke(id: string): Promise<ApiKeyInfo | undefined> {
    const [revoked] = await this.db
      .update(apiKeys)
      .set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, now())` })
      .where(eq(apiKeys.id, id))
      .returning(infoColumns);
    if (revoked) this.cache.delete(revoked.prefix);
    return revoked;
  }

  /**
   * What the store knows of a token: `live` (authenticates), `revoked` (a key with this token was revoked: it must
   * not be made again) or `unknown`.
   */
  async tokenState(token: string): Promise<'live' | 'revoked' | 'unknown'> {
    if (!isTokenShaped(token)) return 'unknown';
    const [row] = await this.db
      .select({ hash: apiKeys.hash, revokedAt: apiKeys.revokedAt })
      .from(apiKeys)
      .where(eq(apiKeys.prefix, token.slice(0, PREFIX_LENGTH)));
    if (!row) return 'unknown';
    const stored = Buffer.from(row.hash, 'hex');
    const hash = hashOf(token);
    if (stored.length !== hash.length || !timingSafeEqual(stored, hash)) return 'unknown';
    return row.revokedAt === null ? 'live' : 'revoked';
  }

  /** Whether any live key holds `admin` (the first start makes one when none does). */
  async hasLiveAdmin(): Promise<boolean> {
    const [row] = await this.db
      .select({ id: apiKeys.id })
      .from(apiKeys)
      .where(and(isNull(apiKeys.revokedAt), sql`'admin' = any(${apiKeys.scopes})`))
      .limit(1);
    return row !== undefined;
  }

  /** The live key a token belongs to, or undefined (malformed, unknown, wrong secret, revoked). */
  async authenticate(token: string): Promise<AuthenticatedKey | undefined> {
    if (!isTokenShaped(token)) return undefined;
    const prefix = token.slice(0, PREFIX_LENGTH);
    const hash = hashOf(token);
    const now = this.now();
    let cached = this.cache.get(prefix);
    if (!cached || cached.until <= now) {
      const [row] = await this.db
        .select({ id: apiKeys.id, name: apiKeys.name, scopes: apiKeys.scopes, hash: apiKeys.hash })
        .from(apiKeys)
        .where(and(eq(apiKeys.prefix, prefix), isNull(apiKeys.revokedAt)));
      if (!row) {
        this.cache.delete(prefix);
        return undefined;
      }
      cached = {
        key: { id: row.id, name: row.name, scopes: row.scopes as ApiScope[] },
        hash: Buffer.from(row.hash, 'hex'),
        until: now + this.cacheTtlMs,
      };
      this.cache.set(prefix, cached);
    }
    if (cached.hash.length !== hash.length || !timingSafeEqual(cached.hash, hash)) return undefined;
    this.touch(cached.key.id, now);
    return cached.key;
  }

  /** Records a key's use at most once per resolution; a failed write is not worth failing the request for. */
  private touch(id: string, now: number): void {
    const last = this.lastUsedWritten.get(id);
    if (last !== undefined && now - last < this.lastUsedResolutionMs) return;
    this.lastUsedWritten.set(id, now);
    this.db
      .update(apiKeys)
      .set({ lastUsedAt: new Date(now) })
      .where(eq(apiKeys.id, id))
      .then(
        () => undefined,
        () => this.lastUsedWritten.delete(id),
      );
  }
}
