/**
 * The predict and metrics routes over a pool of real onnxruntime sessions (graphs exported by the platform), with an
 * in-memory registry and artifact store: response shape, batching, and every refusal naming its field.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { exportOnnx } from '../../../models/onnx/index.js';
import { createApp } from '../../../server/app.js';
import type { AppEnv } from '../../../server/context.js';
import onnxProto from 'onnx-proto';
import { ONNX_METADATA } from '../../../models/onnx/export.js';
import { onnxModelLoader, readClasses, readMetadataProp } from '../../../serving/load-model.js';
import { ServingMetrics } from '../../../serving/metrics.js';
import { ModelPool } from '../../../serving/model-pool.js';
import { ArtifactIntegrityError, sha256Hex } from '../../../storage/content-hash.js';
import { ArtifactNotFoundError } from '../../../storage/artifact-store.js';
import { makeTransform, randomLinear, runRows } from '../models/onnx-fixtures.js';
import { fixedKeys } from '../../support/auth.js';
import { FakeRegistry, silentLogger } from './fixtures.js';

const transform = makeTransform('binary');
const graph = exportOnnx(randomLinear('binary', transform, 7), transform);
const graph2 = exportOnnx(randomLinear('binary', transform, 8), transform);
const regressionTransform = makeTransform('regression');
const regression = exportOnnx(randomLinear('regression', regressionTransform, 9), regressionTransform);

const row = { hour: 7, origin: 'ORD', distance: 812, carrier: null, day_of_week: 3, dest: 'SFO' };
const rows = [
  row,
  { hour: 22.5, origin: 'ATL', distance: 100, carrier: 'UA', day_of_week: 6, dest: 'LAX' },
  { hour: null, origin: null, distance: null, carrier: null, day_of_week: null, dest: null },
  { hour: 1, origin: 'unseen', distance: 3000, carrier: 'AA', day_of_week: 1, dest: '' },
];

let app: OpenAPIHono<AppEnv>;
let pool: ModelPool;
let metrics: ServingMetrics;
const registry = new FakeRegistry();
const objects = new Map<string, Uint8Array>();

beforeAll(async () => {
  const put = (bytes: Uint8Array) => {
    const sha256 = sha256Hex(bytes);
    objects.set(sha256, bytes);
    return sha256;
  };
  const v1 = registry.addVersion('flights', graph.signature);
  Object.assign(v1, { sha256: put(graph.bytes) });
  const v2 = registry.addVersion('flights', graph2.signature);
  Object.assign(v2, { sha256: put(graph2.bytes) });
  registry.deploy('flights', 'flights', v1.id);
  registry.setAlias('flights', 'staging', v2.id);
  const r1 = registry.addVersion('mpg', regression.signature);
  Object.assign(r1, { sha256: put(regression.bytes) });
  registry.deploy('mpg', 'mpg', r1.id);
  // Registered with bytes that are not what S3 holds, and with no object at all.
  const corrupt = registry.addVersion('corrupt', graph.signature);
  Object.assign(corrupt, { sha256: 'f'.repeat(64) });
  objects.set('f'.repeat(64), graph2.bytes);
  registry.deploy('corrupt', 'corrupt', corrupt.id);
  const missing = registry.addVersion('missing', graph.signature);
  registry.deploy('missing', 'missing', missing.id);

  metrics = new ServingMetrics({ defaultMetrics: false });
  const artifacts = {
    get: ({ uri, sha256 }: { uri: string; sha256?: string }) => {
      const bytes = objects.get(sha256!);
      if (!bytes) return Promise.reject(new ArtifactNotFoundError(uri));
      const actual = sha256Hex(bytes);
      if (actual !== sha256) return Promise.reject(new ArtifactIntegrityError(uri, sha256!, actual, bytes.length));
      return Promise.resolve(Buffer.from(bytes));
    },
  };
  pool = new ModelPool({
    registry,
    deployments: registry,
    metrics,
    logger: silentLogger,
    pollIntervalMs: 0,
    loadModel: onnxModelLoader({ artifacts, metrics }),
  });
  await pool.start();
  app = createApp({
    logger: silentLogger,
    readiness: [],
    auth: { kind: 'open' },
    version: 'test',
    bodyLimitBytes: 16 * 1024,
    serving: { pool, metrics, maxInstances: 50 },
  });
});

afterAll(async () => {
  await pool?.close();
});

/** A predict response or an error, as JSON. */
interface PredictBody {
  model: { name: string; version: number; versionId: string };
  requestId: string;
  classes?: unknown[];
  predictions: { label?: unknown; probabilities?: number[]; prediction?: number | null }[];
  error: { code: string; message: string; details?: unknown };
}

