/**
 * The inference thread's side (started by inference-thread.ts through models/thread-bootstrap.js): holds the
 * onnxruntime sessions and runs them. onnxruntime-node creates and runs a session synchronously on the thread that
 * calls it, so doing both here keeps the API's event loop free: a deploy's session creation (tens of milliseconds for
 * a tree ensemble) no longer stalls every request in flight, and scoring overlaps with HTTP work on the other core.
 */
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { InferenceReply, InferenceRequest, WireTensor } from './inference-protocol.js';

if (!parentPort) throw new Error('inference-worker.ts runs as a worker thread');
const port = parentPort;
const sessions = new Map<number, ort.InferenceSession>();

port.on('message', (request: InferenceRequest) => {
  void handle(request).then(
    (reply) => port.postMessage(reply),
    (error: unknown) => {
      const { name, message } = error instanceof Error ? error : new Error(String(error));
      port.postMessage({ call: request.call, ok: false, error: { name, message } } satisfies InferenceReply);
    },
  );
});
port.postMessage({ call: 0, ok: true, result: 'ready' } satisfies InferenceReply);

async function handle(request: InferenceRequest): Promise<InferenceReply> {
  switch (request.type) {
    case 'load': {
      const session = await ort.InferenceSession.create(request.bytes, request.options);
      sessions.set(request.session, session);
      const { inputNames, outputNames, inputMetadata, outputMetadata } = session;
      return { call: request.call, ok: true, result: { inputNames, outputNames, inputMetadata, outputMetadata } };
    }
    case 'run': {
      const session = sessionOf(request.session);
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(request.feeds)) feeds[name] = toTensor(t);
      const outputs = await session.run(feeds, request.fetches);
      const result: Record<string, WireTensor> = {};
      for (const [name, t] of Object.entries(outputs)) {
        result[name] = { type: t.type, data: t.data as WireTensor['data'], dims: t.dims };
      }
      return { call: request.call, ok: true, result };
    }
    case 'release': {
      const session = sessions.get(request.session);
      sessions.delete(request.session);
      await session?.release();
      return { call: request.call, ok: true, result: null };
    }
  }
}

function sessionOf(id: number): ort.InferenceSession {
  const session = sessions.get(id);
  if (!session) throw new Error(`session ${id} is not loaded in the inference thread`);
  return session;
}

function toTensor(t: WireTensor): ort.Tensor {
  return new ort.Tensor(t.type as 'float32', t.data as Float32Array, t.dims);
}
