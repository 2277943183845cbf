import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiKeys } from '../../schema/index.js';
import { adminKeyFile, ensureAdminKey } from '../../server/admin-key.js';
import { createApp } from '../../server/app.js';
import { storedKeys } from '../../server/auth.js';
import { ApiKeyStore } from '../../storage/api-key-store.js';
import { openStorage, type PlatformStorage } from '../../storage/open-storage.js';
import { testLogger } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

let storage: PlatformStorage;
let store: ApiKeyStore;
let app: ReturnType<typeof createApp>;
let dataDir: string;
let adminToken: string;

beforeAll(async () => {
  storage = openStorage(testEndpoints(), { logger: testLogger, applicationName: 'api-keys-test', poolSize: 2 });
  // A store of its own, so revocations by this file are seen at once (no other process caches these keys).
  store = new ApiKeyStore(storage.database.db, { cacheTtlMs: 60_000 });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-keys-'));
  app = createApp({
    logger: testLogger,
    readiness: [],
    version: 'test',
    bodyLimitBytes: 65_536,
    auth: storedKeys(store),
    keys: store,
    stores: storage,
  });
  const admin = await store.create({ name: `admin-${Date.now()}`, scopes: ['admin'], createdBy: 'test' });
  adminToken = admin.token;
});

afterAll(async () => {
  await storage?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const call = (method: string, url: string, token: string | undefined, body?: unknown) =>
  app.request(url, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

interface KeyJson {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  createdBy: string;
  revokedAt: string | null;
}

describe('/v1/keys', () => {
  it('creates a key shown once, stores only its hash, and the key acts under its name', async () => {
    const name = `ci-${Date.now()}`;
    const created = await call('POST', '/v1/keys', adminToken, { name, scopes: ['read', 'trigger'] });
    expect(created.status).toBe(201);
    const { key, token } = (await created.json()) as { key: KeyJson; token: string };
    expect(token).toMatch(/^mlk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$/);
    expect(key).toMatchObject({ name, scopes: ['read', 'trigger'], prefix: token.slice(0, 12), revokedAt: null });

    const [row] = await storage.database.db.select().from(apiKeys).where(eq(apiKeys.id, key.id));
    expect(row!.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(row)).not.toContain(token.slice(13));

    const listed = await call('GET', '/v1/keys', adminToken);
    const listText = await listed.text();
    expect(listed.status).toBe(200);
    expect(listText).toContain(key.prefix);
    expect(listText).not.toContain(token.slice(13));
    expect(listText).not.toContain('"hash"');

    // The key reads, and may not administer keys.
    expect((await call('GET', '/v1/pipelines', token)).status).toBe(200);
    const refused = await call('GET', '/v1/keys', token);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('missing_scope');
  });

  it('probe: the audit trail records the key, whatever x-actor claims', async () => {
    const res = await app.request('/v1/keys', {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'x-actor': 'root', 'content-type': 'application/json' },
      body: JSON.stringify({ name: `by-admin-${Date.now()}`, scopes: ['read'] }),
    });
    expect(res.status).toBe(201);
    const { key } = (await res.json()) as { key: KeyJson };
    expect(key.createdBy).toMatch(/^admin-\d+$/);
  });

  it('refuses a wrong secret, an unknown key and a revoked key with 401', async () => {
    const { key, token } = await store.create({ name: `temp-${Date.now()}`, scopes: ['read'], createdBy: 'test' });
    const wrongSecret = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    expect((await call('GET', '/v1/models', wrongSecret)).status).toBe(401);
    expect((await call('GET', '/v1/models', 'mlk_AAAAAAAA_' + 'A'.repeat(43))).status).toBe(401);
    expect((await call('GET', '/v1/models', undefined)).status).toBe(401);
    expect((await call('GET', '/v1/models', token)).status).toBe(200);

    const revoked = await call('DELETE', `/v1/keys/${key.id}`, adminToken);
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as KeyJson).revokedAt).not.toBeNull();
    expect((await call('GET', '/v1/models', token)).status).toBe(401);
    // Revoking again is a no-op; an unknown id is a 404.
    expect((await call('DELETE', `/v1/keys/${key.id}`, adminToken)).status).toBe(200);
    expect((await call('DELETE', '/v1/keys/0b7c1f5e-7d1f-4a3e-9e0b-5d6f1c2a3b4c', adminToken)).status).toBe(404);
  });

  it('refuses a second live key of one name with 409, and unknown scopes with 400 naming the field', async () => {
    const name = `dup-${Date.now()}`;
    expect((await call('POST', '/v1/keys', adminToken, { name, scopes: ['read'] })).status).toBe(201);
    const dup = await call('POST', '/v1/keys', adminToken, { name, scopes: ['read'] });
    expect(dup.status).toBe(409);
    const bad = await call('POST', '/v1/keys', adminToken, { name: `x-${Date.now()}`, scopes: ['root'] });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toContain('body.scopes');
  });
});

describe('lists', () => {
  it('are paged: limit and offset, capped at 500, a bad page is a 400 naming the field', async () => {
    for (let i = 0; i < 3; i++)
      await store.create({ name: `page-${Date.now()}-${i}`, scopes: ['read'], createdBy: 'test' });
    const first = (await (await call('GET', '/v1/keys?limit=2', adminToken)).json()) as { keys: KeyJson[] };
    const second = (await (await call('GET', '/v1/keys?limit=2&offset=2', adminToken)).json()) as { keys: KeyJson[] };
    expect(first.keys).toHaveLength(2);
    expect(second.keys.length).toBeGreaterThan(0);
    expect(second.keys.map((k) => k.id)).not.toContain(first.keys[0]!.id);
    for (const list of ['/v1/keys', '/v1/pipelines', '/v1/models', '/v1/deployments']) {
      const tooMany = await call('GET', `${list}?limit=501`, adminToken);
      expect(tooMany.status, list).toBe(400);
      expect(((await tooMany.json()) as { error: { message: string } }).error.message, list).toContain('query.limit');
      expect((await call('GET', `${list}?offset=-1`, adminToken)).status, list).toBe(400);
      expect((await call('GET', `${list}?limit=5`, adminToken)).status, list).toBe(200);
    }
  });
});

describe('the first start', () => {
  it('makes one admin key, keeps its token in a file only its owner reads, and reuses it afterwards', async () => {
    const first = await ensureAdminKey(store, dataDir);
    // This database already has live admin keys (made above): no second one is made.
    expect(first).toMatchObject({ created: false, token: undefined });

    for (const key of await store.list()) if (key.scopes.includes('admin')) await store.revoke(key.id);
    const made = await ensureAdminKey(store, dataDir);
    expect(made.created).toBe(true);
    expect(made.file).toBe(adminKeyFile(dataDir));
    expect(fs.statSync(made.file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(made.file, 'utf8').trim()).toBe(made.token);
    expect((await call('GET', '/v1/keys', made.token)).status).toBe(200);

    const again = await ensureAdminKey(store, dataDir);
    expect(again).toMatchObject({ created: false, token: made.token });
    expect((await store.list()).filter((k) => k.scopes.includes('admin'))).toHaveLength(1);
  });
});
