import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifacts, associations, attributions, contexts, events, executions } from '../../schema/index.js';
import { createDatabase, runMigrations, type DatabaseHandle } from '../../storage/database.js';
import {
  DrizzleMetadataStore,
  MetadataConflictError,
  MetadataNotFoundError,
  type MetadataStore,
} from '../../storage/metadata-store.js';
import { testEndpoints } from '../support/stack.js';

// A database of its own, so row counts here are not disturbed by other test files writing metadata.
const databaseName = `metadata_store_${randomUUID().replaceAll('-', '')}`;
let admin: pg.Pool;
let handle: DatabaseHandle;
let store: MetadataStore;

/** A URI no other test uses. */
const uri = (name: string) => `s3://mlops-test/${randomUUID()}/${name}`;
const sha = (c: string) => c.repeat(64);

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: testEndpoints().databaseUrl, max: 1 });
  await admin.query(`create database "${databaseName}"`);
  const url = new URL(testEndpoints().databaseUrl);
  url.pathname = `/${databaseName}`;
  handle = createDatabase(url.toString(), { max: 5 });
  await runMigrations(handle.db);
  store = new DrizzleMetadataStore(handle.db);
});

afterAll(async () => {
  await handle?.close();
  await admin.query(`drop database if exists "${databaseName}" with (force)`);
  await admin.end();
});

describe('putArtifact', () => {
  it('returns the same row when called twice with the same uri', async () => {
    const input = { type: 'Dataset', uri: uri('train.parquet'), sha256: sha('a'), bytes: 1024 };
    const first = await store.putArtifact(input);
    const second = await store.putArtifact(input);

    expect(second).toEqual(first);
    expect(await handle.db.$count(artifacts, eq(artifacts.uri, input.uri))).toBe(1);
  });

  it('creates one row when retried concurrently', async () => {
    const input = { type: 'Dataset', uri: uri('race.parquet'), sha256: sha('b') };
    const rows = await Promise.all(Array.from({ length: 8 }, () => store.putArtifact(input)));

    expect(new Set(rows.map((r) => r.id)).size).toBe(1);
    expect(await handle.db.$count(artifacts, eq(artifacts.uri, input.uri))).toBe(1);
  });

  it('fills in missing fields, merges properties and never demotes live to pending', async () => {
    const at = uri('model.onnx');
    const pending = await store.putArtifact({ type: 'Model', uri: at, state: 'pending', properties: { a: 1 } });
    expect(pending.state).toBe('pending');

    const live = await store.putArtifact({
      type: 'Model',
      uri: at,
      sha256: sha('c'),
      bytes: 7,
      state: 'live',
      properties: { b: 2 },
    });
    expect(live).toMatchObject({
      id: pending.id,
      sha256: sha('c'),
      bytes: 7,
      state: 'live',
      properties: { a: 1, b: 2 },
    });

    const retried = await store.putArtifact({ type: 'Model', uri: at, sha256: sha('c'), state: 'pending' });
    expect(retried.state).toBe('live');
  });

  it('refuses other content at the same uri and leaves the row as it was', async () => {
    const at = uri('stats.json');
    const original = await store.putArtifact({ type: 'Statistics', uri: at, sha256: sha('d'), properties: { x: 1 } });

    await expect(
      store.putArtifact({ type: 'Statistics', uri: at, sha256: sha('e'), properties: { y: 2 } }),
    ).rejects.toBeInstanceOf(MetadataConflictError);
    expect(await store.getArtifactByUri(at)).toEqual(original);
  });
});

describe('executions', () => {
  const start = (externalId: string) =>
    store.startExecution({
      externalId,
      type: 'Trainer',
      workflowId: 'pipeline-flights-1',
      temporalRunId: 'run-1',
      stage: 'train',
      properties: { epochs: 3 },
    });

  it('startExecution returns the same running row when retried', async () => {
    const externalId = `wf-${randomUUID()}/train`;
    const [first, second] = [await start(externalId), await start(externalId)];

    expect(second).toEqual(first);
    expect(first.state).toBe('running');
    expect(await handle.db.$count(executions, eq(executions.externalId, externalId))).toBe(1);
  });

  it('startExecution does not reset a completed execution', async () => {
    const externalId = `wf-${randomUUID()}/train`;
    const started = await start(externalId);
    const completed = await store.completeExecution(started.id, { state: 'complete', properties: { auc: 0.7 } });

    const again = await start(externalId);

    expect(again).toEqual(completed);
    expect(again).toMatchObject({ state: 'complete', properties: { epochs: 3, auc: 0.7 } });
    expect(again.finishedAt).toBeInstanceOf(Date);
  });

  it('startExecution restarts a failed execution in place', async () => {
    const externalId = `wf-${randomUUID()}/train`;
    const started = await start(externalId);
    await store.completeExecution(started.id, { state: 'failed', properties: { error: 'worker lost' } });

    const restarted = await start(externalId);

    expect(restarted).toMatchObject({ id: started.id, state: 'running', finishedAt: null });
  });

  it('completeExecution is idempotent and refuses a contradicting state', async () => {
    const started = await start(`wf-${randomUUID()}/train`);
    const first = await store.completeExecution(started.id, { state: 'complete' });
    const second = await store.completeExecution(started.id, { state: 'complete', properties: { late: true } });

    expect(second).toEqual(first);
    await expect(store.completeExecution(started.id, { state: 'failed' })).rejects.toBeInstanceOf(
      MetadataConflictError,
    );
    await expect(store.completeExecution(randomUUID(), { state: 'complete' })).rejects.toBeInstanceOf(
      MetadataNotFoundError,
    );
  });
});

