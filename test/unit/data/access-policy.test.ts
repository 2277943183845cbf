import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizeLocalPath,
  authorizeObjects,
  createDataAccessPolicy,
  DENY_ALL_POLICY,
  isObjectAllowed,
  parseBucketGrant,
  SourceNotAllowedError,
} from '../../../data/access-policy.js';
import { isExtractError } from '../../../data/extract-errors.js';
import { globMatcher, listLocalFiles, parseSourceSpec, resolveObjects } from '../../../data/sources.js';
import type { ObjectInfo, ObjectSource } from '../../../storage/object-source.js';

let root: string;
let dataRoot: string;
let outside: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'access-policy-'));
  dataRoot = path.join(root, 'sources');
  outside = path.join(root, 'outside');
  await mkdir(path.join(dataRoot, 'a', 'b'), { recursive: true });
  await mkdir(outside);
  await writeFile(path.join(dataRoot, 'a', 'one.csv'), 'x\n1\n');
  await writeFile(path.join(outside, 'secret.csv'), 'password\nhunter2\n');
  await symlink(outside, path.join(dataRoot, 'escape'));
  await symlink(path.join(outside, 'secret.csv'), path.join(dataRoot, 'a', 'linked.csv'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const policy = () => createDataAccessPolicy({ roots: [dataRoot], buckets: ['landing/flights/', 'open'] });

async function refused(promise: Promise<unknown>): Promise<SourceNotAllowedError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SourceNotAllowedError);
  return error as SourceNotAllowedError;
}

describe('local roots', () => {
  it('accepts paths inside a root, existing or not, as their real path', async () => {
    await expect(authorizeLocalPath(policy(), path.join(dataRoot, 'a', 'one.csv'))).resolves.toBe(
      path.join(dataRoot, 'a', 'one.csv'),
    );
    await expect(authorizeLocalPath(policy(), path.join(dataRoot, 'not', 'yet.csv'))).resolves.toContain('yet.csv');
    await expect(authorizeLocalPath(policy(), dataRoot)).resolves.toBe(dataRoot);
  });

  it('refuses a path outside every root, naming the setting', async () => {
    const error = await refused(authorizeLocalPath(policy(), '/etc/passwd'));
    expect(error.httpStatus).toBe(403);
    expect(error.code).toBe('source_not_allowed');
    expect(error.message).toBe(`/etc/passwd is outside the data roots (DATA_ROOTS=${dataRoot})`);
    await refused(authorizeLocalPath(DENY_ALL_POLICY, path.join(dataRoot, 'a', 'one.csv')));
  });

  it('refuses an escape through .. and through a symbolic link', async () => {
    await refused(authorizeLocalPath(policy(), path.join(dataRoot, '..', 'outside', 'secret.csv')));
    await refused(authorizeLocalPath(policy(), path.join(dataRoot, 'escape', 'secret.csv')));
    await refused(authorizeLocalPath(policy(), path.join(dataRoot, 'escape', 'missing.csv')));
    // A sibling whose name starts like the root is not inside it.
    await refused(authorizeLocalPath(policy(), `${dataRoot}-other/x.csv`));
  });

  it('applies to file:// URLs, folders, globs and links found by a walk', async () => {
    const list = (source: string) => listLocalFiles(parseSourceSpec(source) as never, 'csv', policy());
    await refused(list('file:///etc/passwd'));
    await refused(list(`file://${dataRoot}/../outside/secret.csv`));
    await refused(list(path.join(dataRoot, 'escape', '*.csv')));
    // The folder holds a link to a file outside: the whole source is refused, not just that file.
    await refused(list(path.join(dataRoot, 'a')));
    await expect(list(path.join(dataRoot, 'a', 'one.csv'))).resolves.toMatchObject({ paths: [expect.any(String)] });
  });
});

