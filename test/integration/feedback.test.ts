/**
 * Ground truth on the real stack (issue 16): `POST /v1/feedback` over the real stores, with registered versions
 * whose graphs (exported by the platform, in S3) record their classes, and prediction logs written directly. One
 * label and batches, idempotent repeats, conflicts (nothing of the call written), unknown ids reported, labels checked
 * against the answering version's classes or task, and the batch limit.
 */
import { randomUUID } from 'node:crypto';
import { inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The app first: it loads @hono/zod-openapi, which must extend zod before other schemas are built.
import { createApp } from '../../server/app.js';
import { exportOnnx } from '../../models/onnx/index.js';
import type { LabelTask } from '../../models/types.js';
import { predictionFeedback, predictionLogs, type DeploymentRole } from '../../schema/index.js';
import { openStorage, type PlatformStorage } from '../../storage/open-storage.js';
import { makeTransform, randomLinear } from '../unit/models/onnx-fixtures.js';
import { testLogger } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

let storage: PlatformStorage;
let app: ReturnType<typeof createApp>;
const suffix = randomUUID().slice(0, 8);

interface Registered {
  readonly model: string;
  readonly versionId: string;
  readonly version: number;
}
const versions: Partial<Record<LabelTask, Registered>> = {};

async function register(task: LabelTask, seed: number): Promise<Registered> {
  const transform = makeTransform(task);
  const graph = exportOnnx(randomLinear(task, transform, seed), transform);
  const ref = await storage.artifacts.put(Buffer.from(graph.bytes), {
    kind: 'model.onnx',
    contentType: 'application/octet-stream',
  });
  const model = `feedback-${task}-${suffix}`;
  const { version } = await storage.registry.registerVersion({
    modelName: model,
    onnxUri: ref.uri,
    sha256: ref.sha256,
    signature: graph.signature,
    metrics: {},
    params: { trainer: 'logistic_regression' },
    blessing: { blessed: true, reason: 'test', evaluatedAt: new Date().toISOString() },
    actor: 'test',
    reason: 'feedback test',
  });
  return { model, versionId: version.id, version: version.version };
}

const of = (task: LabelTask): Registered => versions[task]!;

/** Logs `instances` predictions of one request, as the API's log writer would. */
async function logPrediction(
  requestId: string,
  task: LabelTask,
  options: { role?: DeploymentRole; instances?: number; target?: Registered } = {},
): Promise<void> {
  const target = options.target ?? of(task);
  const outputs = task === 'regression' ? { prediction: 21.5 } : { label: 'x', probabilities: [0.3, 0.7] };
  await storage.database.db.insert(predictionLogs).values(
    Array.from({ length: options.instances ?? 1 }, () => ({
      requestId,
      loggedAt: new Date(),
      deployment: target.model,
      model: target.model,
      versionId: target.versionId,
      version: target.version,
      role: options.role ?? 'champion',
      features: { hour: 7 },
      outputs,
      latencyMs: 1.5,
    })),
  );
}

const newId = (): string => `fb-${randomUUID()}`;

/** An answer or an error, as JSON. */
interface FeedbackJson {
  readonly recorded?: number;
  readonly alreadyRecorded?: number;
  readonly unknown?: string[];
  readonly error: { code: string; message: string; details: { location: string; path: string; problem: string }[] };
}

async function send(body: unknown): Promise<{ status: number; json: FeedbackJson }> {
  const res = await app.request('/v1/feedback', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as FeedbackJson };
}

async function stored(ids: readonly string[]): Promise<Record<string, unknown>> {
  const labels = await storage.feedback.labels(ids);
  return Object.fromEntries(labels);
}

beforeAll(async () => {
  storage = openStorage(testEndpoints(), { logger: testLogger, applicationName: 'feedback-test', poolSize: 4 });
  await storage.artifacts.ensureBucket();
  app = createApp({
    logger: testLogger,
    readiness: [],
    version: 'test',
    // The API's default: a full batch of the longest request ids must still fit (the feedback route's own limit).
    bodyLimitBytes: 1_048_576,
    auth: { kind: 'open' },
    stores: storage,
  });
  versions.binary = await register('binary', 7);
  versions.multiclass = await register('multiclass', 8);
  versions.regression = await register('regression', 9);
});

afterAll(async () => {
  await storage?.close();
});

describe('POST /v1/feedback', () => {
  it('records one label, then answers the same label again as already recorded', async () => {
    const id = newId();
    await logPrediction(id, 'binary');
    const first = await send({ requestId: id, label: true });
    expect(first).toEqual({ status: 200, json: { recorded: 1, alreadyRecorded: 0, unknown: [] } });
    const again = await send({ requestId: id, label: true });
    expect(again).toEqual({ status: 200, json: { recorded: 0, alreadyRecorded: 1, unknown: [] } });
    // The class's text form is the same label, stored as the class itself.
    expect((await send({ requestId: id, label: 'true' })).json).toMatchObject({ alreadyRecorded: 1 });
    expect(await stored([id])).toEqual({ [id]: true });
    const [row] = await storage.database.db
      .select()
      .from(predictionFeedback)
      .where(inArray(predictionFeedback.requestId, [id]));
    expect(row).toMatchObject({ actor: 'anonymous', label: true });
  });

  it('refuses another label for a recorded request id (409 naming the field), changing nothing', async () => {
    const id = newId();
    await logPrediction(id, 'binary');
    await send({ requestId: id, label: false });
    const refused = await send({ requestId: id, label: true });
    expect(refused.status).toBe(409);
    expect(refused.json.error.code).toBe('feedback_label_conflict');
    expect(refused.json.error.message).toContain('label');
    expect(refused.json.error.details[0]).toMatchObject({ path: 'label' });
    expect(await stored([id])).toEqual({ [id]: false });
  });

  it('records a batch, counting distinct request ids, and reports unknown ones without storing them', async () => {
    const known = [newId(), newId(), newId()];
    for (const id of known) await logPrediction(id, 'multiclass', { instances: 2 });
    const unknown = [newId(), newId()];
    const answer = await send({
      items: [
        { requestId: known[0], label: 'late' },
        { requestId: unknown[0], label: 'late' },
        { requestId: known[1], label: 'early' },
        { requestId: known[0], label: 'late' },
        { requestId: known[2], label: 'on-time' },
        { requestId: unknown[1], label: 'early' },
      ],
    });
    expect(answer).toEqual({ status: 200, json: { recorded: 3, alreadyRecorded: 0, unknown } });
    expect(await stored([...known, ...unknown])).toEqual({
      [known[0]!]: 'late',
      [known[1]!]: 'early',
      [known[2]!]: 'on-time',
    });
    // Once the unknown ones are logged (the log writer caught up), sending the batch again records just them.
    for (const id of unknown) await logPrediction(id, 'multiclass');
    const retried = await send({
      items: [
        ...known.map((id, i) => ({ requestId: id, label: ['late', 'early', 'on-time'][i] })),
        { requestId: unknown[0], label: 'late' },
        { requestId: unknown[1], label: 'early' },
      ],
    });
    expect(retried.json).toEqual({ recorded: 2, alreadyRecorded: 3, unknown: [] });
  });

  it('refuses a request id given two labels in one batch (409 naming the later item), storing nothing', async () => {
    const ids = [newId(), newId()];
    for (const id of ids) await logPrediction(id, 'binary');
    const refused = await send({
      items: [
        { requestId: ids[0], label: true },
        { requestId: ids[1], label: false },
        { requestId: ids[0], label: false },
      ],
    });
    expect(refused.status).toBe(409);
    expect(refused.json.error.details).toEqual([expect.objectContaining({ location: 'body', path: 'items[2].label' })]);
    expect(refused.json.error.message).toContain('items[2].label');
    expect(await stored(ids)).toEqual({});
  });

  it('writes nothing of a batch when one item conflicts with a stored label', async () => {
    const [old, fresh] = [newId(), newId()];
    await logPrediction(old, 'regression');
    await logPrediction(fresh, 'regression');
    await send({ requestId: old, label: 12.5 });
    const refused = await send({
      items: [
        { requestId: fresh, label: 3 },
        { requestId: old, label: 13 },
      ],
    });
    expect(refused.status).toBe(409);
    expect(refused.json.error.details[0]).toMatchObject({ path: 'items[1].label' });
    expect(refused.json.error.details[0]?.problem).toContain('12.5');
    expect(await stored([old, fresh])).toEqual({ [old]: 12.5 });
  });

  it("checks a classifier's labels against its classes, naming the field, and stores nothing of the batch", async () => {
    const ids = [newId(), newId()];
    for (const id of ids) await logPrediction(id, 'multiclass');
    const refused = await send({
      items: [
        { requestId: ids[0], label: 'late' },
        { requestId: ids[1], label: 'very-late' },
      ],
    });
    expect(refused.status).toBe(400);
    expect(refused.json.error.code).toBe('invalid_request');
    expect(refused.json.error.message).toContain('items[1].label');
    expect(refused.json.error.details[0]?.problem).toContain('"early", "late", "on-time"');
    expect(await stored(ids)).toEqual({});

    // Booleans: a number is not the class `true` (only its text form is).
    const binary = newId();
    await logPrediction(binary, 'binary');
    const wrong = await send({ items: [{ requestId: binary, label: 1 }] });
    expect(wrong.status).toBe(400);
    expect(wrong.json.error.details[0]).toMatchObject({ path: 'items[0].label' });
  });

  it("takes a regressor's label as a number only", async () => {
    const id = newId();
    await logPrediction(id, 'regression');
    for (const label of ['3.5', true]) {
      const refused = await send({ items: [{ requestId: id, label }] });
      expect(refused.status, String(label)).toBe(400);
      expect(refused.json.error.details[0]).toMatchObject({ path: 'items[0].label' });
      expect(refused.json.error.details[0]?.problem).toContain('a regression target is a number');
    }
    expect((await send({ items: [{ requestId: id, label: -0.25 }] })).json).toMatchObject({ recorded: 1 });
    expect(await stored([id])).toEqual({ [id]: -0.25 });
  });

  it('refuses labels of the wrong JSON type and malformed bodies with a 400 naming the field', async () => {
    const id = newId();
    await logPrediction(id, 'binary');
    const cases: [unknown, string][] = [
      [
        {
          items: [
            { requestId: id, label: true },
            { requestId: id, label: true },
            { requestId: id, label: null },
          ],
        },
        'items[2].label',
      ],
      [{ items: [{ requestId: id, label: { class: true } }] }, 'items[0].label'],
      [{ items: [{ requestId: id, label: [true] }] }, 'items[0].label'],
      [{ items: [{ requestId: id, label: '' }] }, 'items[0].label'],
      [{ items: [{ requestId: 'not an id!', label: true }] }, 'items[0].requestId'],
      [{ items: [{ requestId: id }] }, 'items[0].label'],
      [{ requestId: id }, 'label'],
      [{ label: true }, 'requestId'],
      [{ requestId: id, label: true, items: [{ requestId: id, label: true }] }, 'items'],
      [{ items: [] }, 'items'],
    ];
    for (const [body, field] of cases) {
      const refused = await send(body);
      expect(refused.status, JSON.stringify(body)).toBe(400);
      expect(refused.json.error.message, JSON.stringify(body)).toContain(`body.${field}`);
    }
    expect(await stored([id])).toEqual({});
  });

  it('validates against the version that answered, not its shadow; a deleted version by its logged outputs', async () => {
    const id = newId();
    await logPrediction(id, 'binary');
    await logPrediction(id, 'regression', { role: 'shadow' });
    expect((await send({ requestId: id, label: 'false' })).json).toMatchObject({ recorded: 1 });
    expect(await stored([id])).toEqual({ [id]: false });

    const gone = newId();
    const deleted = { model: `deleted-${suffix}`, versionId: randomUUID(), version: 3 };
    await logPrediction(gone, 'regression', { target: deleted });
    expect((await send({ requestId: gone, label: 'high' })).status).toBe(400);
    expect((await send({ requestId: gone, label: 4 })).json).toMatchObject({ recorded: 1 });
  });

  it('records 10,000 labels in one call, idempotently, and refuses 10,001 naming items', async () => {
    const ids = Array.from({ length: 10_000 }, newId);
    // Ten parameters a row: in parts, under Postgres's 65,535 per statement.
    for (let i = 0; i < ids.length; i += 5_000) {
      await storage.database.db.insert(predictionLogs).values(
        ids.slice(i, i + 5_000).map((requestId) => ({
          requestId,
          loggedAt: new Date(),
          deployment: of('binary').model,
          model: of('binary').model,
          versionId: of('binary').versionId,
          version: of('binary').version,
          role: 'champion' as const,
          features: { hour: 7 },
          outputs: { label: true, probabilities: [0.2, 0.8] },
          latencyMs: 1,
        })),
      );
    }
    const items = ids.map((requestId, i) => ({ requestId, label: i % 2 === 0 }));
    const started = performance.now();
    const first = await send({ items });
    const ms = performance.now() - started;
    console.info(`feedback: 10,000 labels recorded in ${ms.toFixed(0)} ms`);
    expect(first).toEqual({ status: 200, json: { recorded: 10_000, alreadyRecorded: 0, unknown: [] } });
    expect((await send({ items })).json).toEqual({ recorded: 0, alreadyRecorded: 10_000, unknown: [] });

    // 10,000 ids of the longest accepted length (128 characters): about 1.6 MB, above the general 1 MiB limit.
    const long = Array.from({ length: 10_000 }, (_, i) => ({
      requestId: `${'r'.repeat(120)}-${String(i).padStart(7, '0')}`,
      label: true,
    }));
    expect(JSON.stringify({ items: long }).length).toBeGreaterThan(1_048_576);
    const longAnswer = await send({ items: long });
    expect(longAnswer.status).toBe(200);
    expect(longAnswer.json.unknown).toHaveLength(10_000);

    const tooMany = await send({ items: [...items, { requestId: newId(), label: true }] });
    expect(tooMany.status).toBe(400);
    expect(tooMany.json.error.message).toContain('body.items');
    expect(tooMany.json.error.message).toContain('10000');
  });
});
