import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { getTableName, is, sql } from 'drizzle-orm';
import { PgTable, getTableConfig } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceError } from '../../core/errors.js';
import * as schema from '../../schema/index.js';
import {
  MIGRATIONS_FOLDER,
  createDatabase,
  runMigrations,
  waitForDatabase,
  type DatabaseHandle,
} from '../../storage/database.js';
import { testEndpoints } from '../support/stack.js';

const schemaTables: PgTable[] = Object.values(schema).flatMap((value: unknown) => (is(value, PgTable) ? [value] : []));

let admin: pg.Pool;
const createdDatabases: string[] = [];
const handles: DatabaseHandle[] = [];

/** A new, empty database on the test server, so these tests never see (or disturb) another file's tables. */
async function freshDatabase(): Promise<DatabaseHandle> {
  const name = `migrations_${randomUUID().replaceAll('-', '')}`;
  await admin.query(`create database "${name}"`);
  createdDatabases.push(name);
  const url = new URL(testEndpoints().databaseUrl);
  url.pathname = `/${name}`;
  const handle = createDatabase(url.toString(), { max: 3 });
  handles.push(handle);
  return handle;
}

/** The migrations drizzle-kit generated and we committed, from its journal. */
const committedMigrations = (
  JSON.parse(fs.readFileSync(path.join(MIGRATIONS_FOLDER, 'meta', '_journal.json'), 'utf8')) as {
    entries: { tag: string }[];
  }
).entries;

async function appliedMigrations(pool: pg.Pool): Promise<number> {
  const result = await pool.query<{ n: number }>('select count(*)::int as n from drizzle.__drizzle_migrations');
  return result.rows[0]!.n;
}

beforeAll(() => {
  admin = new pg.Pool({ connectionString: testEndpoints().databaseUrl, max: 1 });
});

afterAll(async () => {
  await Promise.all(handles.map((h) => h.close()));
  for (const name of createdDatabases) await admin.query(`drop database if exists "${name}" with (force)`);
  await admin.end();
});

describe('runMigrations', () => {
  it('creates every table and column of the schema on an empty database', async () => {
    const { db, pool } = await freshDatabase();
    await runMigrations(db);

    const { rows } = await pool.query<{ table_name: string; column_name: string }>(
      `select table_name, column_name from information_schema.columns where table_schema = 'public'`,
    );
    const columnsIn = (table: string) => rows.filter((r) => r.table_name === table).map((r) => r.column_name);
    // Comparing against the Drizzle schema itself catches a schema edit whose migration was not regenerated.
    expect(schemaTables.length).toBeGreaterThanOrEqual(16);
    expect(new Set(rows.map((r) => r.table_name))).toEqual(new Set(schemaTables.map((t) => getTableName(t))));
    for (const table of schemaTables) {
      const expected = getTableConfig(table).columns.map((c) => c.name);
      expect(columnsIn(getTableName(table)).sort(), getTableName(table)).toEqual(expected.sort());
    }
  });

  it('is a no-op when applied again, and keeps the data', async () => {
    const { db, pool } = await freshDatabase();
    await runMigrations(db);
    const [pipeline] = await db.insert(schema.pipelines).values({ name: 'flights-delay' }).returning();
    const applied = await appliedMigrations(pool);

    await runMigrations(db);

    expect(await appliedMigrations(pool)).toBe(applied);
    const rows = await db.select().from(schema.pipelines);
    expect(rows).toEqual([pipeline]);
  });

  it('applies once when several processes migrate at the same time', async () => {
    const first = await freshDatabase();
    const url = first.pool.options.connectionString!;
    const others = [createDatabase(url), createDatabase(url)];
    handles.push(...others);

    await Promise.all([first, ...others].map((h) => runMigrations(h.db)));

    expect(await appliedMigrations(first.pool)).toBe(committedMigrations.length);
    const tables = await first.db.execute<{ n: number }>(
      sql`select count(*)::int as n from information_schema.tables where table_schema = 'public'`,
    );
    expect(tables.rows[0]!.n).toBe(schemaTables.length);
  });
});

describe('waitForDatabase', () => {
  /** A TCP proxy to the test Postgres that drops every connection until `open()` is called, like a restarting server. */
  async function flakyProxy(): Promise<{ url: string; open(): void; close(): Promise<void> }> {
    const target = new URL(testEndpoints().databaseUrl);
    let accepting = false;
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      if (!accepting) {
        socket.destroy();
        return;
      }
      const upstream = net.connect(Number(target.port), target.hostname);
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(target);
    url.hostname = '127.0.0.1';
    url.port = String((server.address() as net.AddressInfo).port);
    return {
      url: url.toString(),
      open: () => {
        accepting = true;
      },
      close: async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  it('retries while Postgres is unreachable and returns once it answers', async () => {
    const proxy = await flakyProxy();
    try {
      const retries: number[] = [];
      setTimeout(() => proxy.open(), 700);
      await waitForDatabase(proxy.url, { timeoutMs: 10_000, onRetry: ({ attempt }) => retries.push(attempt) });
      expect(retries.length).toBeGreaterThanOrEqual(2);
    } finally {
      await proxy.close();
    }
  });

  it('gives up after the timeout with an error naming Postgres and the cause', async () => {
    const proxy = await flakyProxy();
    try {
      const started = Date.now();
      const error = await waitForDatabase(proxy.url, { timeoutMs: 800 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ServiceError);
      expect((error as ServiceError).message).toMatch(
        /^Postgres: cannot connect to 127\.0\.0\.1:\d+\/.* after \d+ attempts/,
      );
      expect((error as ServiceError).cause).toBeInstanceOf(Error);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await proxy.close();
    }
  });

  it('fails at once when the database does not exist', async () => {
    const url = new URL(testEndpoints().databaseUrl);
    url.pathname = '/no_such_database';
    const started = Date.now();
    await expect(waitForDatabase(url.toString(), { timeoutMs: 20_000 })).rejects.toThrow(
      /Postgres: .*database "no_such_database" does not exist/,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
