import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlString } from '../../../data/engine.js';
import type { DatasetStatistics } from '../../../data/types.js';
import { trainingBaseline, trainSplitStatistics } from '../../../monitoring/training-baseline.js';
import type { ArtifactRef, ArtifactStore } from '../../../storage/artifact-store.js';

let dir: string;
let trainFile: string;
const train: ArtifactRef = {
  uri: 's3://bucket/artifacts/sha256/aa/train',
  sha256: 'a'.repeat(64),
  bytes: 1,
  contentType: 'application/vnd.apache.parquet',
  kind: 'train.parquet',
};

/** An artifact store over one local file (the train split) and what was put, counting reads of the split. */
function fakeArtifacts() {
  const stored = new Map<string, Buffer>();
  const calls = { materialize: 0, put: 0 };
  const store = {
    materialize: async () => {
      calls.materialize++;
      return trainFile;
    },
    put: async (body: string) => {
      calls.put++;
      const uri = `s3://bucket/put/${stored.size}`;
      stored.set(uri, Buffer.from(body));
      return { uri, sha256: 'b'.repeat(64), bytes: body.length };
    },
    get: async (address: { uri: string }) => stored.get(address.uri)!,
  } as unknown as ArtifactStore;
  return { store, calls };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'training-baseline-'));
  trainFile = path.join(dir, 'train.parquet');
  const engine = await DataEngine.open({ workDir: dir });
  try {
    // A prepared split: `hour` as computed by an expression (DOUBLE, one missing), `origin`, the class index.
    await engine.run(
      `COPY (SELECT CASE WHEN i = 0 THEN NULL ELSE (i % 24)::DOUBLE END AS hour,
          ['PIT', 'SEA'][(i % 2) + 1] AS origin, CAST(CASE WHEN i % 4 = 0 THEN 1 ELSE 0 END AS INTEGER) AS label
        FROM range(100) t(i)) TO ${sqlString(trainFile)} (FORMAT parquet)`,
    );
  } finally {
    engine.close();
  }
});

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('trainSplitStatistics', () => {
  it('gives every feature column and, for a classifier, the labels counted by class', async () => {
    const { store } = fakeArtifacts();
    const statistics = await trainSplitStatistics({ artifacts: store, scratchDir: dir }, train, ['no', 'yes']);
    const byName = new Map(statistics.columns.map((c) => [c.name, c]));
    expect(byName.get('hour')).toMatchObject({ kind: 'numeric', count: 100, missing: 1 });
    expect(byName.get('hour')?.numeric?.max).toBe(23);
    expect(byName.get('origin')?.categorical?.frequencies).toEqual([
      { value: 'PIT', count: 50 },
      { value: 'SEA', count: 50 },
    ]);
    expect(byName.get('label')?.categorical?.frequencies).toEqual([
      { value: 'no', count: 75 },
      { value: 'yes', count: 25 },
    ]);
  });

  it('keeps a regression label numeric', async () => {
    const { store } = fakeArtifacts();
    const statistics = await trainSplitStatistics({ artifacts: store, scratchDir: dir }, train, undefined);
    expect(statistics.columns.find((c) => c.name === 'label')?.kind).toBe('numeric');
  });
});

describe('trainingBaseline', () => {
  it('computes and stores the statistics once, then reads what an earlier window stored for the same split', async () => {
    const { store, calls } = fakeArtifacts();
    const deps = { artifacts: store, scratchDir: dir };
    const first = await trainingBaseline(deps, train, ['no', 'yes'], undefined);
    expect(first.reused).toBe(false);
    expect(first.ref.train).toBe(train.uri);
    expect(calls).toEqual({ materialize: 1, put: 1 });

    const second = await trainingBaseline(deps, train, ['no', 'yes'], first.ref);
    expect(second.reused).toBe(true);
    expect(second.statistics).toEqual(first.statistics satisfies DatasetStatistics);
    expect(calls).toEqual({ materialize: 1, put: 1 });

    // A baseline of another split is not reused.
    const other = await trainingBaseline(deps, train, ['no', 'yes'], { ...first.ref, train: 's3://bucket/other' });
    expect(other.reused).toBe(false);
    expect(calls).toEqual({ materialize: 2, put: 2 });
  });
});
