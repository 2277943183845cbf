/**
 * Canary and shadow routing: sticky hashing (one key, one version; shares respected; raising a share only adds
 * keys), the pool's route targets with their roles, and the shadow path (answered by the champion, shadows scored
 * off the request path, their failures swallowed and counted).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DeploymentSummary } from '../../../storage/deployment-store.js';
import type { LoadedModel } from '../../../serving/loaded-model.js';
import { ServingMetrics } from '../../../serving/metrics.js';
import { ModelPool, type ModelPoolOptions } from '../../../serving/model-pool.js';
import type { ShadowResult } from '../../../serving/shadow-scorer.js';
import { pickTarget, stickyBucket, type DeploymentRoute, type RouteTarget } from '../../../serving/routing.js';
import { FakeRegistry, fakeLoader, silentLogger, SIGNATURE } from './fixtures.js';

/** The fake registry, with a config per deployment (the sticky key). */
class ConfigurableRegistry extends FakeRegistry {
  readonly configs = new Map<string, Record<string, unknown>>();

  override async getDeployment(name: string): Promise<DeploymentSummary | undefined> {
    const deployment = await super.getDeployment(name);
    return deployment ? { ...deployment, config: this.configs.get(name) ?? {} } : undefined;
  }
}

const pools: ModelPool[] = [];

afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

