import { flightsDelayDefinition } from '../../demo/flights.js';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ApplicationFailure } from '@temporalio/client';
import { ActivityFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureType } from '../../core/constants.js';
import type { DatasetSchema, DatasetStatistics } from '../../data/types.js';
import { acceptSchemaChange } from '../../storage/schema-changes.js';
import { dataStages, type DataStagesInput } from '../../workflows/index.js';
import { connectTestPlatform, type TestPlatform } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

const FLIGHTS = fileURLToPathSafe('../../node_modules/vega-datasets/data/flights-3m.parquet');
const PENGUINS = fileURLToPathSafe('../../node_modules/vega-datasets/data/penguins.json');
const CARS = fileURLToPathSafe('../../node_modules/vega-datasets/data/cars.json');

function fileURLToPathSafe(relative: string): string {
  return new URL(relative, import.meta.url).pathname;
}

let platform: TestPlatform;
let worker: Worker;
let running: Promise<void>;
let bucket: string;
let workDir: string;

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints());
  bucket = `sources-${randomUUID().slice(0, 8)}`;
  await platform.artifacts.client.makeBucket(bucket);
  await platform.artifacts.client.fPutObject(bucket, 'flights/flights-3m.parquet', FLIGHTS);
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'data-stages-'));
  fs.chmodSync(workDir, 0o755);
  worker = await platform.mainWorker();
  running = worker.run();
}, 120_000);

afterAll(async () => {
  worker?.shutdown();
  await running;
  await platform?.close();
  fs.rmSync(workDir, { recursive: true, force: true });
});

function start(input: DataStagesInput): Promise<WorkflowHandle<typeof dataStages>> {
  return platform.client.workflow.start(dataStages, {
    taskQueue: platform.taskQueue,
    workflowId: `data-${input.dataset}-${randomUUID()}`,
    args: [input],
  });
}

async function run(input: DataStagesInput) {
  const handle = await start(input);
  return handle.result();
}

/** The failure a run ended with, and the activities it scheduled (to prove no later stage ran). */
async function failure(
  input: DataStagesInput,
): Promise<{ type: string | undefined; message: string; activities: string[]; details: unknown[] }> {
  const handle = await start(input);
  const error = await handle.result().catch((e: unknown) => e);
  expect(error).toBeInstanceOf(WorkflowFailedError);
  const activityFailure = (error as WorkflowFailedError).cause;
  expect(activityFailure).toBeInstanceOf(ActivityFailure);
  const cause = (activityFailure as ActivityFailure).cause as ApplicationFailure;
  const history = await handle.fetchHistory();
  const activities = (history.events ?? [])
    .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name)
    .filter((n): n is string => typeof n === 'string');
  return { type: cause.type ?? undefined, message: cause.message, activities, details: [...(cause.details ?? [])] };
}

function writeFile(name: string, content: string | Buffer): string {
  const file = path.join(workDir, `${randomUUID()}-${name}`);
  fs.writeFileSync(file, content);
  return file;
}

const demo = flightsDelayDefinition('s3://unused/flights.parquet');
/** The demo's label, features and split (January–February to train, March to evaluate). */
const flightsPrepare: DataStagesInput['prepare'] = { label: demo.label, features: demo.features, split: demo.split! };

