import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataAccessPolicy, SourceNotAllowedError } from '../../../data/access-policy.js';
import { DataEngine, sqlString } from '../../../data/engine.js';
import type { PipelineDefinitionInput } from '../../../pipelines/definition.js';
import { validateDefinition, type DefinitionIssue } from '../../../pipelines/validate-definition.js';
import type { ObjectInfo, ObjectSource } from '../../../storage/object-source.js';

let root: string;
let csv: string;

/** Local sources under the test's folder, objects of any bucket. */
function policy() {
  return createDataAccessPolicy({ roots: [root], buckets: ['*'] });
}
let parquetDir: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'validate-definition-'));
  const lines = ['id,x1,x2,origin,day,y,amount'];
  for (let i = 0; i < 200; i++) {
    const day = `2024-01-${String((i % 28) + 1).padStart(2, '0')}`;
    lines.push(`${i},${(i % 17) / 3},${i % 5},${['ATL', 'SFO', 'JFK'][i % 3]},${day},${i % 2},${i * 1.5}`);
  }
  csv = path.join(root, 'flights.csv');
  await writeFile(csv, `${lines.join('\n')}\n`);

  parquetDir = path.join(root, 'parquet');
  await mkdir(parquetDir);
  const engine = await DataEngine.open({ workDir: root, readableDirs: [root] });
  try {
    for (const part of ['part-0', 'part-1']) {
      await engine.run(
        `COPY (SELECT * REPLACE (CAST(day AS TIMESTAMP) AS day) FROM read_csv(${sqlString(csv)})) ` +
          `TO ${sqlString(path.join(parquetDir, `${part}.parquet`))} (FORMAT parquet)`,
      );
    }
  } finally {
    engine.close();
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function definition(overrides: Partial<PipelineDefinitionInput> = {}): PipelineDefinitionInput {
  return {
    name: 'flights',
    source: { uri: csv },
    label: { name: 'delayed', expression: 'y = 1', task: 'binary' },
    features: [
      { name: 'x1', expression: 'x1' },
      { name: 'x2', expression: 'x2 * 2' },
      { name: 'origin', expression: 'origin' },
    ],
    split: { kind: 'hash', key: 'id', evalFraction: 0.2 },
    trainer: { kind: 'logistic_regression', params: { C: 0.5 } },
    ...overrides,
  };
}

async function issuesOf(input: unknown): Promise<readonly DefinitionIssue[]> {
  const result = await validateDefinition(input, { scratchDir: root, policy: policy() });
  return result.ok ? [] : result.issues;
}

describe('validateDefinition', () => {
  it('accepts a valid definition and returns it with defaults filled in', async () => {
    const result = await validateDefinition(definition(), { scratchDir: root, policy: policy() });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.definition.trainer.checkpointEvery).toBe(10);
    expect(result.definition.deployment.policy).toBe('automatic');
  });

  it('accepts a Parquet glob with a time split and a span on a timestamp column', async () => {
    const issues = await issuesOf(
      definition({
        source: { uri: path.join(parquetDir, '*.parquet') },
        span: { column: 'day', from: '2024-01-01', to: '2024-02-01' },
        split: { kind: 'time', column: 'DAY', trainBefore: '2024-01-20', evalBefore: '2024-01-29' },
        features: [
          { name: 'hour', expression: 'hour(day)' },
          { name: 'origin', expression: 'lower(origin)' },
        ],
      }),
    );
    expect(issues).toEqual([]);
  });

  it('names the feature whose expression reads an unknown column, and lists the columns', async () => {
    const issues = await issuesOf(
      definition({
        features: [
          { name: 'x1', expression: 'x1' },
          { name: 'distance', expression: 'distance / 1000' },
        ],
      }),
    );
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toBe('features.1.expression');
    expect(issues[0]?.message).toContain('`distance`');
    expect(issues[0]?.message).toContain('id, x1, x2, origin, day, y, amount');
  });

  it('names an unknown column in the label', async () => {
    const issues = await issuesOf(definition({ label: { name: 'delayed', expression: 'delay > 15', task: 'binary' } }));
    expect(issues.map((i) => i.path)).toEqual(['label.expression']);
    expect(issues[0]?.message).toContain('unknown column `delay`');
  });

  it('names an unknown or non-time split column, and an unknown hash key', async () => {
    const unknown = await issuesOf(definition({ split: { kind: 'time', column: 'date', trainBefore: '2024-01-20' } }));
    expect(unknown.map((i) => i.path)).toEqual(['split.column']);
    expect(unknown[0]?.message).toContain('unknown column `date`');

    const notTime = await issuesOf(definition({ split: { kind: 'time', column: 'x1', trainBefore: '2024-01-20' } }));
    expect(notTime.map((i) => i.path)).toEqual(['split.column']);
    expect(notTime[0]?.message).toMatch(/DATE or TIMESTAMP.*DOUBLE/);

    const badCut = await issuesOf(
      definition({ split: { kind: 'time', column: 'day', trainBefore: '2024-01-20', evalBefore: '2024-01-10' } }),
    );
    expect(badCut.map((i) => i.path)).toEqual(['split.evalBefore']);

    const hash = await issuesOf(definition({ split: { kind: 'hash', key: 'flight_id', evalFraction: 0.2 } }));
    expect(hash.map((i) => i.path)).toEqual(['split.key']);
  });

  it('names the span column when it is unknown', async () => {
    const issues = await issuesOf(definition({ span: { column: 'ts', from: '2024-01-01' } }));
    expect(issues.map((i) => i.path)).toEqual(['span.column']);
  });

  it('reports every bad expression at once, with the sandbox reason and DuckDB binding errors', async () => {
    const issues = await issuesOf(
      definition({
        features: [
          { name: 'a', expression: "read_csv('/etc/passwd')" },
          { name: 'b', expression: 'hour(x1)' },
          { name: 'c', expression: 'day' },
          { name: 'd', expression: 'x1' },
        ],
      }),
    );
    expect(issues.map((i) => i.path)).toEqual([
      'features.0.expression',
      'features.1.expression',
      'features.2.expression',
    ]);
    expect(issues[0]?.message).toContain('reads files or tables');
    expect(issues[1]?.message).toContain('DuckDB cannot evaluate');
    expect(issues[2]?.message).toContain('DATE');
  });

  it('refuses a label type the task cannot use', async () => {
    const issues = await issuesOf(
      definition({
        label: { name: 'amount', expression: 'origin', task: 'regression' },
        trainer: { kind: 'ridge' },
      }),
    );
    expect(issues).toEqual([{ path: 'label.expression', message: 'a regression label cannot be of type VARCHAR' }]);
  });

  it('checks trainer parameters against the trainer’s own schema', async () => {
    const issues = await issuesOf(
      definition({ trainer: { kind: 'logistic_regression', params: { C: -1, depth: 3 } } }),
    );
    expect(issues.map((i) => i.path).sort()).toEqual(['trainer.params.C', 'trainer.params.depth']);
    expect(issues.find((i) => i.path === 'trainer.params.depth')?.message).toContain('maxIterations');

    const gbt = await issuesOf(
      definition({ trainer: { kind: 'gradient_boosted_trees', params: { learningRate: 0, maxIterations: 50 } } }),
    );
    expect(gbt.map((i) => i.path)).toEqual(['trainer.params.learningRate']);

    const mlp = await issuesOf(definition({ trainer: { kind: 'mlp', params: { hiddenLayers: [8, 8, 8] } } }));
    expect(mlp.map((i) => i.path)).toEqual(['trainer.params.hiddenLayers']);
  });

  it('refuses a trainer that cannot learn the label’s task', async () => {
    const ridge = await issuesOf(definition({ trainer: { kind: 'ridge' } }));
    expect(ridge.map((i) => i.path)).toEqual(['trainer.kind']);
    expect(ridge[0]?.message).toContain('ridge needs a numeric label');

    const logistic = await issuesOf(
      definition({ label: { name: 'amount', expression: 'amount', task: 'regression' } }),
    );
    expect(logistic.map((i) => i.path)).toEqual(['trainer.kind']);
    expect(logistic[0]?.message).toContain('needs a class label');

    const regression = await issuesOf(
      definition({
        label: { name: 'amount', expression: 'amount', task: 'regression' },
        trainer: { kind: 'ridge', params: { alpha: 0.1 } },
      }),
    );
    expect(regression).toEqual([]);
  });

  it('reports schema problems at their paths before looking at the source', async () => {
    const issues = await issuesOf({
      ...definition({ source: { uri: path.join(root, 'missing', '*.csv') } }),
      trainer: { kind: 'xgboost' },
      features: [{ name: 'x1' }],
      colour: 'blue',
    });
    expect(issues.map((i) => i.path).sort()).toEqual(['colour', 'features.0.expression', 'trainer.kind']);
  });

  it('names the closest branch of the source union', async () => {
    const issues = await issuesOf({ ...definition(), source: { uri: 5 } });
    expect(issues).toEqual([{ path: 'source.uri', message: expect.stringContaining('expected string') as string }]);
  });

  it('says when the source matches nothing', async () => {
    const issues = await issuesOf(definition({ source: { uri: path.join(root, 'missing', '*.csv') } }));
    expect(issues).toEqual([{ path: 'source.uri', message: expect.stringContaining('no file matches') as string }]);
  });

  it('probes only the first object of an s3:// prefix', async () => {
    const listed: ObjectInfo[] = ['a.csv', 'b.csv'].map((key) => ({
      bucket: 'landing',
      key: `flights/${key}`,
      size: 1,
      etag: key,
      lastModified: new Date(0),
    }));
    const downloads: string[] = [];
    const objects: ObjectSource = {
      list: () => Promise.resolve(listed),
      stat: () => Promise.resolve(undefined),
      download: async (object, cacheDir) => {
        downloads.push(object.key);
        await mkdir(cacheDir, { recursive: true });
        const target = path.join(cacheDir, 'first.csv');
        await writeFile(target, 'id,x1,x2,origin,y\n1,0.5,2,ATL,1\n');
        return { path: target, downloaded: true, bytes: 1 };
      },
    };
    const ok = await validateDefinition(definition({ source: { uri: 's3://landing/flights/' } }), {
      objects,
      scratchDir: root,
      policy: policy(),
    });
    expect(ok.ok).toBe(true);
    expect(downloads).toEqual(['flights/a.csv']);

    const empty = await validateDefinition(definition({ source: { uri: 's3://landing/nothing/' } }), {
      objects: { ...objects, list: () => Promise.resolve([]) },
      scratchDir: root,
      policy: policy(),
    });
    expect(empty.ok ? [] : empty.issues.map((i) => i.path)).toEqual(['source.uri']);
  });
});

