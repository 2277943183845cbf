import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlString } from '../../../data/engine.js';
import {
  ExtractError,
  extractSnapshot,
  type ExtractOptions,
  type ExtractProgress,
  type Snapshot,
} from '../../../data/extract.js';
import { whyNotSingleSelect } from '../../../data/postgres-source.js';
import { createDataAccessPolicy } from '../../../data/access-policy.js';
import { globMatcher, parseSourceSpec } from '../../../data/sources.js';
import type { ArtifactRef, ArtifactStore, PutOptions } from '../../../storage/artifact-store.js';
import { formatArtifactUri, sha256OfFile } from '../../../storage/content-hash.js';

/**
 * The artifact store's contract on a local folder, so these tests need no services (the S3 store itself is tested
 * against MinIO in test/integration). Only what extraction uses is implemented.
 */
class FolderArtifactStore implements ArtifactStore {
  readonly bucket = 'unit-test-artifacts';
  /** Every upload that wrote new bytes. */
  readonly writes: string[] = [];
  constructor(readonly dir: string) {}
  async ensureBucket(): Promise<void> {}
  async putFile(filePath: string, options: PutOptions): Promise<ArtifactRef> {
    const { sha256, bytes } = await sha256OfFile(filePath);
    const target = path.join(this.dir, sha256);
    if (!(await this.exists(sha256))) {
      await copyFile(filePath, target);
      this.writes.push(sha256);
    }
    const contentType = options.contentType ?? 'application/octet-stream';
    return { uri: formatArtifactUri(this.bucket, sha256), sha256, bytes, contentType, kind: options.kind };
  }
  async exists(address: string | { uri: string }): Promise<boolean> {
    const sha = (typeof address === 'string' ? address : address.uri).split('/').pop()!;
    return readFile(path.join(this.dir, sha)).then(
      () => true,
      () => false,
    );
  }
  /** The local file of an artifact, for reading it back with DuckDB. */
  fileOf(ref: ArtifactRef): string {
    return path.join(this.dir, ref.sha256);
  }
  put(): Promise<ArtifactRef> {
    throw new Error('not used by extraction');
  }
  putStream(_readable: Readable): Promise<ArtifactRef> {
    throw new Error('not used by extraction');
  }
  get(): Promise<Buffer> {
    throw new Error('not used by extraction');
  }
  getStream(): Promise<Readable> {
    throw new Error('not used by extraction');
  }
  stat(): Promise<undefined> {
    throw new Error('not used by extraction');
  }
  presignedGetUrl(): Promise<string> {
    throw new Error('not used by extraction');
  }
  materialize(): Promise<string> {
    throw new Error('not used by extraction');
  }
}

let root: string;
let data: string;
let store: FolderArtifactStore;
let engine: DataEngine;

/** One extraction with a fresh work folder. */
function extract(options: Omit<ExtractOptions, 'workDir' | 'artifacts' | 'policy'>): Promise<Snapshot> {
  const policy = createDataAccessPolicy({ roots: [root], buckets: ['*'] });
  return extractSnapshot({ workDir: path.join(root, 'work'), artifacts: store, policy, ...options });
}

/** The rows of a stored snapshot, in file order. */
async function rowsOf(snapshot: Snapshot): Promise<Record<string, unknown>[]> {
  return engine.rows(`SELECT * FROM read_parquet(${sqlString(store.fileOf(snapshot.artifact))})`);
}

async function expectExtractError(promise: Promise<unknown>, code: string, mentions: string): Promise<ExtractError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ExtractError);
  const extractError = error as ExtractError;
  expect(extractError.code).toBe(code);
  expect(extractError.message).toContain(mentions);
  return extractError;
}

