import { randomUUID } from 'node:crypto';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withFailureContract } from '../../activities/failure-contract.js';
import { createNewDataActivities, POLL_PAGES, type PollNewObjectsResult } from '../../activities/new-data.js';
import { createTriggerActivities } from '../../activities/triggers.js';
import { createDataAccessPolicy } from '../../data/access-policy.js';
import { pipelineDefinitionSchema } from '../../pipelines/definition.js';
import { signalNewData, watchOfStored } from '../../pipelines/new-data.js';
import { deletePollSchedule, syncPollSchedule } from '../../pipelines/poll-schedules.js';
import type { PipelineTrigger } from '../../schema/index.js';
import { createApp } from '../../server/app.js';
import { TriggerStore } from '../../storage/trigger-store.js';
import { pollWatchedPrefix, pollScheduleId } from '../../workflows/index.js';
import { fixedKeys } from '../support/auth.js';
import { connectTestPlatform, testLogger, type TestPlatform } from '../support/platform.js';
import { syntheticCsv, syntheticDefinition } from '../support/pipelines.js';
import { testEndpoints } from '../support/stack.js';

// New data in a watched prefix starts runs through the trigger path: the S3 webhook and the polling fallback record
// each object (key + ETag) once, and the settle workflow turns a burst into one trigger. The runs it starts go to a
// task queue no worker polls, so they stay in progress until the test ends them: a trigger that finds one is skipped.

const suffix = randomUUID().slice(0, 8);
const bucket = `new-data-${suffix}`;
const pipeline = `new-data-${suffix}`;
const polled = `new-data-poll-${suffix}`;
const orphaned = `new-data-orphan-${suffix}`;
const paged = `new-data-paged-${suffix}`;
const idleQueue = `new-data-idle-${suffix}`;
const keys = fixedKeys({ lander: ['trigger'], reader: ['read'] });

let platform: TestPlatform;
let worker: Worker;
let running: Promise<void>;
let triggers: TriggerStore;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints(), bucket);
  triggers = TriggerStore.over(platform.storage.database.pool);
  for (const [name, prefix, settleSeconds] of [
    [pipeline, 'landing', 3],
    [polled, 'polled', 1],
    [orphaned, 'orphaned', 1],
    [paged, 'paged', 1],
  ] as const) {
    const newData = { settleSeconds, pollEverySeconds: 5 };
    const definition = syntheticDefinition(name, `s3://${bucket}/${prefix}/*.csv`, { triggers: { newData } });
    await platform.storage.pipelines.saveDefinition(pipelineDefinitionSchema.parse(definition), 'test');
  }
  // The real activities, but the runs that triggers start go to a queue nobody polls: they stay "running".
  const idle = withFailureContract(
    createTriggerActivities({
      ...platform.activityDeps,
      temporal: { ...platform.activityDeps.temporal!, taskQueue: idleQueue },
    }),
  );
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
    sources: { policy: createDataAccessPolicy({ roots: [], buckets: [bucket] }), objects: platform.storage.objects },
  });
});

afterAll(async () => {
  if (platform) {
    await deletePollSchedule(platform.client, polled).catch(() => undefined);
    for (const name of [pipeline, polled, orphaned, paged]) {
      for (const run of await platform.storage.pipelines.listRuns({ pipelineName: name })) await finish(run.workflowId);
    }
  }
  worker?.shutdown();
  await running;
  await platform?.close();
});

/** Ends a run that waits on the idle queue, as if it had been cancelled. */
async function finish(workflowId: string): Promise<void> {
  await platform.client.workflow
    .getHandle(workflowId)
    .terminate('test over')
    .catch(() => undefined);
  await platform.storage.pipelines.setRunStatus(workflowId, 'cancelled');
}

async function put(key: string): Promise<string> {
  const body = Buffer.from(syntheticCsv());
  const { etag } = await platform.artifacts.client.putObject(bucket, key, body, body.length);
  return etag;
}