async function predict(name: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await app.request(`/v1/models/${name}/predict`, {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers },
  });
  return { status: response.status, body: (await response.json()) as PredictBody, response };
}

describe('POST /v1/models/{name}/predict', () => {
  it('answers one instance with the label, the probabilities and the classes', async () => {
    const { status, body, response } = await predict('flights', { instance: row }, { 'x-request-id': 'req-1' });
    expect(status).toBe(200);
    expect(response.headers.get('x-request-id')).toBe('req-1');
    const v1 = registry.models.get('flights')!.versions[0]!;
    expect(body.model).toEqual({ name: 'flights', version: 1, versionId: v1.id });
    expect(body.requestId).toBe('req-1');
    expect(body.classes).toEqual([false, true]);
    const reference = await runRows(graph.bytes, graph.signature, [row]);
    const p = Array.from(reference.probabilities!.data as Float32Array);
    expect(body.predictions).toEqual([{ label: p[1]! > 0.5, probabilities: p }]);
  });

  it('answers a batch in order, the same as one by one and as concurrent single requests', async () => {
    const batch = await predict('flights', { instances: rows });
    expect(batch.status).toBe(200);
    expect(batch.body.predictions).toHaveLength(rows.length);
    const singles = await Promise.all(
      Array.from({ length: 40 }, (_, i) => predict('flights', { instance: rows[i % rows.length] })),
    );
    for (const [i, single] of singles.entries()) {
      expect(single.status).toBe(200);
      expect(single.body.predictions[0]).toEqual(batch.body.predictions[i % rows.length]);
    }
    const reference = await runRows(graph.bytes, graph.signature, rows);
    expect(batch.body.predictions.flatMap((p) => p.probabilities)).toEqual(
      Array.from(reference.probabilities!.data as Float32Array),
    );
    // Concurrent requests shared runs.
    const sizes = (await metrics.batchSize.get()).values.find(
      (v) => v.metricName === 'mlops_serving_batch_size_count' && v.labels.model === 'flights',
    );
    expect(sizes?.value).toBeLessThan(41);
  });

  it('serves a regression model', async () => {
    const { status, body } = await predict('mpg', { instances: [row, rows[2]] });
    expect(status).toBe(200);
    expect(body).not.toHaveProperty('classes');
    const reference = await runRows(regression.bytes, regression.signature, [row, rows[2]!]);
    expect(body.predictions).toEqual(
      Array.from(reference.prediction!.data as Float64Array, (v) => ({ prediction: v })),
    );
  });

  it('addresses a version by number or alias', async () => {
    const byVersion = await predict('flights', { instance: row, version: 2 });
    expect(byVersion.status).toBe(200);
    expect(byVersion.body.model.version).toBe(2);
    const reference = await runRows(graph2.bytes, graph2.signature, [row]);
    expect(byVersion.body.predictions[0]!.probabilities).toEqual(
      Array.from(reference.probabilities!.data as Float32Array),
    );
    const byAlias = await predict('flights', { instance: row, alias: 'staging' });
    expect(byAlias.body.model.version).toBe(2);
    const champion = await predict('flights', { instance: row, alias: 'champion' });
    expect(champion.body.model.version).toBe(1);
  });

  it('refuses bad requests with 400, naming the field', async () => {
    const cases: [unknown, string, string][] = [
      ['{"instances": [', 'malformed_json', 'Request body is not valid JSON'],
      ['', 'malformed_json', 'Request body is not valid JSON'],
      [{ instances: [row, { ...row, distance: undefined }] }, 'invalid_request', 'instances[1].distance: missing'],
      [
        { instance: { ...row, hour: '7' } },
        'invalid_request',
        'instance.hour: expected a number or null, got a string',
      ],
      [
        { instance: { ...row, origin: 7 } },
        'invalid_request',
        'instance.origin: expected a string or null, got a number',
      ],
      [{ instances: [row, 5] }, 'invalid_request', 'instances[1]: expected an object of feature values, got a number'],
      [{ rows: [row] }, 'invalid_request', 'instances: missing'],
      [{ instance: row, version: 'latest' }, 'invalid_request', 'version: expected a positive integer'],
    ];
    for (const [body, code, message] of cases) {
      const response = await predict('flights', body);
      expect(response.status, message).toBe(400);
      expect(response.body.error.code, message).toBe(code);
      expect(response.body.error.message).toContain(message);
    }
    const missing = await predict('flights', { instances: [row, { ...row, distance: undefined }] });
    expect(missing.body.error.details).toEqual([
      { location: 'body', path: 'instances[1].distance', problem: 'missing' },
    ]);
  });

  it('answers 404 for an unknown model, version or alias', async () => {
    const cases: [string, unknown, string][] = [
      ['nothing', { instance: row }, 'model_not_found'],
      ['flights', { instance: row, version: 42 }, 'model_version_not_found'],
      ['flights', { instance: row, alias: 'nope' }, 'model_version_not_found'],
    ];
    for (const [name, body, code] of cases) {
      const response = await predict(name, body);
      expect(response.status).toBe(404);
      expect(response.body.error.code).toBe(code);
    }
  });

  it('answers 413 for too many instances and for a body over the limit', async () => {
    const many = await predict('flights', { instances: Array.from({ length: 51 }, () => row) });
    expect(many.status).toBe(413);
    expect(many.body.error).toMatchObject({
      code: 'too_many_instances',
      message: 'instances: 51 instances; at most 50 per request',
    });
    const large = await predict('flights', { instance: { ...row, note: 'x'.repeat(20_000) } });
    expect(large.status).toBe(413);
    expect(large.body.error.code).toBe('payload_too_large');
  });

  it('answers 503 for a deployment whose model is corrupt or missing in S3', async () => {
    for (const name of ['corrupt', 'missing']) {
      const response = await predict(name, { instance: row });
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('model_unavailable');
    }
    const corrupt = await predict('corrupt', { instance: row });
    expect(corrupt.body.error.message).toMatch(/Integrity check failed/);
  });
});

