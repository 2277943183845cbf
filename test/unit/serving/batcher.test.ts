import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  AbandonedRequestError,
  BatcherOverloadedError,
  MicroBatcher,
  type BatchSlice,
} from '../../../serving/batcher.js';

/** A run that the test finishes by hand, recording every batch it was given. */
function controlledRun() {
  const batches: string[][][] = [];
  const finishers: (() => void)[] = [];
  const failers: ((error: Error) => void)[] = [];
  const execute = (items: readonly string[][], rows: number): Promise<string[]> => {
    batches.push(items.map((i) => [...i]));
    expect(rows).toBe(items.reduce((n, i) => n + i.length, 0));
    return new Promise<string[]>((resolve, reject) => {
      // The result of a batch: each row's value, upper-cased, in batch order.
      finishers.push(() => resolve(items.flat().map((v) => v.toUpperCase())));
      failers.push(reject);
    });
  };
  return { batches, execute, finish: (i = finishers.length - 1) => finishers[i]!(), fail: failers };
}

const rows = (item: string[]) => item.length;
const mine = (slice: BatchSlice<string[]>) => slice.result.slice(slice.offset, slice.offset + slice.rows);
const tick = () => new Promise((r) => setImmediate(r));

afterEach(() => {
  vi.useRealTimers();
});

