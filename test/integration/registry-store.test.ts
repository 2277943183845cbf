import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelBlessing } from '../../schema/index.js';
import { createDatabase, type DatabaseHandle } from '../../storage/database.js';
import {
  createDeploymentStore,
  DEPLOYMENTS_CHANNEL,
  type DeploymentNotification,
  type DeploymentStore,
} from '../../storage/deployment-store.js';
import { CHAMPION_ALIAS, RegistryConflictError, RegistryNotFoundError } from '../../storage/registry-common.js';
import { createRegistryStore, type RegisterVersionInput, type RegistryStore } from '../../storage/registry-store.js';
import { testEndpoints } from '../support/stack.js';

let handle: DatabaseHandle;
let registry: RegistryStore;
let deployments: DeploymentStore;

beforeAll(() => {
  handle = createDatabase(testEndpoints().databaseUrl, { max: 8 });
  registry = createRegistryStore(handle.db);
  deployments = createDeploymentStore(handle.db);
});

afterAll(async () => {
  await handle?.close();
});

function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

function blessing(blessed: boolean): ModelBlessing {
  return {
    blessed,
    reason: blessed ? 'auc 0.81 >= 0.75' : 'auc 0.61 < 0.75',
    metrics: { auc: blessed ? 0.81 : 0.61 },
    thresholds: { auc: 0.75 },
    evaluatedAt: new Date().toISOString(),
  };
}

function versionInput(modelName: string, options: { blessed?: boolean; bytes?: string } = {}): RegisterVersionInput {
  const sha256 = createHash('sha256')
    .update(options.bytes ?? randomUUID())
    .digest('hex');
  return {
    modelName,
    onnxUri: `s3://mlops-artifacts/artifacts/sha256/${sha256.slice(0, 2)}/${sha256}`,
    sha256,
    signature: {
      inputs: [{ name: 'features', type: 'float', shape: [null, 3] }],
      outputs: [{ name: 'probabilities', type: 'float', shape: [null, 2] }],
    },
    metrics: { auc: 0.8 },
    params: { trainer: 'logistic_regression', l2: 0.01 },
    blessing: blessing(options.blessed ?? true),
    codeVersion: 'test',
    actor: 'workflow:test',
    reason: 'pipeline test v1',
  };
}

async function register(modelName: string, options: { blessed?: boolean } = {}) {
  return (await registry.registerVersion(versionInput(modelName, options))).version;
}

function deployInput(deploymentName: string, modelName: string, versionId: string) {
  return { deploymentName, modelName, versionId, actor: 'alice', reason: 'better auc' };
}