describe('GET /metrics', () => {
  it('exposes requests, durations, batch sizes and loads in the Prometheus format', async () => {
    const response = await app.request('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await response.text();
    expect(text).toMatch(/mlops_serving_requests_total\{model="flights",version="1",status="200"\} \d+/);
    expect(text).toMatch(/mlops_serving_requests_total\{model="flights",version="1",status="400"\} \d+/);
    expect(text).toMatch(/mlops_serving_requests_total\{model="",version="",status="404"\} 3/);
    expect(text).toMatch(/mlops_serving_requests_total\{model="",version="",status="413"\} \d+/);
    expect(text).toMatch(/mlops_serving_request_duration_seconds_bucket\{le="0.001",model="flights",version="1"\}/);
    expect(text).toMatch(/mlops_serving_batch_size_bucket\{le="1",model="flights",version="1"\}/);
    expect(text).toMatch(/mlops_serving_model_loads_total\{model="flights",version="1",result="success"\} 1/);
    expect(text).toMatch(/mlops_serving_model_loads_total\{model="corrupt",version="1",result="failure"\} \d+/);
    expect(text).toContain('mlops_serving_prediction_log_queue_depth 0');
    expect(text).toContain('mlops_serving_prediction_logs_dropped_total 0');
  });
});

describe('the OpenAPI document', () => {
  it('describes the predict and metrics routes', async () => {
    const response = await app.request('/openapi.json');
    expect(response.status).toBe(200);
    const doc = (await response.json()) as { paths: Record<string, Record<string, unknown>> };
    expect(Object.keys(doc.paths['/v1/models/{name}/predict'] ?? {})).toEqual(['post']);
    expect(Object.keys(doc.paths['/metrics'] ?? {})).toEqual(['get']);
  });
});

describe('readClasses', () => {
  it('reads the classes from the graph metadata, and nothing from other bytes', () => {
    expect(readClasses(graph.bytes)).toEqual([false, true]);
    expect(readClasses(regression.bytes)).toBeUndefined();
    expect(readClasses(new Uint8Array([1, 2, 3]))).toBeUndefined();
  });

  it('reads every metadata entry exactly as a full protobuf decode does, and never throws on garbage', () => {
    for (const exported of [graph, regression]) {
      const decoded = onnxProto.onnx.ModelProto.decode(exported.bytes);
      expect(decoded.metadataProps.length).toBeGreaterThan(0);
      for (const prop of decoded.metadataProps) {
        expect(readMetadataProp(exported.bytes, prop.key ?? '')).toBe(prop.value);
      }
      expect(readMetadataProp(exported.bytes, 'no-such-key')).toBeUndefined();
      // Every truncation of a real graph is either read or refused, never thrown.
      for (const cut of [1, 7, 100, exported.bytes.length - 1]) {
        expect(() => readMetadataProp(exported.bytes.subarray(0, cut), ONNX_METADATA.classes)).not.toThrow();
      }
    }
    let seed = 1;
    const noise = Uint8Array.from({ length: 4096 }, () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % 256);
    expect(() => readMetadataProp(noise, 'x')).not.toThrow();
  });
});

describe('a version named in the request', () => {
  it('probe: is not scored when it is not blessed, unless a deploy key asks with allowUnblessed', async () => {
    const refused = new Set<string>();
    const keys = fixedKeys({ client: ['predict'], deployer: ['predict', 'deploy'] });
    // A new app per phase: each caches a version's fitness for a few seconds.
    const appWith = () =>
      createApp({
        logger: silentLogger,
        readiness: [],
        auth: keys.auth,
        version: 'test',
        bodyLimitBytes: 16 * 1024,
        serving: {
          pool,
          metrics,
          maxInstances: 50,
          servingRefusal: (id) => Promise.resolve(refused.has(id) ? 'is rejected, not blessed' : undefined),
        },
      });
    const sender = (guarded: ReturnType<typeof appWith>) => (who: string, body: unknown) =>
      guarded.request('/v1/models/flights/predict', {
        method: 'POST',
        body: JSON.stringify(body),
        headers: { 'content-type': 'application/json', ...keys.as(who) },
      });
    const first = await sender(appWith())('client', { instance: row, version: 2 });
    expect(first.status).toBe(200);
    const { model } = (await first.json()) as PredictBody;
    refused.add(model.versionId);
    const ask = sender(appWith());
    for (const body of [
      { instance: row, version: 2 },
      { instance: row, alias: 'staging' },
    ]) {
      const no = await ask('client', body);
      expect(no.status).toBe(409);
      const error = ((await no.json()) as PredictBody).error;
      expect(error.code).toBe('version_not_servable');
      expect(error.message).toContain('version 2 is rejected, not blessed');
      // allowUnblessed needs the deploy scope too.
      expect((await ask('client', { ...body, allowUnblessed: true })).status).toBe(409);
      expect((await ask('deployer', { ...body, allowUnblessed: true })).status).toBe(200);
    }
    const badFlag = await ask('deployer', { instance: row, version: 2, allowUnblessed: 'yes' });
    expect(badFlag.status).toBe(400);
    expect(((await badFlag.json()) as PredictBody).error.message).toContain('allowUnblessed: expected a boolean');
    // What the deployment serves is not a version named in the request: it answers as before.
    expect((await ask('client', { instance: row })).status).toBe(200);
  });
});
