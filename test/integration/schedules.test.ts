import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ScheduleNotFoundError } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTriggerActivities } from '../../activities/triggers.js';
import { pipelineScheduleId } from '../../pipelines/schedules.js';
import { PipelineLockTimeoutError } from '../../storage/trigger-store.js';
import { createApp } from '../../server/app.js';
import { fixedKeys } from '../support/auth.js';
import { connectTestPlatform, testLogger, type TestPlatform } from '../support/platform.js';
import { syntheticCsv, syntheticDefinition } from '../support/pipelines.js';
import { testEndpoints } from '../support/stack.js';

// Pipeline schedules on the real Temporal, through the API: each action runs `triggerPipelineRun` on the main worker
// and records a trigger event. The runs the events start go to a task queue no worker polls, so a run stays in
// progress until the test ends it, and an action that finds it is recorded as skipped, with why.

const suffix = randomUUID().slice(0, 8);
const pipeline = `sched-${suffix}`;
const idleQueue = `sched-idle-${suffix}`;
const keys = fixedKeys({ scheduler: ['trigger'], reader: ['read'] });
const EVERY = pipelineScheduleId(pipeline, 'every');
const HOURLY = pipelineScheduleId(pipeline, 'hourly');

let platform: TestPlatform;
let app: ReturnType<typeof createApp>;
let worker: Worker | undefined;
let running: Promise<void> | undefined;
let scratchDir: string;

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
  scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), 'schedules-'));
  const csv = path.join(scratchDir, 'data.csv');
  fs.writeFileSync(csv, syntheticCsv());
  await platform.storage.pipelines.saveDefinition(syntheticDefinition(pipeline, csv), 'test');
  // The real activities, but the runs that triggers start go to a queue nobody polls: they stay pending.
  const idle = createTriggerActivities({
    ...platform.activityDeps,
    temporal: { ...platform.activityDeps.temporal!, taskQueue: idleQueue },
  });
  worker = await platform.mainWorker((activities) => ({ ...activities, ...idle }));
  running = worker.run();
  app = createApp({
    logger: testLogger,
    auth: keys.auth,
    readiness: [],
    version: 'test',
    bodyLimitBytes: 1_000_000,
    stores: platform.storage,
    runner: {
      client: platform.client,
      pipelines: platform.storage.pipelines,
      taskQueue: platform.taskQueue,
      trainingTaskQueue: platform.trainingTaskQueue,
    },
    temporalUiUrl: 'http://temporal-ui.test:8233',
  });
});

afterAll(async () => {
  if (platform) {
    // Schedules outlive the test in Temporal: delete every one this file may have created.
    for (const name of ['every', 'hourly', 'default']) {
      await platform.client.schedule
        .getHandle(pipelineScheduleId(pipeline, name))
        .delete()
        .catch(() => undefined);
    }
    await finishRuns();
  }
  worker?.shutdown();
  await running;
  await platform?.close();
  if (scratchDir) fs.rmSync(scratchDir, { recursive: true, force: true });
});

/** Ends the runs waiting on the idle queue, as if they had been cancelled. */
async function finishRuns(): Promise<void> {
  for (const run of await platform.storage.pipelines.listRuns({ pipelineName: pipeline, limit: 500 })) {
    if (!['pending', 'running'].includes(run.status)) continue;
    await platform.client.workflow
      .getHandle(run.workflowId)
      .terminate('test over')
      .catch(() => undefined);
    await platform.storage.pipelines.setRunStatus(run.workflowId, 'cancelled');
  }
}

interface TriggerEvent {
  id: string;
  kind: string;
  source: string;
  status: 'started' | 'skipped';
  reason: string | null;
  runId: string | null;
  details: Record<string, unknown> | null;
  createdAt: string;
}

interface ScheduleBody {
  id: string;
  name: string;
  cron: string | null;
  interval: { everySeconds: number; offsetSeconds: number } | null;
  timezone: string;
  overlap: string;
  catchupWindowSeconds: number;
  version: number | null;
  state: { paused: boolean; note: string | null };
  nextActionTimes: string[];
  recentActions: { scheduledAt: string; takenAt: string; workflowId: string; trigger: TriggerEvent | null }[];
  actions: { taken: number };
  links: { self: string; temporalUi?: string };
}

interface Answer<T> {
  status: number;
  body: T & { error: { code: string; message: string } };
}

