/**
 * The calibration behind a window's estimates, on a real graph and eval file with stand-in artifact and metadata
 * stores: fitted once from the eval split scored through the version's ONNX graph, read back by the next window of
 * the same split and graph (from the previous report, or by its key without one), fitted again for another graph;
 * a graph that cannot score the split is stored as skipped; a cached artifact that cannot be trusted is fitted again;
 * a retryable failure is rethrown and any other failure of scoring leaves the window uncalibrated, nothing stored;
 * a large split is sampled, the same rows every time; the window notes why its estimates are not calibrated.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../../core/logger.js';
import { DataEngine, sqlString } from '../../../data/engine.js';
import type { FittedTransform } from '../../../data/transform.js';
import { EvaluationError, scoreOnnxModel, type ScoreOnnxOptions } from '../../../models/evaluate.js';
import type * as Evaluate from '../../../models/evaluate.js';
import { exportOnnx } from '../../../models/onnx/index.js';
import {
  CALIBRATION_ALGORITHM,
  CALIBRATION_EXECUTION,
  calibrationKey,
  type CalibrationRef,
} from '../../../monitoring/calibration-store.js';
import {
  MAX_CALIBRATION_ROWS,
  evalCalibration,
  windowCalibration,
  type CalibrationDeps,
  type CalibrationSource,
  type EvalCalibration,
} from '../../../monitoring/eval-calibration.js';
import type { Execution } from '../../../schema/index.js';
import { ArtifactNotFoundError, type ArtifactRef, type ArtifactStore } from '../../../storage/artifact-store.js';
import { ArtifactIntegrityError, sha256Hex } from '../../../storage/content-hash.js';
import type { MetadataStore, StartExecutionInput } from '../../../storage/metadata-store.js';

/** A failure to inject into the next scorings (the eval file changing while read cannot be staged reliably). */
const scoring = vi.hoisted(() => ({ fail: undefined as Error | undefined }));
vi.mock('../../../models/evaluate.js', async (importOriginal) => {
  const actual = await importOriginal<typeof Evaluate>();
  return {
    ...actual,
    scoreOnnxModel: async (options: ScoreOnnxOptions) => {
      if (scoring.fail) throw scoring.fail;
      return actual.scoreOnnxModel(options);
    },
  };
});

const transform: FittedTransform = {
  version: 1,
  scaling: 'standard',
  features: [
    {
      name: 'distance',
      expression: 'distance',
      sql: 'distance',
      sourceType: 'DOUBLE',
      kind: 'numeric',
      numeric: { imputeValue: 500, mean: 500, std: 288 },
    },
  ],
  label: { name: 'delayed', expression: 'delayed', sql: 'delayed', task: 'binary', classes: [false, true] },
};
/** P(delayed) = sigmoid(0.8 z) while the labels follow sigmoid(2.4 z): an underconfident model. */
const onnx = exportOnnx({ kind: 'linear', task: 'binary', weights: [[0.8]], intercepts: [0] }, transform).bytes;
const ref = (name: string, sha: string): ArtifactRef => ({
  uri: `s3://bucket/${name}`,
  sha256: sha.repeat(64),
  bytes: 1,
  contentType: 'application/octet-stream',
  kind: name,
});
const evalSplit = ref('eval', 'e');
const model = { uri: 's3://bucket/model', sha256: 'm'.repeat(64) };

let dir: string;
let evalFile: string;

/**
 * Deps over the eval file and a graph: an artifact store that is content-addressed and verifies what it reads (as
 * S3ArtifactStore), a metadata store of executions by external id, a logger keeping its warnings, and counts of the
 * split's reads and of puts. `artifacts.objects` may be overwritten to corrupt a stored object.
 */
