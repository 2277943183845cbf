/**
 * Sliding windows without a stack: the arithmetic of resolving a window against its anchor (boundaries, adjacency,
 * lengths), the definition's rules (window excludes span; its eval part replaces split), the column checks against a
 * real local source, the API's 400, and reading the newest event time of CSV and Parquet sources.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataAccessPolicy, SourceNotAllowedError } from '../../../data/access-policy.js';
import { DataEngine, sqlString } from '../../../data/engine.js';
import { ExtractError } from '../../../data/extract-errors.js';
import { newestTime } from '../../../data/newest-time.js';
import { pipelineDefinitionSchema, type PipelineDefinitionInput } from '../../../pipelines/definition.js';
import { validateDefinition } from '../../../pipelines/validate-definition.js';
import { extractSpanOf, resolveWindow, splitOf, type SlidingWindow } from '../../../pipelines/window.js';
import { createApp } from '../../../server/app.js';
import { anyNamedKey, withKey } from '../../support/auth.js';
import { testDeps } from '../../server/helpers.js';

const DAY = 86_400_000;

let root: string;
let csv: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'sliding-window-unit-'));
  // 60 days from 2024-01-01, 4 rows a day at 00:00, 06:00, 12:00 and 18:00 (UTC, no offset in the file).
  const lines = ['id,ts,day,x,y'];
  for (let i = 0; i < 240; i++) {
    const ts = new Date(Date.UTC(2024, 0, 1) + i * 6 * 3_600_000).toISOString().slice(0, 19).replace('T', ' ');
    lines.push(`${i},${ts},${ts.slice(0, 10)},${i % 13},${i % 2}`);
  }
  csv = path.join(root, 'events.csv');
  await writeFile(csv, `${lines.join('\n')}\n`);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function definition(overrides: Partial<PipelineDefinitionInput> = {}): PipelineDefinitionInput {
  return {
    name: 'events',
    source: { uri: csv },
    label: { name: 'y', expression: 'y = 1', task: 'binary' },
    features: [{ name: 'x', expression: 'x' }],
    split: { kind: 'hash', key: 'id', evalFraction: 0.2 },
    trainer: { kind: 'logistic_regression' },
    ...overrides,
  };
}

const window = (w: Partial<SlidingWindow>): SlidingWindow => ({ column: 'ts', relativeTo: 'data', ...w });

describe('resolveWindow', () => {
  it('ends 1 ms after the newest event time, eval the latest days and train the days just before', () => {
    const spans = resolveWindow(window({ trainDays: 20, evalDays: 10 }), {
      kind: 'data',
      at: new Date('2024-03-01T00:00:00Z'),
    });
    expect(spans).toEqual({
      column: 'ts',
      train: { from: '2024-01-31T00:00:00.001Z', to: '2024-02-20T00:00:00.001Z' },
      eval: { from: '2024-02-20T00:00:00.001Z', to: '2024-03-01T00:00:00.001Z' },
      anchor: { kind: 'data', at: '2024-03-01T00:00:00.000Z' },
    });
    // Adjacent, not overlapping: [train.from, train.to) then [eval.from, eval.to).
    expect(spans.train.to).toBe(spans.eval!.from);
  });

  it('ends at the trigger time itself (rows at or after it are out), in seconds as well as days', () => {
    const at = new Date('2024-05-10T12:34:56.789Z');
    const spans = resolveWindow(window({ trainSeconds: 3600, relativeTo: 'trigger' }), { kind: 'trigger', at });
    expect(spans).toEqual({
      column: 'ts',
      train: { from: '2024-05-10T11:34:56.789Z', to: '2024-05-10T12:34:56.789Z' },
      anchor: { kind: 'trigger', at: '2024-05-10T12:34:56.789Z' },
    });
    const both = resolveWindow(window({ trainSeconds: 7200, evalSeconds: 1800 }), { kind: 'trigger', at });
    expect(Date.parse(both.eval!.to) - Date.parse(both.eval!.from)).toBe(1_800_000);
    expect(Date.parse(both.train.to) - Date.parse(both.train.from)).toBe(7_200_000);
    expect(both.eval!.to).toBe(at.toISOString());
  });

  it('keeps exactly N dates of daily data, the newest included, and counts fractional days', () => {
    const dates = Array.from({ length: 90 }, (_, i) => Date.UTC(2024, 0, 1) + i * DAY);
    const newest = new Date(dates.at(-1)!);
    const spans = resolveWindow(window({ trainDays: 30, evalDays: 7 }), { kind: 'data', at: newest });
    const inside = (span: { from: string; to: string }) =>
      dates.filter((d) => d >= Date.parse(span.from) && d < Date.parse(span.to));
    expect(inside(spans.eval!)).toHaveLength(7);
    expect(inside(spans.eval!).at(-1)).toBe(newest.getTime());
    expect(inside(spans.train)).toHaveLength(30);
    expect(inside(spans.train).at(-1)).toBe(dates.at(-8));

    const half = resolveWindow(window({ trainDays: 1.5 }), { kind: 'trigger', at: newest });
    expect(Date.parse(half.train.to) - Date.parse(half.train.from)).toBe(1.5 * DAY);
  });

  it('gives the extract stage train and eval together, and prepare a time split at the eval span', () => {
    const spans = resolveWindow(window({ trainDays: 20, evalDays: 10 }), {
      kind: 'data',
      at: new Date('2024-03-01T00:00:00Z'),
    });
    expect(extractSpanOf(spans)).toEqual({
      column: 'ts',
      from: '2024-01-31T00:00:00.001Z',
      to: '2024-03-01T00:00:00.001Z',
    });
    const parsed = pipelineDefinitionSchema.parse(
      definition({ split: undefined, window: { column: 'ts', trainDays: 20, evalDays: 10 } }),
    );
    expect(splitOf(parsed, spans)).toEqual({
      kind: 'time',
      column: 'ts',
      trainBefore: '2024-02-20T00:00:00.001Z',
      evalBefore: '2024-03-01T00:00:00.001Z',
    });
    // Without an eval part the window is all train, and the definition's own split divides it.
    const trainOnly = pipelineDefinitionSchema.parse(definition({ window: { column: 'ts', trainDays: 20 } }));
    const trainSpans = resolveWindow(trainOnly.window!, { kind: 'data', at: new Date('2024-03-01T00:00:00Z') });
    expect(trainSpans.eval).toBeUndefined();
    expect(extractSpanOf(trainSpans)).toEqual({ column: 'ts', ...trainSpans.train });
    expect(splitOf(trainOnly, trainSpans)).toEqual({ kind: 'hash', key: 'id', evalFraction: 0.2 });
    expect(trainOnly.window?.relativeTo).toBe('data');
  });
});

describe('the definition', () => {
  const issues = (input: unknown) => {
    const parsed = pipelineDefinitionSchema.safeParse(input);
    return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('refuses a window beside a span, naming window', () => {
    expect(
      issues(
        definition({
          span: { column: 'ts', from: '2024-01-01' },
          window: { column: 'ts', trainDays: 20 },
        }),
      ),
    ).toEqual([expect.stringMatching(/^window: window and span are mutually exclusive/)]);
  });

  it('takes the split from the window’s eval part, and refuses both or neither', () => {
    expect(issues(definition({ split: undefined, window: { column: 'ts', trainDays: 20, evalDays: 5 } }))).toEqual([]);
    expect(issues(definition({ window: { column: 'ts', trainDays: 20, evalDays: 5 } }))).toEqual([
      expect.stringMatching(/^split: .*eval part.* is the split/),
    ]);
    expect(issues(definition({ split: undefined }))).toEqual([expect.stringMatching(/^split: required/)]);
    expect(issues(definition({ split: undefined, window: { column: 'ts', trainDays: 20 } }))).toEqual([
      expect.stringMatching(/^split: required/),
    ]);
  });

  it('needs one train length, at most one eval length, positive, and a known relativeTo', () => {
    expect(issues(definition({ window: { column: 'ts' } }))).toEqual([expect.stringMatching(/^window\.trainDays: /)]);
    expect(issues(definition({ window: { column: 'ts', trainDays: 2, trainSeconds: 60 } }))).toEqual([
      expect.stringMatching(/^window\.trainDays: give trainDays or trainSeconds/),
    ]);
    expect(
      issues(definition({ split: undefined, window: { column: 'ts', trainDays: 2, evalDays: 1, evalSeconds: 60 } })),
    ).toEqual([expect.stringMatching(/^window\.evalSeconds: /)]);
    expect(issues(definition({ window: { column: 'ts', trainDays: 0 } }))).toEqual([
      expect.stringMatching(/^window\.trainDays: /),
    ]);
    expect(issues(definition({ window: { column: 'ts', trainDays: 2, relativeTo: 'now' as 'data' } }))).toEqual([
      expect.stringMatching(/^window\.relativeTo: /),
    ]);
  });

  it('checks the window column against the source: known, and a time', async () => {
    const policy = createDataAccessPolicy({ roots: [root], buckets: [] });
    const ok = await validateDefinition(
      definition({ split: undefined, window: { column: 'ts', trainDays: 20, evalDays: 5 } }),
      { policy },
    );
    expect(ok.ok).toBe(true);
    const unknown = await validateDefinition(definition({ window: { column: 'when', trainDays: 20 } }), { policy });
    expect(unknown).toEqual({
      ok: false,
      issues: [{ path: 'window.column', message: expect.stringMatching(/^unknown column `when`.*id, ts, day/) }],
    });
    const numeric = await validateDefinition(definition({ window: { column: 'x', trainDays: 20 } }), { policy });
    expect(numeric).toEqual({
      ok: false,
      issues: [{ path: 'window.column', message: expect.stringMatching(/needs a TIMESTAMP.*`x` is BIGINT/) }],
    });
  });

  it('answers 400 naming window for a window beside a span', async () => {
    const app = createApp(
      testDeps({
        bodyLimitBytes: 65_536,
        runner: {
          client: { options: { namespace: 'default' } } as never,
          pipelines: {} as never,
          taskQueue: 'main',
          trainingTaskQueue: 'training',
        },
        sources: { scratchDir: root, policy: createDataAccessPolicy({ roots: [root], buckets: [] }) },
        auth: anyNamedKey,
      }),
    );
    const res = await app.request(
      '/v1/pipelines',
      withKey({
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(
          definition({ span: { column: 'ts', from: '2024-01-01' }, window: { column: 'ts', trainDays: 20 } }),
        ),
      }),
    );
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { code: string; details: { issues: { path: string }[] } } };
    expect(error.code).toBe('invalid_definition');
    expect(error.details.issues.map((i) => i.path)).toEqual(['window']);
  });
});

describe('newestTime', () => {
  const policy = () => createDataAccessPolicy({ roots: [root], buckets: [] });

  it('reads the newest timestamp and date of a CSV, naive times as UTC', async () => {
    const workDir = await mkdtemp(path.join(root, 'work-'));
    expect(await newestTime({ source: csv, column: 'ts', workDir, policy: policy() })).toEqual(
      new Date('2024-02-29T18:00:00Z'),
    );
    expect(await newestTime({ source: csv, column: 'DAY', workDir, policy: policy() })).toEqual(
      new Date('2024-02-29T00:00:00Z'),
    );
  });

  it('reads a TIMESTAMPTZ column of Parquet files in UTC, at millisecond precision', async () => {
    const dir = await mkdtemp(path.join(root, 'parquet-'));
    const file = path.join(dir, 'events.parquet');
    const engine = await DataEngine.open({ workDir: dir, readableDirs: [root] });
    try {
      await engine.run(
        `COPY (SELECT id, CAST(ts AS TIMESTAMP) AT TIME ZONE 'UTC' + INTERVAL 1234 MICROSECOND AS ts
               FROM read_csv(${sqlString(csv)})) TO ${sqlString(file)} (FORMAT parquet)`,
      );
      const described = await engine.rows<{ column_type: string }>(
        `DESCRIBE SELECT ts FROM read_parquet(${sqlString(file)})`,
      );
      expect(described[0]?.column_type).toBe('TIMESTAMP WITH TIME ZONE');
    } finally {
      engine.close();
    }
    const newest = await newestTime({
      source: path.join(dir, '*.parquet'),
      column: 'ts',
      workDir: dir,
      policy: policy(),
    });
    expect(newest.toISOString()).toBe('2024-02-29T18:00:00.001Z');
  });

  it('refuses a column that is missing or not a time, and a source outside the policy', async () => {
    const workDir = await mkdtemp(path.join(root, 'work-'));
    const refusal = (column: string) =>
      newestTime({ source: csv, column, workDir, policy: policy() }).then(
        () => undefined,
        (error: unknown) => error,
      );
    const missing = await refusal('when');
    expect(missing).toBeInstanceOf(ExtractError);
    expect(missing).toMatchObject({ code: 'invalid_span', message: expect.stringMatching(/"when" does not exist/) });
    expect(await refusal('x')).toMatchObject({ code: 'invalid_span', message: expect.stringMatching(/is BIGINT/) });
    await expect(
      newestTime({
        source: csv,
        column: 'ts',
        workDir,
        policy: createDataAccessPolicy({ roots: [workDir], buckets: [] }),
      }),
    ).rejects.toBeInstanceOf(SourceNotAllowedError);
  });
});