describe('buckets', () => {
  it('parses grants', () => {
    expect(parseBucketGrant('landing')).toEqual({ bucket: 'landing', prefix: '' });
    expect(parseBucketGrant('landing/flights')).toEqual({ bucket: 'landing', prefix: 'flights/' });
    expect(parseBucketGrant(' * ')).toEqual({ bucket: '*', prefix: '' });
  });

  it('allows granted buckets and prefixes only', () => {
    const p = policy();
    expect(isObjectAllowed(p, 'landing', 'flights/2001.parquet')).toBe(true);
    expect(isObjectAllowed(p, 'landing', 'flights-2/x.parquet')).toBe(false);
    expect(isObjectAllowed(p, 'landing', 'flights/../secrets/x')).toBe(false);
    expect(isObjectAllowed(p, 'open', 'anything')).toBe(true);
    expect(isObjectAllowed(p, 'mlops-artifacts', 'artifacts/x')).toBe(false);
    expect(isObjectAllowed(createDataAccessPolicy({ roots: [], buckets: ['*'] }), 'any', 'x')).toBe(true);
    expect(() => authorizeObjects(p, 'secrets', '', 's3://secrets')).toThrow(
      's3://secrets is outside the allowed buckets (DATA_BUCKETS=landing/flights/,open)',
    );
  });

  it('refuses an object source outside the policy without listing it', async () => {
    let calls = 0;
    const objects: ObjectSource = {
      list: async () => {
        calls += 1;
        return [];
      },
      stat: async () => {
        calls += 1;
        return undefined;
      },
      download: () => Promise.reject(new Error('no')),
    };
    const resolve = (uri: string) => resolveObjects(parseSourceSpec(uri) as never, objects, undefined, policy());
    await refused(resolve('s3://secrets/keys.csv'));
    await refused(resolve('s3://landing/other/'));
    await refused(resolve('s3://landing/*.csv'));
    await refused(resolve('s3://landing'));
    expect(calls).toBe(0);
  });
});

describe('glob caps', () => {
  let wide: string;
  beforeAll(async () => {
    wide = path.join(dataRoot, 'wide');
    let deep = path.join(dataRoot, 'deep');
    for (let i = 0; i < 6; i++) deep = path.join(deep, `d${i}`);
    await mkdir(deep, { recursive: true });
    await writeFile(path.join(deep, 'bottom.csv'), 'x\n1\n');
    await mkdir(wide);
    await Promise.all(Array.from({ length: 30 }, (_, i) => writeFile(path.join(wide, `f${i}.csv`), 'x\n1\n')));
  });

  const capped = (maxFiles: number, maxDepth: number) =>
    createDataAccessPolicy({ roots: [dataRoot], buckets: [], maxFiles, maxDepth });

  async function tooBroad(promise: Promise<unknown>) {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isExtractError(error, 'source_too_broad')).toBe(true);
  }

  it('stops a walk past the cap on files', async () => {
    const list = (source: string, p = capped(10, 16)) => listLocalFiles(parseSourceSpec(source) as never, 'csv', p);
    await tooBroad(list(path.join(wide, '*.csv')));
    await tooBroad(list(wide));
    expect((await list(path.join(wide, '*.csv'), capped(100, 16))).paths).toHaveLength(30);
  });

  it('stops ** past the cap on depth, and walks a plain glob only as deep as it can match', async () => {
    const list = (source: string, p: ReturnType<typeof capped>) =>
      listLocalFiles(parseSourceSpec(source) as never, 'csv', p);
    await tooBroad(list(path.join(dataRoot, 'deep', '**', '*.csv'), capped(1000, 3)));
    expect((await list(path.join(dataRoot, 'deep', '**', '*.csv'), capped(1000, 16))).paths).toHaveLength(1);
    expect((await list(path.join(dataRoot, 'deep', '*', '*', '*.csv'), capped(1000, 3)).catch((e) => e)).code).toBe(
      'source_not_found',
    );
  });

  it('caps an object listing', async () => {
    const listed: ObjectInfo[] = Array.from({ length: 5 }, (_, i) => ({
      bucket: 'open',
      key: `k/${i}.csv`,
      size: 1,
      etag: String(i),
      lastModified: new Date(0),
    }));
    const objects: ObjectSource = {
      list: async (_b, _p, options) => listed.slice(0, options?.maxKeys),
      stat: async () => undefined,
      download: () => Promise.reject(new Error('no')),
    };
    const p = createDataAccessPolicy({ roots: [], buckets: ['open'], maxFiles: 3 });
    await tooBroad(resolveObjects(parseSourceSpec('s3://open/k/*.csv') as never, objects, undefined, p));
  });

  it('matches without catastrophic backtracking', () => {
    const matcher = globMatcher(`/d/${'*a'.repeat(30)}*b`);
    const started = Date.now();
    expect(matcher(`/d/${'a'.repeat(5000)}`)).toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
