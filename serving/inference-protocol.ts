/** Messages between the API's event loop (inference-thread.ts) and the inference thread (inference-worker.js). */
import type * as ort from 'onnxruntime-node';

/** A tensor as it crosses the thread boundary (structured clone; feed buffers are transferred). */
export interface WireTensor {
  readonly type: ort.Tensor.Type;
  readonly data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | readonly string[];
  readonly dims: readonly number[];
}

export type InferenceRequest =
  | {
      readonly type: 'load';
      readonly call: number;
      readonly session: number;
      readonly bytes: Uint8Array;
      readonly options: ort.InferenceSession.SessionOptions;
    }
  | {
      readonly type: 'run';
      readonly call: number;
      readonly session: number;
      readonly feeds: Record<string, WireTensor>;
      readonly fetches: readonly string[];
    }
  | { readonly type: 'release'; readonly call: number; readonly session: number };

/** What a loaded session looks like from outside: its names and metadata. */
export interface SessionDescription {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
}

/** `call` 0 is the thread's one-off "ready" message. */
export type InferenceReply =
  | { readonly call: number; readonly ok: true; readonly result: unknown }
  | { readonly call: number; readonly ok: false; readonly error: { readonly name: string; readonly message: string } };
