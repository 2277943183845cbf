import { afterEach, describe, expect, it } from 'vitest';
import type { LoadedModel } from '../../../serving/loaded-model.js';
import { ServingMetrics } from '../../../serving/metrics.js';
import { ModelPool, type ModelPoolOptions } from '../../../serving/model-pool.js';
import { ModelUnavailableError, ServingNotFoundError } from '../../../serving/pool-errors.js';
import { pickTarget, type DeploymentRoute } from '../../../serving/routing.js';
import { FakeRegistry, fakeLoader, silentLogger } from './fixtures.js';

const pools: ModelPool[] = [];

afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

function setup(options: Partial<ModelPoolOptions> = {}) {
  const registry = new FakeRegistry();
  const metrics = new ServingMetrics({ defaultMetrics: false });
  const loader = fakeLoader(metrics);
  const pool = new ModelPool({
    registry,
    deployments: registry,
    metrics,
    logger: silentLogger,
    loadModel: loader.load,
    pollIntervalMs: 0,
    ...options,
  });
  pools.push(pool);
  return { registry, metrics, loader, pool };
}

async function acquired(pending: LoadedModel | Promise<LoadedModel>): Promise<LoadedModel> {
  return pending instanceof Promise ? pending : pending;
}

function loadCount(metrics: ServingMetrics, result: 'success' | 'failure'): Promise<number> {
  return metrics.modelLoads
    .get()
    .then((m) => m.values.filter((v) => v.labels.result === result).reduce((n, v) => n + v.value, 0));
}

