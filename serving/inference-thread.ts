/**
 * A worker thread that creates and runs onnxruntime sessions off the API's event loop (why: inference-worker.js).
 * Sessions live in the thread; the event loop holds {@link ThreadSession} handles that send feeds and get outputs
 * back by message. Feed buffers are transferred, not copied; outputs are small (a label and K probabilities per row)
 * and are copied. Serving gives each loaded version a thread of its own (`createServing`).
 *
 * A crash of the thread fails what it had in flight and every later call with {@link InferenceThreadError}; the
 * pool's load retries then fail too and the failure is reported the way a broken model's is.
 */
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { InferenceReply, InferenceRequest, SessionDescription, WireTensor } from './inference-protocol.js';
import type { ScoringSession } from './loaded-model.js';

// Plain JavaScript, started directly: no tsx in the thread (why: inference-worker.js).
const ENTRY = new URL('./inference-worker.js', import.meta.url);

/** The thread is gone (crashed or terminated). */
export class InferenceThreadError extends Error {
  override readonly name = 'InferenceThreadError';
}

/** An error the thread reported for one call, with onnxruntime's message. */
export class RemoteInferenceError extends Error {
  constructor(
    readonly remoteName: string,
    message: string,
  ) {
    super(message);
    this.name = 'RemoteInferenceError';
  }
}

/** A session that lives in the inference thread: what the loader checks, and what LoadedModel runs. */
export interface ThreadSession extends ScoringSession, SessionDescription {}

interface PendingCall {
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
}

export class InferenceThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, PendingCall>();
  readonly #ready: Promise<void>;
  #nextCall = 1;
  #nextSession = 1;
  #failure: InferenceThreadError | undefined;

  constructor() {
    // No inherited --import tsx: the entry is JavaScript, and registering tsx is what made threads slow to start.
    this.#worker = new Worker(ENTRY, { execArgv: [] });
    // Idle, the thread must not keep the process alive; close() ends it on shutdown.
    this.#worker.unref();
    let ready!: () => void;
    let failed!: (error: Error) => void;
    this.#ready = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    // A caller may never await readiness (nothing loaded yet): no unhandled rejection then.
    this.#ready.catch(() => undefined);
    this.#worker.on('message', (reply: InferenceReply) => {
      if (reply.call === 0) {
        ready();
        return;
      }
      const pending = this.#pending.get(reply.call);
      if (!pending) return;
      this.#pending.delete(reply.call);
      if (reply.ok) pending.resolve(reply.result);
      else pending.reject(new RemoteInferenceError(reply.error.name, reply.error.message));
    });
    const fail = (why: string) => {
      this.#failure ??= new InferenceThreadError(`the inference thread ${why}`);
      failed(this.#failure);
      for (const pending of this.#pending.values()) pending.reject(this.#failure);
      this.#pending.clear();
    };
    this.#worker.on('error', (error) => fail(`failed: ${error.message}`));
    this.#worker.on('exit', (code) => fail(`exited with code ${code}`));
  }

  /** Creates a session from ONNX bytes in the thread. The bytes are copied (the caller keeps its buffer). */
  async createSession(bytes: Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<ThreadSession> {
    const session = this.#nextSession++;
    const description = (await this.#call({ type: 'load', session, bytes, options })) as SessionDescription;
    return {
      ...description,
      run: async (feeds, fetches) => {
        const wire: Record<string, WireTensor> = {};
        const transfer: ArrayBuffer[] = [];
        for (const [name, tensor] of Object.entries(feeds)) {
          const data = tensor.data as WireTensor['data'];
          wire[name] = { type: tensor.type, data, dims: tensor.dims };
          if (ArrayBuffer.isView(data) && data.buffer instanceof ArrayBuffer) transfer.push(data.buffer);
        }
        const outputs = (await this.#call({ type: 'run', session, feeds: wire, fetches }, transfer)) as Record<
          string,
          WireTensor
        >;
        const tensors: Record<string, ort.Tensor> = {};
        for (const [name, t] of Object.entries(outputs)) {
          tensors[name] = new ort.Tensor(t.type as 'float32', t.data as Float32Array, t.dims);
        }
        return tensors;
      },
      release: async () => {
        await this.#call({ type: 'release', session });
      },
    };
  }

  /** Whether the thread has crashed, exited or been closed (every call fails). */
  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Ends the thread; calls in flight fail. */
  async close(): Promise<void> {
    this.#failure ??= new InferenceThreadError('the inference thread was closed');
    await this.#worker.terminate();
  }

  async #call(request: DistributiveOmit<InferenceRequest, 'call'>, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.#failure) throw this.#failure;
    await this.#ready;
    const call = this.#nextCall++;
    return new Promise((resolve, reject) => {
      this.#pending.set(call, { resolve, reject });
      // Referenced while a call is in flight, so a process waiting on a prediction does not exit under it.
      if (this.#pending.size === 1) this.#worker.ref();
      this.#worker.postMessage({ ...request, call }, transfer);
    }).finally(() => {
      if (this.#pending.size === 0) this.#worker.unref();
    });
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