describe('the data access policy on the probe', () => {
  async function refusal(uri: string, buckets: string[] = ['*'], objects?: ObjectSource) {
    const error = await validateDefinition(definition({ source: { uri } }), {
      scratchDir: root,
      policy: createDataAccessPolicy({ roots: [root], buckets }),
      ...(objects ? { objects } : {}),
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SourceNotAllowedError);
    return error as SourceNotAllowedError;
  }

  it('a watched prefix outside the allowed buckets is a 400 naming triggers.newData.prefix; inside, none', async () => {
    const watching = (prefix: string) => definition({ triggers: { newData: { prefix } } });
    const deps = { scratchDir: root, policy: createDataAccessPolicy({ roots: [root], buckets: ['lake/landing/'] }) };
    for (const prefix of ['s3://secrets/', 's3://lake/private/', 's3://lake/landing/../private/']) {
      const result = await validateDefinition(watching(prefix), deps);
      expect(result.ok).toBe(false);
      expect(result.ok ? [] : result.issues.map((i) => i.path)).toContain('triggers.newData.prefix');
    }
    expect((await validateDefinition(watching('s3://lake/landing/flights/'), deps)).ok).toBe(true);
  });

  it('probe of /etc/passwd is refused with 403, quoting nothing of the file', async () => {
    const error = await refusal('/etc/passwd');
    expect(error.httpStatus).toBe(403);
    expect(error.code).toBe('source_not_allowed');
    expect(error.message).toContain('DATA_ROOTS=');
    expect(error.message).not.toContain('root:x');
  });

  it('probe of a file:// URL outside the roots is refused', async () => {
    expect((await refusal('file:///etc/passwd')).message).toContain('file:///etc/passwd');
    expect((await refusal(`file://${root}/../../etc/passwd`)).httpStatus).toBe(403);
  });

  it('probe through a symbolic link or .. out of a root is refused', async () => {
    await symlink('/etc', path.join(root, 'etc-link'));
    await refusal(path.join(root, 'etc-link', 'passwd'));
    await refusal(path.join(root, 'etc-link', '*'));
    await refusal(path.join(root, '..', '..', 'etc', 'passwd'));
    // A link to a file inside the root is fine.
    await symlink(csv, path.join(root, 'current.csv'));
    const linked = await validateDefinition(definition({ source: { uri: path.join(root, 'current.csv') } }), {
      scratchDir: root,
      policy: policy(),
    });
    expect(linked.ok).toBe(true);
  });

  it('probe of a glob from the root directory is refused', async () => {
    const result = await validateDefinition(definition({ source: { uri: '/*/passwd' } }), {
      scratchDir: root,
      policy: createDataAccessPolicy({ roots: ['/'], buckets: [] }),
    });
    expect(result.ok ? [] : result.issues[0]?.message).toContain('never at the root');
  });

  it('probe of a bucket outside the policy is refused before listing', async () => {
    let listed = 0;
    const objects: ObjectSource = {
      list: async () => {
        listed += 1;
        return [];
      },
      stat: async () => undefined,
      download: () => Promise.reject(new Error('not expected')),
    };
    expect((await refusal('s3://secrets/keys.csv', ['landing'], objects)).message).toContain('DATA_BUCKETS=landing');
    await refusal('s3://landing/../secrets/', ['landing/flights/'], objects);
    await refusal('s3://landing/*/x.csv', ['landing/flights/'], objects);
    expect(listed).toBe(0);
  });

  it('probe of an S3 CSV reads only the head of the object, and of Parquet only its footer', async () => {
    const reads: { key: string; offset: number; length: number }[] = [];
    const bigCsv = await readFile(csv);
    const parquet = await readFile(path.join(parquetDir, 'part-0.parquet'));
    const bodies: Record<string, Buffer> = { 'flights/a.csv': bigCsv, 'flights/p.parquet': parquet };
    const info = (key: string): ObjectInfo => ({
      bucket: 'landing',
      key,
      size: bodies[key]!.length,
      etag: key,
      lastModified: new Date(0),
    });
    const objects: ObjectSource = {
      list: async (_bucket, prefix) =>
        Object.keys(bodies)
          .filter((k) => k.startsWith(prefix))
          .map(info),
      stat: async (_bucket, key) => (bodies[key] ? info(key) : undefined),
      download: () => Promise.reject(new Error('a probe must not download the whole object')),
      readRange: async (object, offset, length) => {
        reads.push({ key: object.key, offset, length });
        return bodies[object.key]!.subarray(offset, offset + length);
      },
    };
    const deps = { scratchDir: root, policy: policy(), objects };
    expect((await validateDefinition(definition({ source: { uri: 's3://landing/flights/a.csv' } }), deps)).ok).toBe(
      true,
    );
    expect(reads).toEqual([{ key: 'flights/a.csv', offset: 0, length: 1_048_576 }]);
    reads.length = 0;
    const result = await validateDefinition(definition({ source: { uri: 's3://landing/flights/p.parquet' } }), deps);
    expect(result.ok).toBe(true);
    expect(reads.map((r) => r.offset)).toEqual([parquet.length - 8, expect.any(Number)]);
    expect(reads.reduce((sum, r) => sum + r.length, 0)).toBeLessThan(parquet.length);
  });
});