describe('ModelPool routing', () => {
  it('loads every deployment at start and answers from memory, synchronously', async () => {
    const { registry, pool, loader } = setup();
    const v1 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v1.id);
    await pool.start();
    expect(loader.loads).toBe(1);
    const model = pool.acquire('delays');
    expect(model).not.toBeInstanceOf(Promise);
    expect((model as LoadedModel).identity).toMatchObject({ name: 'delays', version: 1, versionId: v1.id });
    (model as LoadedModel).release();
    const before = { ...registry.calls };
    for (let i = 0; i < 100; i++) (pool.acquire('delays') as LoadedModel).release();
    expect(registry.calls).toEqual(before);
    expect(pool.status()).toEqual([
      expect.objectContaining({
        deployment: 'delays',
        modelName: 'delays',
        targets: [expect.objectContaining({ role: 'champion', version: 1, versionId: v1.id, trafficPercent: 100 })],
      }),
    ]);
  });

  it('is ready (initialLoadDone) once the deployments were read, even when a version failed to load', async () => {
    const { registry, pool, loader } = setup();
    const good = registry.addVersion('delays');
    registry.deploy('delays', 'delays', good.id);
    const broken = registry.addVersion('fares');
    registry.deploy('fares', 'fares', broken.id);
    loader.failing.set(broken.id, new Error('checksum mismatch'));
    const listDeployments = registry.listDeployments.bind(registry);
    registry.listDeployments = () => Promise.reject(new Error('connection refused'));
    expect(pool.initialLoadDone).toBe(false);
    await pool.start();
    expect(pool.initialLoadDone).toBe(false);
    registry.listDeployments = listDeployments;
    await pool.refreshAll();
    expect(pool.initialLoadDone).toBe(true);
    const model = pool.acquire('delays') as LoadedModel;
    expect(model.identity.version).toBe(1);
    model.release();
  });

  it('swaps to a new version while in-flight requests finish on the old session, which is released after them', async () => {
    const { registry, pool, loader } = setup();
    const v1 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v1.id);
    await pool.start();

    // A request on v1 is in flight (its run is held) when v2 is deployed.
    const old = await acquired(pool.acquire('delays'));
    const oldSession = loader.sessions.get(v1.id)!;
    let open!: () => void;
    oldSession.gate = new Promise((resolve) => (open = resolve));
    const inFlight = old.score([{ x: 1, kind: 'a' }]);

    const v2 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v2.id);
    await pool.refreshDeployment('delays');

    const fresh = await acquired(pool.acquire('delays'));
    expect(fresh.identity.version).toBe(2);
    fresh.release();
    // The old model is retired: no new request gets it, but its session lives until the in-flight one is done.
    expect(old.retired).toBe(true);
    expect(old.acquire()).toBe(false);
    expect(oldSession.released).toBe(false);
    open();
    const slice = await inFlight;
    expect(old.predictions(slice)).toEqual([{ label: 'no', probabilities: [0.9, 0.1].map(Math.fround) }]);
    expect(oldSession.released).toBe(false);
    old.release();
    await Promise.resolve();
    expect(oldSession.released).toBe(true);
    expect(pool.loadedVersionIds()).toEqual([v2.id]);
  });

  it('keeps serving the old version when the new one fails to load, and retries on the next refresh', async () => {
    const { registry, pool, loader, metrics } = setup();
    const v1 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v1.id);
    await pool.start();

    const v2 = registry.addVersion('delays');
    loader.failing.set(v2.id, new Error('sha256 mismatch'));
    registry.deploy('delays', 'delays', v2.id);
    await pool.refreshDeployment('delays');
    const still = await acquired(pool.acquire('delays'));
    expect(still.identity.version).toBe(1);
    still.release();
    expect(await loadCount(metrics, 'failure')).toBe(1);
    expect(loader.sessions.get(v1.id)?.released).toBe(false);

    // Fixed (say the object was re-uploaded): the next poll or notification swaps it in.
    loader.failing.delete(v2.id);
    await pool.refreshAll();
    const now = await acquired(pool.acquire('delays'));
    expect(now.identity.version).toBe(2);
    now.release();
    expect(await loadCount(metrics, 'success')).toBe(2);
    expect(loader.sessions.get(v1.id)?.released).toBe(true);
  });

  it('answers 503 for a deployment whose only version cannot load, until it can', async () => {
    const { registry, pool, loader } = setup();
    const v1 = registry.addVersion('broken');
    loader.failing.set(v1.id, new Error('object missing'));
    registry.deploy('broken', 'broken', v1.id);
    await pool.start();
    await expect(acquired(pool.acquire('broken'))).rejects.toThrow(ModelUnavailableError);
    await expect(acquired(pool.acquire('broken'))).rejects.toThrow(/object missing/);
    // Requests do not retry the load (a broken model under traffic would be downloaded per request).
    expect(loader.loads).toBe(1);
    loader.failing.clear();
    await pool.refreshAll();
    const model = await acquired(pool.acquire('broken'));
    expect(model.identity.version).toBe(1);
    model.release();
  });

  it('coalesces concurrent refreshes of one deployment and converges on the latest state', async () => {
    const { registry, pool, loader } = setup();
    const v1 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v1.id);
    await pool.start();
    const v2 = registry.addVersion('delays');
    const v3 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v2.id);
    const first = pool.refreshDeployment('delays');
    registry.deploy('delays', 'delays', v3.id);
    const second = pool.refreshDeployment('delays');
    const third = pool.refreshDeployment('delays');
    await Promise.all([first, second, third]);
    const model = await acquired(pool.acquire('delays'));
    expect(model.identity.version).toBe(3);
    model.release();
    // v1 at start, v2 by the first pass, v3 by the one follow-up pass the other two calls asked for.
    expect(loader.loads).toBe(3);
    expect(registry.calls.activeRevisions).toBe(3);
  });

  it('finds a deployment created after start on its first request, and forgets a deleted one', async () => {
    const { registry, pool } = setup();
    await pool.start();
    const v1 = registry.addVersion('late-model');
    registry.deploy('late', 'late-model', v1.id);
    const model = await acquired(pool.acquire('late'));
    expect(model.identity).toMatchObject({ name: 'late-model', version: 1 });
    model.release();
    registry.deployments.delete('late');
    await pool.refreshAll();
    expect(pool.status()).toEqual([]);
    expect(model.retired).toBe(true);
  });
});