describe('MicroBatcher', () => {
  it('drops waiting requests whose caller has gone: they never run, and the others run without them', async () => {
    const run = controlledRun();
    const batcher = new MicroBatcher(run.execute, rows);
    const first = batcher.submit(['a']);
    let gone = false;
    const abandoned = batcher.submit(['b', 'c'], () => gone);
    const kept = batcher.submit(['d'], () => false);
    gone = true;
    run.finish(0);
    await first;
    await expect(abandoned).rejects.toBeInstanceOf(AbandonedRequestError);
    expect(run.batches).toEqual([[['a']], [['d']]]);
    run.finish(1);
    expect(mine(await kept)).toEqual(['D']);
    expect(batcher.queuedRows).toBe(0);
  });

  it('does not count gone callers against a full queue', async () => {
    const run = controlledRun();
    const batcher = new MicroBatcher(run.execute, rows, { maxQueuedRows: 3 });
    const first = batcher.submit(['a']);
    let gone = false;
    const stale = batcher.submit(['b', 'c', 'd'], () => gone);
    await expect(batcher.submit(['e'])).rejects.toBeInstanceOf(BatcherOverloadedError);
    gone = true;
    const fresh = batcher.submit(['f']);
    await expect(stale).rejects.toBeInstanceOf(AbandonedRequestError);
    expect(batcher.queuedRows).toBe(1);
    run.finish(0);
    await first;
    await tick();
    run.finish(1);
    expect(mine(await fresh)).toEqual(['F']);
  });

  it('goes idle when every waiting request was abandoned', async () => {
    const run = controlledRun();
    const batcher = new MicroBatcher(run.execute, rows);
    const first = batcher.submit(['a']);
    const stale = batcher.submit(['b'], () => true);
    run.finish(0);
    await first;
    await expect(stale).rejects.toBeInstanceOf(AbandonedRequestError);
    expect(batcher.running).toBe(false);
    const next = batcher.submit(['c']);
    expect(run.batches).toEqual([[['a']], [['c']]]);
    run.finish(1);
    expect(mine(await next)).toEqual(['C']);
  });

  it('runs a request at once when idle, without waiting for company', async () => {
    const run = controlledRun();
    const batcher = new MicroBatcher(run.execute, rows, { maxWaitMs: 50 });
    const answer = batcher.submit(['a']);
    // Synchronously: the run started inside submit.
    expect(run.batches).toEqual([[['a']]]);
    expect(batcher.running).toBe(true);
    run.finish();
    expect(mine(await answer)).toEqual(['A']);
    expect(batcher.running).toBe(false);
  });

  it('gathers arrivals during a run into one batch, in order, and gives each caller its own rows', async () => {
    const run = controlledRun();
    const sizes: number[] = [];
    const batcher = new MicroBatcher(run.execute, rows, { onBatch: (r) => sizes.push(r) });
    const first = batcher.submit(['a']);
    const queued = [batcher.submit(['b', 'c']), batcher.submit(['d']), batcher.submit(['e', 'f', 'g'])];
    expect(batcher.queuedRows).toBe(6);
    run.finish(0);
    await first;
    await tick();
    expect(run.batches).toEqual([[['a']], [['b', 'c'], ['d'], ['e', 'f', 'g']]]);
    run.finish(1);
    const slices = await Promise.all(queued);
    expect(slices.map(mine)).toEqual([['B', 'C'], ['D'], ['E', 'F', 'G']]);
    expect(slices.map((s) => [s.offset, s.rows])).toEqual([
      [0, 2],
      [2, 1],
      [3, 3],
    ]);
    // One shared result object, no copies.
    expect(slices[0]!.result).toBe(slices[2]!.result);
    expect(sizes).toEqual([1, 6]);
  });

  it('never runs more than maxBatchRows rows, and runs an oversized request alone', async () => {
    const run = controlledRun();
    const batcher = new MicroBatcher(run.execute, rows, { maxBatchRows: 4 });
    const all = [batcher.submit(['x'])];
    for (let i = 0; i < 9; i++) all.push(batcher.submit([`r${i}`]));
    all.push(batcher.submit(['b1', 'b2', 'b3', 'b4', 'b5', 'b6']));
    all.push(batcher.submit(['z']));
    for (let i = 0; i < 10 && run.batches.length > i; i++) {
      run.finish(i);
      await tick();
    }
    await Promise.all(all);
    expect(run.batches.map((b) => b.flat().length)).toEqual([1, 4, 4, 1, 6, 1]);
    expect(run.batches.every((b, i) => i === 4 || b.flat().length <= 4)).toBe(true);
    // Arrival order is kept across batches.
    expect(run.batches.flat(2)).toEqual([
      'x',
      ...Array.from({ length: 9 }, (_, i) => `r${i}`),
      'b1',
      'b2',
      'b3',
      'b4',
      'b5',
      'b6',
      'z',
    ]);
    expect((await all[11]!).rows).toBe(1);
  });

  it("sends a failed batch's error only to the request that causes it", async () => {
    const execute = vi.fn((items: readonly string[][]): Promise<string[]> => {
      if (items.flat().includes('bad')) return Promise.reject(new Error('bad input'));
      return new Promise((resolve) => setImmediate(() => resolve(items.flat().map((v) => v.toUpperCase()))));
    });
    const batcher = new MicroBatcher(execute, rows);
    const first = batcher.submit(['a']);
    const good1 = batcher.submit(['b']);
    const bad = batcher.submit(['bad']);
    const good2 = batcher.submit(['c', 'd']);
    expect(mine(await first)).toEqual(['A']);
    await expect(bad).rejects.toThrow('bad input');
    expect(mine(await good1)).toEqual(['B']);
    expect(mine(await good2)).toEqual(['C', 'D']);
    // The batch of three failed once, then each request ran alone.
    expect(execute.mock.calls.map((c) => c[0].flat())).toEqual([
      ['a'],
      ['b', 'bad', 'c', 'd'],
      ['b'],
      ['bad'],
      ['c', 'd'],
    ]);
  });

  it('rejects every caller of a failing single-request batch and keeps serving', async () => {
    let fail = true;
    const batcher = new MicroBatcher((items: readonly string[][]) => {
      if (fail) throw new TypeError('cannot build feeds');
      return Promise.resolve(items.flat());
    }, rows);
    await expect(batcher.submit(['a'])).rejects.toThrow('cannot build feeds');
    fail = false;
    expect(mine(await batcher.submit(['b']))).toEqual(['b']);
    expect(batcher.running).toBe(false);
  });

  it('waits up to maxWaitMs for a batch formed under load to fill, and not when it is full', async () => {
    vi.useFakeTimers();
    const run = controlledRun();
    const batcher = new MicroBatcher(run.execute, rows, { maxWaitMs: 5, maxBatchRows: 3 });
    void batcher.submit(['a']);
    void batcher.submit(['b']);
    run.finish(0);
    await vi.advanceTimersByTimeAsync(0);
    // The queued 'b' waits for company.
    expect(run.batches).toHaveLength(1);
    void batcher.submit(['c']);
    await vi.advanceTimersByTimeAsync(4);
    expect(run.batches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(run.batches).toEqual([[['a']], [['b'], ['c']]]);

    // A batch that fills up runs as soon as the previous run is done, without waiting.
    void batcher.submit(['d', 'e', 'f']);
    run.finish(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(run.batches).toHaveLength(3);
    expect(run.batches[2]).toEqual([['d', 'e', 'f']]);
  });

  it('refuses requests beyond maxQueuedRows while the model is busy', async () => {
    const run = controlledRun();
    const batcher = new MicroBatcher(run.execute, rows, { maxQueuedRows: 2 });
    const first = batcher.submit(['a']);
    const queued = batcher.submit(['b', 'c']);
    await expect(batcher.submit(['d'])).rejects.toBeInstanceOf(BatcherOverloadedError);
    run.finish(0);
    await first;
    await tick();
    run.finish(1);
    expect(mine(await queued)).toEqual(['B', 'C']);
  });
});
