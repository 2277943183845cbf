import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlString } from '../../../data/engine.js';
import type { PipelineDefinitionInput } from '../../../pipelines/definition.js';
import { validateDefinition, type DefinitionIssue } from '../../../pipelines/validate-definition.js';
import type { ObjectInfo, ObjectSource } from '../../../storage/object-source.js';

let root: string;
let csv: string;
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
  const result = await validateDefinition(input, { scratchDir: root });
  return result.ok ? [] : result.issues;
}

describe('validateDefinition', () => {
  it('accepts a valid definition and returns it with defaults filled in', async () => {
    const result = await validateDefinition(definition(), { scratchDir: root });
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
    });
    expect(ok.ok).toBe(true);
    expect(downloads).toEqual(['flights/a.csv']);

    const empty = await validateDefinition(definition({ source: { uri: 's3://landing/nothing/' } }), {
      objects: { ...objects, list: () => Promise.resolve([]) },
      scratchDir: root,
    });
    expect(empty.ok ? [] : empty.issues.map((i) => i.path)).toEqual(['source.uri']);
  });
});