describe('data stages on the flights file (3M rows in S3)', () => {
  const dataset = `flights-${randomUUID().slice(0, 8)}`;
  const source = () => `s3://${bucket}/flights/`;

  it('extracts January-March, infers the schema, validates and prepares the time split', async () => {
    const result = await run({
      dataset,
      source: source(),
      span: { column: 'date', from: '2001-01-01', to: '2001-04-01' },
      prepare: flightsPrepare,
    });
    expect(result.extract.reused).toBe(false);
    expect(result.extract.rowCount).toBe(966_409 + 511_502);
    expect(result.validation).toMatchObject({ schemaVersion: 1, schemaInferred: true, anomalies: 0 });
    expect(result.prepared).toMatchObject({ trainRows: 966_409, evalRows: 511_502, classes: [false, true] });

    const statistics = JSON.parse(
      (await platform.artifacts.get(result.statistics.statistics)).toString(),
    ) as DatasetStatistics;
    expect(statistics.rowCount).toBe(1_477_911);
    expect(statistics.columns.map((c) => c.name)).toEqual(['date', 'delay', 'distance', 'origin', 'destination']);
    const schema = JSON.parse((await platform.artifacts.get(result.validation.schema)).toString()) as DatasetSchema;
    expect(schema.columns.find((c) => c.name === 'origin')?.domain?.length).toBeGreaterThan(200);

    // Lineage: the transform descends from the snapshot through the prepare execution.
    const transform = await platform.storage.metadata.getArtifactByUri(result.prepared!.transform.uri);
    const lineage = await platform.storage.metadata.lineage(transform!.id);
    expect(lineage?.executions.map((e) => e.type)).toEqual(expect.arrayContaining(['ExampleGen', 'Transform']));
  });

  it('an unchanged source is reused, validates clean against schema v1, and shows no drift', async () => {
    const result = await run({
      dataset,
      source: source(),
      span: { column: 'date', from: '2001-01-01', to: '2001-04-01' },
    });
    expect(result.extract.reused).toBe(true);
    expect(result.validation).toMatchObject({ schemaVersion: 1, schemaInferred: false });
    expect(result.prepared).toBeUndefined();
  });

  it('a snapshot with a retyped column fails validation with a report, and nothing is prepared', async () => {
    const csv = writeFile(
      'retyped.csv',
      'date,delay,distance,origin,destination\n2001-05-01 10:00:00,not-a-number,300,ATL,SAV\n2001-05-01 11:00:00,12,300,ATL,SAV\n',
    );
    const failed = await failure({ dataset, source: csv, prepare: flightsPrepare });
    expect(failed.type).toBe(FailureType.DataValidation);
    expect(failed.message).toMatch(/delay/);
    expect(failed.activities).toEqual(['extractData', 'computeStatistics', 'validateData']);

    // Accepting the change is an explicit, recorded action; the same data then validates against version 2.
    const report = (failed.details[0] as { report: { uri: string } }).report;
    const accepted = await acceptSchemaChange(platform.storage, {
      dataset,
      reportUri: report.uri,
      actor: 'alice@example.com',
      reason: 'the upstream export now writes delays as text',
    });
    expect(accepted).toMatchObject({ version: 2, kind: 'accepted', actor: 'alice@example.com' });
    const again = await run({ dataset, source: csv });
    expect(again.validation).toMatchObject({ schemaVersion: 2, schemaInferred: false });
    // Accepting the same report again (a retried request) changes nothing.
    const twice = await acceptSchemaChange(platform.storage, {
      dataset,
      reportUri: report.uri,
      actor: 'bob',
      reason: 'twice',
    });
    expect(twice.version).toBe(2);
    expect(await platform.storage.datasets.schemaHistory(dataset)).toHaveLength(2);
  });
});

describe('data stages on a multiclass and a regression dataset', () => {
  it('penguins: multiclass species from JSON with a hash split', async () => {
    const result = await run({
      dataset: `penguins-${randomUUID().slice(0, 8)}`,
      source: PENGUINS,
      prepare: {
        label: { name: 'species', expression: '"Species"', task: 'multiclass' },
        features: [
          { name: 'island', expression: '"Island"' },
          { name: 'beak_length', expression: '"Beak Length (mm)"' },
          { name: 'flipper_length', expression: '"Flipper Length (mm)"' },
          { name: 'body_mass', expression: '"Body Mass (g)"' },
        ],
        split: {
          kind: 'hash',
          key: '"Beak Length (mm)"::VARCHAR || "Body Mass (g)"::VARCHAR || "Island"',
          evalFraction: 0.25,
        },
      },
    });
    expect(result.prepared?.classes).toEqual(['Adelie', 'Chinstrap', 'Gentoo']);
    expect(result.prepared!.trainRows + result.prepared!.evalRows).toBeGreaterThan(300);
    expect(result.prepared!.evalRows / (result.prepared!.trainRows + result.prepared!.evalRows)).toBeGreaterThan(0.15);
  });

  it('cars: regression of miles per gallon with a hash split on the car name', async () => {
    const result = await run({
      dataset: `cars-${randomUUID().slice(0, 8)}`,
      source: CARS,
      prepare: {
        label: { name: 'mpg', expression: '"Miles_per_Gallon"', task: 'regression' },
        features: [
          { name: 'cylinders', expression: '"Cylinders"' },
          { name: 'horsepower', expression: '"Horsepower"' },
          { name: 'weight', expression: '"Weight_in_lbs"' },
          { name: 'origin', expression: '"Origin"' },
        ],
        split: { kind: 'hash', key: '"Name"', evalFraction: 0.2 },
      },
    });
    expect(result.prepared?.classes).toBeUndefined();
    expect(result.prepared!.droppedNullLabels).toBeGreaterThan(0);
    expect(result.prepared!.trainRows).toBeGreaterThan(250);
  });
});

