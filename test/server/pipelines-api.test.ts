import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataAccessPolicy } from '../../data/access-policy.js';
import type { PipelineDefinition } from '../../pipelines/definition.js';
import type { PipelineRunnerDeps } from '../../pipelines/runs.js';
import type { Pipeline, PipelineVersion } from '../../schema/index.js';
import { createApp } from '../../server/app.js';
import { anyNamedKey, keyOf, withKey } from '../support/auth.js';
import type { ErrorBody } from '../../server/errors.js';
import { definitionSha256, type PipelineStore } from '../../storage/pipeline-store.js';
import { testDeps } from './helpers.js';

/** An in-memory stand-in for the parts of PipelineStore these routes use without a run. */
function memoryStore() {
  const pipelines = new Map<string, { pipeline: Pipeline; versions: PipelineVersion[] }>();
  const store = {
    saveDefinition: (definition: PipelineDefinition, actor: string) => {
      const now = new Date();
      let entry = pipelines.get(definition.name);
      if (!entry) {
        const pipeline = { id: randomUUID(), name: definition.name, description: null, createdAt: now, updatedAt: now };
        entry = { pipeline, versions: [] };
        pipelines.set(definition.name, entry);
      }
      const sha = definitionSha256(definition);
      const existing = entry.versions.find((v) => v.definitionSha256 === sha);
      if (existing) return Promise.resolve({ pipeline: entry.pipeline, version: existing, created: false });
      const version: PipelineVersion = {
        id: randomUUID(),
        pipelineId: entry.pipeline.id,
        version: entry.versions.length + 1,
        definition: JSON.parse(JSON.stringify(definition)) as PipelineVersion['definition'],
        definitionSha256: sha,
        createdBy: actor,
        createdAt: now,
      };
      entry.versions.unshift(version);
      return Promise.resolve({ pipeline: entry.pipeline, version, created: true });
    },
    getPipeline: (name: string) => Promise.resolve(pipelines.get(name)),
    getVersion: (name: string, version?: number) => {
      const entry = pipelines.get(name);
      const found = entry?.versions.find((v) => version === undefined || v.version === version);
      return Promise.resolve(found && { ...found, pipelineName: name });
    },
    listPipelines: () =>
      Promise.resolve(
        [...pipelines.values()].map((e) => ({
          ...e.pipeline,
          latestVersion: e.versions[0]!.version,
          latestVersionId: e.versions[0]!.id,
          definition: e.versions[0]!.definition,
        })),
      ),
    getRun: () => Promise.resolve(undefined),
    listRuns: () => Promise.resolve([]),
  };
  return store as unknown as PipelineStore;
}

let root: string;
let csv: string;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'pipelines-api-unit-'));
  csv = path.join(root, 'rides.csv');
  const rows = Array.from({ length: 50 }, (_, i) => `${i},${i % 7},${['a', 'b'][i % 2]},${i % 2}`);
  await writeFile(csv, `id,distance,zone,tipped\n${rows.join('\n')}\n`);
  const runner: PipelineRunnerDeps = {
    client: { options: { namespace: 'default' } } as never,
    pipelines: memoryStore(),
    taskQueue: 'main',
    trainingTaskQueue: 'training',
  };
  app = createApp(
    testDeps({
      bodyLimitBytes: 65_536,
      runner,
      sources: { scratchDir: root, policy: createDataAccessPolicy({ roots: [root], buckets: [] }) },
      auth: anyNamedKey,
    }),
  );
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function definition(overrides: Record<string, unknown> = {}) {
  return {
    name: 'rides',
    source: { uri: csv },
    label: { name: 'tipped', expression: 'tipped = 1', task: 'binary' },
    features: [
      { name: 'distance', expression: 'distance' },
      { name: 'zone', expression: 'zone' },
    ],
    split: { kind: 'hash', key: 'id', evalFraction: 0.2 },
    trainer: { kind: 'logistic_regression' },
    ...overrides,
  };
}

const send = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) =>
  app.request(
    url,
    withKey({
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    }),
  );

interface DefinitionErrorBody {
  error: { code: string; message: string; details: { issues: { path: string; message: string }[] } };
}