describe('RegistryStore versions', () => {
  it('registers numbered versions with their status and transitions', async () => {
    const model = uniqueName('flights');
    const ensured = await registry.ensureModel(model, 'delay classifier');
    expect(await registry.ensureModel(model)).toMatchObject({ id: ensured.id, description: 'delay classifier' });

    const blessed = await registry.registerVersion(versionInput(model));
    expect(blessed.created).toBe(true);
    expect(blessed.version).toMatchObject({ version: 1, status: 'blessed', modelId: ensured.id, codeVersion: 'test' });
    expect(
      (await registry.transitions(blessed.version.id)).map((t) => [t.fromStatus, t.toStatus, t.actor, t.reason]),
    ).toEqual([
      [null, 'registered', 'workflow:test', 'pipeline test v1'],
      ['registered', 'blessed', 'workflow:test', 'auc 0.81 >= 0.75'],
    ]);

    const rejected = await register(model, { blessed: false });
    expect(rejected).toMatchObject({ version: 2, status: 'rejected' });
    expect((await registry.transitions(rejected.id)).map((t) => t.toStatus)).toEqual(['registered', 'rejected']);

    expect((await registry.listVersions(model)).map((v) => v.version)).toEqual([2, 1]);
    expect((await registry.getVersion(model, 1))?.id).toBe(blessed.version.id);
    expect(await registry.getVersion(model, 3)).toBeUndefined();
    expect(await registry.getVersionById(rejected.id)).toMatchObject({ version: 2 });
    expect(await registry.getVersionById('v2')).toBeUndefined();
    expect((await registry.listModels()).some((m) => m.name === model)).toBe(true);
    expect(await registry.getModel(uniqueName('missing'))).toBeUndefined();
    expect(await registry.listVersions(uniqueName('missing'))).toEqual([]);
  });

  it('the same bytes again are the same version, and nothing is written', async () => {
    const model = uniqueName('idem');
    const input = versionInput(model);
    const first = await registry.registerVersion(input);
    const again = await registry.registerVersion({ ...input, reason: 'retried activity', metrics: { auc: 0.1 } });
    expect(again).toEqual({ version: first.version, created: false });
    expect(await registry.transitions(first.version.id)).toHaveLength(2);

    // The same bytes under another model are that model's own version.
    const elsewhere = await registry.registerVersion({ ...input, modelName: uniqueName('other') });
    expect(elsewhere).toMatchObject({ created: true, version: { version: 1 } });
  });

  it('numbers concurrent registrations without gaps or duplicates, and de-duplicates concurrent retries', async () => {
    const model = uniqueName('race');
    const distinct = await Promise.all(Array.from({ length: 8 }, () => registry.registerVersion(versionInput(model))));
    expect(distinct.map((r) => r.version.version).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);

    const same = versionInput(model);
    const retries = await Promise.all(Array.from({ length: 5 }, () => registry.registerVersion(same)));
    expect(new Set(retries.map((r) => r.version.id)).size).toBe(1);
    expect(retries.filter((r) => r.created)).toHaveLength(1);
    expect(retries[0]?.version.version).toBe(9);
  });

  it('records status changes with who and why, once', async () => {
    const model = uniqueName('status');
    const version = await register(model, { blessed: false });
    const blessed = await registry.transitionStatus(version.id, 'blessed', 'bob', 'manual override after review');
    expect(blessed.status).toBe('blessed');
    const again = await registry.transitionStatus(version.id, 'blessed', 'bob', 'clicked twice');
    expect(again.status).toBe('blessed');
    const transitions = await registry.transitions(version.id);
    expect(transitions.map((t) => [t.fromStatus, t.toStatus, t.actor])).toEqual([
      [null, 'registered', 'workflow:test'],
      ['registered', 'rejected', 'workflow:test'],
      ['rejected', 'blessed', 'bob'],
    ]);
    await expect(registry.transitionStatus(randomUUID(), 'archived', 'bob', 'r')).rejects.toBeInstanceOf(
      RegistryNotFoundError,
    );
  });

  it('moves aliases other than the champion, within one model', async () => {
    const model = uniqueName('alias');
    const v1 = await register(model);
    const v2 = await register(model);
    await registry.setAlias(model, 'staging', v1.id, 'alice', 'try it');
    expect((await registry.getVersion(model, 'staging'))?.id).toBe(v1.id);
    await registry.setAlias(model, 'staging', v2.id, 'alice', 'newer');
    expect((await registry.getVersion(model, 'staging'))?.id).toBe(v2.id);
    expect(await registry.getVersion(model, 'nope')).toBeUndefined();

    await expect(registry.setAlias(model, CHAMPION_ALIAS, v1.id, 'alice', 'r')).rejects.toBeInstanceOf(
      RegistryConflictError,
    );
    const foreign = await register(uniqueName('foreign'));
    await expect(registry.setAlias(model, 'staging', foreign.id, 'alice', 'r')).rejects.toBeInstanceOf(
      RegistryNotFoundError,
    );
  });
});