function setup(options: Partial<ModelPoolOptions> = {}) {
  const registry = new ConfigurableRegistry();
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

async function settle<T>(value: T | Promise<T>): Promise<T> {
  return value;
}

function route(challengerPercent: number, stickyKey?: string): DeploymentRoute {
  const target = (revisionId: string, role: 'champion' | 'challenger', trafficPercent: number): RouteTarget => ({
    model: { identity: { versionId: `version-${revisionId}` } } as LoadedModel,
    revisionId,
    role,
    trafficPercent,
  });
  return {
    deployment: 'd',
    modelName: 'm',
    revisionKey: 'a,b',
    champion: target('a', 'champion', 100 - challengerPercent),
    challengers: [target('b', 'challenger', challengerPercent)],
    shadows: [],
    ...(stickyKey ? { stickyKey } : {}),
  };
}

async function shadowCount(metrics: ServingMetrics, result: string): Promise<number> {
  const metric = metrics.registry.getSingleMetric('mlops_serving_shadow_predictions_total');
  if (!metric) return 0;
  const { values } = await metric.get();
  return values.filter((v) => v.labels.result === result).reduce((n, v) => n + v.value, 0);
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('stickyBucket', () => {
  it('is deterministic, in [0, 100), and tells values and their types apart', () => {
    expect(stickyBucket('d', 'customer-1')).toBe(stickyBucket('d', 'customer-1'));
    for (let i = 0; i < 1000; i++) {
      const b = stickyBucket('salt', `k${i}`);
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThan(100);
    }
    expect(stickyBucket('d', 7)).not.toBe(stickyBucket('d', '7'));
    expect(stickyBucket('d', 'x')).not.toBe(stickyBucket('e', 'x'));
  });

  it('spreads keys evenly: each decile of [0, 100) holds about a tenth of them', () => {
    const deciles = new Array<number>(10).fill(0);
    const n = 20_000;
    for (let i = 0; i < n; i++) deciles[Math.floor(stickyBucket('deployment/v2', `user-${i}`) / 10)]!++;
    for (const count of deciles) expect(Math.abs(count / n - 0.1)).toBeLessThan(0.01);
  });
});

describe('pickTarget with a sticky key', () => {
  it('gives one key the same version every time, whatever the random draw', () => {
    const sticky = route(30, 'customer');
    for (let i = 0; i < 200; i++) {
      const instance = { customer: `c${i}`, x: 1 };
      const first = pickTarget(sticky, () => 0, instance).revisionId;
      for (const r of [0.01, 0.5, 0.99]) expect(pickTarget(sticky, () => r, instance).revisionId).toBe(first);
    }
  });

  it('sends about the challenger share of keys to the challenger', () => {
    const sticky = route(20, 'customer');
    let challenger = 0;
    const n = 10_000;
    for (let i = 0; i < n; i++) if (pickTarget(sticky, () => 0, { customer: i }).role === 'challenger') challenger++;
    expect(Math.abs(challenger / n - 0.2)).toBeLessThan(0.02);
  });

  it('keeps keys on the challenger when its share grows (it only gains keys)', () => {
    const keys = Array.from({ length: 2_000 }, (_, i) => ({ customer: `c${i}` }));
    const at10 = keys.filter((k) => pickTarget(route(10, 'customer'), Math.random, k).role === 'challenger');
    const at50 = new Set(
      keys
        .filter((k) => pickTarget(route(50, 'customer'), Math.random, k).role === 'challenger')
        .map((k) => k.customer),
    );
    expect(at10.length).toBeGreaterThan(100);
    expect(at50.size).toBeGreaterThan(at10.length);
    for (const k of at10) expect(at50.has(k.customer)).toBe(true);
  });

  it('draws at random when the key is missing or null, or the route is not sticky', () => {
    const sticky = route(30, 'customer');
    expect(pickTarget(sticky, () => 0, { x: 1 }).role).toBe('challenger');
    expect(pickTarget(sticky, () => 0.99, { customer: null }).role).toBe('champion');
    expect(pickTarget(sticky, () => 0.99).role).toBe('champion');
    const plain = route(30);
    expect(pickTarget(plain, () => 0, { customer: 'c1' }).role).toBe('challenger');
    expect(pickTarget(plain, () => 0.99, { customer: 'c1' }).role).toBe('champion');
  });
});

describe('ModelPool canary and shadow', () => {
  it('tells which role and deployment answered, and routes a sticky canary by the first instance', async () => {
    const { registry, pool } = setup();
    const v1 = registry.addVersion('delays');
    const v2 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v1.id, [{ versionId: v2.id, role: 'challenger', trafficPercent: 50 }]);
    registry.configs.set('delays', { stickyKey: 'kind' });
    await pool.start();
    expect(pool.status()[0]).toMatchObject({ stickyKey: 'kind' });

    const seen = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      const key = `k${i % 10}`;
      const target = await settle(pool.acquireTarget('delays', { instances: [{ x: 1, kind: key }] }));
      expect(target.deployment).toBe('delays');
      expect(target.role).toBe(target.model.identity.version === 1 ? 'champion' : 'challenger');
      const version = target.model.identity.version;
      expect(seen.get(key) ?? version).toBe(version);
      seen.set(key, version);
      target.model.release();
    }
    expect(new Set(seen.values()).size).toBe(2);

    // Addressed explicitly: no deployment, and the role of the version that answered the caller.
    const explicit = await settle(pool.acquireTarget('delays', { version: 2 }));
    expect(explicit).toMatchObject({ role: 'champion', deployment: undefined });
    expect(explicit.model.identity.version).toBe(2);
    explicit.model.release();
  });

  it('scores shadows on copies off the request path and hands their answers over; never the caller', async () => {
    const results: ShadowResult[] = [];
    const { registry, pool, loader, metrics } = setup({ onShadowResult: (r) => results.push(r) });
    const v1 = registry.addVersion('delays');
    const v3 = registry.addVersion('delays');
    const v4 = registry.addVersion('delays');
    registry.deploy('delays', 'delays', v1.id, [
      { versionId: v3.id, role: 'shadow', trafficPercent: 0 },
      { versionId: v4.id, role: 'shadow', trafficPercent: 0 },
    ]);
    await pool.start();

    for (let i = 0; i < 20; i++) {
      const target = await settle(pool.acquireTarget('delays'));
      expect(target.role).toBe('champion');
      expect(target.model.identity.version).toBe(1);
      target.model.release();
    }
    const instances = [{ x: 1, kind: 'a' }];
    pool.shadow('delays', instances, 'req-1');
    // Nothing runs synchronously: the request path only schedules.
    expect(results).toEqual([]);
    expect(loader.sessions.get(v3.id)!.runs).toBe(0);
    await until(() => results.length === 2, 'both shadows');
    expect(results.map((r) => r.model.version).sort()).toEqual([2, 3]);
    for (const r of results) {
      expect(r).toMatchObject({ deployment: 'delays', requestId: 'req-1', instances });
      expect(r.error).toBeUndefined();
      expect(r.predictions).toHaveLength(1);
      expect(r.latencyMs).toBeGreaterThanOrEqual(0);
    }
    expect(results.find((r) => r.model.version === 3)!.predictions![0]).toMatchObject({ label: 'no' });
    expect(await shadowCount(metrics, 'success')).toBe(2);
    expect(pool.shadowInFlight).toBe(0);
    // The shadows' references were given back.
    expect(loader.sessions.get(v3.id)!.runs).toBe(1);
  });

  it('swallows and counts shadow failures, and drops copies beyond the in-flight bound', async () => {
    const results: ShadowResult[] = [];
    let throwing = false;
    const { registry, pool, loader, metrics } = setup({
      maxShadowInFlight: 2,
      onShadowResult: (r) => {
        if (throwing) throw new Error('log writer broke');
        results.push(r);
      },
    });
    const v1 = registry.addVersion('delays');
    const other = registry.addVersion('delays', {
      ...SIGNATURE,
      inputs: [...SIGNATURE.inputs, { name: 'extra', type: 'double', shape: [null, 1] }],
    });
    registry.deploy('delays', 'delays', v1.id, [{ versionId: other.id, role: 'shadow', trafficPercent: 0 }]);
    await pool.start();

    // A shadow whose signature the instances do not fit: an error result, not an exception.
    expect(() => pool.shadow('delays', [{ x: 1, kind: 'a' }], 'req-1')).not.toThrow();
    await until(() => results.length === 1, 'the failed shadow');
    expect(results[0]!.error).toContain('extra');
    expect(results[0]!.predictions).toBeUndefined();
    expect(await shadowCount(metrics, 'error')).toBe(1);

    // A handler that throws is counted too, and nothing escapes.
    throwing = true;
    pool.shadow('delays', [{ x: 1, kind: 'a', extra: 2 }], 'req-2');
    await until(async () => (await shadowCount(metrics, 'error')) === 2, 'the handler failure');

    // Held runs: the third copy is dropped, never queued.
    throwing = false;
    const session = loader.sessions.get(other.id)!;
    let open!: () => void;
    session.gate = new Promise((resolve) => (open = resolve));
    for (let i = 0; i < 3; i++) pool.shadow('delays', [{ x: 1, kind: 'a', extra: 2 }], `held-${i}`);
    await until(() => pool.shadowInFlight === 2 && session.runs >= 2, 'two copies in flight');
    expect(await shadowCount(metrics, 'dropped')).toBe(1);
    open();
    await until(() => pool.shadowInFlight === 0, 'the held copies');
    expect(results.filter((r) => r.requestId.startsWith('held-'))).toHaveLength(2);

    // No shadow, no work; an unknown deployment neither.
    pool.shadow('nothing-here', [{ x: 1 }], 'req-3');
    expect(pool.shadowInFlight).toBe(0);
  });
});