/** A record of a notification, as MinIO writes it: the key URL-encoded. */
function notificationRecord(key: string, etag: string | undefined, eventName = 's3:ObjectCreated:Put') {
  return {
    eventVersion: '2.0',
    eventSource: 'minio:s3',
    eventName,
    eventTime: new Date().toISOString(),
    s3: {
      s3SchemaVersion: '1.0',
      bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` },
      object: {
        key: encodeURIComponent(key).replace(/%20/g, '+').replace(/%2F/g, '/'),
        ...(etag ? { eTag: etag, size: 1234, contentType: 'text/csv' } : {}),
      },
    },
  };
}

/** A notification as MinIO's webhook target posts it: one record. */
function notification(key: string, etag: string | undefined, eventName = 's3:ObjectCreated:Put') {
  return { EventName: eventName, Key: `${bucket}/${key}`, Records: [notificationRecord(key, etag, eventName)] };
}

async function notify(body: unknown, headers: Record<string, string> = keys.as('lander')) {
  return app.request('/v1/events/s3', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

async function triggersOf(name: string): Promise<PipelineTrigger[]> {
  return (await triggers.list(name)).reverse();
}

async function waitForTriggers(name: string, count: number, timeoutMs = 20_000): Promise<PipelineTrigger[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await triggersOf(name);
    if (rows.length >= count || Date.now() > deadline) return rows;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits until the pipeline's settle workflow has nothing left to do (no execution running). */
async function settled(name: string): Promise<void> {
  const handle = platform.client.workflow.getHandle(`new-data:${name}`);
  await handle.result().catch(() => undefined);
}

describe('new-data triggers', () => {
  it('refuses a notification without a trigger-scoped key', async () => {
    const anonymous = await notify(notification('landing/x.csv', 'e'), {});
    expect(anonymous.status).toBe(401);
    expect((await notify(notification('landing/x.csv', 'e'), keys.as('reader'))).status).toBe(403);
  });

  it('starts exactly one run for a new object, however many notifications and polls see it', async () => {
    const key = 'landing/2001 04.csv';
    const etag = await put(key);
    const sent = Date.now();
    const answers = await Promise.all([1, 2, 3].map(() => notify(notification(key, etag))));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202]);
    const bodies = (await Promise.all(answers.map((a) => a.json()))) as {
      objects: { key: string; pipelines: string[] }[];
      pipelines: { added: number }[];
    }[];
    expect(bodies[0]?.objects).toEqual([expect.objectContaining({ key, pipelines: [pipeline] })]);
    // Recorded once: exactly one of the three notifications added it.
    expect(bodies.map((b) => b.pipelines[0]?.added ?? 0).reduce((a, b) => a + b, 0)).toBe(1);

    const [trigger] = await waitForTriggers(pipeline, 1);
    // A figure, not an assertion (a loaded machine makes it vary): the measured figures live in bench/.
    const latencyMs = trigger!.createdAt.getTime() - sent;
    testLogger.info({ latencyMs }, 'notification to run started');
    console.log(`new object -> run started (notification, settleSeconds 3): ${latencyMs} ms`);
    expect(trigger).toMatchObject({ kind: 'new_data', status: 'started', source: `s3://${bucket}/landing/` });
    expect(trigger?.details).toMatchObject({ objects: 1, firstKeys: [key] });

    // A poll lists the same object: already recorded and claimed, so nothing more happens.
    const poll = await platform.client.workflow.execute(pollWatchedPrefix, {
      workflowId: `poll-test-${randomUUID()}`,
      taskQueue: platform.taskQueue,
      args: [{ pipeline }],
    });
    expect(poll).toMatchObject({ listed: 1, added: 0, unclaimed: 0, signalled: false });
    await settled(pipeline);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await triggersOf(pipeline)).toHaveLength(1);
    const runs = await platform.storage.pipelines.listRuns({ pipelineName: pipeline });
    expect(runs.map((r) => r.id)).toEqual([trigger!.runId]);
    expect(runs[0]).toMatchObject({ trigger: 'new_data', triggeredBy: `s3://${bucket}/landing/` });
    const watched = await platform.storage.watchedObjects.list(pipeline);
    expect(watched).toEqual([expect.objectContaining({ key, etag, seenBy: 'notification', triggerId: trigger!.id })]);
  });

  it('ignores removals and objects outside the watched prefix', async () => {
    const etag = await put('elsewhere/a.csv');
    const outside = (await (await notify(notification('elsewhere/a.csv', etag))).json()) as {
      objects: { ignored?: string }[];
      pipelines: unknown[];
    };
    expect(outside).toEqual({
      objects: [expect.objectContaining({ ignored: 'no pipeline watches it' })],
      pipelines: [],
    });
    const removal = (await (
      await notify(notification('landing/2001 04.csv', undefined, 's3:ObjectRemoved:Delete'))
    ).json()) as { objects: { ignored?: string }[]; pipelines: unknown[] };
    expect(removal.pipelines).toEqual([]);
    expect(removal.objects[0]?.ignored).toBe('s3:ObjectRemoved:Delete is not an object creation');
    const marker = await put('landing/_SUCCESS');
    expect((await (await notify(notification('landing/_SUCCESS', marker))).json()) as unknown).toMatchObject({
      pipelines: [],
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await triggersOf(pipeline)).toHaveLength(1);
    expect(await platform.storage.watchedObjects.list(pipeline)).toHaveLength(1);
  });

  it('starts one run for a burst within the settle window, and skips, with why, while that run is in progress', async () => {
    for (const run of await platform.storage.pipelines.listRuns({ pipelineName: pipeline }))
      await finish(run.workflowId);
    // The objects land first, then their notifications arrive together, well within the settle window (3 s).
    const burst = ['landing/b1.csv', 'landing/b2.csv', 'landing/b3.csv'];
    const etags = await Promise.all(burst.map((key) => put(key)));
    const answers = await Promise.all(burst.map((key, i) => notify(notification(key, etags[i]))));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202]);
    const rows = await waitForTriggers(pipeline, 2);
    expect(rows).toHaveLength(2);
    expect(rows[1]).toMatchObject({ status: 'started', details: { objects: 3, firstKeys: burst } });
    await settled(pipeline);
    expect(await triggersOf(pipeline)).toHaveLength(2);

    // The burst's run is still in progress: the next object is recorded as skipped, with the run it found.
    const later = 'landing/c1.csv';
    const etagLater = await put(later);
    const sent = Date.now();
    await notify(notification(later, etagLater));
    const after = await waitForTriggers(pipeline, 3);
    console.log(`new object -> trigger recorded (warm, settleSeconds 3): ${after[2]!.createdAt.getTime() - sent} ms`);
    expect(after[2]).toMatchObject({
      status: 'skipped',
      runId: null,
      details: { objects: 1, runInProgress: rows[1]!.runId },
    });
    expect(after[2]?.reason).toContain('do not overlap');
    expect(await platform.storage.pipelines.listRuns({ pipelineName: pipeline })).toHaveLength(2);

    // Once it is over, a new object (seen by a poll only this time) starts another run.
    await finish((await platform.storage.pipelines.getRun(rows[1]!.runId!))!.workflowId);
    const polledKey = 'landing/d1.csv';
    const etag = await put(polledKey);
    const poll = await platform.client.workflow.execute(pollWatchedPrefix, {
      workflowId: `poll-test-${randomUUID()}`,
      taskQueue: platform.taskQueue,
      args: [{ pipeline }],
    });
    expect(poll).toMatchObject({ added: 1, unclaimed: 1, signalled: true });
    const last = await waitForTriggers(pipeline, 4);
    expect(last[3]).toMatchObject({ status: 'started', details: { objects: 1, firstKeys: [polledKey] } });
    await settled(pipeline);
    expect(await platform.storage.watchedObjects.list(pipeline)).toContainEqual(
      expect.objectContaining({ key: polledKey, etag, seenBy: 'poll', triggerId: last[3]!.id }),
    );
  });

  it('claims a set once: a retried claim returns the same objects, however many arrived since', async () => {
    const store = platform.storage.watchedObjects;
    const name = `claims-${suffix}`;
    const first = await store.recordObjects(name, [{ key: 'k1', etag: 'e1' }], 'poll');
    expect(first).toEqual({ added: [{ key: 'k1', etag: 'e1' }], unclaimed: 1 });
    expect(await store.recordObjects(name, [{ key: 'k1', etag: 'e1' }], 'notification')).toEqual({
      added: [],
      unclaimed: 1,
    });
    const claimId = randomUUID();
    expect(await store.claim(name, claimId)).toEqual([{ key: 'k1', etag: 'e1' }]);
    // The same key with a new ETag is a new object.
    await store.recordObjects(name, [{ key: 'k1', etag: 'e2', size: 5 }], 'notification');
    expect(await store.claim(name, claimId)).toEqual([{ key: 'k1', etag: 'e1' }]);
    // Claimed, but no trigger recorded for the claim yet: still waiting (a dead cycle's claim is adopted later).
    expect(await store.recordObjects(name, [{ key: 'k1', etag: 'e1' }], 'poll')).toEqual({ added: [], unclaimed: 1 });
    expect(await store.orphanClaims(name)).toEqual([{ claimId, objects: [{ key: 'k1', etag: 'e1' }] }]);
    const next = randomUUID();
    expect(await store.claim(name, next)).toEqual([{ key: 'k1', etag: 'e2', size: 5 }]);
    const triggerId = randomUUID();
    expect(await store.link(name, claimId, triggerId)).toBe(1);
    expect(await store.link(name, claimId, triggerId)).toBe(0);
    expect((await store.list(name)).map((o) => [o.etag, o.seenBy, o.triggerId])).toEqual([
      ['e1', 'poll', triggerId],
      ['e2', 'notification', next],
    ]);
  });

  it('polls on a Temporal Schedule: a new object starts a run within one poll interval', async () => {
    const change = await syncPollSchedule(
      { client: platform.client, taskQueue: platform.taskQueue, pipelines: platform.storage.pipelines },
      polled,
    );
    expect(change).toBe('created');
    const described = await platform.client.schedule.getHandle(pollScheduleId(polled)).describe();
    expect(described.spec.intervals?.[0]?.every).toBe(5000);
    const landed = Date.now();
    await put('polled/p1.csv');
    const [trigger] = await waitForTriggers(polled, 1, 20_000);
    expect(trigger).toMatchObject({ status: 'started', details: { objects: 1 } });
    const latencyMs = trigger!.createdAt.getTime() - landed;
    console.log(`new object -> run started (poll every 5 s, settleSeconds 1): ${latencyMs} ms`);
    // Saving a definition through the API brings the schedule in line with it.
    const definition = syntheticDefinition(polled, `s3://${bucket}/polled/*.csv`, {
      triggers: { newData: { settleSeconds: 1, pollEverySeconds: 7 } },
    });
    const saved = await app.request(`/v1/pipelines/${polled}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', ...keys.as('lander') },
      body: JSON.stringify(definition),
    });
    expect(saved.status, await saved.clone().text()).toBe(201);
    const updated = await platform.client.schedule.getHandle(pollScheduleId(polled)).describe();
    expect(updated.spec.intervals?.[0]?.every).toBe(7000);
  });
  it('fires the trigger of a claim whose cycle died before firing it, once, under the same set', async () => {
    const store = platform.storage.watchedObjects;
    const key = 'orphaned/o1.csv';
    const etag = await put(key);
    // A settle cycle that claimed the object and died (terminated, an activity failed for good) before its trigger.
    await store.recordObjects(orphaned, [{ key, etag }], 'notification');
    const claimId = randomUUID();
    expect(await store.claim(orphaned, claimId)).toEqual([{ key, etag }]);
    expect(await triggersOf(orphaned)).toEqual([]);
    // The next sight of the object (here a notification) finds it waiting for a trigger and signals.
    const answer = (await (await notify(notification(key, etag))).json()) as { pipelines: unknown[] };
    expect(answer.pipelines).toEqual([{ pipeline: orphaned, added: 0, unclaimed: 1, signalled: true }]);
    const [trigger] = await waitForTriggers(orphaned, 1);
    expect(trigger).toMatchObject({
      status: 'started',
      details: { objects: 1, firstKeys: [key], claimId, adopted: true },
    });
    await settled(orphaned);
    expect(await triggersOf(orphaned)).toHaveLength(1);
    expect(await store.list(orphaned)).toEqual([expect.objectContaining({ key, etag, triggerId: trigger!.id })]);
    expect(await store.orphanClaims(orphaned)).toEqual([]);
  });

  it('records a set whose pipeline does not exist as skipped, with why, instead of retrying for ever', async () => {
    const ghost = `new-data-ghost-${suffix}`;
    const store = platform.storage.watchedObjects;
    await store.recordObjects(ghost, [{ key: 'ghost/g1.csv', etag: 'g' }], 'poll');
    const watch = watchOfStored(
      syntheticDefinition(ghost, `s3://${bucket}/ghost/*.csv`, { triggers: { newData: { settleSeconds: 1 } } }),
    );
    await signalNewData({ client: platform.client, taskQueue: platform.taskQueue }, watch!, 1);
    await settled(ghost);
    const [trigger] = await triggersOf(ghost);
    expect(trigger).toMatchObject({ status: 'skipped', runId: null, details: { objects: 1, failureType: 'NotFound' } });
    expect(trigger?.reason).toContain(`pipeline ${ghost} does not exist`);
    expect(await store.list(ghost)).toEqual([expect.objectContaining({ triggerId: trigger!.id })]);
  });

  it('lists a prefix longer than one poll over several polls, each resuming where the last stopped', async () => {
    const maxFiles = 2;
    const total = maxFiles * POLL_PAGES + 3;
    const landed = Array.from({ length: total }, (_, i) => `paged/f${String(i).padStart(3, '0')}.csv`);
    await Promise.all(landed.map((key) => put(key)));
    const activities = createNewDataActivities({
      ...platform.activityDeps,
      dataAccess: {
        ...platform.activityDeps.dataAccess,
        policy: createDataAccessPolicy({ roots: [], buckets: [bucket], maxFiles }),
      },
    });
    const poll = (startAfter?: string) =>
      new MockActivityEnvironment().run(activities.pollNewObjects, {
        pipeline: paged,
        ...(startAfter !== undefined ? { startAfter } : {}),
      }) as Promise<PollNewObjectsResult>;
    const first = await poll();
    expect(first).toMatchObject({
      listed: maxFiles * POLL_PAGES,
      truncated: true,
      nextStartAfter: landed[maxFiles * POLL_PAGES - 1],
      added: maxFiles * POLL_PAGES,
    });
    const second = await poll(first.nextStartAfter);
    expect(second).toMatchObject({ listed: 3, truncated: false, added: 3, startAfter: first.nextStartAfter });
    expect(second.nextStartAfter).toBeUndefined();
    expect((await platform.storage.watchedObjects.list(paged)).map((o) => o.key)).toEqual(landed);
    await settled(paged);
  });
});
