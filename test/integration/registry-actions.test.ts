/**
 * Registry actions through the API on the real database: aliases (set, move, delete, concurrent moves, refusals),
 * `champion` and `previous` following the deployment path, descriptions and tags, version search and its bad
 * filters, and archiving (refused while a version serves; an archived version is never deployed again). Versions
 * are registered directly and never loaded, and no workflow runs, so the file needs no workers and stays fast.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The app first: it loads @hono/zod-openapi, which must extend zod before the pipeline definition's schemas are built.
import { createApp } from '../../server/app.js';
import type { ModelVersion } from '../../schema/index.js';
import { openStorage, type PlatformStorage } from '../../storage/open-storage.js';
import { anyNamedKey, keyOf } from '../support/auth.js';
import { testLogger } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

let storage: PlatformStorage;
let app: ReturnType<typeof createApp>;
const prefix = `ra${randomUUID().slice(0, 8)}`;
/** Four blessed versions with auc 0.6, 0.7, 0.8, 0.9, and a fifth that was rejected. */
const model = `${prefix}-main`;
const other = `${prefix}-other`;
const versions: ModelVersion[] = [];
let foreign: ModelVersion;

interface ApiBody {
  error?: { code: string; message: string };
  [key: string]: unknown;
}

async function api(method: string, route: string, body?: unknown): Promise<{ status: number; body: ApiBody }> {
  const response = await app.request(route, {
    method,
    headers: { 'content-type': 'application/json', ...keyOf('alice') },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as ApiBody };
}

async function register(modelName: string, auc: number, blessed = true): Promise<ModelVersion> {
  const sha256 = randomUUID().replace(/-/g, '').repeat(2);
  const { version } = await storage.registry.registerVersion({
    modelName,
    onnxUri: `s3://nowhere/${sha256}`,
    sha256,
    signature: { inputs: [], outputs: [] },
    metrics: { auc },
    params: {},
    blessing: { blessed, reason: blessed ? 'good' : 'worse', evaluatedAt: new Date().toISOString() },
    actor: 'test',
    reason: 'registry actions test',
  });
  return version;
}

/** The version numbers a search answers, in its order. */
async function search(query: string): Promise<number[]> {
  const answer = await api('GET', `/v1/models/${model}/versions?${query}`);
  expect(answer.status, `${query}: ${JSON.stringify(answer.body)}`).toBe(200);
  return (answer.body.versions as { version: number }[]).map((v) => v.version);
}

async function aliasOf(alias: string): Promise<number | undefined> {
  return (await storage.registry.getVersion(model, alias))?.version;
}

beforeAll(async () => {
  storage = openStorage(testEndpoints(), { logger: testLogger, applicationName: 'registry-actions', poolSize: 12 });
  for (const auc of [0.6, 0.7, 0.8, 0.9]) versions.push(await register(model, auc));
  versions.push(await register(model, 0.5, false));
  foreign = await register(other, 0.9);
  app = createApp({
    logger: testLogger,
    readiness: [],
    auth: anyNamedKey,
    version: 'test',
    bodyLimitBytes: 64 * 1024,
    stores: {
      artifacts: storage.artifacts,
      metadata: storage.metadata,
      datasets: storage.datasets,
      registry: storage.registry,
      deployments: storage.deployments,
    },
  });
}, 60_000);

afterAll(async () => {
  await storage?.close();
});

describe('aliases', () => {
  it('creates, moves and deletes an alias by version number or id, recording each move with who and why', async () => {
    const created = await api('PUT', `/v1/models/${model}/aliases/staging`, { version: 1, reason: 'first try' });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ alias: { alias: 'staging', version: 1 }, from: null, changed: true });
    const moved = await api('PUT', `/v1/models/${model}/aliases/staging`, { version: versions[1]!.id });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({
      alias: { version: 2, versionId: versions[1]!.id },
      from: { version: 1, versionId: versions[0]!.id },
      changed: true,
    });
    const again = await api('PUT', `/v1/models/${model}/aliases/staging`, { version: 2 });
    expect(again.body).toMatchObject({ changed: false, from: { version: 2 } });
    expect(await aliasOf('staging')).toBe(2);

    const read = await api('GET', `/v1/models/${model}/versions/staging`);
    expect(read.body).toMatchObject({ version: 2, aliases: ['staging'] });
    const listed = await api('GET', `/v1/models/${model}/aliases?alias=staging`);
    expect(listed.body.aliases).toEqual([expect.objectContaining({ alias: 'staging', version: 2 })]);
    expect(listed.body.changes).toMatchObject([
      { from: { version: 1 }, to: { version: 2 }, actor: 'alice', reason: 'set by alice' },
      { from: null, to: { version: 1 }, actor: 'alice', reason: 'first try' },
    ]);

    const deleted = await api('DELETE', `/v1/models/${model}/aliases/staging?reason=done`);
    expect(deleted.status).toBe(200);
    expect(deleted.body).toMatchObject({ alias: 'staging', deleted: { version: 2, versionId: versions[1]!.id } });
    expect(await aliasOf('staging')).toBeUndefined();
    expect((await api('GET', `/v1/models/${model}/versions/staging`)).status).toBe(404);
    expect((await api('DELETE', `/v1/models/${model}/aliases/staging`)).status).toBe(404);
    const history = await api('GET', `/v1/models/${model}/aliases?alias=staging&limit=1`);
    expect(history.body.changes).toMatchObject([{ from: { version: 2 }, to: null, reason: 'done' }]);
  });

  it('ends concurrent moves of one alias with one row and one winner, each move recorded from the one before', async () => {
    const targets = Array.from({ length: 12 }, (_, i) => (i % 4) + 1);
    const answers = await Promise.all(
      targets.map((version) => api('PUT', `/v1/models/${model}/aliases/race`, { version, reason: `to ${version}` })),
    );
    expect(answers.map((a) => a.status).filter((s) => s !== 200 && s !== 201)).toEqual([]);
    expect(answers.filter((a) => a.status === 201)).toHaveLength(1);

    const { rows } = await storage.database.pool.query<{ version_id: string }>(
      `select a.version_id from model_aliases a join registered_models m on m.id = a.model_id
        where m.name = $1 and a.alias = 'race'`,
      [model],
    );
    expect(rows).toHaveLength(1);
    const changes = (await api('GET', `/v1/models/${model}/aliases?alias=race`)).body.changes as {
      from: { version: number } | null;
      to: { version: number };
    }[];
    // Newest first: the winner is the last move, and every move started from where the one before it left the alias.
    expect(rows[0]!.version_id).toBe(versions[changes[0]!.to.version - 1]!.id);
    const oldestFirst = [...changes].reverse();
    expect(oldestFirst[0]!.from).toBeNull();
    for (let i = 1; i < oldestFirst.length; i++) expect(oldestFirst[i]!.from).toEqual(oldestFirst[i - 1]!.to);
  });

  it('refuses another model’s version, champion and previous, and bad names, changing nothing', async () => {
    await api('PUT', `/v1/models/${model}/aliases/candidate`, { version: 3 });
    const before = await storage.registry.aliasChanges(model, { limit: 500, offset: 0 });

    const foreignId = await api('PUT', `/v1/models/${model}/aliases/candidate`, { version: foreign.id });
    expect(foreignId.status).toBe(404);
    expect(foreignId.body.error?.message).toContain(`model ${model} has no version ${foreign.id}`);
    expect((await api('PUT', `/v1/models/${model}/aliases/candidate`, { version: 99 })).status).toBe(404);
    expect((await api('PUT', `/v1/models/${other}-nope/aliases/candidate`, { version: 1 })).status).toBe(404);
    for (const alias of ['champion', 'previous']) {
      for (const [method, body] of [
        ['PUT', { version: 1 }],
        ['DELETE', undefined],
      ] as const) {
        const refused = await api(method, `/v1/models/${model}/aliases/${alias}`, body);
        expect(refused.status, `${method} ${alias}`).toBe(409);
        expect(refused.body.error?.message).toContain('deployment path');
      }
    }
    for (const [alias, body, field] of [
      ['1st', { version: 1 }, 'alias'],
      ['-x', { version: 1 }, 'alias'],
      ['a'.repeat(65), { version: 1 }, 'alias'],
      ['ok', {}, 'version'],
      ['ok', { version: 0 }, 'version'],
      ['ok', { version: 'v2' }, 'version'],
      ['ok', { version: 1, force: true }, 'force'],
      ['ok', { version: 1, reason: ' ' }, 'reason'],
    ] as const) {
      const refused = await api('PUT', `/v1/models/${model}/aliases/${alias}`, body);
      expect(refused.status, `${alias} ${JSON.stringify(body)}`).toBe(400);
      expect(refused.body.error?.message).toContain(field);
    }
    expect(await aliasOf('candidate')).toBe(3);
    expect(await storage.registry.aliasChanges(model, { limit: 500, offset: 0 })).toEqual(before);
  });

  it('moves champion and previous with each deploy, recorded with the deploy’s actor and reason', async () => {
    const deploy = (version: number, reason: string) =>
      storage.deployments.deploy({
        deploymentName: model,
        modelName: model,
        versionId: versions[version - 1]!.id,
        actor: 'bob',
        reason,
      });
    await deploy(1, 'first');
    expect([await aliasOf('champion'), await aliasOf('previous')]).toEqual([1, undefined]);
    const replaced = await api('POST', `/v1/deployments/${model}/rollouts`, { strategy: 'replace', version: 2 });
    expect(replaced.status, JSON.stringify(replaced.body)).toBe(200);
    expect([await aliasOf('champion'), await aliasOf('previous')]).toEqual([2, 1]);
    await deploy(1, 'back to 1');
    expect([await aliasOf('champion'), await aliasOf('previous')]).toEqual([1, 2]);
    const moves = await storage.registry.aliasChanges(model, { limit: 3, offset: 0 }, 'champion');
    expect(moves).toMatchObject([
      { from: { version: 2 }, to: { version: 1 }, actor: 'bob', reason: 'back to 1' },
      { from: { version: 1 }, to: { version: 2 }, actor: 'alice', reason: 'replaced by alice' },
      { from: null, to: { version: 1 }, actor: 'bob', reason: 'first' },
    ]);
    const details = await api('GET', `/v1/models/${model}`);
    expect(details.body.aliases).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ alias: 'champion', version: 1, versionId: versions[0]!.id }),
        expect.objectContaining({ alias: 'previous', version: 2, versionId: versions[1]!.id }),
      ]),
    );
  });
});

