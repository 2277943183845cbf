/**
 * The calibration behind a window's estimates, on a real graph and eval file with a stand-in artifact store: fitted
 * once from the eval split scored through the version's ONNX graph, read back by the next window of the same split
 * and graph, fitted again for another graph; a graph that cannot score the split is stored as skipped; the window
 * notes why its estimates are not calibrated.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlString } from '../../../data/engine.js';
import type { FittedTransform } from '../../../data/transform.js';
import { exportOnnx } from '../../../models/onnx/index.js';
import { evalCalibration, windowCalibration, type CalibrationSource } from '../../../monitoring/eval-calibration.js';
import type { ArtifactRef, ArtifactStore } from '../../../storage/artifact-store.js';

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

/** An artifact store over the eval file and a graph, keeping what was put, counting reads of the split. */
function fakeArtifacts(graph: Uint8Array = onnx) {
  const stored = new Map<string, Buffer>([[model.uri, Buffer.from(graph)]]);
  const calls = { materialize: 0, put: 0 };
  const store = {
    materialize: async () => {
      calls.materialize++;
      return evalFile;
    },
    put: async (body: string) => {
      calls.put++;
      const uri = `s3://bucket/put/${stored.size}`;
      stored.set(uri, Buffer.from(body));
      return { uri, sha256: 'b'.repeat(64), bytes: body.length };
    },
    get: async (address: { uri: string }) => stored.get(address.uri)!,
  } as unknown as ArtifactStore;
  return { store, calls };
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

describe('evalCalibration', () => {
  const source: CalibrationSource = { eval: evalSplit, model, transform };

  it('fits once from the eval split scored through the graph, and the next window reads it back', async () => {
    const { store, calls } = fakeArtifacts();
    const deps = { artifacts: store, scratchDir: path.join(dir, 'scratch') };
    const first = await evalCalibration(deps, source, undefined);
    expect(first.reused).toBe(false);
    expect(first.ref).toMatchObject({ eval: evalSplit.uri, model: model.sha256 });
    expect(first.stored).toMatchObject({ version: 1, rows: 3000, eval: evalSplit.uri, model: model.sha256 });
    expect(first.stored.calibration?.maps).toHaveLength(1);
    expect(first.stored.ece!.after!).toBeLessThan(first.stored.ece!.before / 2);
    expect(calls).toEqual({ materialize: 1, put: 1 });

    const again = await evalCalibration(deps, source, first.ref);
    expect(again).toMatchObject({ reused: true, ref: first.ref });
    expect(again.stored).toEqual(first.stored);
    expect(calls).toEqual({ materialize: 1, put: 1 });

    const otherModel = await evalCalibration(
      deps,
      { ...source, model: { ...model, sha256: 'n'.repeat(64) } },
      first.ref,
    );
    expect(otherModel.reused).toBe(false);
    expect(calls).toEqual({ materialize: 2, put: 2 });
  });

  it('stores a graph that cannot score the split as skipped, with the reason', async () => {
    // A graph that also reads `hour`, which the eval file lacks.
    const hourly: FittedTransform = {
      ...transform,
      features: [...transform.features, { ...transform.features[0]!, name: 'hour', expression: 'hour', sql: 'hour' }],
    };
    const graph = exportOnnx({ kind: 'linear', task: 'binary', weights: [[0.8, 0.1]], intercepts: [0] }, hourly);
    const { store, calls } = fakeArtifacts(graph.bytes);
    const deps = { artifacts: store, scratchDir: path.join(dir, 'scratch') };
    const { stored } = await evalCalibration(deps, { ...source, transform: hourly }, undefined);
    expect(calls.put).toBe(1);
    expect(stored.calibration).toBeUndefined();
    expect(stored.skipped).toMatch(/could not score its eval split: .*hour/);
  });
});

describe('windowCalibration', () => {
  it('calibrates a window of the classes it was fitted for, and says why not otherwise', async () => {
    const { store } = fakeArtifacts();
    const deps = { artifacts: store, scratchDir: path.join(dir, 'scratch') };
    const notes: string[] = [];
    const base = { eval: evalSplit, transform, model, cached: undefined };
    const fitted = await windowCalibration(deps, { ...base, classCount: 2, binary: true }, notes);
    expect(fitted.calibration).toBeDefined();
    expect(fitted.report).toMatchObject({ calibrated: true, evalRows: 3000, artifact: { eval: evalSplit.uri } });
    expect(notes.some((n) => n.startsWith('estimates read the probabilities calibrated on 3000 eval rows'))).toBe(true);

    const mismatch = await windowCalibration(
      deps,
      { ...base, classCount: 3, binary: false, cached: fitted.report.artifact },
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
});
