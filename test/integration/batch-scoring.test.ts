/**
 * Batch scoring on the real stack: a model trained and deployed by the pipeline scores a Parquet prefix in S3
 * through the API; the output Parquet holds every row with the same predictions online serving gives; a missing
 * model input, bad requests and unknown jobs are refused with what is wrong.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ScoreDatasetInput } from '../../activities/index.js';
import { DataEngine, sqlString } from '../../data/engine.js';
import { startPipelineRun, type PipelineRunnerDeps } from '../../pipelines/runs.js';
import { createApp } from '../../server/app.js';
import { createServing, type Serving } from '../../serving/index.js';
import { batchScore, type BatchScoreResult, type TrainingPipelineResult } from '../../workflows/index.js';
import { testLogger, type TestPlatform } from '../support/platform.js';
import { syntheticDefinition } from '../support/pipelines.js';
import { startTestPlatform, type RunningTestPlatform } from '../support/running-platform.js';

const name = `batch-${randomUUID().slice(0, 8)}`;
const inputBucket = `batch-in-${randomUUID().slice(0, 8)}`;
const ROWS_PER_FILE = 60_000;

let platform: TestPlatform;
let runner: PipelineRunnerDeps;
let started: RunningTestPlatform | undefined;
let serving: Serving;
let app: ReturnType<typeof createApp>;
let dir: string;
let engine: DataEngine;
let deployed: TrainingPipelineResult;
let openGate: () => void = () => undefined;
const gate = new Promise<void>((resolve) => {
  openGate = resolve;
});

/** Scoring rows: ids in file order, x with missing values, kind with an unseen value and missing ones, a note. */
async function writeInput(file: string, first: number, count: number, columns = 'id, x, kind, note'): Promise<void> {
  await engine.run(
    `COPY (SELECT ${columns} FROM (
       SELECT ${first} + i AS id,
              CASE WHEN i % 17 = 0 THEN NULL ELSE (i * 7 % 97)::DOUBLE END AS x,
              ['k0', 'k1', 'k2', 'unseen', NULL][i % 5 + 1] AS kind,
              'row ' || (${first} + i) AS note
       FROM range(${count}) t(i))) TO ${sqlString(file)} (FORMAT parquet)`,
  );
}

beforeAll(async () => {
  // Jobs on an input named `gated` heartbeat a known progress, then wait for the test before scoring.
  started = await startTestPlatform({
    wrapMain: (activities) => ({
      ...activities,
      scoreDataset: async (input: ScoreDatasetInput) => {
        if (input.input.includes('gated')) {
          Context.current().heartbeat({ phase: 'scoring', rows: 12, total: 34 });
          await gate;
        }
        return activities.scoreDataset(input);
      },
    }),
  });
  ({ platform, runner } = started);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batch-scoring-'));
  engine = await DataEngine.open({ workDir: dir, threads: 1 });

  // Train and deploy: y is 1 when x (plus 15 for kind k0) is above 50.
  const csv = path.join(dir, 'train.csv');
  const rows = Array.from({ length: 600 }, (_, i) => {
    const x = i % 97;
    const kind = `k${i % 3}`;
    return `${x},${kind},${x + (kind === 'k0' ? 15 : 0) > 50 ? 1 : 0}`;
  });
  fs.writeFileSync(csv, ['x,kind,y', ...rows].join('\n'));
  await platform.storage.pipelines.saveDefinition(syntheticDefinition(name, csv), 'test');
  const { run } = await startPipelineRun(runner, { pipeline: name, trigger: 'manual', triggeredBy: 'test' });
  deployed = (await platform.client.workflow.getHandle(run.workflowId).result()) as TrainingPipelineResult;
  expect(deployed.outcome).toBe('deployed');

  // Two Parquet files under one prefix of a bucket of their own (not the artifact store's).
  const s3 = platform.artifacts.client;
  await s3.makeBucket(inputBucket);
  for (const part of [0, 1]) {
    const file = path.join(dir, `part-${part}.parquet`);
    await writeInput(file, part * ROWS_PER_FILE, ROWS_PER_FILE);
    await s3.fPutObject(inputBucket, `scoring/day=1/part-${part}.parquet`, file);
  }

  serving = createServing({
    registry: platform.storage.registry,
    deployments: platform.storage.deployments,
    artifacts: platform.storage.artifacts,
    logger: testLogger,
    options: { defaultMetrics: false, listen: false, pollIntervalMs: 600_000 },
  });
  await serving.pool.start();
  app = createApp({
    logger: testLogger,
    readiness: [],
    auth: { kind: 'open' },
    version: 'test',
    bodyLimitBytes: 1_048_576,
    stores: platform.storage,
    runner,
    serving: { ...serving, maxInstances: 1000 },
    temporalUiUrl: 'http://temporal-ui.test:8233',
  });
}, 240_000);