describe('events and contexts', () => {
  it('recordEvent returns the same row when called twice', async () => {
    const artifact = await store.putArtifact({ type: 'Dataset', uri: uri('in.parquet') });
    const execution = await store.startExecution({ externalId: `wf-${randomUUID()}/stats`, type: 'StatisticsGen' });
    const input = { artifactId: artifact.id, executionId: execution.id, type: 'input' as const, role: 'examples' };

    const first = await store.recordEvent(input);
    const second = await store.recordEvent(input);
    await store.recordEvent({ ...input, role: 'baseline' });

    expect(second).toEqual(first);
    expect(await handle.db.$count(events, eq(events.executionId, execution.id))).toBe(2);
    await expect(store.recordEvent({ ...input, artifactId: randomUUID() })).rejects.toBeInstanceOf(
      MetadataNotFoundError,
    );
  });

  it('putContext, attributeArtifact and associateExecution create one row each however often called', async () => {
    const name = `pipeline-${randomUUID()}`;
    const first = await store.putContext({ type: 'pipeline', name, properties: { owner: 'ml' } });
    const second = await store.putContext({ type: 'pipeline', name, properties: { schedule: 'daily' } });
    expect(second.id).toBe(first.id);
    expect(second.properties).toEqual({ owner: 'ml', schedule: 'daily' });
    expect(await handle.db.$count(contexts, eq(contexts.name, name))).toBe(1);

    const artifact = await store.putArtifact({ type: 'Dataset', uri: uri('ctx.parquet') });
    const execution = await store.startExecution({ externalId: `wf-${randomUUID()}/ingest`, type: 'ExampleGen' });
    for (let i = 0; i < 2; i++) {
      await store.attributeArtifact(first.id, artifact.id);
      await store.associateExecution(first.id, execution.id);
    }
    expect(await handle.db.$count(attributions, eq(attributions.contextId, first.id))).toBe(1);
    expect(await handle.db.$count(associations, eq(associations.contextId, first.id))).toBe(1);
    await expect(store.attributeArtifact(randomUUID(), artifact.id)).rejects.toBeInstanceOf(MetadataNotFoundError);
  });
});

describe('lineage', () => {
  /** Records one execution with its inputs and outputs, the way a pipeline stage does. */
  async function run(type: string, inputs: Record<string, string>, outputs: Record<string, string>) {
    const execution = await store.startExecution({ externalId: `wf-${randomUUID()}/${type}`, type });
    for (const [role, artifactId] of Object.entries(inputs))
      await store.recordEvent({ artifactId, executionId: execution.id, type: 'input', role });
    for (const [role, artifactId] of Object.entries(outputs))
      await store.recordEvent({ artifactId, executionId: execution.id, type: 'output', role });
    return store.completeExecution(execution.id, { state: 'complete' });
  }

  it('walks from a model back to the raw data, through every producing execution', async () => {
    const put = (type: string, name: string) => store.putArtifact({ type, uri: uri(name) });
    const raw = await put('Dataset', 'flights.parquet');
    const train = await put('Dataset', 'train.parquet');
    const stats = await put('Statistics', 'stats.json');
    const dataSchema = await put('Schema', 'schema.json');
    const model = await put('Model', 'model.onnx');
    const report = await put('Report', 'report.json');

    const ingest = await run('ExampleGen', { source: raw.id }, { examples: train.id });
    const statsGen = await run('StatisticsGen', { examples: train.id }, { statistics: stats.id });
    const schemaGen = await run('SchemaGen', { statistics: stats.id }, { schema: dataSchema.id });
    const trainer = await run(
      'Trainer',
      { examples: train.id, schema: dataSchema.id },
      { model: model.id, report: report.id },
    );
    // Reads the training data but produced nothing upstream of the model: not part of its lineage.
    await run('Evaluator', { examples: train.id }, {});

    const lineage = await store.lineage(model.id);

    expect(lineage?.artifact.id).toBe(model.id);
    expect(new Set(lineage?.artifacts.map((a) => a.id))).toEqual(
      new Set([raw.id, train.id, stats.id, dataSchema.id, model.id]),
    );
    expect(new Set(lineage?.executions.map((e) => e.id))).toEqual(
      new Set([ingest.id, statsGen.id, schemaGen.id, trainer.id]),
    );
    const edges = lineage?.events.map(
      (e) => `${e.type}:${e.role}:${e.executionId === trainer.id ? 'trainer' : 'other'}`,
    );
    expect(edges).toHaveLength(9);
    expect(edges).toEqual(
      expect.arrayContaining(['input:examples:trainer', 'input:schema:trainer', 'output:model:trainer']),
    );
    expect(edges).not.toContain('output:report:trainer');
  });

  it('returns the artifact alone when nothing produced it, and undefined when it does not exist', async () => {
    const raw = await store.putArtifact({ type: 'Dataset', uri: uri('upload.csv') });

    expect(await store.lineage(raw.id)).toEqual({ artifact: raw, artifacts: [raw], executions: [], events: [] });
    expect(await store.lineage(randomUUID())).toBeUndefined();
  });

  it('terminates on a cycle', async () => {
    const cache = await store.putArtifact({ type: 'Transform', uri: uri('cache.bin') });
    const refresh = await run('CacheRefresh', { previous: cache.id }, { next: cache.id });

    const lineage = await store.lineage(cache.id);

    expect(lineage?.artifacts.map((a) => a.id)).toEqual([cache.id]);
    expect(lineage?.executions.map((e) => e.id)).toEqual([refresh.id]);
  });
});
