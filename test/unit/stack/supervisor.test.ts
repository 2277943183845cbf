import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../core/logger.js';
import { backoffDelay, DEFAULT_BACKOFF, supervise, type SupervisorEvent } from '../../../stack/supervisor.js';

const logger = createLogger({ level: 'silent', name: 'test' });

/** An instance whose death the test decides: `die()` rejects `finished`, `exit()` resolves it unasked. */
function fakeRun() {
  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const finished = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  finished.catch(() => undefined);
  const run = {
    stopped: 0,
    finished,
    stop: async () => {
      run.stopped += 1;
      settle.resolve();
    },
    die: (error: unknown = new Error('boom')) => settle.reject(error),
    exit: () => settle.resolve(),
  };
  return run;
}

/** A clock the test moves, and a sleep that records its delays and waits for the test to release it. */
function fakeTime() {
  let now = 0;
  const sleeps: { ms: number; release: () => void }[] = [];
  return {
    now: () => now,
    advance: (ms: number) => (now += ms),
    sleeps,
    sleep: (ms: number, signal: AbortSignal) =>
      new Promise<void>((resolve) => {
        sleeps.push({ ms, release: resolve });
        signal.addEventListener('abort', () => resolve(), { once: true });
      }),
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await tick();
  expect(condition()).toBe(true);
}

describe('backoffDelay', () => {
  it('doubles from the initial delay and stops at the cap', () => {
    const delays = Array.from({ length: 8 }, (_, failures) => backoffDelay(DEFAULT_BACKOFF, failures));
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });
});

describe('supervise', () => {
  it('throws the first start failure, so npm start still fails fast', async () => {
    await expect(
      supervise({ name: 'workers', logger, start: () => Promise.reject(new Error('no Temporal')) }),
    ).rejects.toThrow('no Temporal');
  });

  it('restarts a part that dies, with growing delays, and resets them after a stable run', async () => {
    const time = fakeTime();
    const runs: ReturnType<typeof fakeRun>[] = [];
    const events: SupervisorEvent[] = [];
    const supervisor = await supervise({
      name: 'workers',
      logger,
      start: async () => {
        const run = fakeRun();
        runs.push(run);
        return run;
      },
      backoff: { initialMs: 100, factor: 2, maxMs: 350, stableAfterMs: 10_000 },
      now: time.now,
      sleep: time.sleep,
      onEvent: (event) => events.push(event),
    });
    expect(runs).toHaveLength(1);

    // Three quick deaths in a row: 100, 200, then 350 (capped instead of 400).
    for (const [i, expected] of [100, 200, 350].entries()) {
      time.advance(50);
      runs[i]!.die(new Error(`crash ${i}`));
      await until(() => time.sleeps.length === i + 1);
      expect(time.sleeps[i]!.ms).toBe(expected);
      // The dead instance is cleaned up before the restart.
      expect(runs[i]!.stopped).toBe(1);
      time.sleeps[i]!.release();
      await until(() => runs.length === i + 2);
    }
    expect(supervisor.restarts).toBe(3);
    expect(supervisor.current).toBe(runs[3]);

    // A run that stayed up past the stable period: the next restart is quick again.
    time.advance(20_000);
    runs[3]!.exit(); // exiting unasked is a death too
    await until(() => time.sleeps.length === 4);
    expect(time.sleeps[3]!.ms).toBe(100);
    time.sleeps[3]!.release();
    await until(() => runs.length === 5);

    expect(events.filter((e) => e.kind === 'died').map((e) => e.delayMs)).toEqual([100, 200, 350, 100]);
    expect(events.filter((e) => e.kind === 'restarted').map((e) => e.restarts)).toEqual([1, 2, 3, 4]);
    await supervisor.stop();
    expect(runs[4]!.stopped).toBe(1);
  });

  it('keeps trying when a restart fails, counting each failure in the backoff', async () => {
    const time = fakeTime();
    const runs: ReturnType<typeof fakeRun>[] = [];
    let failNext = 0;
    const supervisor = await supervise({
      name: 'API',
      logger,
      start: async () => {
        if (failNext > 0) {
          failNext -= 1;
          throw new Error('port busy');
        }
        const run = fakeRun();
        runs.push(run);
        return run;
      },
      backoff: { initialMs: 10, factor: 3, maxMs: 1_000, stableAfterMs: 1_000 },
      now: time.now,
      sleep: time.sleep,
    });
    failNext = 2;
    runs[0]!.die();
    for (let i = 0; i < 3; i++) {
      await until(() => time.sleeps.length === i + 1);
      time.sleeps[i]!.release();
    }
    await until(() => runs.length === 2);
    expect(time.sleeps.map((s) => s.ms)).toEqual([10, 30, 90]);
    expect(supervisor.restarts).toBe(1);
    await supervisor.stop();
  });

  it('stops the running instance on stop, and a death during stop starts nothing', async () => {
    const time = fakeTime();
    const runs: ReturnType<typeof fakeRun>[] = [];
    const supervisor = await supervise({
      name: 'workers',
      logger,
      start: async () => {
        const run = fakeRun();
        runs.push(run);
        return run;
      },
      now: time.now,
      sleep: time.sleep,
    });
    await supervisor.stop();
    await supervisor.stop();
    expect(runs[0]!.stopped).toBe(1);
    await tick();
    expect(runs).toHaveLength(1);
    expect(time.sleeps).toHaveLength(0);
  });

  it('cancels a pending restart when stopped while waiting', async () => {
    const time = fakeTime();
    const runs: ReturnType<typeof fakeRun>[] = [];
    const supervisor = await supervise({
      name: 'workers',
      logger,
      start: async () => {
        const run = fakeRun();
        runs.push(run);
        return run;
      },
      now: time.now,
      sleep: time.sleep,
    });
    runs[0]!.die();
    await until(() => time.sleeps.length === 1);
    await supervisor.stop(); // aborts the sleep
    await tick();
    expect(runs).toHaveLength(1);
    expect(supervisor.current).toBeUndefined();
  });
});
