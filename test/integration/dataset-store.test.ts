import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type DatabaseHandle } from '../../storage/database.js';
import { DatasetStore, SchemaVersionConflictError } from '../../storage/dataset-store.js';
import { DrizzleMetadataStore } from '../../storage/metadata-store.js';
import { testEndpoints } from '../support/stack.js';

let handle: DatabaseHandle;
let store: DatasetStore;
let metadata: DrizzleMetadataStore;

beforeAll(() => {
  handle = createDatabase(testEndpoints().databaseUrl, { max: 4 });
  store = new DatasetStore(handle.db);
  metadata = new DrizzleMetadataStore(handle.db);
});

afterAll(async () => {
  await handle?.close();
});

async function artifact(type: string) {
  return metadata.putArtifact({ type, uri: `s3://test/${randomUUID()}`, sha256: 'a'.repeat(64), bytes: 10 });
}

describe('DatasetStore', () => {
  it('versions schemas with who and why, newest in force', async () => {
    const dataset = `flights-${randomUUID()}`;
    expect(await store.currentSchema(dataset)).toBeUndefined();
    const inferred = await artifact('Schema');
    const v1 = await store.recordSchemaVersion({
      dataset,
      basedOnVersion: null,
      artifactId: inferred.id,
      kind: 'inferred',
      actor: 'system',
      reason: 'inferred from the first snapshot',
    });
    expect(v1).toMatchObject({ version: 1, kind: 'inferred', actor: 'system' });

    const widened = await artifact('Schema');
    const report = await artifact('Anomalies');
    const v2 = await store.recordSchemaVersion({
      dataset,
      basedOnVersion: 1,
      artifactId: widened.id,
      kind: 'accepted',
      actor: 'alice@example.com',
      reason: 'new airports opened in March',
      reportArtifactId: report.id,
    });
    expect(v2).toMatchObject({ version: 2, kind: 'accepted', reportArtifactId: report.id });
    expect((await store.currentSchema(dataset))?.artifact.id).toBe(widened.id);
    expect((await store.schemaHistory(dataset)).map((v) => v.version)).toEqual([2, 1]);
  });

  it('a retried change returns the same version instead of adding one', async () => {
    const dataset = `retry-${randomUUID()}`;
    const schema = await artifact('Schema');
    const input = {
      dataset,
      basedOnVersion: null,
      artifactId: schema.id,
      kind: 'inferred' as const,
      actor: 'system',
      reason: 'first snapshot',
    };
    const first = await store.recordSchemaVersion(input);
    const again = await store.recordSchemaVersion(input);
    expect(again.version).toBe(first.version);
    expect(await store.schemaHistory(dataset)).toHaveLength(1);
  });

  it('refuses a change based on a version that is no longer current', async () => {
    const dataset = `conflict-${randomUUID()}`;
    const base = { dataset, kind: 'accepted' as const, actor: 'bob', reason: 'r' };
    await store.recordSchemaVersion({ ...base, basedOnVersion: null, artifactId: (await artifact('Schema')).id });
    await store.recordSchemaVersion({ ...base, basedOnVersion: 1, artifactId: (await artifact('Schema')).id });
    await expect(
      store.recordSchemaVersion({ ...base, basedOnVersion: 1, artifactId: (await artifact('Schema')).id }),
    ).rejects.toBeInstanceOf(SchemaVersionConflictError);
    expect(await store.schemaHistory(dataset)).toHaveLength(2);
  });

  it('keeps the drift baseline per dataset', async () => {
    const dataset = `baseline-${randomUUID()}`;
    expect(await store.baselineStatistics(dataset)).toBeUndefined();
    const first = await artifact('Statistics');
    const second = await artifact('Statistics');
    await store.setBaselineStatistics(dataset, first.id);
    await store.setBaselineStatistics(dataset, second.id);
    await store.setBaselineStatistics(dataset, second.id);
    expect((await store.baselineStatistics(dataset))?.id).toBe(second.id);
  });
});