function fakeDeps(graph: Uint8Array = onnx) {
  const objects = new Map<string, Buffer>([[model.uri, Buffer.from(graph)]]);
  const calls = { materialize: 0, put: 0 };
  const artifacts = {
    materialize: async () => {
      calls.materialize++;
      return evalFile;
    },
    put: async (body: string) => {
      calls.put++;
      const sha256 = sha256Hex(body);
      const uri = `s3://bucket/put/${sha256}`;
      objects.set(uri, Buffer.from(body));
      return { uri, sha256, bytes: body.length, contentType: 'application/json', kind: 'calibration.json' };
    },
    get: async (address: { uri: string; sha256?: string }) => {
      const data = objects.get(address.uri);
      if (!data) throw new ArtifactNotFoundError(address.uri);
      // The graph's stand-in address is not its hash; everything put is checked as S3ArtifactStore checks it.
      if (address.uri !== model.uri && address.sha256 !== undefined && sha256Hex(data) !== address.sha256)
        throw new ArtifactIntegrityError(address.uri, address.sha256, sha256Hex(data), data.length);
      return data;
    },
  } as unknown as ArtifactStore;
  const executions = new Map<string, Execution>();
  const metadata = {
    getExecutionByExternalId: async (externalId: string) => executions.get(externalId),
    startExecution: async (input: StartExecutionInput) => {
      const existing = executions.get(input.externalId);
      if (existing && existing.state !== 'failed') return existing;
      const execution = { id: input.externalId, ...input, state: 'running', properties: input.properties ?? {} };
      executions.set(input.externalId, execution as unknown as Execution);
      return execution;
    },
    completeExecution: async (id: string, input: { state: Execution['state']; properties?: object }) => {
      const execution = executions.get(id)!;
      if (execution.state !== 'running') return execution;
      const done = { ...execution, state: input.state, properties: { ...execution.properties, ...input.properties } };
      executions.set(id, done);
      return done;
    },
  } as unknown as MetadataStore;
  const warnings: string[] = [];
  const logger = { warn: (_context: object, message: string) => warnings.push(message) } as unknown as Logger;
  const deps: CalibrationDeps = { artifacts, metadata, logger, scratchDir: path.join(dir, 'scratch') };
  return { deps, calls, objects, executions, warnings };
}

/** The fit of a result that has one. */
function fitted(result: EvalCalibration) {
  if ('failed' in result) throw new Error(`expected a fit, got: ${result.failed}`);
  return result;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eval-calibration-'));
  evalFile = path.join(dir, 'eval.parquet');
  const engine = await DataEngine.open({ workDir: dir });
  try {
    // hash(i) / 2^64 is uniform in [0, 1): distance uniform in [0, 1000), the label drawn at sigmoid(2.4 z).
    await engine.run(
      `COPY (SELECT d AS distance,
          CAST(hash(i, 'label') / 18446744073709551616.0 < 1 / (1 + exp(-2.4 * (d - 500) / 288)) AS INTEGER) AS label
        FROM (SELECT i, hash(i) / 18446744073709551616.0 * 1000 AS d FROM range(3000) t(i)))
        TO ${sqlString(evalFile)} (FORMAT parquet)`,
    );
  } finally {
    engine.close();
  }
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  scoring.fail = undefined;
});

