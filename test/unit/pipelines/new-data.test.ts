import { describe, expect, it } from 'vitest';
import { createDataAccessPolicy } from '../../../data/access-policy.js';
import { pipelineDefinitionSchema, type PipelineDefinitionInput } from '../../../pipelines/definition.js';
import {
  isWatchAllowed,
  isWatched,
  newDataDedupeKey,
  watchOf,
  type WatchedPrefix,
} from '../../../pipelines/new-data.js';
import {
  decodeS3Key,
  isCreateEvent,
  matchObjects,
  objectEventsOf,
  type S3NotificationRecord,
} from '../../../pipelines/s3-notifications.js';
import { createApp } from '../../../server/app.js';
import { createWatchList } from '../../../server/routes/data-events.js';
import type { WatchedObjectRef, WatchedObjectStore } from '../../../storage/watched-object-store.js';
import { maxSettleWaitSeconds } from '../../../workflows/new-data.js';
import { testDeps } from '../../server/helpers.js';

function definition(source: string, newData: Record<string, unknown> | undefined): PipelineDefinitionInput {
  return {
    name: 'flights',
    source: { uri: source },
    label: { name: 'y', expression: 'y', task: 'binary' },
    features: [{ name: 'x', expression: 'x', kind: 'numeric' }],
    split: { kind: 'hash', key: 'x', evalFraction: 0.3 },
    trainer: { kind: 'logistic_regression', params: {} },
    ...(newData ? { triggers: { newData } } : {}),
  } as PipelineDefinitionInput;
}

function watch(source: string, newData: Record<string, unknown> = {}): WatchedPrefix {
  const w = watchOf(pipelineDefinitionSchema.parse(definition(source, newData)));
  if (!w) throw new Error('expected a watch');
  return w;
}

/** A MinIO webhook record, as MinIO writes it (key URL-encoded with `+` for spaces). */
function record(eventName: string, bucket: string, encodedKey: string, eTag?: string): S3NotificationRecord {
  return {
    eventName,
    s3: { bucket: { name: bucket }, object: { key: encodedKey, ...(eTag ? { eTag, size: 3 } : {}) } },
  };
}

describe('bucket notifications', () => {
  it('decodes keys as S3 and MinIO encode them: + is a space, %2B a plus, UTF-8 escapes', () => {
    expect(decodeS3Key('landing/april+2001.csv')).toBe('landing/april 2001.csv');
    expect(decodeS3Key('landing/a%2Bb.csv')).toBe('landing/a+b.csv');
    expect(decodeS3Key('landing/caf%C3%A9%3D1.csv')).toBe('landing/café=1.csv');
    expect(() => decodeS3Key('landing/%E0%A4%A.csv')).toThrow(URIError);
  });

  it('counts only object creations', () => {
    expect(isCreateEvent('s3:ObjectCreated:Put')).toBe(true);
    expect(isCreateEvent('s3:ObjectCreated:CompleteMultipartUpload')).toBe(true);
    expect(isCreateEvent('ObjectCreated:Copy')).toBe(true);
    expect(isCreateEvent('s3:ObjectRemoved:Delete')).toBe(false);
    expect(isCreateEvent('s3:ObjectAccessed:Get')).toBe(false);
  });

  it('matches created objects against watched prefixes and says why the others start nothing', () => {
    const watches = [watch('s3://data/landing/*.csv'), { ...watch('s3://data/other/'), pipeline: 'other' }];
    const events = objectEventsOf([
      record('s3:ObjectCreated:Put', 'data', 'landing/april+2001.csv', '"abc"'),
      record('s3:ObjectRemoved:Delete', 'data', 'landing/may.csv'),
      record('s3:ObjectCreated:Put', 'data', 'elsewhere/x.csv', 'def'),
      record('s3:ObjectCreated:Put', 'data', 'landing/notes.txt', 'ghi'),
      record('s3:ObjectCreated:Put', 'data', 'other/part-1.parquet', 'jkl'),
      record('s3:ObjectCreated:Put', 'data2', 'landing/june.csv', 'mno'),
    ]);
    const matched = matchObjects(events, watches);
    expect(matched[0]).toEqual({
      bucket: 'data',
      key: 'landing/april 2001.csv',
      etag: 'abc',
      eventName: 's3:ObjectCreated:Put',
      pipelines: ['flights'],
    });
    expect(matched[1]).toMatchObject({ pipelines: [], ignored: 's3:ObjectRemoved:Delete is not an object creation' });
    expect(matched[2]).toMatchObject({ pipelines: [], ignored: 'no pipeline watches it' });
    expect(matched[3]).toMatchObject({ pipelines: [], ignored: 'no pipeline watches it' });
    expect(matched[4]).toMatchObject({ pipelines: ['other'] });
    expect(matched[5]).toMatchObject({ pipelines: [], ignored: 'no pipeline watches it' });
  });
});

