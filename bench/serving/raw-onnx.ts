/** The model alone, in this process: what onnxruntime-node costs per run and per load, without HTTP or batching. */
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { ModelVersion } from '../../schema/registry.js';
import { readClasses } from '../../serving/load-model.js';
import { buildFeeds } from '../../serving/loaded-model.js';
import { compileSignature, type Instance } from '../../serving/signature.js';
import type { PlatformStorage } from '../../storage/open-storage.js';
import { fmtInt, fmtMs } from './format.js';
import type { Models } from './models.js';

export interface RawOnnx {
  readonly batch1RunsPerSec: number;
  readonly batch1024RowsPerSec: number;
  /** What loading the version costs the thread that loads it, in ms (serving loads on its event loop). */
  readonly load: { readonly readClassesMs: number; readonly createSessionMs: number; readonly firstRunMs: number };
}

async function rawOnnx(bytes: Uint8Array, version: ModelVersion, instances: readonly Instance[]): Promise<RawOnnx> {
  // The steps of serving/load-model.ts, timed: the classes from the graph's metadata (a protobuf decode), the session
  // (onnxruntime-node parses and optimizes the graph synchronously), the first run.
  let began = performance.now();
  readClasses(bytes);
  const readClassesMs = performance.now() - began;
  began = performance.now();
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const createSessionMs = performance.now() - began;
  try {
    const signature = compileSignature(version.signature);
    began = performance.now();
    await session.run(buildFeeds(signature, [instances.slice(0, 1)], 1), signature.fetches);
    const firstRunMs = performance.now() - began;
    const rate = async (rows: readonly Instance[], ms: number) => {
      const feeds = buildFeeds(signature, [rows], rows.length);
      for (let i = 0; i < 50; i++) await session.run(feeds, signature.fetches);
      let runs = 0;
      const began = performance.now();
      while (performance.now() - began < ms) {
        await session.run(feeds, signature.fetches);
        runs++;
      }
      return runs / ((performance.now() - began) / 1000);
    };
    const batch = Array.from({ length: 1024 }, (_, i) => instances[i % instances.length]!);
    return {
      load: { readClassesMs, createSessionMs, firstRunMs },
      batch1RunsPerSec: await rate(instances.slice(0, 1), 1500),
      batch1024RowsPerSec: 1024 * (await rate(batch, 1500)),
    };
  } finally {
    await session.release();
  }
}

/**
 * Measures the logistic regression and the trees' first version with onnxruntime-node in this process (one thread)
 * on `instances`, and prints a line for each. Keyed `lr` and `gbt`.
 */
export async function measureRawOnnx(
  artifacts: PlatformStorage['artifacts'],
  models: Models,
  instances: readonly Instance[],
): Promise<Record<string, RawOnnx>> {
  const raw: Record<string, RawOnnx> = {};
  for (const [key, version] of [
    ['lr', models.lr],
    ['gbt', models.gbt[0]],
  ] as const) {
    raw[key] = await rawOnnx(await artifacts.get({ uri: version.onnxUri, sha256: version.sha256 }), version, instances);
    console.log(
      `raw onnxruntime-node, in this process, ${key}: batch 1 ${fmtInt(raw[key].batch1RunsPerSec)} runs/s, ` +
        `batch 1,024 ${fmtInt(raw[key].batch1024RowsPerSec)} rows/s; loading: classes ` +
        `${fmtMs(raw[key].load.readClassesMs)} ms, session ${fmtMs(raw[key].load.createSessionMs)} ms, ` +
        `first run ${fmtMs(raw[key].load.firstRunMs)} ms`,
    );
  }
  return raw;
}
