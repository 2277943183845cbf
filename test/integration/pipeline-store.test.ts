import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  pipelineDefinitionSchema,
  type PipelineDefinition,
  type PipelineDefinitionInput,
} from '../../pipelines/definition.js';
import { createDatabase, type DatabaseHandle } from '../../storage/database.js';
import { canonicalJson, definitionSha256, PipelineNotFoundError, PipelineStore } from '../../storage/pipeline-store.js';
import { testEndpoints } from '../support/stack.js';

let handle: DatabaseHandle;
let store: PipelineStore;

beforeAll(() => {
  handle = createDatabase(testEndpoints().databaseUrl, { max: 8 });
  store = new PipelineStore(handle.db);
});

afterAll(async () => {
  await handle?.close();
});

function definition(name: string, overrides: Partial<PipelineDefinitionInput> = {}): PipelineDefinition {
  return pipelineDefinitionSchema.parse({
    name,
    description: 'flight delays',
    source: { uri: 's3://data/flights/*.parquet' },
    label: { name: 'delayed', expression: 'arr_delay > 15', task: 'binary' },
    features: [
      { name: 'distance', expression: 'distance' },
      { name: 'carrier', expression: 'carrier', kind: 'categorical' },
    ],
    split: { kind: 'hash', key: 'flight_id', evalFraction: 0.2 },
    trainer: { kind: 'logistic_regression', params: { l2: 0.01 } },
    ...overrides,
  });
}

function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** Keys of every object in reverse order: the same definition, written differently. */
function reversedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reversedKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .reverse()
      .map(([k, v]) => [k, reversedKeys(v)]),
  );
}

async function newRun(workflowId = `wf-${randomUUID()}`, idempotencyKey?: string) {
  const name = uniqueName('runs');
  const { version } = await store.saveDefinition(definition(name), 'test');
  const { run } = await store.createRun({
    pipelineVersionId: version.id,
    workflowId,
    trigger: 'manual',
    triggeredBy: 'alice',
    ...(idempotencyKey ? { idempotencyKey } : {}),
  });
  return { run, version, name };
}

describe('canonicalJson', () => {
  it('sorts keys recursively and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
  });
});