describe('evalCalibration', () => {
  const source: CalibrationSource = { eval: evalSplit, model, transform };
  const key = calibrationKey(evalSplit.sha256, model.sha256, MAX_CALIBRATION_ROWS);

  it('fits once from the eval split scored through the graph, and the next window reads it back', async () => {
    const { deps, calls, executions } = fakeDeps();
    const first = fitted(await evalCalibration(deps, source, undefined));
    expect(first.reused).toBe(false);
    expect(first.ref).toMatchObject({ eval: evalSplit.uri, model: model.sha256 });
    expect(first.stored).toMatchObject({
      version: CALIBRATION_ALGORITHM,
      rows: 3000,
      splitRows: 3000,
      eval: evalSplit.uri,
      model: model.sha256,
    });
    expect(first.stored.calibration?.maps).toHaveLength(1);
    expect(first.stored.ece!.after!).toBeLessThan(first.stored.ece!.before / 2);
    expect(calls).toEqual({ materialize: 1, put: 1 });
    // Recorded under its key, for a window without the previous report.
    expect(executions.get(key)).toMatchObject({
      type: CALIBRATION_EXECUTION,
      state: 'complete',
      properties: { result: first.ref },
    });

    const again = await evalCalibration(deps, source, first.ref);
    expect(again).toMatchObject({ reused: true, ref: first.ref });
    expect(fitted(again).stored).toEqual(first.stored);
    expect(calls).toEqual({ materialize: 1, put: 1 });

    const otherModel = await evalCalibration(
      deps,
      { ...source, model: { ...model, sha256: 'n'.repeat(64) } },
      first.ref,
    );
    expect(fitted(otherModel).reused).toBe(false);
    expect(calls).toEqual({ materialize: 2, put: 2 });
  });

  it('finds the fit by its key without the previous report, and keeps one record under retries', async () => {
    const { deps, calls, executions, warnings } = fakeDeps();
    const first = fitted(await evalCalibration(deps, source, undefined));
    // A window with no previous report (the first after a gap, or a retry before its report was written).
    const found = fitted(await evalCalibration(deps, source, undefined));
    expect(found).toEqual({ stored: first.stored, ref: first.ref, reused: true });
    // A previous report whose artifact is gone: the recorded one is read instead.
    const gone: CalibrationRef = { ...first.ref, uri: 's3://bucket/put/gone', sha256: 'f'.repeat(64) };
    expect(fitted(await evalCalibration(deps, source, gone))).toMatchObject({ reused: true, ref: first.ref });
    expect(warnings).toEqual(['the stored calibration cannot be read: fitting it again']);
    expect(calls).toEqual({ materialize: 1, put: 1 });
    expect([...executions.keys()]).toEqual([key]);
  });

  it.each([
    ['overwritten bytes', (objects: Map<string, Buffer>, uri: string) => objects.set(uri, Buffer.from('{}'))],
    ['a deleted object', (objects: Map<string, Buffer>, uri: string) => objects.delete(uri)],
  ])('fits again when the cached and recorded artifact is %s', async (_, corrupt) => {
    const { deps, calls, objects, warnings } = fakeDeps();
    const first = fitted(await evalCalibration(deps, source, undefined));
    corrupt(objects, first.ref.uri);
    const refit = fitted(await evalCalibration(deps, source, first.ref));
    expect(refit.reused).toBe(false);
    // The same rows, graph and algorithm give the same bytes: the put repairs the object the key names.
    expect(refit).toEqual({ ...first, reused: false });
    expect(warnings).toEqual(['the stored calibration cannot be read: fitting it again']);
    expect(calls).toEqual({ materialize: 2, put: 2 });
    expect(fitted(await evalCalibration(deps, source, first.ref)).reused).toBe(true);
  });

  it.each([
    ['is not JSON', 'not json\n'],
    ['is JSON null', 'null\n'],
    ['is of another algorithm', JSON.stringify({ version: 1, eval: evalSplit.uri, model: model.sha256, rows: 5 })],
    ['was fitted by another graph', JSON.stringify({ version: 2, eval: evalSplit.uri, model: 'x', rows: 5 })],
  ])('fits again when the cached artifact %s', async (_, body) => {
    const { deps, calls, warnings } = fakeDeps();
    const put = await deps.artifacts.put(body, { kind: 'calibration.json' });
    const cached: CalibrationRef = { uri: put.uri, sha256: put.sha256, eval: evalSplit.uri, model: model.sha256 };
    const refit = fitted(await evalCalibration(deps, source, cached));
    expect(refit.reused).toBe(false);
    expect(refit.stored.rows).toBe(3000);
    expect(warnings).toHaveLength(1);
    expect(calls).toEqual({ materialize: 1, put: 2 });
  });

  it('stores a graph that cannot score the split as skipped, with the reason, found by its key later', async () => {
    // A graph that also reads `hour`, which the eval file lacks.
    const hourly: FittedTransform = {
      ...transform,
      features: [...transform.features, { ...transform.features[0]!, name: 'hour', expression: 'hour', sql: 'hour' }],
    };
    const graph = exportOnnx({ kind: 'linear', task: 'binary', weights: [[0.8, 0.1]], intercepts: [0] }, hourly);
    const { deps, calls } = fakeDeps(graph.bytes);
    const { stored } = fitted(await evalCalibration(deps, { ...source, transform: hourly }, undefined));
    expect(calls.put).toBe(1);
    expect(stored.calibration).toBeUndefined();
    expect(stored.skipped).toMatch(/could not score its eval split: .*hour/);
    expect(fitted(await evalCalibration(deps, { ...source, transform: hourly }, undefined)).reused).toBe(true);
    expect(calls).toEqual({ materialize: 1, put: 1 });
  });

  it('rethrows a retryable failure of scoring and stores nothing, so the retry fits', async () => {
    const { deps, calls, executions } = fakeDeps();
    const changed = new EvaluationError('the eval file changed while it was read (3000 rows)', { retryable: true });
    scoring.fail = changed;
    await expect(evalCalibration(deps, source, undefined)).rejects.toBe(changed);
    expect(calls.put).toBe(0);
    expect(executions.size).toBe(0);
    scoring.fail = undefined;
    expect(fitted(await evalCalibration(deps, source, undefined)).stored.rows).toBe(3000);
  });

  it.each([
    ['a graph onnxruntime cannot load', () => fakeDeps(Buffer.from('not an onnx graph'))],
    [
      'a TypeError while scoring',
      () => {
        scoring.fail = new TypeError('expected a DOUBLE label vector');
        return fakeDeps();
      },
    ],
  ])('gives up on %s without storing anything, so a later window tries again', async (_, setUp) => {
    const { deps, calls, executions, warnings } = setUp();
    const result = await evalCalibration(deps, source, undefined);
    expect(result).toEqual({ failed: expect.stringMatching(/^the calibration could not be fitted: ./) });
    expect(calls.put).toBe(0);
    expect(executions.size).toBe(0);
    expect(warnings).toEqual(["the calibration could not be fitted: the window's estimates go uncalibrated"]);
  });

  it('gives up on an eval split that fails its integrity check; a store it cannot reach is for the retry', async () => {
    const { deps, calls } = fakeDeps();
    const corrupt = new ArtifactIntegrityError(evalSplit.uri, evalSplit.sha256, 'f'.repeat(64), 10);
    const unreachable = new Error('connect ECONNREFUSED 127.0.0.1:9000');
    const reading = (error: Error) => ({
      ...deps,
      artifacts: { ...deps.artifacts, materialize: () => Promise.reject(error) } as unknown as ArtifactStore,
    });
    expect(await evalCalibration(reading(corrupt), source, undefined)).toEqual({
      failed: expect.stringContaining('the eval split or the model is corrupt: Integrity check failed'),
    });
    await expect(evalCalibration(reading(unreachable), source, undefined)).rejects.toBe(unreachable);
    expect(calls.put).toBe(0);
  });

  it('fits on a seeded sample of a split larger than the cap: the same rows every time, in file order', async () => {
    const sample = { rows: 1000, seed: 7 };
    const engine = await DataEngine.open({ workDir: dir });
    try {
      const score = (s?: typeof sample) =>
        scoreOnnxModel({ onnx, evalPath: evalFile, transform, engine, ...(s ? { sample: s } : {}) });
      const [all, once, twice, other] = [
        await score(),
        await score(sample),
        await score(sample),
        await score({ ...sample, seed: 8 }),
      ];
      expect(once).toMatchObject({ fileRows: 3000 });
      expect(once.labels).toHaveLength(1000);
      expect(twice).toEqual(once);
      expect(other.outputs).not.toEqual(once.outputs);
      // Rows of the file, in file order, not its first 1000.
      const positions = Array.from({ length: 1000 }, (_, i) => {
        const p = once.outputs[2 * i + 1]!;
        return all.outputs.findIndex((q, j) => j % 2 === 1 && q === p);
      });
      expect(positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1]!))).toBe(true);
      expect(positions.at(-1)!).toBeGreaterThan(2 * 1000);
    } finally {
      engine.close();
    }

    const fits = [];
    for (let i = 0; i < 2; i++)
      fits.push(fitted(await evalCalibration(fakeDeps().deps, source, undefined, { maxRows: 1000 })));
    expect(fits[0]!.stored).toMatchObject({ rows: 1000, splitRows: 3000 });
    expect(fits[1]).toEqual(fits[0]);
  });
});