async function call<T = ScheduleBody>(
  method: string,
  url: string,
  body?: unknown,
  as = 'scheduler',
): Promise<Answer<T>> {
  const res = await app.request(url, {
    method,
    headers: { ...keys.as(as), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as Answer<T>['body'] };
}

const schedules = `/v1/pipelines/${pipeline}/schedules`;

async function events(source: string): Promise<TriggerEvent[]> {
  const res = await call<{ triggers: TriggerEvent[] }>(
    'GET',
    `/v1/pipelines/${pipeline}/triggers?source=${encodeURIComponent(source)}&limit=500`,
    undefined,
    'reader',
  );
  expect(res.status).toBe(200);
  return res.body.triggers;
}

async function describeSchedule(name: string): Promise<ScheduleBody> {
  const res = await call('GET', `${schedules}/${name}`, undefined, 'reader');
  expect(res.status).toBe(200);
  return res.body;
}

/** Polls `read` until `done` holds; fails with the last value after `timeoutMs`. */
async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`still not there after ${timeoutMs} ms: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('pipeline schedules', () => {
  it('refuses bad schedules with a 4xx naming the field, and creates nothing', async () => {
    const interval = { everySeconds: 60 };
    const refused = async (body: unknown, field: string) => {
      const res = await call('POST', schedules, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.message, JSON.stringify(body)).toContain(`body.${field}`);
    };
    await refused({ cron: '61 * * * *' }, 'cron');
    await refused({ cron: 'every day' }, 'cron');
    await refused({ cron: '0 0 * * * 2020' }, 'cron');
    await refused({ interval: { everySeconds: 0 } }, 'interval.everySeconds');
    await refused({ interval: { everySeconds: -30 } }, 'interval.everySeconds');
    await refused({ interval: { everySeconds: 60, offsetSeconds: 60 } }, 'interval.offsetSeconds');
    await refused({ cron: '0 * * * *', interval }, 'cron');
    await refused({}, 'cron');
    await refused({ interval, timezone: 'Mars/Olympus' }, 'timezone');
    await refused({ interval, timezone: '+01:00' }, 'timezone');
    // Intl reads a lowercase zone, Temporal's server does not: refused, with the spelling to use.
    await refused({ interval, timezone: 'europe/paris' }, 'timezone');
    expect((await call('POST', schedules, { interval, timezone: 'europe/paris' })).body.error.message).toContain(
      'use "Europe/Paris"',
    );
    // Spelled with capitals, so only Temporal's server finds it unknown: its INVALID_ARGUMENT is a 400 too.
    await refused({ interval, timezone: 'US/EASTERN' }, 'timezone');
    await refused({ interval, jitterSeconds: -1 }, 'jitterSeconds');
    await refused({ interval, overlap: 'sometimes' }, 'overlap');
    await refused({ interval, name: 'Not A Name' }, 'name');

    const unknownPipeline = await call('POST', `/v1/pipelines/nope-${suffix}/schedules`, { interval });
    expect(unknownPipeline.status).toBe(404);
    expect(unknownPipeline.body.error.message).toContain(`pipeline nope-${suffix} does not exist`);
    const unknownVersion = await call('POST', schedules, { interval, version: 99 });
    expect(unknownVersion.status).toBe(404);
    expect(unknownVersion.body.error.message).toContain('has no version 99');
    expect((await call('GET', `/v1/pipelines/nope-${suffix}/schedules`, undefined, 'reader')).status).toBe(404);
    expect((await call('GET', `/v1/pipelines/nope-${suffix}/triggers`, undefined, 'reader')).status).toBe(404);
    expect((await call('POST', schedules, { interval }, 'reader')).status).toBe(403);

    for (const [method, suffixPath, body] of [
      ['GET', '', undefined],
      ['PATCH', '', { jitterSeconds: 1 }],
      ['DELETE', '', undefined],
      ['POST', '/pause', {}],
      ['POST', '/unpause', {}],
      ['POST', '/trigger', {}],
      ['POST', '/backfill', { start: '2024-01-01T00:00:00Z', end: '2024-01-02T00:00:00Z' }],
    ] as const) {
      const res = await call(
        method,
        `${schedules}/missing${suffixPath}`,
        body,
        method === 'GET' ? 'reader' : 'scheduler',
      );
      expect(res.status, `${method} ${suffixPath}`).toBe(404);
      expect(res.body.error.message).toContain(`pipeline ${pipeline} has no schedule missing`);
    }
    await expect(
      platform.client.schedule.getHandle(pipelineScheduleId(pipeline, 'default')).describe(),
    ).rejects.toThrow(ScheduleNotFoundError);
  });

  let firstRunId = '';

  it('an interval schedule starts a run as trigger "schedule", skips while it runs, and Temporal lists it', async () => {
    const created = await call('POST', schedules, { name: 'every', interval: { everySeconds: 2 } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      id: EVERY,
      name: 'every',
      cron: null,
      interval: { everySeconds: 2, offsetSeconds: 0 },
      timezone: 'UTC',
      overlap: 'skip',
      catchupWindowSeconds: 300,
      version: null,
      state: { paused: false, note: 'created by scheduler' },
    });
    expect(created.body.nextActionTimes).toHaveLength(5);
    expect(created.body.links.temporalUi).toBe(
      `http://temporal-ui.test:8233/namespaces/default/schedules/${encodeURIComponent(EVERY)}`,
    );
    const again = await call('POST', schedules, { name: 'every', cron: '0 * * * *' });
    expect(again.status).toBe(409);

    // The first action starts a run; the next, two seconds later, finds it pending and is skipped.
    const seen = await waitFor(
      () => events(EVERY),
      (list) => list.some((e) => e.status === 'started') && list.some((e) => e.status === 'skipped'),
    );
    const started = seen.filter((e) => e.status === 'started');
    expect(started).toHaveLength(1);
    firstRunId = started[0]!.runId!;
    const run = await platform.storage.pipelines.getRun(firstRunId);
    expect(run).toMatchObject({ trigger: 'schedule', triggeredBy: EVERY });
    const skipped = seen.find((e) => e.status === 'skipped')!;
    expect(skipped.kind).toBe('schedule');
    expect(skipped.reason).toBe(`run ${firstRunId} of ${pipeline} is pending; runs of this pipeline do not overlap`);

    // Temporal itself lists it (its list is eventually consistent), and so does the API.
    await waitFor(
      async () => {
        const ids: string[] = [];
        for await (const s of platform.client.schedule.list()) ids.push(s.scheduleId);
        return ids;
      },
      (ids) => ids.includes(EVERY),
    );
    const listed = await waitFor(
      () => call<{ schedules: ScheduleBody[] }>('GET', schedules, undefined, 'reader'),
      (res) => res.body.schedules?.some((s) => s.id === EVERY) ?? false,
    );
    expect(listed.status).toBe(200);

    // Each recent action shows what it did.
    const described = await describeSchedule('every');
    const recorded = described.recentActions.filter((a) => a.trigger !== null);
    expect(recorded.length).toBeGreaterThanOrEqual(2);
    for (const action of described.recentActions) expect(action.workflowId.startsWith(`trigger:${EVERY}-`)).toBe(true);
    expect(recorded.find((a) => a.trigger?.status === 'started')?.trigger?.runId).toBe(firstRunId);
    expect(recorded.filter((a) => a.trigger?.status === 'skipped').length).toBeGreaterThanOrEqual(1);
  });

  it('pause stops the actions, trigger acts while paused, unpause resumes them, delete removes the schedule', async () => {
    const paused = await call('POST', `${schedules}/every/pause`, { note: 'maintenance window' });
    expect(paused.status).toBe(200);
    expect(paused.body.state).toEqual({ paused: true, note: 'maintenance window' });
    // An action taken just before the pause records its event first.
    await waitFor(
      () => describeSchedule('every'),
      (s) => s.recentActions.every((a) => a.trigger !== null),
    );
    const before = await describeSchedule('every');
    const eventsBefore = (await events(EVERY)).length;
    await sleep(5000); // two and a half intervals
    expect((await describeSchedule('every')).actions.taken).toBe(before.actions.taken);
    expect(await events(EVERY)).toHaveLength(eventsBefore);

    const triggered = await call('POST', `${schedules}/every/trigger`);
    expect(triggered.status).toBe(202);
    expect(triggered.body).toEqual({ schedule: EVERY, actions: 1 });
    const afterTrigger = await waitFor(
      () => events(EVERY),
      (list) => list.length === eventsBefore + 1,
    );
    expect(afterTrigger[0]).toMatchObject({ status: 'skipped', runId: null });
    expect((await describeSchedule('every')).actions.taken).toBe(before.actions.taken + 1);

    // Each "trigger now" is an action of its own, even two at once (Temporal names actions by their second).
    const both = await Promise.all([
      call('POST', `${schedules}/every/trigger`),
      call('POST', `${schedules}/every/trigger`),
    ]);
    expect(both.map((r) => r.status)).toEqual([202, 202]);
    await waitFor(
      () => events(EVERY),
      (list) => list.length === eventsBefore + 3,
    );
    const taken = await waitFor(
      () => describeSchedule('every'),
      (s) => s.actions.taken === before.actions.taken + 3,
    );
    const manual = taken.recentActions.slice(-3).map((a) => a.workflowId);
    expect(new Set(manual).size).toBe(3);
    await sleep(500);
    expect(await events(EVERY)).toHaveLength(eventsBefore + 3);

    const unpaused = await call('POST', `${schedules}/every/unpause`);
    expect(unpaused.body.state).toEqual({ paused: false, note: 'unpaused by scheduler' });
    const eventsPaused = (await events(EVERY)).length;
    // Once the run ends, the next action starts a new one.
    await finishRuns();
    const resumed = await waitFor(
      () => events(EVERY),
      (list) => list.some((e) => e.status === 'started' && e.runId !== firstRunId),
    );
    expect(resumed.length).toBeGreaterThan(eventsPaused);

    const deleted = await call('DELETE', `${schedules}/every`);
    expect(deleted.status).toBe(204);
    expect((await call('GET', `${schedules}/every`, undefined, 'reader')).status).toBe(404);
    await expect(platform.client.schedule.getHandle(EVERY).describe()).rejects.toThrow(ScheduleNotFoundError);
    expect((await call('DELETE', `${schedules}/every`)).status).toBe(404);
  });

  it('backfill takes every action of the range at once, each recorded as started or skipped', async () => {
    const created = await call('POST', schedules, {
      name: 'hourly',
      cron: '0 * * * *',
      paused: true,
      note: 'backfills only',
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ cron: '0 * * * *', state: { paused: true, note: 'backfills only' } });
    await finishRuns();

    const tooLong = await call('POST', `${schedules}/hourly/backfill`, {
      start: '2024-01-01T00:00:00Z',
      end: '2024-03-01T00:00:00Z',
    });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error.message).toContain('body.end: the range holds more than 1000 actions');
    const tooLongAtAll = await call('POST', `${schedules}/hourly/backfill`, {
      start: '2018-01-01T00:00:00Z',
      end: '2024-01-01T00:00:00Z',
    });
    expect(tooLongAtAll.status).toBe(400);
    expect(tooLongAtAll.body.error.message).toContain('body.end: at most 1830 days (five years) after start');
    const backwards = await call('POST', `${schedules}/hourly/backfill`, {
      start: '2024-01-02T00:00:00Z',
      end: '2024-01-01T00:00:00Z',
    });
    expect(backwards.status).toBe(400);
    expect(backwards.body.error.message).toContain('body.end: must be after start');

    // 00:30 to 05:30: the hours 01:00 to 05:00.
    const backfill = await call('POST', `${schedules}/hourly/backfill`, {
      start: '2024-01-01T00:30:00Z',
      end: '2024-01-01T05:30:00Z',
    });
    expect(backfill.status).toBe(202);
    expect(backfill.body).toEqual({ schedule: HOURLY, actions: 5 });
    const recorded = await waitFor(
      () => events(HOURLY),
      (list) => list.length >= 5,
    );
    await sleep(500);
    expect(await events(HOURLY)).toHaveLength(5);
    // All five ran at once (allow_all); the first to take the pipeline's lock started a run, the others found it.
    expect(recorded.filter((e) => e.status === 'started')).toHaveLength(1);
    expect(recorded.filter((e) => e.status === 'skipped')).toHaveLength(4);
    const runs = await platform.storage.pipelines.listRuns({ pipelineName: pipeline, limit: 500 });
    expect(runs.filter((r) => r.triggeredBy === HOURLY)).toHaveLength(1);
    // Each event carries its action's nominal time, the hour it was for, not when the backfill ran.
    expect(recorded.map((e) => e.details?.triggeredAt).sort()).toEqual(
      ['01', '02', '03', '04', '05'].map((h) => `2024-01-01T${h}:00:00.000Z`),
    );

    const described = await describeSchedule('hourly');
    expect(described.recentActions.map((a) => a.scheduledAt).sort()).toEqual(
      ['01', '02', '03', '04', '05'].map((h) => `2024-01-01T${h}:00:00.000Z`),
    );
    expect(described.recentActions.every((a) => a.trigger !== null)).toBe(true);
    expect(described.state.paused).toBe(true);

    // The same range again finds its earlier events: nothing new is recorded or started.
    const again = await call('POST', `${schedules}/hourly/backfill`, {
      start: '2024-01-01T00:30:00Z',
      end: '2024-01-01T05:30:00Z',
    });
    expect(again.status).toBe(202);
    await sleep(3000);
    expect(await events(HOURLY)).toHaveLength(5);

    // Four years of a schedule that acts once in them are one backfill: a range is limited by the actions it holds.
    await call('PATCH', `${schedules}/hourly`, { cron: '0 3 29 2 *' });
    const leap = await call('POST', `${schedules}/hourly/backfill`, {
      start: '2021-01-01T00:00:00Z',
      end: '2024-12-31T00:00:00Z',
    });
    expect(leap.status, JSON.stringify(leap.body)).toBe(202);
    expect(leap.body).toEqual({ schedule: HOURLY, actions: 1 });
    const leapEvents = await waitFor(
      () => events(HOURLY),
      (list) => list.length === 6,
    );
    expect(leapEvents[0]?.details?.triggeredAt).toBe('2024-02-29T03:00:00.000Z');
  });

  it('update changes some settings and keeps the others', async () => {
    const changed = await call('PATCH', `${schedules}/hourly`, {
      cron: '30 2 * * MON-FRI',
      timezone: 'Europe/Paris',
      version: 1,
    });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({
      cron: '30 2 * * MON-FRI',
      interval: null,
      timezone: 'Europe/Paris',
      version: 1,
      overlap: 'skip',
      state: { paused: true, note: 'backfills only' },
    });
    const inTemporal = await platform.client.schedule.getHandle(HOURLY).describe();
    expect(inTemporal.spec.timezone).toBe('Europe/Paris');
    expect(inTemporal.spec.calendars?.[0]?.comment).toBe('30 2 * * MON-FRI');
    expect(inTemporal.action).toMatchObject({
      workflowId: `trigger:${HOURLY}`,
      taskQueue: platform.taskQueue,
      args: [{ pipeline, version: 1, kind: 'schedule', source: HOURLY }],
    });

    const retimed = await call('PATCH', `${schedules}/hourly`, {
      interval: { everySeconds: 3600, offsetSeconds: 60 },
      overlap: 'buffer_one',
    });
    expect(retimed.body).toMatchObject({
      cron: null,
      interval: { everySeconds: 3600, offsetSeconds: 60 },
      timezone: 'Europe/Paris',
      overlap: 'buffer_one',
      version: 1,
    });
    const unpinned = await call('PATCH', `${schedules}/hourly`, { version: null });
    expect(unpinned.body.version).toBeNull();

    expect((await call('PATCH', `${schedules}/hourly`, { version: 99 })).status).toBe(404);
    const badCron = await call('PATCH', `${schedules}/hourly`, { cron: '* * *' });
    expect(badCron.status).toBe(400);
    expect(badCron.body.error.message).toContain('body.cron');
    const both = await call('PATCH', `${schedules}/hourly`, { cron: '* * * * *', interval: { everySeconds: 60 } });
    expect(both.status).toBe(400);

    // A backfill of an every-minute schedule over two days is more than one backfill may take.
    await call('PATCH', `${schedules}/hourly`, { cron: '* * * * *' });
    const tooMany = await call('POST', `${schedules}/hourly/backfill`, {
      start: '2024-01-01T00:00:00Z',
      end: '2024-01-03T00:00:00Z',
    });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.message).toContain('more than 1000 actions');

    expect((await call('DELETE', `${schedules}/hourly`)).status).toBe(204);
  });
});

describe("a pipeline's trigger lock", () => {
  it('waits a bounded time, then gives up with a retryable error', async () => {
    const triggers = platform.storage.triggers;
    const lockPipeline = `lock-${suffix}`;
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered = () => {};
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const holder = triggers.withPipelineLock(lockPipeline, async () => {
      entered();
      await held;
      return 'first';
    });
    await inside;

    const began = Date.now();
    const waiter = triggers.withPipelineLock(lockPipeline, async () => 'never', { timeoutMs: 600, pollMs: 20 });
    await expect(waiter).rejects.toBeInstanceOf(PipelineLockTimeoutError);
    await expect(waiter).rejects.toMatchObject({ kind: 'unavailable', retryable: true });
    expect(Date.now() - began).toBeGreaterThanOrEqual(550);
    expect(Date.now() - began).toBeLessThan(5000);
    // Another pipeline's lock is its own.
    expect(await triggers.withPipelineLock(`other-${suffix}`, async () => 'other')).toBe('other');

    // Once released, the next trigger takes it.
    const next = triggers.withPipelineLock(lockPipeline, async () => 'second', { timeoutMs: 5000, pollMs: 20 });
    release();
    expect(await holder).toBe('first');
    expect(await next).toBe('second');
  });
});