const FLIGHTS_CSV = [
  'date,delay,distance,origin,destination',
  '2001-01-01 06:00:00,5,400,SFO,LAX',
  '2001-01-31 23:59:59,-3,1200,JFK,ORD',
  '2001-02-01 00:00:00,40,800,LAX,SEA',
  '2001-02-15 12:00:00,0,300,SEA,SFO',
  '2001-03-01 00:00:00,12,950,ORD,JFK',
].join('\n');

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'extract-unit-'));
  data = path.join(root, 'data');
  await mkdir(path.join(root, 'artifacts'));
  await mkdir(data);
  store = new FolderArtifactStore(path.join(root, 'artifacts'));
  engine = await DataEngine.open({ workDir: path.join(root, 'reader'), readableDirs: [root] });
  await writeFile(path.join(data, 'flights.csv'), `${FLIGHTS_CSV}\n`);
});

afterAll(async () => {
  engine?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('extractSnapshot formats', () => {
  it('reads CSV with detected header and types into a zstd Parquet snapshot', async () => {
    const snapshot = await extract({ source: path.join(data, 'flights.csv') });
    expect(snapshot.rowCount).toBe(5);
    expect(snapshot.columns).toEqual([
      { name: 'date', type: 'TIMESTAMP' },
      { name: 'delay', type: 'BIGINT' },
      { name: 'distance', type: 'BIGINT' },
      { name: 'origin', type: 'VARCHAR' },
      { name: 'destination', type: 'VARCHAR' },
    ]);
    expect(snapshot.artifact.kind).toBe('dataset.parquet');
    expect(snapshot.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(snapshot.sourceDescription).toContain('flights.csv');
    const rows = await rowsOf(snapshot);
    expect(rows.map((r) => r.origin)).toEqual(['SFO', 'JFK', 'LAX', 'SEA', 'ORD']);
    const [codec] = await engine.rows<{ c: string }>(
      `SELECT DISTINCT compression AS c FROM parquet_metadata(${sqlString(store.fileOf(snapshot.artifact))})`,
    );
    expect(codec?.c).toBe('ZSTD');
  });

  it('reads Parquet, NDJSON and JSON arrays, inferring the format from the extension', async () => {
    const parquet = path.join(data, 'flights.parquet');
    await engine.run(
      `COPY (SELECT * FROM read_csv(${sqlString(path.join(data, 'flights.csv'))})) ` +
        `TO ${sqlString(parquet)} (FORMAT parquet)`,
    );
    const fromParquet = await extract({ source: parquet });
    expect(fromParquet.rowCount).toBe(5);
    expect(fromParquet.columns.map((c) => c.type)).toEqual(['TIMESTAMP', 'BIGINT', 'BIGINT', 'VARCHAR', 'VARCHAR']);

    await writeFile(path.join(data, 'rows.ndjson'), '{"a":1,"b":"x"}\n{"a":2,"b":null}\n');
    const ndjson = await extract({ source: path.join(data, 'rows.ndjson') });
    expect(await rowsOf(ndjson)).toEqual([
      { a: 1, b: 'x' },
      { a: 2, b: null },
    ]);

    await writeFile(path.join(data, 'rows-array.json'), '[{"a":1,"b":"x"},{"a":2,"b":"y"},{"a":3,"b":"z"}]');
    const array = await extract({ source: path.join(data, 'rows-array.json') });
    expect(array.rowCount).toBe(3);
    expect(array.columns).toEqual([
      { name: 'a', type: 'BIGINT' },
      { name: 'b', type: 'VARCHAR' },
    ]);
  });

  it('takes an explicit format where the name says none, and refuses to guess', async () => {
    await writeFile(path.join(data, 'export.txt'), 'a,b\n1,2\n');
    await expectExtractError(extract({ source: path.join(data, 'export.txt') }), 'unknown_format', 'export.txt');
    const snapshot = await extract({ source: path.join(data, 'export.txt'), format: 'csv' });
    expect(snapshot.rowCount).toBe(1);
  });

  it('accepts file:// URLs', async () => {
    const snapshot = await extract({ source: `file://${path.join(data, 'flights.csv')}` });
    expect(snapshot.rowCount).toBe(5);
  });
});

describe('globs and folders', () => {
  let dir: string;
  beforeAll(async () => {
    dir = path.join(root, 'glob');
    await mkdir(path.join(dir, 'nested'), { recursive: true });
    await writeFile(path.join(dir, 'part-1.csv'), 'id,name\n1,a\n2,b\n');
    await writeFile(path.join(dir, 'part-2.csv'), 'id,name\n3,c\n');
    // Columns in another order: matched by name.
    await writeFile(path.join(dir, 'part-3.csv'), 'name,id\nd,4\n');
    await writeFile(path.join(dir, 'notes.txt'), 'not data');
    await writeFile(path.join(dir, '_SUCCESS'), '');
    await writeFile(path.join(dir, 'nested', 'part-4.csv'), 'id,name\n5,e\n');
    // A link to a data file counts as that file.
    await symlink(path.join(dir, 'nested', 'part-4.csv'), path.join(root, 'linked.csv'));
  });

  it('expands * within one folder, in name order', async () => {
    const snapshot = await extract({ source: path.join(dir, '*.csv') });
    expect(snapshot.rowCount).toBe(4);
    const rows = await rowsOf(snapshot);
    expect(rows).toEqual([
      { id: 1, name: 'a' },
      { id: 2, name: 'b' },
      { id: 3, name: 'c' },
      { id: 4, name: 'd' },
    ]);
    expect(snapshot.sourceDescription).toContain('3 csv files');
  });

  it('expands ** across folders, and a folder means its data files', async () => {
    expect((await extract({ source: path.join(dir, '**', '*.csv') })).rowCount).toBe(5);
    // notes.txt and _SUCCESS are not data files of a folder.
    expect((await extract({ source: dir })).rowCount).toBe(5);
    expect((await extract({ source: path.join(root, 'link*.csv') })).rowCount).toBe(1);
  });

  it('says when nothing matches', async () => {
    await expectExtractError(extract({ source: path.join(dir, '*.parquet') }), 'source_not_found', '*.parquet');
  });

  it('matches globs as documented', () => {
    expect(globMatcher('/d/*.csv')('/d/a.csv')).toBe(true);
    expect(globMatcher('/d/*.csv')('/d/x/a.csv')).toBe(false);
    expect(globMatcher('/d/**/*.csv')('/d/a.csv')).toBe(true);
    expect(globMatcher('/d/**/*.csv')('/d/x/y/a.csv')).toBe(true);
    expect(globMatcher('flights/part-?.parquet')('flights/part-1.parquet')).toBe(true);
    expect(globMatcher('a+b.csv')('a+b.csv')).toBe(true);
  });
});

describe('span', () => {
  it('keeps [from, to): the lower bound is included, the upper excluded', async () => {
    const snapshot = await extract({
      source: path.join(data, 'flights.csv'),
      span: { column: 'date', from: '2001-01-31T23:59:59Z', to: '2001-03-01T00:00:00Z' },
    });
    expect((await rowsOf(snapshot)).map((r) => r.origin)).toEqual(['JFK', 'LAX', 'SEA']);
  });

  it('takes open bounds, dates, and bounds without offset as UTC', async () => {
    const from = await extract({
      source: path.join(data, 'flights.csv'),
      span: { column: 'date', from: '2001-02-01' },
    });
    expect(from.rowCount).toBe(3);
    const to = await extract({
      source: path.join(data, 'flights.csv'),
      span: { column: 'date', to: '2001-02-01T00:00' },
    });
    expect(to.rowCount).toBe(2);
    // 2001-02-01T01:00:00+01:00 is midnight UTC: the same bound.
    const offset = await extract({
      source: path.join(data, 'flights.csv'),
      span: { column: 'date', from: '2001-02-01T01:00:00+01:00' },
    });
    expect(offset.rowCount).toBe(3);
    expect(offset.fingerprint).toBe(from.fingerprint);
  });

  it('compares TIMESTAMPTZ and DATE columns by instant and day', async () => {
    await writeFile(
      path.join(data, 'zoned.csv'),
      'at,day,v\n2001-01-01T23:30:00-02:00,2001-01-01,1\n2001-01-02T00:30:00+00:00,2001-01-02,2\n',
    );
    const zoned = await extract({
      source: path.join(data, 'zoned.csv'),
      span: { column: 'at', from: '2001-01-02T01:00:00Z' },
    });
    // 23:30 at -02:00 is 01:30 UTC the next day: inside; 00:30 UTC is before the bound.
    expect((await rowsOf(zoned)).map((r) => r.v)).toEqual([1]);
    const days = await extract({ source: path.join(data, 'zoned.csv'), span: { column: 'day', to: '2001-01-02' } });
    expect((await rowsOf(days)).map((r) => r.v)).toEqual([1]);
  });

  it('refuses a missing or non-temporal column, and reports an empty span', async () => {
    const source = path.join(data, 'flights.csv');
    await expectExtractError(extract({ source, span: { column: 'when', from: '2001-01-01' } }), 'invalid_span', 'when');
    await expectExtractError(
      extract({ source, span: { column: 'origin', from: '2001-01-01' } }),
      'invalid_span',
      'VARCHAR',
    );
    await expectExtractError(extract({ source, span: { column: 'date', from: '2002-01-01' } }), 'empty_span', source);
    await expectExtractError(
      extract({ source, span: { column: 'date', from: '2001-02-01', to: '2001-01-01' } }),
      'invalid_request',
      'from must be before to',
    );
    await expectExtractError(
      extract({ source, span: { column: 'date', from: 'yesterday' } }),
      'invalid_request',
      'ISO 8601',
    );
  });
});

describe('fingerprint and idempotence', () => {
  it('is the same for unchanged input, with byte-identical Parquet and no second write', async () => {
    const file = path.join(data, 'stable.csv');
    await writeFile(file, `${FLIGHTS_CSV}\n`);
    const first = await extract({ source: file });
    const writes = store.writes.length;
    const second = await extract({ source: file });
    expect(second.fingerprint).toBe(first.fingerprint);
    expect(second.artifact).toEqual(first.artifact);
    expect(store.writes.length).toBe(writes);
  });

  it('changes with the content, the span and the format', async () => {
    const file = path.join(data, 'changing.csv');
    await writeFile(file, `${FLIGHTS_CSV}\n`);
    const before = await extract({ source: file });
    await writeFile(file, `${FLIGHTS_CSV}\n2001-03-02 00:00:00,1,100,BOS,DCA\n`);
    const after = await extract({ source: file });
    expect(after.fingerprint).not.toBe(before.fingerprint);
    expect(after.rowCount).toBe(6);
    const spanned = await extract({ source: file, span: { column: 'date', from: '2001-01-01' } });
    expect(spanned.fingerprint).not.toBe(after.fingerprint);
    const otherSpan = await extract({ source: file, span: { column: 'date', from: '2001-01-02' } });
    expect(otherSpan.fingerprint).not.toBe(spanned.fingerprint);
    const explicitFormat = await extract({ source: file, format: 'csv' });
    expect(explicitFormat.fingerprint).toBe(after.fingerprint);
  });

  it('writes byte-identical Parquet for the same input across row groups', async () => {
    const file = path.join(data, 'many.parquet');
    await engine.run(
      `COPY (SELECT i AS id, i * 0.5 AS x, 'k' || (i % 97) AS k, TIMESTAMP '2001-01-01' + to_seconds(i) AS t ` +
        `FROM range(300000) r(i)) TO ${sqlString(file)} (FORMAT parquet, ROW_GROUP_SIZE 50000)`,
    );
    const a = await extract({ source: file });
    const b = await extract({ source: file });
    expect(a.rowCount).toBe(300_000);
    expect(b.artifact.sha256).toBe(a.artifact.sha256);
  });

  it('returns the snapshot findExisting knows, without reading or uploading', async () => {
    const file = path.join(data, 'flights.csv');
    const made = await extract({ source: file });
    const writes = store.writes.length;
    const phases: string[] = [];
    const asked: string[] = [];
    const reused = await extract({
      source: file,
      findExisting: async (fingerprint) => {
        asked.push(fingerprint);
        return fingerprint === made.fingerprint ? { ...made, sourceDescription: 'from the metadata store' } : undefined;
      },
      onProgress: (p) => phases.push(p.phase),
    });
    expect(asked).toEqual([made.fingerprint]);
    expect(reused.sourceDescription).toBe('from the metadata store');
    expect(phases).toEqual(['resolve', 'done']);
    expect(store.writes.length).toBe(writes);
  });

  it('extracts again when the snapshot findExisting knows has lost its artifact', async () => {
    const file = path.join(data, 'flights.csv');
    const made = await extract({ source: file });
    const gone = { ...made, artifact: { ...made.artifact, uri: formatArtifactUri(store.bucket, '0'.repeat(64)) } };
    const again = await extract({ source: file, findExisting: async () => gone });
    expect(again.artifact).toEqual(made.artifact);
  });

  it('stops when cancelled', async () => {
    const error = await extract({ source: path.join(data, 'flights.csv'), signal: AbortSignal.abort() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ name: 'AbortError' });
  });

  it('reports its phases', async () => {
    const seen: ExtractProgress[] = [];
    await extract({ source: path.join(data, 'flights.csv'), onProgress: (p) => seen.push(p) });
    expect(seen.map((p) => p.phase)).toEqual(['resolve', 'snapshot', 'upload', 'done']);
    expect(seen.at(-1)?.rows).toBe(5);
  });
});

describe('bad input', () => {
  it('names a missing source', async () => {
    const missing = path.join(data, 'nope.csv');
    const error = await expectExtractError(extract({ source: missing }), 'source_not_found', missing);
    expect(error.retryable).toBe(false);
    expect(error.failureType).toBe('NotFound');
  });

  it('names an empty source: no bytes, or a header and no rows', async () => {
    await writeFile(path.join(data, 'empty.csv'), '');
    await expectExtractError(extract({ source: path.join(data, 'empty.csv') }), 'empty_source', 'empty.csv');
    await writeFile(path.join(data, 'header-only.csv'), 'a,b\n');
    await expectExtractError(extract({ source: path.join(data, 'header-only.csv') }), 'empty_source', 'no rows');
    await writeFile(path.join(data, 'empty.ndjson'), '');
    await expectExtractError(extract({ source: path.join(data, 'empty.ndjson') }), 'empty_source', 'empty.ndjson');
  });

  it('maps a corrupt Parquet file to corrupt_input', async () => {
    await writeFile(path.join(data, 'garbage.parquet'), 'these are not the bytes of a parquet file');
    const error = await expectExtractError(
      extract({ source: path.join(data, 'garbage.parquet') }),
      'corrupt_input',
      'garbage.parquet',
    );
    expect(error.message).toMatch(/magic bytes/);
    expect(error.failureType).toBe('DataValidation');
  });

  it('maps a corrupt CSV (not text) and malformed JSON to corrupt_input', async () => {
    await writeFile(path.join(data, 'binary.csv'), Buffer.from([0x61, 0x2c, 0x62, 0x0a, 0xff, 0xfe, 0x00, 0x2c, 0x32]));
    await expectExtractError(extract({ source: path.join(data, 'binary.csv') }), 'corrupt_input', 'unicode');
    await writeFile(path.join(data, 'broken.ndjson'), '{"a":1}\n{"a":');
    await expectExtractError(extract({ source: path.join(data, 'broken.ndjson') }), 'corrupt_input', 'Malformed JSON');
  });

  it('keeps text in a numeric column as VARCHAR, also after the type sample', async () => {
    await writeFile(path.join(data, 'mixed.csv'), 'a,b\n1,x\n2,y\nthree,z\n');
    const small = await extract({ source: path.join(data, 'mixed.csv') });
    expect(small.columns).toEqual([
      { name: 'a', type: 'VARCHAR' },
      { name: 'b', type: 'VARCHAR' },
    ]);
    // DuckDB guesses types from the first 20 480 rows; the text comes later.
    const lines = ['a,b', ...Array.from({ length: 30_000 }, (_, i) => `${i},x`), 'n/a,y'];
    await writeFile(path.join(data, 'late-text.csv'), `${lines.join('\n')}\n`);
    const late = await extract({ source: path.join(data, 'late-text.csv') });
    expect(late.rowCount).toBe(30_001);
    expect(late.columns[0]).toEqual({ name: 'a', type: 'VARCHAR' });
  });

  it('refuses malformed requests with invalid_request', async () => {
    await expectExtractError(extract({ source: 'http://example.com/a.csv' }), 'invalid_request', 'unsupported scheme');
    await expectExtractError(extract({ source: 's3://Bad_Bucket/x.csv' }), 'invalid_request', 'bucket name');
    await expectExtractError(extract({ source: '   ' }), 'invalid_request', 'empty');
    await expectExtractError(
      extract({ source: path.join(data, 'flights.csv'), format: 'xlsx' as 'csv' }),
      'invalid_request',
      'format',
    );
    await expectExtractError(extract({ source: 's3://bucket/x.csv' }), 'invalid_request', 's3Client');
  });

  it('refuses a Postgres query that is not a single SELECT before connecting', async () => {
    const source = { kind: 'postgres', query: 'DELETE FROM flights' } as const;
    await expectExtractError(extract({ source }), 'invalid_query', 'only a SELECT');
    await expectExtractError(
      extract({ source: { kind: 'postgres', query: 'SELECT 1; DROP TABLE flights' } }),
      'invalid_query',
      'more than one statement',
    );
    await expectExtractError(extract({ source: { kind: 'postgres', query: 'SELECT 1' } }), 'invalid_request', 'pgPool');
  });
});

describe('query and source parsing', () => {
  it('accepts single SELECTs, comments, literals and a trailing semicolon', () => {
    expect(whyNotSingleSelect('SELECT 1')).toBeUndefined();
    expect(whyNotSingleSelect("  -- leading comment\n  select a from t where s = 'x;y'")).toBeUndefined();
    expect(whyNotSingleSelect('WITH w AS (SELECT 1) SELECT * FROM w')).toBeUndefined();
    expect(whyNotSingleSelect('(SELECT 1) UNION (SELECT 2)')).toBeUndefined();
    expect(whyNotSingleSelect('SELECT $$a;b$$, "col;name" /* ; */')).toBeUndefined();
    expect(parseSourceSpec({ kind: 'postgres', query: 'SELECT 1;  ' })).toMatchObject({ query: 'SELECT 1' });
  });

  it('refuses other statements and several statements', () => {
    expect(whyNotSingleSelect('INSERT INTO t VALUES (1)')).toMatch(/only a SELECT/);
    expect(whyNotSingleSelect('UPDATE t SET a = 1')).toMatch(/UPDATE/);
    expect(whyNotSingleSelect('SELECT 1; SELECT 2')).toMatch(/more than one statement/);
    expect(whyNotSingleSelect('/* only a comment */')).toMatch(/empty/);
  });

  it('parses s3 sources into bucket and key', () => {
    expect(parseSourceSpec('s3://landing/flights/*.parquet')).toMatchObject({
      kind: 's3',
      bucket: 'landing',
      key: 'flights/*.parquet',
    });
    expect(parseSourceSpec('s3://landing')).toMatchObject({ kind: 's3', bucket: 'landing', key: '' });
  });
});