describe('DeploymentStore', () => {
  it('deploys a champion, replaces it with history, and re-deploying is a no-op', async () => {
    const model = uniqueName('deploy');
    const deployment = uniqueName('serving');
    const v1 = await register(model);
    const v2 = await register(model);

    const first = await deployments.deploy(deployInput(deployment, model, v1.id));
    expect(first).toMatchObject({ changed: true, previousVersionId: null });
    expect(first.deployment).toMatchObject({ name: deployment, strategy: 'replace' });
    expect(first.revision).toMatchObject({ versionId: v1.id, role: 'champion', trafficPercent: 100, endedAt: null });
    expect((await registry.champion(model))?.id).toBe(v1.id);
    expect(await deployments.getDeployment(deployment)).toMatchObject({ name: deployment, modelName: model });

    const second = await deployments.deploy({
      ...deployInput(deployment, model, v2.id),
      actor: 'bob',
      reason: 'v2 is better',
    });
    expect(second).toMatchObject({ changed: true, previousVersionId: v1.id });
    expect((await registry.champion(model))?.id).toBe(v2.id);
    expect((await deployments.activeRevisions(deployment)).map((r) => [r.version, r.role, r.trafficPercent])).toEqual([
      [2, 'champion', 100],
    ]);

    const history = await deployments.deploymentHistory(deployment);
    expect(history.map((r) => [r.version, r.actor, r.reason])).toEqual([
      [2, 'bob', 'v2 is better'],
      [1, 'alice', 'better auc'],
    ]);
    const [current, ended] = history;
    expect(current?.endedAt).toBeNull();
    expect(ended?.endedAt).toEqual(current?.startedAt);
    expect(ended!.startedAt.getTime()).toBeLessThanOrEqual(ended!.endedAt!.getTime());

    const again = await deployments.deploy(deployInput(deployment, model, v2.id));
    expect(again).toMatchObject({ changed: false, previousVersionId: v1.id, revision: { id: second.revision.id } });
    expect(await deployments.deploymentHistory(deployment)).toHaveLength(2);
    expect((await deployments.listDeployments()).some((d) => d.name === deployment && d.modelName === model)).toBe(
      true,
    );
  });

  it('never deploys an unblessed version, and changes nothing when refusing', async () => {
    const model = uniqueName('unblessed');
    const deployment = uniqueName('serving');
    const good = await register(model);
    const bad = await register(model, { blessed: false });

    await expect(deployments.deploy(deployInput(deployment, model, bad.id))).rejects.toBeInstanceOf(
      RegistryConflictError,
    );
    expect(await deployments.getDeployment(deployment)).toBeUndefined();

    await deployments.deploy(deployInput(deployment, model, good.id));
    await expect(deployments.deploy(deployInput(deployment, model, bad.id))).rejects.toBeInstanceOf(
      RegistryConflictError,
    );
    expect((await deployments.activeRevisions(deployment)).map((r) => r.versionId)).toEqual([good.id]);
    expect((await registry.champion(model))?.id).toBe(good.id);
    expect(await deployments.deploymentHistory(deployment)).toHaveLength(1);

    // Nor can the serving version stop being blessed under the deployment.
    await expect(registry.transitionStatus(good.id, 'archived', 'bob', 'cleanup')).rejects.toBeInstanceOf(
      RegistryConflictError,
    );
    expect((await registry.getVersionById(good.id))?.status).toBe('blessed');
  });

  it('refuses versions of other models and unknown models', async () => {
    const model = uniqueName('owner');
    const foreign = await register(uniqueName('foreign'));
    await registry.ensureModel(model);
    await expect(deployments.deploy(deployInput(uniqueName('d'), model, foreign.id))).rejects.toBeInstanceOf(
      RegistryNotFoundError,
    );
    await expect(
      deployments.deploy(deployInput(uniqueName('d'), uniqueName('none'), foreign.id)),
    ).rejects.toBeInstanceOf(RegistryNotFoundError);
    await expect(deployments.deploy(deployInput(uniqueName('d'), model, 'not-a-uuid'))).rejects.toBeInstanceOf(
      RegistryNotFoundError,
    );

    // A deployment serves one model.
    const deployment = uniqueName('serving');
    const own = await register(model);
    await deployments.deploy(deployInput(deployment, model, own.id));
    const foreignModel = (await registry.listModels()).find((m) => m.id === foreign.modelId)!;
    await expect(deployments.deploy(deployInput(deployment, foreignModel.name, foreign.id))).rejects.toBeInstanceOf(
      RegistryConflictError,
    );
  });

  it('concurrent deploys of two versions leave exactly one active champion', async () => {
    const model = uniqueName('race');
    const deployment = uniqueName('serving');
    const v1 = await register(model);
    const v2 = await register(model);
    const results = await Promise.all([
      deployments.deploy(deployInput(deployment, model, v1.id)),
      deployments.deploy(deployInput(deployment, model, v2.id)),
      deployments.deploy(deployInput(deployment, model, v1.id)),
      deployments.deploy(deployInput(deployment, model, v2.id)),
    ]);
    const active = await deployments.activeRevisions(deployment);
    expect(active).toHaveLength(1);
    expect(active[0]?.role).toBe('champion');
    expect((await registry.champion(model))?.id).toBe(active[0]?.versionId);

    // The history is a chain: each revision ended when the next one started.
    const history = await deployments.deploymentHistory(deployment);
    expect(history.length).toBe(results.filter((r) => r.changed).length);
    for (let i = 1; i < history.length; i++) expect(history[i]?.endedAt).toEqual(history[i - 1]?.startedAt);
  });

  it('announces a deploy to LISTEN clients on commit', async () => {
    const model = uniqueName('notify');
    const deployment = uniqueName('serving');
    const version = await register(model);
    const client = new pg.Client({ connectionString: testEndpoints().databaseUrl });
    await client.connect();
    try {
      const received: DeploymentNotification[] = [];
      client.on('notification', (message) => {
        if (message.channel !== DEPLOYMENTS_CHANNEL || !message.payload) return;
        const payload = JSON.parse(message.payload) as DeploymentNotification;
        if (payload.deployment === deployment) received.push(payload);
      });
      await client.query(`listen ${DEPLOYMENTS_CHANNEL}`);

      const result = await deployments.deploy(deployInput(deployment, model, version.id));
      await expect.poll(() => received, { timeout: 5_000 }).toHaveLength(1);
      expect(received[0]).toEqual({
        deployment,
        modelName: model,
        versionId: version.id,
        revisionId: result.revision.id,
      });

      // A no-op deploy announces nothing.
      await deployments.deploy(deployInput(deployment, model, version.id));
      await client.query('select 1');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(received).toHaveLength(1);
    } finally {
      await client.end();
    }
  });
});