describe('watched prefixes', () => {
  it('defaults to what the source reads: a glob, a folder of data files, one object', () => {
    const glob = watch('s3://data/landing/*.csv');
    expect(glob).toMatchObject({ bucket: 'data', prefix: 'landing/', uri: 's3://data/landing/', settleSeconds: 10 });
    expect(isWatched(glob, 'data', 'landing/a.csv')).toBe(true);
    expect(isWatched(glob, 'data', 'landing/deep/a.csv')).toBe(false);

    const folder = watch('s3://data/landing/flights', { settleSeconds: 2, pollEverySeconds: 30 });
    expect(folder).toMatchObject({ prefix: 'landing/flights/', settleSeconds: 2, pollEverySeconds: 30 });
    expect(isWatched(folder, 'data', 'landing/flights/2001/04.parquet')).toBe(true);
    expect(isWatched(folder, 'data', 'landing/flights/_SUCCESS')).toBe(false);
    expect(isWatched(folder, 'data', 'landing/flights/.tmp.csv')).toBe(false);
    expect(isWatched(folder, 'data', 'landing/flights-old/a.csv')).toBe(false);

    const one = watch('s3://data/landing/all.csv');
    expect(one.prefix).toBe('landing/all.csv');
    expect(isWatched(one, 'data', 'landing/all.csv')).toBe(true);
    expect(isWatched(one, 'data', 'landing/all.csv.bak')).toBe(false);
  });

  it('takes an explicit prefix as a raw S3 prefix over every object but folder markers', () => {
    const explicit = watch('s3://data/landing/*.csv', { prefix: 's3://drops/incoming/' });
    expect(explicit).toMatchObject({ bucket: 'drops', prefix: 'incoming/', uri: 's3://drops/incoming/' });
    expect(isWatched(explicit, 'drops', 'incoming/anything.bin')).toBe(true);
    expect(isWatched(explicit, 'drops', 'incoming/sub/')).toBe(false);
    expect(isWatched(explicit, 'data', 'incoming/a.csv')).toBe(false);
  });

  it('watches nothing without triggers.newData, and only what the data access policy allows', () => {
    expect(watchOf(pipelineDefinitionSchema.parse(definition('s3://data/landing/*.csv', undefined)))).toBeUndefined();
    const w = watch('s3://data/landing/*.csv');
    expect(isWatchAllowed(createDataAccessPolicy({ roots: [], buckets: ['data/landing/'] }), w)).toBe(true);
    expect(isWatchAllowed(createDataAccessPolicy({ roots: [], buckets: ['data/other/'] }), w)).toBe(false);
    expect(isWatchAllowed(createDataAccessPolicy({ roots: [], buckets: [] }), w)).toBe(false);
  });

  it('names one dedupe key per set of objects, whatever order they were seen in', () => {
    const a = { key: 'landing/a.csv', etag: '1' };
    const b = { key: 'landing/b.csv', etag: '2' };
    expect(newDataDedupeKey('p', [a, b])).toBe(newDataDedupeKey('p', [b, a]));
    expect(newDataDedupeKey('p', [a, b])).toMatch(/^new_data:p:[0-9a-f]{64}$/);
    expect(newDataDedupeKey('p', [a])).not.toBe(newDataDedupeKey('p', [a, b]));
    expect(newDataDedupeKey('p', [a])).not.toBe(newDataDedupeKey('p', [{ ...a, etag: '3' }]));
  });
});