afterAll(async () => {
  await serving?.pool.close();
  await started?.stop();
  engine?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface JobBody {
  id: string;
  status: string;
  finishedAt: string | null;
  model: { name: string; version: number; versionId: string } | null;
  input: string | null;
  progress?: { phase: string; rows: number; total?: number; attempt: number };
  result?: {
    output: string;
    sha256: string;
    bytes: number;
    rows: number;
    columns: string[];
    seconds: number;
    rowsPerSecond: number;
  };
  failure?: { type: string; message: string };
  links: { self: string; temporalUi?: string };
  error?: { code: string; message: string; details?: { path: string }[] };
}

async function post(body: unknown, model = name): Promise<{ status: number; body: JobBody; location: string | null }> {
  const response = await app.request(`http://api.test/v1/models/${model}/batch-predictions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    body: (await response.json()) as JobBody,
    location: response.headers.get('location'),
  };
}

async function get(id: string): Promise<{ status: number; body: JobBody }> {
  const response = await app.request(`http://api.test/v1/batch-predictions/${id}`);
  return { status: response.status, body: (await response.json()) as JobBody };
}

/** Polls the job until it is no longer running; returns its last answer and every progress seen on the way. */
async function finished(id: string, timeoutMs = 90_000): Promise<{ job: JobBody; progress: JobBody['progress'][] }> {
  const deadline = Date.now() + timeoutMs;
  const progress: JobBody['progress'][] = [];
  while (Date.now() < deadline) {
    const { status, body } = await get(id);
    expect(status).toBe(200);
    if (body.status !== 'running') return { job: body, progress };
    if (body.progress) progress.push(body.progress);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`batch prediction ${id} did not finish in ${timeoutMs} ms`);
}

describe('batch scoring', () => {
  it('scores a Parquet prefix in S3 through the API, with the predictions online serving gives', async () => {
    const input = `s3://${inputBucket}/scoring/day=1/`;
    const started = await post({ input, passthrough: ['id', 'kind', 'x'] });
    expect(started.status).toBe(202);
    const model = { name, version: deployed.model.version, versionId: deployed.model.versionId };
    expect(started.body).toMatchObject({ status: 'running', model, input });
    expect(started.body.id).toMatch(new RegExp(`^batch-score-${name}-`));
    expect(started.location).toBe(`/v1/batch-predictions/${started.body.id}`);
    expect(started.body.links.temporalUi).toContain(encodeURIComponent(started.body.id));

    const { job, progress } = await finished(started.body.id);
    expect(job.failure).toBeUndefined();
    expect(job).toMatchObject({ status: 'completed', model, input });
    expect(job.result).toMatchObject({
      rows: 2 * ROWS_PER_FILE,
      columns: ['id', 'kind', 'x', 'prediction', 'probabilities'],
    });
    for (const p of progress) expect(p).toMatchObject({ phase: expect.any(String), rows: expect.any(Number) });
    console.log(
      `batch scoring: ${job.result!.rows} rows in ${job.result!.seconds.toFixed(2)} s ` +
        `(${Math.round(job.result!.rowsPerSecond)} rows/s end to end, ${job.result!.bytes} bytes of Parquet)`,
    );

    const file = await platform.artifacts.materialize(job.result!.output, path.join(dir, 'outputs'));
    const out = await DataEngine.open({ workDir: path.join(dir, 'read'), readableDirs: [path.dirname(file)] });
    try {
      const source = `read_parquet(${sqlString(file)})`;
      const [summary] = await out.rows<{ n: number; ids: number; lo: number; hi: number }>(
        `SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi FROM ${source}`,
      );
      expect(summary).toEqual({ n: 2 * ROWS_PER_FILE, ids: 2 * ROWS_PER_FILE, lo: 0, hi: 2 * ROWS_PER_FILE - 1 });
      const types = await out.rows<{ column_name: string; column_type: string }>(`DESCRIBE SELECT * FROM ${source}`);
      expect(Object.fromEntries(types.map((t) => [t.column_name, t.column_type]))).toMatchObject({
        prediction: 'BIGINT',
        probabilities: 'FLOAT[]',
      });

      // A few rows of each file (missing x, unseen and missing kind included), scored online.
      const sample = await out.rows<{
        id: number;
        x: number | null;
        kind: string | null;
        prediction: number;
        probabilities: number[];
      }>(
        `SELECT id, x, kind, prediction, probabilities FROM ${source}
         WHERE id % 7919 < 3 OR id IN (17, ${ROWS_PER_FILE + 3}) ORDER BY id`,
      );
      expect(sample.length).toBeGreaterThan(20);
      expect(sample.some((r) => r.x === null) && sample.some((r) => r.kind === null)).toBe(true);
      const response = await app.request(`http://api.test/v1/models/${name}/predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          version: deployed.model.version,
          instances: sample.map((r) => ({ x: r.x, kind: r.kind })),
        }),
      });
      expect(response.status).toBe(200);
      const online = (await response.json()) as { predictions: { label: unknown; probabilities: number[] }[] };
      expect(sample.map((r) => ({ label: r.prediction, probabilities: r.probabilities }))).toEqual(online.predictions);
      // Both classes occur: the comparison is not trivially satisfied by a constant model.
      expect(new Set(sample.map((r) => r.prediction)).size).toBe(2);
    } finally {
      out.close();
    }
  }, 120_000);

  it("shows the running job's heartbeat as its progress", async () => {
    const file = path.join(dir, 'gated.parquet');
    await writeInput(file, 0, 1000);
    const started = await post({ input: file, passthrough: [] });
    expect(started.status).toBe(202);
    const deadline = Date.now() + 30_000;
    let seen: JobBody | undefined;
    while (Date.now() < deadline && !seen) {
      const { body } = await get(started.body.id);
      if (body.progress) seen = body;
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen).toMatchObject({
      status: 'running',
      finishedAt: null,
      progress: { phase: 'scoring', rows: 12, total: 34, attempt: 1 },
    });
    openGate();
    const { job } = await finished(started.body.id);
    expect(job.status).toBe('completed');
    expect(job.result).toMatchObject({ rows: 1000, columns: ['prediction', 'probabilities'] });
  });

  it('fails the job naming a model input the data lacks', async () => {
    const file = path.join(dir, 'no-kind.parquet');
    await writeInput(file, 0, 1000, 'id, x');
    const started = await post({ input: file, version: deployed.model.version });
    expect(started.status).toBe(202);
    const { job } = await finished(started.body.id);
    expect(job.status).toBe('failed');
    expect(job.failure?.type).toBe('InvalidInput');
    expect(job.failure?.message).toContain('"kind"');
    expect(job.result).toBeUndefined();
  });

  it('passes every input column through by default when run as a workflow, and refuses an unknown one', async () => {
    const file = path.join(dir, 'small.parquet');
    await writeInput(file, 0, 5000);
    const result = (await platform.client.workflow.execute(batchScore, {
      workflowId: `batch-score-${name}-${randomUUID()}`,
      taskQueue: platform.taskQueue,
      args: [{ modelName: name, version: 'champion', input: file, batchRows: 1000 }],
    })) as BatchScoreResult;
    expect(result).toMatchObject({
      rows: 5000,
      inputFiles: 1,
      columns: ['id', 'x', 'kind', 'note', 'prediction', 'probabilities'],
      model: { name, version: deployed.model.version, versionId: deployed.model.versionId },
      output: { kind: 'predictions.parquet', contentType: 'application/vnd.apache.parquet' },
    });

    const error = await platform.client.workflow
      .execute(batchScore, {
        workflowId: `batch-score-${name}-${randomUUID()}`,
        taskQueue: platform.taskQueue,
        args: [{ modelName: name, version: 'champion', input: file, passthrough: ['id', 'nope'] }],
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const cause = (error as WorkflowFailedError).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect((cause as ApplicationFailure).type).toBe('InvalidInput');
    expect((cause as ApplicationFailure).message).toContain('"nope"');
  });

  it('answers bad requests with 400 naming the field, and unknown models, versions and jobs with 404', async () => {
    const input = `s3://${inputBucket}/scoring/day=1/`;
    const both = await post({ input, version: 1, alias: 'champion' });
    expect(both.status).toBe(400);
    expect(both.body.error?.message).toContain('body.alias');
    const badInput = await post({ input: 'ftp://somewhere/file.parquet' });
    expect(badInput.status).toBe(400);
    expect(badInput.body.error?.message).toContain('body.input');
    const noInput = await post({ passthrough: ['id'] });
    expect(noInput.status).toBe(400);
    expect(noInput.body.error?.message).toContain('body.input');
    const repeated = await post({ input, passthrough: ['id', 'id'] });
    expect(repeated.status).toBe(400);
    expect(repeated.body.error?.message).toContain('body.passthrough');
    const unknownField = await post({ input, output: 's3://elsewhere/' });
    expect(unknownField.status).toBe(400);

    const unknownModel = await post({ input }, `no-such-model-${randomUUID().slice(0, 8)}`);
    expect(unknownModel.status).toBe(404);
    expect(unknownModel.body.error?.message).toMatch(/does not exist/);
    const unknownVersion = await post({ input, version: 999 });
    expect(unknownVersion.status).toBe(404);
    expect(unknownVersion.body.error?.message).toContain('no version 999');
    const unknownAlias = await post({ input, alias: 'staging' });
    expect(unknownAlias.status).toBe(404);

    expect((await get(`batch-score-${name}-${randomUUID()}`)).status).toBe(404);
    expect((await get('not-a-job')).status).toBe(400);
  });
});
