import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from 'minio';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataAccessPolicy, SourceNotAllowedError } from '../../data/access-policy.js';
import { DataEngine, sqlString } from '../../data/engine.js';
import { ExtractError, extractSnapshot, type ExtractOptions, type Snapshot } from '../../data/extract.js';
import { S3ArtifactStore } from '../../storage/artifact-store.js';
import {
  S3ObjectSource,
  type DownloadOptions,
  type DownloadResult,
  type ObjectInfo,
  type ObjectSource,
} from '../../storage/object-source.js';
import { openConnectionStore, PLATFORM_SOURCES_SCHEMA } from '../../storage/connection-store.js';
import { createDatabase } from '../../storage/database.js';
import { testEndpoints } from '../support/stack.js';
import { inject } from 'vitest';

/** An `S3ObjectSource` that counts what it downloads, and can run a hook between listing and downloading. */
class CountingSource implements ObjectSource {
  downloads: string[] = [];
  beforeDownload: (() => Promise<void>) | undefined;
  constructor(readonly inner: S3ObjectSource) {}
  lists = 0;
  list(bucket: string, prefix: string, options?: { maxKeys?: number }): Promise<ObjectInfo[]> {
    this.lists += 1;
    return this.inner.list(bucket, prefix, options);
  }
  stat(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    return this.inner.stat(bucket, key);
  }
  async download(object: ObjectInfo, cacheDir: string, options?: DownloadOptions): Promise<DownloadResult> {
    await this.beforeDownload?.();
    const result = await this.inner.download(object, cacheDir, options);
    if (result.downloaded) this.downloads.push(object.key);
    return result;
  }
}

const suffix = randomUUID().slice(0, 8);
// Fresh buckets per file: landing data (written by "other tools") apart from the artifact store's own.
const landing = `extract-landing-${suffix}`;
const artifactsBucket = `extract-artifacts-${suffix}`;
let artifacts: S3ArtifactStore;
let client: Client;
let source: CountingSource;
let scratch: string;
let cacheDir: string;
let engine: DataEngine;

function extract(
  options: Omit<ExtractOptions, 'workDir' | 'artifacts' | 'objectSource' | 'cacheDir' | 'policy'> & {
    policy?: ExtractOptions['policy'];
  },
) {
  return extractSnapshot({
    workDir: path.join(scratch, 'work'),
    cacheDir,
    artifacts,
    objectSource: source,
    policy: createDataAccessPolicy({ roots: [scratch], buckets: ['*'] }),
    ...options,
  });
}

async function keys(bucket: string, prefix = ''): Promise<string[]> {
  const found: string[] = [];
  for await (const item of client.listObjectsV2(bucket, prefix, true)) if (item.name) found.push(item.name);
  return found.sort();
}

async function dropBucket(bucket: string): Promise<void> {
  if (!(await client.bucketExists(bucket))) return;
  await client.removeObjects(bucket, await keys(bucket));
  await client.removeBucket(bucket);
}

async function putCsv(key: string, rows: readonly string[]): Promise<void> {
  const body = Buffer.from(`id,at,value\n${rows.join('\n')}\n`);
  await client.putObject(landing, key, body, body.length);
}

async function rowsOf(snapshot: Snapshot): Promise<Record<string, unknown>[]> {
  const file = await artifacts.materialize(snapshot.artifact, path.join(scratch, 'read'));
  return engine.rows(`SELECT * FROM read_parquet(${sqlString(file)})`);
}

async function codeOf(promise: Promise<unknown>): Promise<{ code: string; message: string; retryable: boolean }> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ExtractError);
  const { code, message, retryable } = error as ExtractError;
  return { code, message, retryable };
}

beforeAll(async () => {
  artifacts = S3ArtifactStore.fromConfig({ ...testEndpoints().s3, bucket: artifactsBucket });
  client = artifacts.client;
  await artifacts.ensureBucket();
  await client.makeBucket(landing, testEndpoints().s3.region);
  source = new CountingSource(new S3ObjectSource(client));
  scratch = await mkdtemp(path.join(os.tmpdir(), 'extract-it-'));
  cacheDir = path.join(scratch, 'cache');
  engine = await DataEngine.open({ workDir: path.join(scratch, 'reader'), readableDirs: [scratch] });

  await putCsv('flights/part-1.csv', ['1,2001-01-01 00:00:00,10', '2,2001-01-15 00:00:00,20']);
  await putCsv('flights/part-2.csv', ['3,2001-02-01 00:00:00,30']);
  await putCsv('flights/2001/part-3.csv', ['4,2001-03-01 00:00:00,40']);
  await client.putObject(landing, 'flights/_SUCCESS', Buffer.alloc(0), 0);
  await putCsv('flights-other/part-9.csv', ['9,2001-01-01 00:00:00,90']);
});