describe('POST /v1/pipelines', () => {
  it('stores a definition (201), and the same again answers 200 with the same version', async () => {
    const first = await send('POST', '/v1/pipelines', definition(), { ...keyOf('alice') });
    expect(first.status).toBe(201);
    expect(first.headers.get('location')).toBe('/v1/pipelines/rides/versions/1');
    const body = (await first.json()) as { version: { version: number; createdBy: string }; created: boolean };
    expect(body).toMatchObject({ created: true, version: { version: 1, createdBy: 'alice' } });

    const again = await send('POST', '/v1/pipelines', definition());
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ created: false, version: { version: 1 } });
  });

  it('answers 400 naming the feature whose expression reads an unknown column', async () => {
    const res = await send(
      'POST',
      '/v1/pipelines',
      definition({
        features: [
          { name: 'd', expression: 'distance' },
          { name: 'speed', expression: 'speed * 2' },
        ],
      }),
    );
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as DefinitionErrorBody;
    expect(error.code).toBe('invalid_definition');
    expect(error.message).toMatch(/^Invalid pipeline definition: features\.1\.expression: unknown column `speed`/);
    expect(error.details.issues).toEqual([
      { path: 'features.1.expression', message: expect.stringContaining('id, distance, zone, tipped') as string },
    ]);
  });

  it('answers 400 at trainer.kind for an unknown trainer, with every schema problem listed', async () => {
    const res = await send('POST', '/v1/pipelines', { ...definition({ trainer: { kind: 'xgboost' } }), colour: 1 });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as DefinitionErrorBody;
    expect(error.code).toBe('invalid_definition');
    expect(error.details.issues.map((i) => i.path).sort()).toEqual(['colour', 'trainer.kind']);
  });

  it('answers 400 for a trainer parameter its schema refuses', async () => {
    const res = await send('POST', '/v1/pipelines', definition({ trainer: { kind: 'mlp', params: { alpha: -1 } } }));
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as DefinitionErrorBody;
    expect(error.details.issues.map((i) => i.path)).toEqual(['trainer.params.alpha']);
  });

  it('answers 400 malformed_json for a body that is not JSON', async () => {
    const res = await app.request(
      '/v1/pipelines',
      withKey({
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"name":',
      }),
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.code).toBe('malformed_json');
  });
});

describe('PUT /v1/pipelines/{name}', () => {
  it('stores a new version under the name in the path', async () => {
    const res = await send('PUT', '/v1/pipelines/rides', definition({ description: 'v2' }));
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ created: true, version: { version: 2, pipeline: 'rides' } });

    const list = await app.request('/v1/pipelines', withKey());
    expect(await list.json()).toMatchObject({ pipelines: [{ name: 'rides', latestVersion: { version: 2 } }] });
    const one = await app.request('/v1/pipelines/rides', withKey());
    const details = (await one.json()) as { versions: { version: number }[] };
    expect(details.versions.map((v) => v.version)).toEqual([2, 1]);
    const v1 = await app.request('/v1/pipelines/rides/versions/1', withKey());
    expect(await v1.json()).toMatchObject({ version: 1, definition: { name: 'rides' } });
  });

  it('answers 400 at name when the body names another pipeline', async () => {
    const res = await send('PUT', '/v1/pipelines/other', definition());
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as DefinitionErrorBody;
    expect(error.details.issues).toEqual([{ path: 'name', message: expect.stringContaining('"other"') as string }]);
  });

  it('answers 400 for a name that is not a pipeline name, 404 for an unknown pipeline or version', async () => {
    expect((await send('PUT', '/v1/pipelines/Not%20A%20Name', definition())).status).toBe(400);
    expect((await app.request('/v1/pipelines/nothing', withKey())).status).toBe(404);
    expect((await app.request('/v1/pipelines/rides/versions/9', withKey())).status).toBe(404);
    expect((await app.request('/v1/pipelines/rides/versions/0', withKey())).status).toBe(400);
  });

  it('probe: a version beyond a Postgres integer is a 400 naming version, not a 500', async () => {
    const read = await app.request('/v1/pipelines/rides/versions/3000000000', withKey());
    expect(read.status).toBe(400);
    expect(((await read.json()) as ErrorBody).error.message).toContain('path.version');
    const start = await send('POST', '/v1/pipelines/rides/runs', { version: 3_000_000_000 });
    expect(start.status).toBe(400);
    expect(((await start.json()) as ErrorBody).error.message).toContain('body.version');
    expect((await app.request('/v1/pipelines/rides/versions/2147483647', withKey())).status).toBe(404);
  });
});