describe('ModelPool explicit addressing', () => {
  it('loads a version by number or alias on demand, then serves it from memory', async () => {
    const { registry, pool, loader } = setup();
    const v1 = registry.addVersion('delays');
    const v2 = registry.addVersion('delays');
    registry.deploy('prod', 'delays', v2.id);
    registry.setAlias('delays', 'staging', v1.id);
    await pool.start();
    expect(loader.loads).toBe(1);

    const first = pool.acquire('prod', { version: 1 });
    expect(first).toBeInstanceOf(Promise);
    const m1 = await first;
    expect(m1.identity.versionId).toBe(v1.id);
    m1.release();
    const again = pool.acquire('prod', { version: 1 });
    expect(again).toBe(m1);
    m1.release();
    // The deployment's model name works too, and an alias reaches the same loaded session.
    const byModel = await acquired(pool.acquire('delays', { version: 1 }));
    expect(byModel).toBe(m1);
    byModel.release();
    const staging = await acquired(pool.acquire('prod', { alias: 'staging' }));
    expect(staging).toBe(m1);
    staging.release();
    // The model name without a version answers with its champion alias.
    const champion = await acquired(pool.acquire('delays'));
    expect(champion.identity.versionId).toBe(v2.id);
    champion.release();
    expect(loader.loads).toBe(2);
  });

  it('says which of name, version or alias does not exist', async () => {
    const { registry, pool } = setup();
    const v1 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v1.id);
    registry.addVersion('undeployed');
    await pool.start();
    const refusal = (name: string, ref = {}) =>
      acquired(pool.acquire(name, ref)).then(
        () => {
          throw new Error('expected a refusal');
        },
        (error: unknown) => {
          expect(error).toBeInstanceOf(ServingNotFoundError);
          const e = error as ServingNotFoundError;
          return `${e.code}: ${e.message}`;
        },
      );
    expect(await refusal('nothing')).toBe('model_not_found: no deployment or model is named nothing');
    expect(await refusal('delays', { version: 9 })).toBe('model_version_not_found: model delays has no version 9');
    expect(await refusal('delays', { alias: 'nope' })).toBe('model_version_not_found: model delays has no alias nope');
    expect(await refusal('undeployed')).toBe(
      'model_version_not_found: model undeployed has no deployed version; give a version or alias',
    );
  });

  it('answers 503 for a version that fails to load, without retrying it on every request', async () => {
    const { registry, pool, loader } = setup({ loadRetryMs: 30 });
    const v1 = registry.addVersion('delays');
    const v2 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v2.id);
    loader.failing.set(v1.id, new Error('integrity check failed'));
    await pool.start();
    for (let i = 0; i < 3; i++) {
      await expect(acquired(pool.acquire('delays', { version: 1 }))).rejects.toThrow(
        'model delays (version 1) could not be loaded: integrity check failed',
      );
    }
    expect(loader.loads).toBe(2);
    loader.failing.clear();
    await new Promise((r) => setTimeout(r, 40));
    const model = await acquired(pool.acquire('delays', { version: 1 }));
    expect(model.identity.version).toBe(1);
    model.release();
  });

  it('releases explicitly addressed versions that are not used for a while', async () => {
    const { registry, pool, loader } = setup({ explicitIdleMs: 20 });
    const v1 = registry.addVersion('delays');
    const v2 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v2.id);
    await pool.start();
    const m1 = await acquired(pool.acquire('delays', { version: 1 }));
    m1.release();
    await pool.refreshAll();
    expect(pool.loadedVersionIds().sort()).toEqual([v1.id, v2.id].sort());
    await new Promise((r) => setTimeout(r, 30));
    await pool.refreshAll();
    expect(pool.loadedVersionIds()).toEqual([v2.id]);
    expect(loader.sessions.get(v1.id)?.released).toBe(true);
    // Asked again: loaded again.
    const back = await acquired(pool.acquire('delays', { version: 1 }));
    expect(back).not.toBe(m1);
    back.release();
  });
});

describe('pickTarget', () => {
  it('sends each challenger its traffic share and the rest to the champion', () => {
    const target = (revisionId: string, role: 'champion' | 'challenger', trafficPercent: number) =>
      ({ model: {} as LoadedModel, revisionId, role, trafficPercent }) as const;
    const route: DeploymentRoute = {
      deployment: 'd',
      modelName: 'm',
      revisionKey: 'a,b,c',
      champion: target('a', 'champion', 70),
      challengers: [target('b', 'challenger', 20), target('c', 'challenger', 10)],
      shadows: [],
    };
    const picks = [0, 0.1999, 0.2, 0.2999, 0.3, 0.99].map((r) => pickTarget(route, () => r).revisionId);
    expect(picks).toEqual(['b', 'b', 'c', 'c', 'a', 'a']);
    expect(pickTarget({ ...route, challengers: [] }, () => 0).revisionId).toBe('a');
  });
});
