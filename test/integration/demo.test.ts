import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEMO_LANDING_KEY,
  DEMO_ROWS,
  DEMO_SPAN,
  DemoError,
  flightsDelayDefinition,
  formatDemoFailure,
  formatDemoReport,
  runFlightsDemo,
  type DemoDeps,
} from '../../demo/flights.js';
import { landFlights } from '../../demo/landing.js';
import { startDemo } from '../../demo/session.js';
import { pipelineDefinitionSchema } from '../../pipelines/definition.js';
import { testLogger, type TestPlatform } from '../support/platform.js';
import { startTestPlatform, type RunningTestPlatform } from '../support/running-platform.js';
import { testConfig, testEndpoints } from '../support/stack.js';

let platform: TestPlatform;
let deps: DemoDeps;
let started: RunningTestPlatform | undefined;

beforeAll(async () => {
  started = await startTestPlatform({ bucket: `demo-${randomUUID().slice(0, 8)}` });
  platform = started.platform;
  deps = {
    client: platform.client,
    storage: platform.storage,
    taskQueue: platform.taskQueue,
    trainingTaskQueue: platform.trainingTaskQueue,
    links: { apiUrl: 'http://127.0.0.1:3000', temporalUiUrl: 'http://127.0.0.1:8233', namespace: 'default' },
  };
});

afterAll(async () => {
  await started?.stop();
});

