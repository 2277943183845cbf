import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine } from '../../../data/engine.js';
import {
  SPLIT_EVAL,
  SPLIT_TRAIN,
  SplitError,
  evalThreshold,
  hashBucket,
  hashSplitSql,
  timeSplitSql,
} from '../../../data/split.js';

let tmp: string;
let engine: DataEngine;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'split-test-'));
  engine = await DataEngine.open({ workDir: tmp });
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('hashBucket', () => {
  it('matches an independent implementation (Python hashlib: int(md5(f"{key}:{seed}").hexdigest()[:8], 16))', () => {
    expect(hashBucket('a')).toBe(319907178);
    expect(hashBucket('12345', 0)).toBe(573096958);
    expect(hashBucket('12345', 7)).toBe(700233557);
    expect(hashBucket('ORD', 'seed')).toBe(2186040054);
    expect(hashBucket(null)).toBe(446520754);
    expect(hashBucket('')).toBe(446520754);
  });

  it('is what the SQL split computes, key by key', async () => {
    const sql = hashSplitSql('k', 0.3, 11);
    const rows = await engine.rows<{ k: string; split: number }>(
      `SELECT CAST(i AS VARCHAR) AS k, ${sql} AS split FROM range(2000) r(i)`,
    );
    for (const { k, split } of rows) {
      expect(split, k).toBe(hashBucket(k, 11) < evalThreshold(0.3) ? SPLIT_EVAL : SPLIT_TRAIN);
    }
  });

  it('hashes integer keys by their text, so 7 and "7" land together', async () => {
    const [row] = await engine.rows<{ a: number; b: number }>(
      `SELECT ${hashSplitSql('7', 0.5)} AS a, ${hashSplitSql("'7'", 0.5)} AS b`,
    );
    expect(row?.a).toBe(row?.b);
  });

  it('refuses fractions outside (0, 1)', () => {
    expect(() => hashSplitSql('k', 0)).toThrow(SplitError);
    expect(() => hashSplitSql('k', 1)).toThrow(SplitError);
  });
});

describe('timeSplitSql', () => {
  async function splits(type: string, values: (string | null)[], trainBefore: string, evalBefore?: string) {
    const sql = await timeSplitSql(engine, 'ts', type, trainBefore, evalBefore);
    const literals = values.map((v, i) => `(${i}, CAST(${v === null ? 'NULL' : `'${v}'`} AS ${type}))`).join(', ');
    const rows = await engine.rows<{ split: number | null }>(
      `SELECT ${sql} AS split FROM (VALUES ${literals}) v(i, ts) ORDER BY i`,
    );
    return rows.map((r) => r.split);
  }

  it('puts a row exactly at a cut-off into the later split, and rows at evalBefore or null into neither', async () => {
    const values = [
      '2001-01-31 23:59:59.999999',
      '2001-02-01 00:00:00',
      '2001-02-28 23:59:59',
      '2001-03-01 00:00:00',
      null,
    ];
    expect(await splits('TIMESTAMP', values, '2001-02-01', '2001-03-01T00:00:00Z')).toEqual([0, 1, 1, null, null]);
    expect(await splits('TIMESTAMP', values, '2001-02-01T00:00:00')).toEqual([0, 1, 1, 1, null]);
    expect(await splits('DATE', ['2001-01-31', '2001-02-01', null], '2001-02-01')).toEqual([0, 1, null]);
  });

  it('honours offsets for TIMESTAMP WITH TIME ZONE columns and reads a bare cut-off as UTC', async () => {
    const values = ['2001-02-01 00:30:00+00', '2001-01-31 23:30:00+00'];
    expect(await splits('TIMESTAMP WITH TIME ZONE', values, '2001-02-01T01:00:00+01:00')).toEqual([1, 0]);
    expect(await splits('TIMESTAMP WITH TIME ZONE', values, '2001-02-01')).toEqual([1, 0]);
  });

  it('refuses bad cut-offs and non-time columns', async () => {
    await expect(timeSplitSql(engine, 'ts', 'TIMESTAMP', 'March 2001')).rejects.toThrow(/not an ISO 8601/);
    await expect(timeSplitSql(engine, 'ts', 'TIMESTAMP', '2001-02-30')).rejects.toThrow(/invalid cut-off/);
    await expect(timeSplitSql(engine, 'ts', 'TIMESTAMP', '2001-03-01', '2001-02-01')).rejects.toThrow(/must be after/);
    await expect(timeSplitSql(engine, 'ts', 'TIMESTAMP', '2001-03-01T00:00:00+02:00')).rejects.toThrow(/no time zone/);
    await expect(timeSplitSql(engine, 'ts', 'VARCHAR', '2001-03-01')).rejects.toThrow(/DATE or TIMESTAMP/);
    await expect(timeSplitSql(engine, 'ts', 'VARCHAR', '2001-03-01')).rejects.toBeInstanceOf(SplitError);
  });
});
