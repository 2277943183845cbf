/**
 * The inference thread pool: one session per thread, a spare started with the first session, a released version's
 * thread reused for the next one (a swap starts and ends no thread), and a thread whose load failed not reused.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { exportOnnx } from '../../../models/onnx/index.js';
import { inferenceBounds } from '../../../serving/index.js';
import { InferenceThreadPool } from '../../../serving/inference-thread-pool.js';
import { buildFeeds } from '../../../serving/loaded-model.js';
import { compileSignature } from '../../../serving/signature.js';
import { makeTransform, randomLinear, randomRows } from '../models/onnx-fixtures.js';

const OPTIONS = { executionProviders: ['cpu'], intraOpNumThreads: 1 };
const pools: InferenceThreadPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

function model(seed: number) {
  const transform = makeTransform('binary');
  const { bytes, signature } = exportOnnx(randomLinear('binary', transform, seed), transform);
  const compiled = compileSignature(signature);
  const rows = randomRows(transform, 8, seed).map((row) => {
    const instance: Record<string, unknown> = {};
    for (const f of transform.features) {
      const v = row[f.name];
      instance[f.name] =
        f.kind === 'numeric'
          ? typeof v === 'number' && Number.isFinite(v)
            ? v
            : null
          : v === null || v === undefined
            ? null
            : String(v);
    }
    return instance;
  });
  return {
    bytes,
    run: (session: Awaited<ReturnType<InferenceThreadPool['createSession']>>) =>
      session.run(buildFeeds(compiled, [rows], rows.length), compiled.fetches),
  };
}

describe('InferenceThreadPool', () => {
  it('never starts more than maxThreads: versions beyond share the least busy thread', async () => {
    const pool = new InferenceThreadPool({ spares: 1, maxThreads: 2 });
    pools.push(pool);
    const models = [1, 2, 3, 4, 5].map(model);
    const sessions: Awaited<ReturnType<InferenceThreadPool['createSession']>>[] = [];
    for (const m of models) sessions.push(await pool.createSession(m.bytes, OPTIONS));
    expect(pool.size).toBe(2);
    // Every version still scores, side by side.
    const outputs = await Promise.all(models.map((m, i) => m.run(sessions[i]!)));
    expect(outputs).toHaveLength(5);

    // A failed load on a shared thread leaves the other versions there serving.
    await expect(pool.createSession(new Uint8Array([1, 2, 3]), OPTIONS)).rejects.toThrow();
    expect(pool.size).toBeLessThanOrEqual(2);
    await Promise.all(models.map((m, i) => m.run(sessions[i]!)));

    for (const session of sessions) await session.release();
    // All released: one thread kept as the spare.
    expect([pool.size, pool.idle]).toEqual([1, 1]);
    expect(() => new InferenceThreadPool({ maxThreads: 0 })).toThrow(RangeError);
  });

  it('bounds the thread count and intra-op threads by the CPU count, whatever is configured', () => {
    expect(inferenceBounds({}, 16)).toEqual({ maxThreads: 4, sessionThreads: 1 });
    expect(inferenceBounds({ maxInferenceThreads: 64, sessionThreads: 16 }, 8)).toEqual({
      maxThreads: 8,
      sessionThreads: 8,
    });
    expect(inferenceBounds({ maxInferenceThreads: 3 }, 2)).toEqual({ maxThreads: 2, sessionThreads: 1 });
    expect(inferenceBounds({ maxInferenceThreads: 0, sessionThreads: -1 }, 4)).toEqual({
      maxThreads: 1,
      sessionThreads: 1,
    });
  });

  it('reuses the thread of a released version for the next one, with one spare ready', async () => {
    const pool = new InferenceThreadPool({ spares: 1 });
    pools.push(pool);
    const v1 = model(1);
    const first = await pool.createSession(v1.bytes, OPTIONS);
    // The first session's thread, and the spare started with it.
    expect([pool.size, pool.idle]).toEqual([2, 1]);
    await v1.run(first);

    // A deploy: the new version takes the spare while the old one still serves; then the old one is released.
    const v2 = model(2);
    const second = await pool.createSession(v2.bytes, OPTIONS);
    expect([pool.size, pool.idle]).toEqual([2, 0]);
    await Promise.all([v1.run(first), v2.run(second)]);
    await first.release();
    expect([pool.size, pool.idle]).toEqual([2, 1]);

    // The next deploy reuses the freed thread: still two threads.
    const third = await pool.createSession(model(3).bytes, OPTIONS);
    expect([pool.size, pool.idle]).toEqual([2, 0]);
    await second.release();
    await third.release();
    // More free threads than spares are ended.
    expect([pool.size, pool.idle]).toEqual([1, 1]);
    // Releasing twice is harmless.
    await third.release();
    expect([pool.size, pool.idle]).toEqual([1, 1]);
  });

  it('ends a thread whose load failed instead of reusing it', async () => {
    const pool = new InferenceThreadPool({ spares: 1 });
    pools.push(pool);
    await expect(pool.createSession(new Uint8Array([1, 2, 3]), OPTIONS)).rejects.toThrow();
    // The failed thread is gone; the spare stays.
    expect([pool.size, pool.idle]).toEqual([1, 1]);
    const v1 = model(1);
    const session = await pool.createSession(v1.bytes, OPTIONS);
    expect((await v1.run(session))['probabilities']?.dims).toEqual([8, 2]);
  });

  it('refuses new sessions once closed, and fails the open ones', async () => {
    const pool = new InferenceThreadPool();
    const v1 = model(1);
    const session = await pool.createSession(v1.bytes, OPTIONS);
    await pool.close();
    expect(pool.size).toBe(0);
    await expect(v1.run(session)).rejects.toThrow(/closed/);
    await expect(pool.createSession(v1.bytes, OPTIONS)).rejects.toThrow(/closed/);
  });
});