describe('PipelineStore definitions', () => {
  it('versions definitions by content: the same definition is the same version, a change is the next one', async () => {
    const name = uniqueName('flights');
    const first = await store.saveDefinition(definition(name), 'alice');
    expect(first.created).toBe(true);
    expect(first.version).toMatchObject({
      version: 1,
      createdBy: 'alice',
      definitionSha256: definitionSha256(definition(name)),
    });
    expect(first.pipeline).toMatchObject({ name, description: 'flight delays' });

    const again = await store.saveDefinition(definition(name), 'bob');
    expect(again.created).toBe(false);
    expect(again.version.id).toBe(first.version.id);
    expect(again.version.createdBy).toBe('alice');

    const reordered = reversedKeys(definition(name)) as PipelineDefinition;
    expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(definition(name)));
    const sameContent = await store.saveDefinition(reordered, 'carol');
    expect(sameContent).toMatchObject({ created: false, version: { id: first.version.id } });

    const changed = await store.saveDefinition(
      definition(name, {
        description: 'flight delays, deeper',
        trainer: { kind: 'logistic_regression', params: { l2: 0.1 } },
      }),
      'bob',
    );
    expect(changed.created).toBe(true);
    expect(changed.version.version).toBe(2);
    expect(changed.pipeline.description).toBe('flight delays, deeper');
    expect(changed.pipeline.updatedAt.getTime()).toBeGreaterThanOrEqual(first.pipeline.updatedAt.getTime());

    const stored = await store.getPipeline(name);
    expect(stored?.versions.map((v) => v.version)).toEqual([2, 1]);
    expect((await store.getVersion(name))?.version).toBe(2);
    expect((await store.getVersion(name, 1))?.id).toBe(first.version.id);
    expect(await store.getVersion(name, 3)).toBeUndefined();
    expect(await store.getVersionById(changed.version.id)).toMatchObject({ version: 2, pipelineName: name });
    expect(await store.getVersionById('not-a-uuid')).toBeUndefined();
    expect(await store.getPipeline(uniqueName('missing'))).toBeUndefined();

    const listed = (await store.listPipelines()).find((p) => p.name === name);
    expect(listed).toMatchObject({ latestVersion: 2, latestVersionId: changed.version.id });
    expect(listed?.definition).toMatchObject({ name, trainer: { params: { l2: 0.1 } } });
  });

  it('concurrent saves of one definition create one version', async () => {
    const name = uniqueName('race');
    const results = await Promise.all(Array.from({ length: 5 }, () => store.saveDefinition(definition(name), 'ci')));
    expect(new Set(results.map((r) => r.version.id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect((await store.getPipeline(name))?.versions).toHaveLength(1);
  });

  it('concurrent saves of different definitions get consecutive versions', async () => {
    const name = uniqueName('race');
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        store.saveDefinition(definition(name, { trainer: { kind: 'logistic_regression', params: { l2: i } } }), 'ci'),
      ),
    );
    expect(results.map((r) => r.version.version).sort()).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('PipelineStore runs', () => {
  it('one idempotency key is one run, even under concurrent requests', async () => {
    const { version } = await store.saveDefinition(definition(uniqueName('idem')), 'test');
    const key = `key-${randomUUID()}`;
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        store.createRun({
          pipelineVersionId: version.id,
          // Each request would start its own workflow; the key must still lead all of them to the first run.
          workflowId: `wf-${randomUUID()}`,
          trigger: 'http',
          idempotencyKey: key,
        }),
      ),
    );
    expect(new Set(results.map((r) => r.run.id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const count = await handle.pool.query('select count(*)::int as n from pipeline_runs where idempotency_key = $1', [
      key,
    ]);
    expect(count.rows[0]).toEqual({ n: 1 });
  });

  it('finds the existing run by workflow id or run id, and by key even for another pipeline version', async () => {
    const { run, version } = await newRun(undefined, `key-${randomUUID()}`);
    const byWorkflow = await store.createRun({
      pipelineVersionId: version.id,
      workflowId: run.workflowId,
      trigger: 'x',
    });
    expect(byWorkflow).toEqual({ run, created: false });

    const other = await store.saveDefinition(definition(uniqueName('other')), 'test');
    const byKey = await store.createRun({
      pipelineVersionId: other.version.id,
      workflowId: `wf-${randomUUID()}`,
      trigger: 'x',
      idempotencyKey: run.idempotencyKey!,
    });
    expect(byKey).toEqual({ run, created: false });

    const runId = randomUUID();
    const chosen = await store.createRun({
      runId,
      pipelineVersionId: version.id,
      workflowId: `wf-${runId}`,
      trigger: 'x',
    });
    expect(chosen).toMatchObject({ created: true, run: { id: runId, status: 'pending' } });

    await expect(
      store.createRun({ pipelineVersionId: randomUUID(), workflowId: `wf-${randomUUID()}`, trigger: 'x' }),
    ).rejects.toBeInstanceOf(PipelineNotFoundError);
  });

  it('tracks run status and stages, idempotently', async () => {
    const { run, name } = await newRun();
    const workflowId = run.workflowId;

    const started = await store.markRunStarted(workflowId, 'temporal-run-1');
    expect(started).toMatchObject({ status: 'running', temporalRunId: 'temporal-run-1', finishedAt: null });

    const extract = await store.startStage(workflowId, 'extract', 1);
    expect(extract).toMatchObject({ status: 'running', attempt: 1, finishedAt: null });
    const extracted = await store.finishStage(workflowId, 'extract', { status: 'succeeded', outputs: { rows: 10 } });
    expect(extracted).toMatchObject({ status: 'succeeded', outputs: { rows: 10 } });
    const repeated = await store.finishStage(workflowId, 'extract', { status: 'succeeded', outputs: { rows: 10 } });
    expect(repeated?.id).toBe(extract?.id);
    expect(repeated?.finishedAt).toEqual(extracted?.finishedAt);

    // Finished without a start: a stage whose outputs were reused.
    const statistics = await store.finishStage(workflowId, 'statistics', { status: 'cached', outputs: { from: 'r0' } });
    expect(statistics).toMatchObject({ status: 'cached', attempt: 1 });
    expect(statistics?.finishedAt).toBeInstanceOf(Date);

    await store.startStage(workflowId, 'train', 1);
    const failure = { type: 'TrainingFailed', message: 'diverged', stage: 'train' };
    await store.finishStage(workflowId, 'train', { status: 'failed', failure });
    const failed = await store.setRunStatus(workflowId, 'failed', { failure });
    expect(failed).toMatchObject({ status: 'failed', failure });
    expect(failed?.finishedAt).toBeInstanceOf(Date);
    const failedAgain = await store.setRunStatus(workflowId, 'failed', { failure });
    expect(failedAgain?.finishedAt).toEqual(failed?.finishedAt);

    // Resumed: a new Temporal run of the same workflow id retries the failed stage.
    const resumed = await store.markRunStarted(workflowId, 'temporal-run-2');
    expect(resumed).toMatchObject({
      status: 'running',
      temporalRunId: 'temporal-run-2',
      finishedAt: null,
      failure: null,
    });
    const retried = await store.startStage(workflowId, 'train', 2);
    expect(retried).toMatchObject({ status: 'running', attempt: 2, failure: null, finishedAt: null, outputs: {} });
    await store.finishStage(workflowId, 'train', { status: 'succeeded', outputs: { model: 's3://m' } });

    expect(await store.setRunStatus(workflowId, 'waiting_approval')).toMatchObject({
      status: 'waiting_approval',
      finishedAt: null,
    });
    const done = await store.setRunStatus(workflowId, 'succeeded');
    expect(done).toMatchObject({ status: 'succeeded', failure: null });
    expect(done?.finishedAt).toBeInstanceOf(Date);

    const details = await store.getRun(run.id);
    expect(details).toMatchObject({
      id: run.id,
      status: 'succeeded',
      pipelineName: name,
      pipelineVersion: 1,
      triggeredBy: 'alice',
    });
    expect(details?.stages.map((s) => [s.stage, s.status, s.attempt])).toEqual([
      ['extract', 'succeeded', 1],
      ['statistics', 'cached', 1],
      ['train', 'succeeded', 2],
    ]);
    expect((await store.getRunByWorkflowId(workflowId))?.id).toBe(run.id);
    expect(await store.getRun('nope')).toBeUndefined();
    expect(await store.getRun(randomUUID())).toBeUndefined();
  });

  it('ignores stage and status writes of workflows that are not pipeline runs', async () => {
    const workflowId = `not-a-run-${randomUUID()}`;
    expect(await store.startStage(workflowId, 'extract', 1)).toBeUndefined();
    expect(await store.finishStage(workflowId, 'extract', { status: 'succeeded' })).toBeUndefined();
    expect(await store.markRunStarted(workflowId, 'r')).toBeUndefined();
    expect(await store.setRunStatus(workflowId, 'failed')).toBeUndefined();
    expect(await store.getRunByWorkflowId(workflowId)).toBeUndefined();
  });

  it('lists runs newest first, by pipeline and status', async () => {
    const name = uniqueName('list');
    const { version } = await store.saveDefinition(definition(name), 'test');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { run } = await store.createRun({
        pipelineVersionId: version.id,
        workflowId: `wf-${randomUUID()}`,
        trigger: 'schedule',
      });
      ids.push(run.id);
    }
    await store.setRunStatus((await store.getRun(ids[0]!))!.workflowId, 'succeeded');

    const runs = await store.listRuns({ pipelineName: name });
    expect(runs.map((r) => r.id)).toEqual([...ids].reverse());
    expect(runs[0]).toMatchObject({ pipelineName: name, pipelineVersion: 1 });
    expect((await store.listRuns({ pipelineName: name, status: 'succeeded' })).map((r) => r.id)).toEqual([ids[0]]);
    expect(await store.listRuns({ pipelineName: name, limit: 2 })).toHaveLength(2);
    expect((await store.listRuns({ limit: 10_000 })).length).toBeLessThanOrEqual(500);
  });
});