describe('runs: requests refused before Temporal is asked', () => {
  it('answers 400 for a run id that is not a UUID, naming the parameter', async () => {
    for (const [method, url] of [
      ['GET', '/v1/runs/42'],
      ['POST', '/v1/runs/42/approve'],
      ['POST', '/v1/runs/42/reject'],
      ['POST', '/v1/runs/42/cancel'],
      ['POST', '/v1/runs/42/resume'],
    ] as const) {
      const res = await send(method, url);
      expect(res.status, url).toBe(400);
      const { error } = (await res.json()) as ErrorBody;
      expect(error.message, url).toContain('path.runId');
    }
  });

  it('answers 404 for an unknown run', async () => {
    const id = randomUUID();
    for (const [method, url] of [
      ['GET', `/v1/runs/${id}`],
      ['POST', `/v1/runs/${id}/approve`],
    ] as const) {
      const res = await send(method, url);
      expect(res.status, url).toBe(404);
      expect(((await res.json()) as ErrorBody).error.code).toBe('not_found');
    }
  });

  it('validates the run filters, the Idempotency-Key and the bodies', async () => {
    expect((await app.request('/v1/runs?status=exploded', withKey())).status).toBe(400);
    expect((await app.request('/v1/runs?limit=0', withKey())).status).toBe(400);
    expect((await app.request('/v1/runs?pipeline=rides&limit=5', withKey())).status).toBe(200);

    const longKey = await send('POST', '/v1/pipelines/rides/runs', {}, { 'idempotency-key': 'k'.repeat(201) });
    expect(longKey.status).toBe(400);
    expect(((await longKey.json()) as ErrorBody).error.message).toContain('header.idempotency-key');

    const badVersion = await send('POST', '/v1/pipelines/rides/runs', { version: 'latest' });
    expect(badVersion.status).toBe(400);
    expect(((await badVersion.json()) as ErrorBody).error.message).toContain('body.version');

    const badReason = await send('POST', `/v1/runs/${randomUUID()}/approve`, { reason: 7 });
    expect(badReason.status).toBe(400);
  });
});

describe('OpenAPI', () => {
  it('documents the pipeline, run, model and deployment routes', async () => {
    const full = createApp(
      testDeps({
        runner: { client: {} as never, pipelines: memoryStore(), taskQueue: 'm', trainingTaskQueue: 't' },
        stores: { registry: {}, deployments: {} } as never,
      }),
    );
    const doc = (await (await full.request('/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/pipelines',
        '/v1/pipelines/{name}',
        '/v1/pipelines/{name}/versions/{version}',
        '/v1/pipelines/{name}/runs',
        '/v1/runs',
        '/v1/runs/{runId}',
        '/v1/runs/{runId}/approve',
        '/v1/runs/{runId}/reject',
        '/v1/runs/{runId}/cancel',
        '/v1/runs/{runId}/resume',
        '/v1/models',
        '/v1/models/{name}',
        '/v1/models/{name}/versions',
        '/v1/models/{name}/versions/{versionOrAlias}',
        '/v1/deployments',
        '/v1/deployments/{name}',
      ]),
    );
    expect(Object.keys(doc.paths['/v1/pipelines'] ?? {}).sort()).toEqual(['get', 'post']);
    expect(doc.components.schemas.PipelineDefinition).toBeDefined();
    expect(doc.components.schemas.PipelineRunDetails).toBeDefined();
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    for (const ref of refs) {
      const name = ref.slice('"$ref":"#/components/schemas/'.length, -1);
      expect(doc.components.schemas[name], ref).toBeDefined();
    }
  });
});