describe('POST /v1/events/s3', () => {
  const recorded: { pipeline: string; objects: readonly WatchedObjectRef[] }[] = [];
  const signals: unknown[] = [];
  const watchedDefinition = pipelineDefinitionSchema.parse(definition('s3://data/landing/*.csv', { settleSeconds: 1 }));
  const watched = {
    watchingPipelines: async () => [{ pipeline: 'flights', definition: watchedDefinition }],
    recordObjects: async (pipeline: string, objects: readonly WatchedObjectRef[]) => {
      recorded.push({ pipeline, objects });
      return { added: [...objects], unclaimed: objects.length };
    },
  } as unknown as WatchedObjectStore;
  const client = {
    workflow: { signalWithStart: async (_wf: unknown, options: unknown) => void signals.push(options) },
  };
  const app = createApp(
    testDeps({
      bodyLimitBytes: 1_000_000,
      stores: { watchedObjects: watched, artifacts: {} as never, metadata: {} as never, datasets: {} as never },
      runner: { client: client as never, pipelines: {} as never, taskQueue: 'main', trainingTaskQueue: 'training' },
      sources: { policy: createDataAccessPolicy({ roots: [], buckets: ['data'] }) },
    }),
  );
  const post = (body: unknown) =>
    app.request('/v1/events/s3', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('records a created object under its decoded key and signals the settle workflow', async () => {
    const response = await post({
      EventName: 's3:ObjectCreated:Put',
      Key: 'data/landing/april 2001.csv',
      Records: [record('s3:ObjectCreated:Put', 'data', 'landing/april+2001.csv', 'abc')],
    });
    expect(response.status).toBe(202);
    const body = (await response.json()) as { objects: unknown[]; pipelines: unknown[] };
    expect(body.objects).toEqual([expect.objectContaining({ key: 'landing/april 2001.csv', pipelines: ['flights'] })]);
    expect(body.pipelines).toEqual([{ pipeline: 'flights', added: 1, unclaimed: 1, signalled: true }]);
    expect(recorded.at(-1)).toEqual({
      pipeline: 'flights',
      objects: [{ key: 'landing/april 2001.csv', etag: 'abc', size: 3 }],
    });
    expect(signals.at(-1)).toMatchObject({
      workflowId: 'new-data:flights',
      taskQueue: 'main',
      signalArgs: [{ settleSeconds: 1, source: 's3://data/landing/', added: 1 }],
    });
  });

  it('records and signals nothing for a removal or an object outside every prefix', async () => {
    const before = { recorded: recorded.length, signals: signals.length };
    const response = await post({
      Records: [
        record('s3:ObjectRemoved:Delete', 'data', 'landing/a.csv'),
        record('s3:ObjectCreated:Put', 'data', 'outside/a.csv', 'x'),
      ],
    });
    expect(response.status).toBe(202);
    const body = (await response.json()) as { objects: { ignored?: string }[]; pipelines: unknown[] };
    expect(body.objects.map((o) => o.ignored)).toEqual([
      's3:ObjectRemoved:Delete is not an object creation',
      'no pipeline watches it',
    ]);
    expect(body.pipelines).toEqual([]);
    expect({ recorded: recorded.length, signals: signals.length }).toEqual(before);
  });

  it('answers 400 naming the field for what is not a bucket notification', async () => {
    const cases: [unknown, string][] = [
      [{}, 'body.Records'],
      [{ Records: [] }, 'body.Records'],
      [{ Records: [{ eventName: 's3:ObjectCreated:Put', s3: { bucket: {} } }] }, 'body.Records[0].s3.bucket.name'],
      [{ Records: [record('s3:ObjectCreated:Put', 'data', 'landing/a.csv')] }, 'body.Records[0].s3.object.eTag'],
      [
        { Records: [record('s3:ObjectCreated:Put', 'data', 'landing/%E0%A4%A.csv', 'e')] },
        'body.Records[0].s3.object.key',
      ],
      // Text PostgreSQL cannot store: a NUL once the key is decoded, or in the raw ETag.
      [
        {
          Records: [
            record('s3:ObjectCreated:Put', 'data', 'landing/a.csv', 'e'),
            record('s3:ObjectCreated:Put', 'data', 'landing/a%00b.csv', 'e'),
          ],
        },
        'body.Records[1].s3.object.key',
      ],
      [
        { Records: [record('s3:ObjectCreated:Put', 'data', 'landing/a.csv', 'e\u0000')] },
        'body.Records[0].s3.object.eTag',
      ],
    ];
    for (const [body, field] of cases) {
      const response = await post(body);
      expect(response.status, field).toBe(400);
      const error = ((await response.json()) as { error: { code: string; message: string } }).error;
      expect(error.message, field).toContain(`${field}:`);
    }
    expect(
      recorded.filter((r) => r.objects.some((o) => o.key.includes('\u0000') || o.etag.includes('\u0000'))),
    ).toEqual([]);
  });
});

describe('the watch list', () => {
  it('is cached, and read again at once after a definition is saved (invalidate)', async () => {
    let reads = 0;
    let definitions = [
      { pipeline: 'flights', definition: definition('s3://data/landing/*.csv', { settleSeconds: 1 }) },
    ];
    const list = createWatchList(
      {
        watchingPipelines: async () => {
          reads += 1;
          return definitions.map((d) => ({ ...d, definition: d.definition as never }));
        },
      },
      60_000,
    );
    expect((await list.get()).map((w) => w.prefix)).toEqual(['landing/']);
    definitions = [{ pipeline: 'flights', definition: definition('s3://data/other/*.csv', { settleSeconds: 1 }) }];
    expect((await list.get()).map((w) => w.prefix)).toEqual(['landing/']);
    expect(reads).toBe(1);
    list.invalidate();
    expect((await list.get()).map((w) => w.prefix)).toEqual(['other/']);
    expect(reads).toBe(2);
  });

  it('does not keep a failed read', async () => {
    let fail = true;
    const list = createWatchList({
      watchingPipelines: async () => {
        if (fail) throw new Error('database down');
        return [];
      },
    });
    await expect(list.get()).rejects.toThrow('database down');
    fail = false;
    expect(await list.get()).toEqual([]);
  });
});

describe('the settle window', () => {
  it('waits at most ten settle periods, and at least a minute, for a quiet period', () => {
    expect(maxSettleWaitSeconds(1)).toBe(60);
    expect(maxSettleWaitSeconds(10)).toBe(100);
    expect(maxSettleWaitSeconds(0)).toBe(60);
  });
});
