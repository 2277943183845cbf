/**
 * Who may act and what may be read: API keys (bearer tokens with scopes; only a hash is stored) and named data
 * connections (a Postgres URL whose secret is stored encrypted, or read from the environment or a file, and never
 * returned by the API nor written into a workflow input).
 */
import { sql } from 'drizzle-orm';
import { check, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { createdAt, oneOf, updatedAt } from './columns.js';

/** What a key may do; `admin` implies every other scope. */
export const API_SCOPES = ['read', 'predict', 'trigger', 'approve', 'deploy', 'admin'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** Unique among keys not revoked; the actor recorded with everything the key changes. */
    name: text('name').notNull(),
    /** The token's public prefix (`mlk_` plus 8 characters): how a key is shown in lists and found on a request. */
    prefix: text('prefix').notNull().unique(),
    /** sha256 of the whole token, hex. Tokens carry 256 random bits, so a fast hash is enough (no password stretching). */
    hash: text('hash').notNull(),
    scopes: text('scopes').array().notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [
    // One live key per name, so an audit record's actor names one key; a revoked name may be reused.
    uniqueIndex('api_keys_live_name_unique')
      .on(t.name)
      .where(sql`${t.revokedAt} is null`),
    check('api_keys_scopes_known', sql`${t.scopes} <@ array['read','predict','trigger','approve','deploy','admin']`),
  ],
);

export const CONNECTION_KINDS = ['postgres'] as const;
export type ConnectionKind = (typeof CONNECTION_KINDS)[number];

/** Where a connection's secret lives: encrypted in this table, or named (an environment variable, a file). */
export const SECRET_SOURCES = ['encrypted', 'env', 'file'] as const;
export type SecretSource = (typeof SECRET_SOURCES)[number];

export const connections = pgTable(
  'connections',
  {
    name: text('name').primaryKey(),
    kind: text('kind', { enum: CONNECTION_KINDS }).notNull(),
    /** The URL without its password (`postgres://reader@host:5432/db?sslmode=require`): safe to return. */
    url: text('url').notNull(),
    secretSource: text('secret_source', { enum: SECRET_SOURCES }),
    /**
     * `encrypted`: AES-256-GCM `iv.tag.ciphertext` (base64url) under the platform's connection key; `env`: the
     * variable's name; `file`: the file's path. Null when the connection has no password.
     */
    secret: text('secret'),
    description: text('description'),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    check('connections_kind_known', oneOf(t.kind, CONNECTION_KINDS)),
    check(
      'connections_secret_consistent',
      sql`(${t.secretSource} is null) = (${t.secret} is null) and (${t.secretSource} is null or ${oneOf(t.secretSource, SECRET_SOURCES)})`,
    ),
  ],
);

export type ApiKey = typeof apiKeys.$inferSelect;
export type NewApiKey = typeof apiKeys.$inferInsert;
export type Connection = typeof connections.$inferSelect;
export type NewConnection = typeof connections.$inferInsert;