describe('the flight-delay demo', () => {
  it('lands January to March 2001 once: the same bytes are not uploaded again', async () => {
    const land = () =>
      landFlights({
        s3: platform.artifacts.client,
        bucket: platform.artifacts.bucket,
        key: DEMO_LANDING_KEY,
        span: DEMO_SPAN,
      });
    const first = await land();
    expect(first).toMatchObject({ rows: DEMO_ROWS, uploaded: true });
    expect(first.uri).toBe(`s3://${platform.artifacts.bucket}/${DEMO_LANDING_KEY}`);
    const again = await land();
    expect(again).toMatchObject({ rows: DEMO_ROWS, uploaded: false, md5: first.md5, bytes: first.bytes });
    const stat = await platform.storage.objects.stat(platform.artifacts.bucket, DEMO_LANDING_KEY);
    expect(stat).toMatchObject({ size: first.bytes, etag: first.md5 });
    // The demo's definition is valid as written.
    const definition = pipelineDefinitionSchema.parse(flightsDelayDefinition(first.uri));
    expect(definition).toMatchObject({
      name: 'flights-delay',
      trainer: { kind: 'gradient_boosted_trees', params: { seed: 0 } },
      validation: { champion: { metric: 'auc', minImprovement: 0 } },
      deployment: { policy: 'automatic' },
    });
  });

  it('deploys the first version, and a rerun on unchanged data and settings deploys nothing', async () => {
    // The demo's pipeline on one week (train on five days, evaluate on two) with a small model, to stay quick.
    const pipeline = `flights-delay-${randomUUID().slice(0, 8)}`;
    const options = {
      pipeline,
      landing: { key: `landing/flights/${pipeline}.parquet`, from: '2001-01-01', to: '2001-01-08' },
      definition: {
        split: { kind: 'time' as const, column: 'date', trainBefore: '2001-01-06', evalBefore: '2001-01-08' },
        trainer: { kind: 'gradient_boosted_trees' as const, params: { maxIterations: 20, seed: 0 } },
        evaluation: { slices: ['origin'], minSliceRows: 500 },
        validation: { thresholds: [{ metric: 'auc' as const, min: 0.55 }], champion: { metric: 'auc' as const } },
      },
    };
    const progress: string[] = [];
    const first = await runFlightsDemo(deps, { ...options, onProgress: (line) => progress.push(line) });
    expect(first.result.outcome).toBe('deployed');
    expect(first.landed.uploaded).toBe(true);
    expect(first.definitionCreated).toBe(true);
    expect(first.championBefore).toBeUndefined();
    expect(first.result.model).toMatchObject({ modelName: pipeline, version: 1, created: true });
    expect(first.result.metrics.auc).toBeGreaterThan(0.55);
    expect(first.links).toEqual({
      run: `http://127.0.0.1:3000/v1/runs/${first.runId}`,
      model: `http://127.0.0.1:3000/v1/models/${pipeline}`,
      temporal: `http://127.0.0.1:8233/namespaces/default/workflows/${first.workflowId}`,
      docs: 'http://127.0.0.1:3000/docs',
    });
    expect(progress.join('\n')).toMatch(/landed .*\(uploaded/);
    expect(progress.join('\n')).toContain(first.links.temporal);
    const summary = formatDemoReport(first);
    expect(summary).toContain(`deployed: ${pipeline} v1 is the champion now`);
    expect(summary).toMatch(/AUC 0\.\d{4} · log loss/);
    expect(summary).toContain(`GET ${first.links.run}`);
    expect(summary).toContain(first.links.temporal);

    const second = await runFlightsDemo(deps, options);
    expect(second.landed.uploaded).toBe(false);
    expect(second.definitionCreated).toBe(false);
    expect(second.pipelineVersion).toBe(first.pipelineVersion);
    expect(second.result.outcome).toBe('not_blessed');
    expect(second.result.deployment).toBeUndefined();
    // Deterministic training: the same ONNX bytes, so the registry hands back the champion's own version.
    expect(second.result.model).toMatchObject({ versionId: first.result.model.versionId, created: false });
    expect(second.championBefore?.versionId).toBe(first.result.model.versionId);
    expect(second.result.championMetrics?.auc).toBeCloseTo(first.result.metrics.auc!, 12);
    expect(second.result.blessing.reason).toMatch(/vs champion v1 .*equal is not better/);
    // Unchanged data: the snapshot of the first run is reused.
    expect(second.result.artifacts.snapshot).toBe(first.result.artifacts.snapshot);
    const rerun = formatDemoReport(second);
    expect(rerun).toMatch(/not deployed: auc 0\.\d+ vs champion v1/);
    expect(rerun).toContain('not better');
    expect(rerun).toContain('the same ONNX bytes as champion v1');
    expect(await platform.storage.deployments.deploymentHistory(pipeline)).toHaveLength(1);
    expect((await platform.storage.registry.champion(pipeline))?.id).toBe(first.result.model.versionId);
  }, 120_000);

  it('reports a failed run with its stage and where to look', async () => {
    const pipeline = `flights-broken-${randomUUID().slice(0, 8)}`;
    const error = await runFlightsDemo(deps, {
      pipeline,
      landing: { key: `landing/flights/${pipeline}.parquet`, from: '2001-01-01', to: '2001-01-03' },
      definition: {
        label: { name: 'delayed', expression: 'no_such_column > 15', task: 'binary' },
        split: { kind: 'time', column: 'date', trainBefore: '2001-01-02', evalBefore: '2001-01-03' },
        retry: { maximumAttempts: 1 },
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DemoError);
    expect((error as DemoError).message).toMatch(/^the demo run [0-9a-f-]+ failed at stage \w+ \(\w+: /);
    const printed = formatDemoFailure(error);
    expect(printed).toMatch(/^Demo failed: /);
    expect(printed).toMatch(/Temporal UI {2}http:\/\/127\.0\.0\.1:8233\/namespaces\/default\/workflows\/pipeline-/);
  });

  it('in npm start, a demo that fails prints why and does not throw', async () => {
    let output = '';
    const endpoints = testEndpoints();
    const demo = startDemo({
      config: testConfig(),
      endpoints: { ...endpoints, s3: { ...endpoints.s3, endpoint: 'http://127.0.0.1:1' } },
      apiUrl: 'http://127.0.0.1:3000',
      logger: testLogger,
      write: (text) => (output += text),
    });
    await demo.done;
    expect(output).toContain('Running the demo');
    expect(output).toMatch(/Demo failed: /);
    expect(output).toContain('The platform keeps running.');
    await demo.stop();
  });
});
