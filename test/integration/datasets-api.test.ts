import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_THRESHOLDS } from '../../data/schema.js';
import type { DatasetSchema, ValidationReport } from '../../data/types.js';
import { ArtifactType } from '../../schema/index.js';
import { createApp } from '../../server/app.js';
import { openStorage, type PlatformStorage } from '../../storage/open-storage.js';
import { fixedKeys } from '../support/auth.js';
import { testLogger } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

let storage: PlatformStorage;
let app: ReturnType<typeof createApp>;
const keys = fixedKeys({ alice: ['approve', 'read'], reader: ['read'] });

beforeAll(async () => {
  storage = openStorage(testEndpoints(), { logger: testLogger, applicationName: 'datasets-api-test', poolSize: 2 });
  await storage.artifacts.ensureBucket();
  app = createApp({
    logger: testLogger,
    readiness: [],
    auth: keys.auth,
    version: 'test',
    bodyLimitBytes: 65_536,
    stores: storage,
  });
});

afterAll(async () => {
  await storage?.close();
});

const schema: DatasetSchema = {
  version: 1,
  columns: [
    { name: 'origin', kind: 'categorical', type: 'VARCHAR', required: true, maxMissingFraction: 0.01, domain: ['ATL'] },
  ],
  thresholds: DEFAULT_THRESHOLDS,
  featureThresholds: {},
};

const report: ValidationReport = {
  version: 1,
  ok: false,
  rowCount: 10,
  anomalies: [
    {
      column: 'origin',
      type: 'unseen_categories',
      message: 'Column "origin": 20% of values are outside the domain (threshold 1%).',
      value: 0.2,
      threshold: 0.01,
      unseenValues: [{ value: 'SFO', count: 2 }],
      unseenDistinct: 1,
    },
  ],
  drift: [],
};

/** A dataset at schema version 1 and a validation report against it, as the validate stage leaves them. */
async function datasetWithReport(): Promise<{ dataset: string; reportUri: string }> {
  const dataset = `api-${randomUUID().slice(0, 8)}`;
  const schemaRef = await storage.artifacts.put(JSON.stringify(schema), {
    kind: 'schema.json',
    contentType: 'application/json',
  });
  const schemaArtifact = await storage.metadata.putArtifact({
    type: ArtifactType.Schema,
    uri: schemaRef.uri,
    sha256: schemaRef.sha256,
  });
  await storage.datasets.recordSchemaVersion({
    dataset,
    basedOnVersion: null,
    artifactId: schemaArtifact.id,
    kind: 'inferred',
    actor: 'system',
    reason: 'first snapshot',
  });
  const reportRef = await storage.artifacts.put(JSON.stringify({ ...report, rowCount: Math.random() }), {
    kind: 'validation-report.json',
    contentType: 'application/json',
  });
  await storage.metadata.putArtifact({
    type: ArtifactType.Anomalies,
    uri: reportRef.uri,
    sha256: reportRef.sha256,
    properties: { dataset, ok: false, schemaVersion: 1 },
  });
  return { dataset, reportUri: reportRef.uri };
}

const post = (path: string, body: unknown, as = 'alice') =>
  app.request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...keys.as(as) },
    body: JSON.stringify(body),
  });
const get = (path: string) => app.request(path, { headers: keys.as('reader') });

describe('/v1/datasets', () => {
  it('accepts a report as a new schema version, recorded with who (the key) and why', async () => {
    const { dataset, reportUri } = await datasetWithReport();
    // A body's `actor` is not who acts: the key is.
    const body = { reportUri, actor: 'mallory', reason: 'SFO joined the network' };
    const accepted = await post(`/v1/datasets/${dataset}/schema/accept`, body);
    expect(accepted.status).toBe(201);
    expect(await accepted.json()).toMatchObject({ version: 2, kind: 'accepted', actor: 'alice' });

    const widened = JSON.parse(
      (await storage.artifacts.get((await storage.datasets.currentSchema(dataset))!.artifact.uri)).toString(),
    ) as DatasetSchema;
    expect(widened.columns[0]?.domain).toEqual(['ATL', 'SFO']);

    const again = await post(`/v1/datasets/${dataset}/schema/accept`, body);
    expect(again.status).toBe(201);
    expect(((await again.json()) as { version: number }).version).toBe(2);

    const state = await get(`/v1/datasets/${dataset}/schema`);
    expect(state.status).toBe(200);
    const json = (await state.json()) as { current: { version: number }; history: { version: number; kind: string }[] };
    expect(json.current.version).toBe(2);
    expect(json.history.map((h) => [h.version, h.kind])).toEqual([
      [2, 'accepted'],
      [1, 'inferred'],
    ]);
  });

  it('refuses a report made against an older schema version with 409, and a report of another dataset with 400', async () => {
    const { dataset, reportUri } = await datasetWithReport();
    const first = await post(`/v1/datasets/${dataset}/schema/accept`, {
      reportUri,
      actor: 'a',
      reason: 'first accept',
    });
    expect(first.status).toBe(201);
    // A second report, also made against version 1 but finding something else: version 2 is in force now.
    const laxReport = {
      ...report,
      anomalies: [{ ...report.anomalies[0]!, unseenValues: [{ value: 'LAX', count: 3 }] }],
    };
    const laxRef = await storage.artifacts.put(JSON.stringify(laxReport), { kind: 'validation-report.json' });
    await storage.metadata.putArtifact({
      type: ArtifactType.Anomalies,
      uri: laxRef.uri,
      sha256: laxRef.sha256,
      properties: { dataset, ok: false, schemaVersion: 1 },
    });
    const stale = await post(`/v1/datasets/${dataset}/schema/accept`, {
      reportUri: laxRef.uri,
      actor: 'b',
      reason: 'stale',
    });
    expect(stale.status).toBe(409);
    expect(((await stale.json()) as { error: { code: string } }).error.code).toBe('conflict');
    expect((await storage.datasets.schemaHistory(dataset)).map((v) => v.version)).toEqual([2, 1]);

    const elsewhere = await post(`/v1/datasets/${dataset}/schema/accept`, {
      reportUri: (await datasetWithReport()).reportUri,
      actor: 'b',
      reason: 'a report of another dataset',
    });
    expect(elsewhere.status).toBe(400);
  });

  it('answers 400 naming the field, and 404 for unknown datasets and reports', async () => {
    const { dataset, reportUri } = await datasetWithReport();
    const bad = await post(`/v1/datasets/${dataset}/schema/accept`, { reportUri, reason: 'x' });
    expect(bad.status).toBe(400);
    const error = (await bad.json()) as { error: { code: string; details: { path: string }[] } };
    expect(error.error.code).toBe('invalid_request');
    expect(JSON.stringify(error.error.details)).toMatch(/reason/);

    expect((await get(`/v1/datasets/nope-${randomUUID().slice(0, 8)}/schema`)).status).toBe(404);
    const unscoped = await post(
      `/v1/datasets/${dataset}/schema/accept`,
      { reportUri, reason: 'a reader may not' },
      'reader',
    );
    expect(unscoped.status).toBe(403);
    const unknownReport = await post(`/v1/datasets/${dataset}/schema/accept`, {
      reportUri: 's3://mlops-artifacts/artifacts/sha256/00/' + '0'.repeat(64),
      actor: 'a',
      reason: 'no such report',
    });
    expect(unknownReport.status).toBe(404);
  });
});