describe('descriptions and tags', () => {
  it('edits a model’s and a version’s description and tags, merging tags and removing null ones', async () => {
    const edited = await api('PATCH', `/v1/models/${model}`, {
      description: 'flight delays',
      tags: { team: 'ops', stage: 'beta' },
    });
    expect(edited.status, JSON.stringify(edited.body)).toBe(200);
    expect(edited.body).toMatchObject({ description: 'flight delays', tags: { team: 'ops', stage: 'beta' } });
    const merged = await api('PATCH', `/v1/models/${model}`, { tags: { stage: null, owner: 'alice' } });
    expect(merged.body).toMatchObject({ description: 'flight delays', tags: { team: 'ops', owner: 'alice' } });
    expect(merged.body.tags).not.toHaveProperty('stage');
    expect((await api('PATCH', `/v1/models/${model}`, { description: null })).body.description).toBeNull();

    for (const version of [2, 3]) {
      const tagged = await api('PATCH', `/v1/models/${model}/versions/${version}`, {
        description: `version ${version}`,
        tags: { team: 'ops', dataset: `d${version}` },
      });
      expect(tagged.status).toBe(200);
      expect(tagged.body).toMatchObject({ version, description: `version ${version}`, tags: { team: 'ops' } });
    }
    expect((await api('GET', `/v1/models/${model}/versions/3`)).body).toMatchObject({
      description: 'version 3',
      tags: { team: 'ops', dataset: 'd3' },
    });
  });

  it('refuses malformed and oversized edits with the field named, changing nothing', async () => {
    const before = await storage.registry.getVersion(model, 1);
    for (const [body, field] of [
      [{ tags: { 'a:b': 'x' } }, 'tags'],
      [{ tags: { '': 'x' } }, 'tags'],
      [{ tags: { ok: 'x'.repeat(257) } }, 'tags'],
      [{ tags: { ok: 3 } }, 'tags'],
      [{ tags: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) }, 'tags'],
      [{ description: 'x'.repeat(5001) }, 'description'],
      [{ description: 3 }, 'description'],
      [{ colour: 'red' }, 'colour'],
      [{}, 'description'],
    ] as const) {
      const refused = await api('PATCH', `/v1/models/${model}/versions/1`, body);
      expect(refused.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(refused.body.error?.message).toContain(field);
    }
    const many = (from: number) => Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${from + i}`, 'v']));
    expect((await api('PATCH', `/v1/models/${model}/versions/1`, { tags: many(0) })).status).toBe(200);
    const tooMany = await api('PATCH', `/v1/models/${model}/versions/1`, { tags: many(30), description: 'lost' });
    expect(tooMany.status).toBe(409);
    expect(tooMany.body.error?.message).toContain('at most 50');
    const after = await storage.registry.getVersion(model, 1);
    expect(after?.description).toBe(before?.description);
    expect(Object.keys(after?.tags ?? {})).toHaveLength(30);
    expect((await api('PATCH', `/v1/models/${model}/versions/99`, { description: 'x' })).status).toBe(404);
  });
});

describe('search', () => {
  it('filters versions by status, alias, tag and metric ranges, newest first and paged', async () => {
    expect(await search('')).toEqual([5, 4, 3, 2, 1]);
    expect(await search('metric=auc>=0.7')).toEqual([4, 3, 2]);
    expect(await search('metric=auc>0.7&metric=auc<0.9')).toEqual([3]);
    expect(await search(`metric=${encodeURIComponent('auc <= 0.6')}`)).toEqual([5, 1]);
    expect(await search('metric=auc=0.8')).toEqual([3]);
    expect(await search('metric=f1>=0')).toEqual([]);
    expect(await search('status=rejected')).toEqual([5]);
    expect(await search('status=blessed&metric=auc<0.7')).toEqual([1]);
    expect(await search('alias=candidate')).toEqual([3]);
    expect(await search('alias=champion')).toEqual([1]);
    expect(await search('alias=nope')).toEqual([]);
    expect(await search('tag=team:ops')).toEqual([3, 2]);
    expect(await search('tag=team:ops&tag=dataset:d2')).toEqual([2]);
    expect(await search('tag=dataset')).toEqual([3, 2]);
    expect(await search('tag=team:dev')).toEqual([]);
    expect(await search('tag=team:ops&limit=1&offset=1')).toEqual([2]);
    expect(await search('limit=2&offset=1')).toEqual([4, 3]);
  });

  it('answers a malformed filter with a 400 naming it', async () => {
    for (const [query, named] of [
      ['metric=auc>>0.7', 'metric'],
      ['metric=auc', 'metric'],
      ['metric=auc>=high', 'metric'],
      ['metric=auc>=1e999', 'metric'],
      ['metric=>=0.7', 'metric'],
      ['tag=:ops', 'tag'],
      ['tag=a%20b:ops', 'tag'],
      ['status=retired', 'status'],
      ['alias=1st', 'alias'],
      ['limit=0', 'limit'],
      [Array.from({ length: 21 }, () => 'tag=a').join('&'), 'tag'],
    ] as const) {
      const refused = await api('GET', `/v1/models/${model}/versions?${query}`);
      expect(refused.status, query).toBe(400);
      expect(refused.body.error?.message, query).toContain(`query.${named}`);
    }
  });

  it('filters models by tag and name prefix', async () => {
    await api('PATCH', `/v1/models/${other}`, { tags: { team: 'research' } });
    const names = async (query: string) => {
      const answer = await api('GET', `/v1/models?${query}`);
      expect(answer.status, query).toBe(200);
      return (answer.body.models as { name: string }[]).map((m) => m.name);
    };
    expect(await names(`prefix=${prefix}`)).toEqual([model, other]);
    expect(await names(`prefix=${prefix}&tag=team:ops`)).toEqual([model]);
    expect(await names(`prefix=${prefix}&tag=team`)).toEqual([model, other]);
    expect(await names(`prefix=${prefix}-o`)).toEqual([other]);
    expect((await api('GET', '/v1/models?prefix=a%25')).status).toBe(400);
    expect((await api('GET', '/v1/models?tag=a:b:c')).status).toBe(200);
  });
});

describe('archive', () => {
  const archive = (version: number, reason = 'retired') =>
    api('POST', `/v1/models/${model}/versions/${version}/archive`, { reason });

  it('is refused while the version serves as champion or shadow, or a rollout holds it to canary', async () => {
    const champion = await archive(1);
    expect(champion.status).toBe(409);
    expect(champion.body.error?.message).toContain(`is served by deployment ${model} as champion`);

    const shadow = await api('POST', `/v1/deployments/${model}/rollouts`, { strategy: 'shadow', version: 4 });
    expect(shadow.status, JSON.stringify(shadow.body)).toBe(200);
    expect((await archive(4)).body.error?.message).toContain('as shadow');
    expect((await api('DELETE', `/v1/deployments/${model}/shadows/4`)).status).toBe(200);

    const workflowId = `rollout-${randomUUID()}`;
    await storage.deployments.reserveRollout({ deploymentName: model, workflowId, versionId: versions[3]!.id });
    const held = await archive(4);
    expect(held.status).toBe(409);
    expect(held.body.error?.message).toContain(`canaried by rollout ${workflowId}`);
    await storage.deployments.releaseRollout(model, workflowId);
    expect((await storage.registry.getVersion(model, 4))?.status).toBe('blessed');
  });

  it('archives with the reason recorded; an archived version is never deployed again', async () => {
    const archived = await archive(4, 'superseded');
    expect(archived.status, JSON.stringify(archived.body)).toBe(200);
    expect(archived.body).toMatchObject({ version: 4, status: 'archived', changed: true });
    expect((archived.body.transitions as unknown[]).at(-1)).toMatchObject({
      fromStatus: 'blessed',
      toStatus: 'archived',
      actor: 'alice',
      reason: 'superseded',
    });
    expect((await archive(4)).body).toMatchObject({ status: 'archived', changed: false });
    expect(await search('status=archived')).toEqual([4]);

    const history = await storage.deployments.deploymentHistory(model);
    for (const strategy of ['replace', 'shadow'] as const) {
      const refused = await api('POST', `/v1/deployments/${model}/rollouts`, { strategy, version: 4 });
      expect(refused.status, strategy).toBe(409);
      expect(refused.body.error?.message).toContain('archived');
    }
    const rollback = await api('POST', `/v1/deployments/${model}/rollback`, {
      to: 4,
      reason: 'x',
      allowUnblessed: true,
    });
    expect(rollback.status).toBe(409);
    expect(rollback.body.error?.message).toContain('archived');
    await expect(
      storage.deployments.reserveRollout({ deploymentName: model, workflowId: 'w', versionId: versions[3]!.id }),
    ).rejects.toThrow(/archived/);
    expect(await storage.deployments.deploymentHistory(model)).toEqual(history);

    expect((await archive(99)).status).toBe(404);
    expect((await api('POST', `/v1/models/${model}/versions/3/archive`, {})).body.error?.message).toContain('reason');
  });
});