describe('windowCalibration', () => {
  it('calibrates a window of the classes it was fitted for, and says why not otherwise', async () => {
    const { deps } = fakeDeps();
    const notes: string[] = [];
    const base = { eval: evalSplit, transform, model, cached: undefined };
    const calibrated = await windowCalibration(deps, { ...base, classCount: 2, binary: true }, notes);
    expect(calibrated.calibration).toBeDefined();
    expect(calibrated.report).toMatchObject({
      calibrated: true,
      evalRows: 3000,
      evalSplitRows: 3000,
      artifact: { eval: evalSplit.uri },
    });
    expect(notes.some((n) => n.startsWith('estimates read the probabilities calibrated on 3000 eval rows by'))).toBe(
      true,
    );

    const mismatch = await windowCalibration(
      deps,
      { ...base, classCount: 3, binary: false, cached: calibrated.report.artifact },
      notes,
    );
    expect(mismatch.calibration).toBeUndefined();
    expect(mismatch.report).toMatchObject({ calibrated: false, reason: expect.stringContaining('3 probabilities') });

    const none = await windowCalibration(deps, { ...base, eval: undefined, classCount: 2, binary: true }, notes);
    expect(none).toEqual({
      report: { calibrated: false, reason: 'the training run recorded no eval split to calibrate on' },
    });
    expect(notes.at(-1)).toBe(
      'estimates take the logged probabilities as calibrated: the training run recorded no eval split to calibrate on',
    );
  });

  it('reports how many of how many eval rows a sampled calibration was fitted on', async () => {
    const notes: string[] = [];
    const input = { eval: evalSplit, transform, model, cached: undefined, classCount: 2, binary: true, maxRows: 1000 };
    const { report } = await windowCalibration(fakeDeps().deps, input, notes);
    expect(report).toMatchObject({ calibrated: true, evalRows: 1000, evalSplitRows: 3000 });
    expect(notes.at(-1)).toMatch(
      /^estimates read the probabilities calibrated on 1000 eval rows \(a seeded sample of the split's 3000\) by/,
    );
  });

  it('leaves a window whose graph cannot be run uncalibrated, with the reason, storing nothing', async () => {
    const { deps, calls, executions } = fakeDeps(Buffer.from('not an onnx graph'));
    const notes: string[] = [];
    const input = { eval: evalSplit, transform, model, cached: undefined, classCount: 2, binary: true };
    const result = await windowCalibration(deps, input, notes);
    expect(result).toEqual({
      report: { calibrated: false, reason: expect.stringMatching(/^the calibration could not be fitted: /) },
    });
    expect(notes).toEqual([`estimates take the logged probabilities as calibrated: ${result.report.reason}`]);
    expect(calls.put).toBe(0);
    expect(executions.size).toBe(0);
  });
});
