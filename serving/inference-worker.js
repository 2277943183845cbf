// The inference thread's side (started by inference-thread.ts): holds onnxruntime sessions and runs them.
// onnxruntime-node creates and runs a session synchronously on the thread that calls it, so doing both here keeps the
// API's event loop free: a deploy's session creation (tens of milliseconds for a tree ensemble) no longer stalls the
// requests in flight, and scoring overlaps with HTTP work on the other core.
//
// Plain JavaScript on purpose: a TypeScript entry would need tsx registered in the thread (a loader thread of its
// own and a compile), which made starting a thread, once per deploy, cost a few hundred milliseconds of CPU that the
// requests being served needed. The messages are typed in inference-protocol.ts.
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

if (!parentPort) throw new Error('inference-worker.js runs as a worker thread');
const port = parentPort;
/** @type {Map<number, ort.InferenceSession>} */
const sessions = new Map();

port.on('message', (/** @type {import('./inference-protocol.js').InferenceRequest} */ request) => {
  handle(request).then(
    (reply) => port.postMessage(reply),
    (error) => {
      const { name, message } = error instanceof Error ? error : new Error(String(error));
      port.postMessage({ call: request.call, ok: false, error: { name, message } });
    },
  );
});
port.postMessage({ call: 0, ok: true, result: 'ready' });

/** @param {import('./inference-protocol.js').InferenceRequest} request */
async function handle(request) {
  switch (request.type) {
    case 'load': {
      const session = await ort.InferenceSession.create(request.bytes, request.options);
      sessions.set(request.session, session);
      const { inputNames, outputNames, inputMetadata, outputMetadata } = session;
      return { call: request.call, ok: true, result: { inputNames, outputNames, inputMetadata, outputMetadata } };
    }
    case 'run': {
      const session = sessions.get(request.session);
      if (!session) throw new Error(`session ${request.session} is not loaded in the inference thread`);
      /** @type {Record<string, ort.Tensor>} */
      const feeds = {};
      for (const [name, t] of Object.entries(request.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
      const outputs = await session.run(feeds, request.fetches);
      /** @type {Record<string, { type: string, data: unknown, dims: readonly number[] }>} */
      const result = {};
      for (const [name, t] of Object.entries(outputs)) result[name] = { type: t.type, data: t.data, dims: t.dims };
      return { call: request.call, ok: true, result };
    }
    case 'release': {
      const session = sessions.get(request.session);
      sessions.delete(request.session);
      await session?.release();
      return { call: request.call, ok: true, result: null };
    }
    default:
      throw new Error(`unknown request ${JSON.stringify(request)}`);
  }
}