describe('bad input stops at the right stage with a typed reason', () => {
  const name = () => `bad-${randomUUID().slice(0, 8)}`;
  const simplePrepare = (label: string): DataStagesInput['prepare'] => ({
    label: { name: 'y', expression: label, task: 'binary' },
    features: [{ name: 'x', expression: 'x' }],
    split: { kind: 'hash', key: 'x', evalFraction: 0.3 },
  });

  it.each([
    ['an empty source', () => writeFile('empty.csv', 'x,y\n'), FailureType.DataValidation],
    ['a source that does not exist', () => path.join(workDir, 'nope.parquet'), FailureType.NotFound],
    [
      'a corrupt Parquet file',
      () => writeFile('corrupt.parquet', Buffer.from('PAR1 this is not parquet PAR1')),
      FailureType.DataValidation,
    ],
  ])('%s fails in extract', async (_what, makeSource, type) => {
    const failed = await failure({ dataset: name(), source: makeSource(), prepare: simplePrepare('y > 0') });
    expect(failed.type).toBe(type);
    expect(failed.activities).toEqual(['extractData']);
  });

  it('a column that is all null fails in validate, and no schema is inferred from it', async () => {
    const dataset = name();
    const rows = Array.from({ length: 20 }, (_, i) => `${i},${i % 2},`).join('\n');
    const failed = await failure({
      dataset,
      source: writeFile('null.csv', `x,y,z\n${rows}\n`),
      prepare: simplePrepare('y > 0'),
    });
    expect(failed.type).toBe(FailureType.DataValidation);
    expect(failed.message).toMatch(/"z" has no value/);
    expect(failed.activities).toEqual(['extractData', 'computeStatistics', 'validateData']);
    expect(await platform.storage.datasets.currentSchema(dataset)).toBeUndefined();
  });

  it('a label with one class fails in prepare', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => `${i},1`).join('\n');
    const failed = await failure({
      dataset: name(),
      source: writeFile('one-class.csv', `x,y\n${rows}\n`),
      prepare: simplePrepare('y > 0'),
    });
    expect(failed.type).toBe(FailureType.DataValidation);
    expect(failed.message).toMatch(/class/i);
    expect(failed.activities.at(-1)).toBe('prepareData');
  });

  it.each([
    ["read_csv('/etc/passwd')"],
    ["x > 0; COPY t TO '/tmp/x.csv'"],
    ["(SELECT 1); ATTACH '/tmp/x.db'"],
    ['INSTALL httpfs'],
    ['(SET threads = 1)'],
    ['unknown_column > 1'],
  ])('the expression %s is refused in prepare, naming it', async (expression) => {
    const rows = Array.from({ length: 50 }, (_, i) => `${i},${i % 2}`).join('\n');
    const failed = await failure({
      dataset: name(),
      source: writeFile('ok.csv', `x,y\n${rows}\n`),
      prepare: simplePrepare(expression),
    });
    expect(failed.type).toBe(FailureType.InvalidInput);
    expect(failed.message).toContain(expression.slice(0, 12));
    expect(failed.activities.at(-1)).toBe('prepareData');
  });
});
