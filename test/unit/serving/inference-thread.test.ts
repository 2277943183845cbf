/**
 * The inference thread: sessions created and run in a worker thread give what the same session gives in process;
 * its errors come back as errors of the call, and a closed thread fails calls instead of hanging them.
 */
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { exportOnnx } from '../../../models/onnx/index.js';
import { InferenceThread, InferenceThreadError, RemoteInferenceError } from '../../../serving/inference-thread.js';
import { buildFeeds } from '../../../serving/loaded-model.js';
import { compileSignature } from '../../../serving/signature.js';
import { makeTransform, randomLinear, randomRows, randomTrees } from '../models/onnx-fixtures.js';

const OPTIONS: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], intraOpNumThreads: 1 };

/** Valid instances for the signature: numbers (or null) for numeric inputs, strings (or null) for string inputs. */
function instancesFor(transform: ReturnType<typeof makeTransform>, count: number, seed: number) {
  return randomRows(transform, count, seed).map((row) => {
    const instance: Record<string, unknown> = {};
    for (const f of transform.features) {
      const v = row[f.name];
      if (f.kind === 'numeric') instance[f.name] = typeof v === 'number' && Number.isFinite(v) ? v : null;
      else instance[f.name] = v === undefined || v === null ? null : String(v);
    }
    return instance;
  });
}

describe('InferenceThread', () => {
  const thread = new InferenceThread();
  afterAll(() => thread.close());

  for (const kind of ['linear', 'trees'] as const) {
    it(`runs a ${kind} model exactly as the same session in process`, async () => {
      const transform = makeTransform('multiclass');
      const model =
        kind === 'linear' ? randomLinear('multiclass', transform, 3) : randomTrees('multiclass', transform, 3);
      const { bytes, signature } = exportOnnx(model, transform);
      const compiled = compileSignature(signature);
      const instances = instancesFor(transform, 64, 9);

      const remote = await thread.createSession(bytes, OPTIONS);
      const local = await ort.InferenceSession.create(bytes, OPTIONS);
      expect(remote.inputNames).toEqual(local.inputNames);
      expect(remote.outputNames).toEqual(local.outputNames);
      expect(remote.inputMetadata).toEqual(local.inputMetadata);

      // Separate feeds: the thread's run transfers (detaches) the numeric buffers it is given.
      const fromThread = await remote.run(buildFeeds(compiled, [instances], 64), compiled.fetches);
      const inProcess = await local.run(buildFeeds(compiled, [instances], 64), compiled.fetches);
      for (const name of compiled.fetches) {
        expect(fromThread[name]!.type).toBe(inProcess[name]!.type);
        expect(fromThread[name]!.dims).toEqual(inProcess[name]!.dims);
        expect(Array.from(fromThread[name]!.data as ArrayLike<unknown>)).toEqual(
          Array.from(inProcess[name]!.data as ArrayLike<unknown>),
        );
      }
      await remote.release();
      await local.release();
      await expect(remote.run(buildFeeds(compiled, [instances], 64), compiled.fetches)).rejects.toThrow(
        /not loaded in the inference thread/,
      );
    });
  }

  it("reports onnxruntime's error for bytes that are not a graph, and keeps serving", async () => {
    const error = await thread.createSession(new Uint8Array([1, 2, 3, 4]), OPTIONS).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteInferenceError);
    const transform = makeTransform('binary');
    const { bytes } = exportOnnx(randomLinear('binary', transform, 1), transform);
    const session = await thread.createSession(bytes, OPTIONS);
    expect(session.outputNames).toEqual(['label', 'probabilities']);
    await session.release();
  });

  it('fails calls once the thread is closed', async () => {
    const closing = new InferenceThread();
    const transform = makeTransform('binary');
    const { bytes } = exportOnnx(randomLinear('binary', transform, 1), transform);
    await closing.createSession(bytes, OPTIONS);
    await closing.close();
    await expect(closing.createSession(bytes, OPTIONS)).rejects.toBeInstanceOf(InferenceThreadError);
  });
});