afterAll(async () => {
  engine?.close();
  if (client) {
    await dropBucket(landing);
    await dropBucket(artifactsBucket);
  }
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('extract from S3', { timeout: 60_000 }, () => {
  it('reads a glob over the keys of a prefix', async () => {
    const snapshot = await extract({ source: `s3://${landing}/flights/*.csv` });
    expect(snapshot.rowCount).toBe(3);
    expect((await rowsOf(snapshot)).map((r) => r.id)).toEqual([1, 2, 3]);
    const deep = await extract({ source: `s3://${landing}/flights/**/*.csv` });
    expect(deep.rowCount).toBe(4);
  });

  it('reads every data object under a prefix, not a sibling prefix, and a single object', async () => {
    // `flights` is the folder flights/: never flights-other/, never the _SUCCESS marker.
    const snapshot = await extract({ source: `s3://${landing}/flights` });
    expect((await rowsOf(snapshot)).map((r) => r.id)).toEqual([4, 1, 2, 3]);
    expect(snapshot.sourceDescription).toContain('3 csv objects');
    const single = await extract({ source: `s3://${landing}/flights/part-2.csv` });
    expect(single.rowCount).toBe(1);
  });

  it('reuses cached downloads, the same fingerprint and the same artifact for unchanged input', async () => {
    cacheDir = path.join(scratch, 'cache-reuse');
    source.downloads = [];
    const first = await extract({ source: `s3://${landing}/flights/*.csv` });
    expect(source.downloads.sort()).toEqual(['flights/part-1.csv', 'flights/part-2.csv']);
    const stored = await keys(artifactsBucket);

    source.downloads = [];
    const second = await extract({ source: `s3://${landing}/flights/*.csv` });
    expect(source.downloads).toEqual([]);
    expect(second.fingerprint).toBe(first.fingerprint);
    expect(second.artifact).toEqual(first.artifact);
    expect(await keys(artifactsBucket)).toEqual(stored);
  });

  it('skips download and upload when findExisting knows the fingerprint', async () => {
    cacheDir = path.join(scratch, 'cache-lookup');
    const made = await extract({ source: `s3://${landing}/flights/*.csv`, span: { column: 'at', to: '2001-02-01' } });
    cacheDir = path.join(scratch, 'cache-lookup-empty');
    source.downloads = [];
    const known = new Map([[made.fingerprint, made]]);
    const reused = await extract({
      source: `s3://${landing}/flights/*.csv`,
      span: { column: 'at', to: '2001-02-01' },
      findExisting: async (fingerprint) => known.get(fingerprint),
    });
    expect(reused).toEqual(made);
    expect(source.downloads).toEqual([]);
  });

  it('gives a new fingerprint when an object changes, downloading only that object', async () => {
    cacheDir = path.join(scratch, 'cache-change');
    const before = await extract({ source: `s3://${landing}/flights/*.csv` });
    await putCsv('flights/part-2.csv', ['3,2001-02-01 00:00:00,30', '5,2001-02-02 00:00:00,50']);
    source.downloads = [];
    const after = await extract({ source: `s3://${landing}/flights/*.csv` });
    expect(after.fingerprint).not.toBe(before.fingerprint);
    expect(after.artifact.sha256).not.toBe(before.artifact.sha256);
    expect(after.rowCount).toBe(4);
    expect(source.downloads).toEqual(['flights/part-2.csv']);
  });

  it('refuses an object overwritten between listing and download, as retryable', async () => {
    cacheDir = path.join(scratch, 'cache-race');
    await putCsv('race/part-1.csv', ['1,2001-01-01 00:00:00,1']);
    source.beforeDownload = () => putCsv('race/part-1.csv', ['1,2001-01-01 00:00:00,1', '2,2001-01-02 00:00:00,2']);
    try {
      const error = await codeOf(extract({ source: `s3://${landing}/race/` }));
      expect(error).toMatchObject({ code: 'source_changed', retryable: true });
      expect(error.message).toContain(`s3://${landing}/race/part-1.csv`);
    } finally {
      source.beforeDownload = undefined;
    }
    expect((await extract({ source: `s3://${landing}/race/` })).rowCount).toBe(2);
  });

  it('says which source is missing or corrupt', async () => {
    expect(await codeOf(extract({ source: `s3://${landing}/nothing-here/*.csv` }))).toMatchObject({
      code: 'source_not_found',
    });
    expect(await codeOf(extract({ source: `s3://no-such-bucket-${suffix}/x/` }))).toMatchObject({
      code: 'source_not_found',
      message: expect.stringContaining('does not exist'),
    });
    const garbage = Buffer.from('not parquet');
    await client.putObject(landing, 'broken/data.parquet', garbage, garbage.length);
    const corrupt = await codeOf(extract({ source: `s3://${landing}/broken/` }));
    expect(corrupt.code).toBe('corrupt_input');
    // The message names the object, not the cache file it was read from.
    expect(corrupt.message).toContain(`s3://${landing}/broken/data.parquet`);
  });
});

describe('extract from Postgres', { timeout: 60_000 }, () => {
  const schema = `extract_${suffix}`;
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: testEndpoints().databaseUrl, max: 3 });
    await pool.query(`CREATE SCHEMA ${schema}`);
    await pool.query(`CREATE TABLE ${schema}.flights (
      id bigint PRIMARY KEY, at timestamptz NOT NULL, local_at timestamp, day date, delay numeric(10,2),
      distance double precision, late boolean, origin text, ref uuid, tags text[])`);
    await pool.query(`INSERT INTO ${schema}.flights
      SELECT i, TIMESTAMPTZ '2001-01-01 00:00:00+00' + i * INTERVAL '1 day', TIMESTAMP '2001-01-01 08:30:00.123456',
             DATE '2001-01-01' + i, i * 1.25, i / 3.0, i % 2 = 0, 'O''Hare ' || i, gen_random_uuid(), ARRAY['a', 'b']
      FROM generate_series(0, 59) i`);
    await pool.query(`INSERT INTO ${schema}.flights (id, at) VALUES (1000, '2001-06-01 00:00:00+00')`);
  });

  afterAll(async () => {
    if (pool) {
      await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await pool.end();
    }
  });

  it('streams a SELECT through a cursor into a typed snapshot, with a span', async () => {
    const query = `SELECT * FROM ${schema}.flights ORDER BY id`;
    const phases = new Set<string>();
    const snapshot = await extract({
      source: { kind: 'postgres', query },
      pgPool: pool,
      postgres: { batchRows: 7 },
      span: { column: 'at', from: '2001-01-11T00:00:00Z', to: '2001-02-01T00:00:00Z' },
      onProgress: (p) => phases.add(p.phase),
    });
    expect(phases).toContain('query');
    expect(snapshot.rowCount).toBe(21);
    expect(snapshot.columns).toEqual([
      { name: 'id', type: 'BIGINT' },
      { name: 'at', type: 'TIMESTAMP WITH TIME ZONE' },
      { name: 'local_at', type: 'TIMESTAMP' },
      { name: 'day', type: 'DATE' },
      { name: 'delay', type: 'DECIMAL(10,2)' },
      { name: 'distance', type: 'DOUBLE' },
      { name: 'late', type: 'BOOLEAN' },
      { name: 'origin', type: 'VARCHAR' },
      { name: 'ref', type: 'UUID' },
      { name: 'tags', type: 'VARCHAR' },
    ]);
    const rows = await rowsOf(snapshot);
    expect(rows[0]).toMatchObject({ id: 10, delay: 12.5, late: true, origin: "O'Hare 10", tags: '{a,b}' });
    const [exact] = await engine.rows<{ micros: number; distance: number }>(
      `SELECT epoch_us(local_at) % 1000000 AS micros, distance FROM read_parquet(${sqlString(
        await artifacts.materialize(snapshot.artifact, path.join(scratch, 'read')),
      )}) LIMIT 1`,
    );
    // Microseconds and all float digits survive: values travel as Postgres text and are cast by DuckDB.
    expect(exact).toEqual({ micros: 123456, distance: 10 / 3 });

    const again = await extract({
      source: { kind: 'postgres', query, connection: 'test-db' },
      connections: { connectionString: async () => testEndpoints().databaseUrl },
      span: { column: 'at', from: '2001-01-11T00:00:00Z', to: '2001-02-01T00:00:00Z' },
    });
    expect(again.fingerprint).toBe(snapshot.fingerprint);
    expect(again.artifact).toEqual(snapshot.artifact);

    await pool.query(`UPDATE ${schema}.flights SET delay = 99 WHERE id = 900`); // no such row: nothing changes
    expect((await extract({ source: { kind: 'postgres', query }, pgPool: pool })).rowCount).toBe(61);
    const unchanged = await extract({ source: { kind: 'postgres', query }, pgPool: pool });
    await pool.query(`UPDATE ${schema}.flights SET delay = 99 WHERE id = 1000`);
    const changed = await extract({ source: { kind: 'postgres', query }, pgPool: pool });
    expect(changed.fingerprint).not.toBe(unchanged.fingerprint);
  });

  it('refuses anything but a single read-only SELECT, and leaves the data alone', async () => {
    const refused = [
      `DELETE FROM ${schema}.flights`,
      `SELECT 1; DELETE FROM ${schema}.flights`,
      `WITH gone AS (DELETE FROM ${schema}.flights RETURNING *) SELECT * FROM gone`,
      `SELECT * FROM ${schema}.flights FOR UPDATE`,
    ];
    for (const query of refused) {
      const error = await codeOf(extract({ source: { kind: 'postgres', query }, pgPool: pool }));
      expect(error.code).toBe('invalid_query');
      expect(error.retryable).toBe(false);
    }
    const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.flights`);
    expect(rows[0]?.n).toBe('61');
    // The pool's connections are still usable: failed transactions were discarded, not returned mid-way.
    await expect(pool.query('SELECT 1')).resolves.toBeDefined();
  });

  it('maps a failing query and an empty result', async () => {
    expect(
      await codeOf(extract({ source: { kind: 'postgres', query: 'SELECT * FROM no_such_table' }, pgPool: pool })),
    ).toMatchObject({ code: 'query_failed', retryable: false, message: expect.stringContaining('no_such_table') });
    expect(
      await codeOf(
        extract({ source: { kind: 'postgres', query: `SELECT * FROM ${schema}.flights WHERE false` }, pgPool: pool }),
      ),
    ).toMatchObject({ code: 'empty_source' });
    expect(
      await codeOf(
        extract({
          source: { kind: 'postgres', query: 'SELECT pg_sleep(2)' },
          pgPool: pool,
          postgres: { statementTimeoutMs: 100 },
        }),
      ),
    ).toMatchObject({ code: 'query_failed', message: expect.stringContaining('timeout') });
  });
});

describe('the data access policy and the read-only role', { timeout: 60_000 }, () => {
  it('refuses a bucket outside the policy before listing it', async () => {
    const lists = source.lists;
    const refused = await extract({
      source: `s3://${landing}/flights/*.csv`,
      policy: createDataAccessPolicy({ roots: [], buckets: [`${landing}/elsewhere/`] }),
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SourceNotAllowedError);
    expect((refused as SourceNotAllowedError).httpStatus).toBe(403);
    expect((refused as Error).message).toContain('DATA_BUCKETS=');
    expect(source.lists).toBe(lists);
    // A granted prefix reads; `flights-other/` is not under `flights/`.
    const policy = createDataAccessPolicy({ roots: [], buckets: [`${landing}/flights/`] });
    expect((await extract({ source: `s3://${landing}/flights`, policy })).rowCount).toBeGreaterThan(0);
    await expect(extract({ source: `s3://${landing}/flights-other/`, policy })).rejects.toBeInstanceOf(
      SourceNotAllowedError,
    );
  });

  it('caps an S3 listing', async () => {
    const policy = createDataAccessPolicy({ roots: [], buckets: ['*'], maxFiles: 2 });
    expect(await codeOf(extract({ source: `s3://${landing}/flights/**/*.csv`, policy }))).toMatchObject({
      code: 'source_too_broad',
    });
  });

  it('source query as the read-only role cannot call pg_read_file or write, and reads only the sources schema', async () => {
    const database = createDatabase(testEndpoints().databaseUrl, { max: 1 });
    const table = `${PLATFORM_SOURCES_SCHEMA}.readable_${suffix}`;
    try {
      await database.pool.query(`CREATE TABLE ${table} AS SELECT g AS id FROM generate_series(1, 3) g`);
      const connections = openConnectionStore({
        db: database.db,
        dataDir: inject('stackDataDir'),
        databaseUrl: testEndpoints().databaseUrl,
        connectionsKey: undefined,
      });
      // No `connection`: the built-in read-only `platform` one.
      const read = (query: string) => extract({ source: { kind: 'postgres', query }, connections });
      expect((await read(`SELECT * FROM ${table}`)).rowCount).toBe(3);
      const role = await read(
        'SELECT current_user AS who, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su',
      );
      expect(role.rowCount).toBe(1);
      const fileRead = await codeOf(read("SELECT pg_read_file('/etc/passwd') AS secret"));
      expect(fileRead.message).toMatch(/permission denied/);
      expect(fileRead.message).not.toContain('root:');
      expect((await codeOf(read('SELECT lo_create(0) AS oid'))).message).toMatch(/read-only|permission denied/);
      expect((await codeOf(read('SELECT * FROM pipelines'))).message).toMatch(/permission denied/);
      const { rows } = await database.pool.query<{ rolsuper: boolean; rolconfig: string[] }>(
        "SELECT rolsuper, rolconfig FROM pg_roles WHERE rolname = 'mlops_reader'",
      );
      expect(rows[0]).toMatchObject({ rolsuper: false, rolconfig: ['default_transaction_read_only=on'] });
    } finally {
      await database.pool.query(`DROP TABLE IF EXISTS ${table}`);
      await database.close();
    }
  });

  it('bounds connecting to an unroutable host', async () => {
    const started = Date.now();
    const error = await extract({
      source: { kind: 'postgres', query: 'SELECT 1', connection: 'nowhere' },
      connections: { connectionString: async () => 'postgres://u:p@10.255.255.1:5432/db' },
      postgres: { connectTimeoutMs: 500 },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
