/**
 * One model version loaded for serving: its onnxruntime session, its compiled signature, its micro-batcher, and a
 * reference count that decides when the session may be released.
 */
import * as ort from 'onnxruntime-node';
import { MicroBatcher, type BatchSlice, type MicroBatcherOptions } from './batcher.js';
import type { ModelMetrics } from './metrics.js';
import {
  OUTPUT_LABEL,
  OUTPUT_PREDICTION,
  OUTPUT_PROBABILITIES,
  type CompiledSignature,
  type Instance,
} from './signature.js';

/** What serving needs of an onnxruntime session; tests substitute fakes. */
export interface ScoringSession {
  run(feeds: Record<string, ort.Tensor>, fetches: readonly string[]): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

/** The registry's identity of the loaded version. */
export interface ModelIdentity {
  /** The registered model's name. */
  readonly name: string;
  readonly version: number;
  readonly versionId: string;
  readonly sha256: string;
}

/** A class label as the training data had it (the ONNX metadata's `temporal-mlops.classes`). */
export type ClassLabel = string | number | boolean;

/** One prediction as the API returns it. */
export type Prediction = { label: ClassLabel; probabilities: number[] } | { prediction: number | null };

/** The output tensors of one run, shared by every request of the batch. */
export type RunOutputs = Record<string, ort.Tensor>;

export interface LoadedModelOptions extends MicroBatcherOptions {
  /** Called when the session has been released (after retirement and the last in-flight request). */
  readonly onReleased?: (model: LoadedModel) => void;
  /** Called when releasing the session failed (logged by the pool). */
  readonly onReleaseError?: (model: LoadedModel, error: unknown) => void;
}

/**
 * A loaded version. Requests `acquire()` it before use and `release()` it after; once `retire()`d (swapped out, or
 * evicted) no new request acquires it and the session is released when the last in-flight request releases it.
 */
export class LoadedModel {
  readonly identity: ModelIdentity;
  /** `{ name, version, versionId }`, built once: what every response names. */
  readonly summary: { readonly name: string; readonly version: number; readonly versionId: string };
  /** `{"model":<summary>,`: how every predict response begins. */
  readonly responseHead: string;
  /** `"classes":[...],` for a classifier whose graph records its classes, else empty. */
  readonly responseClasses: string;
  readonly signature: CompiledSignature;
  /** The classes in the order of the `probabilities` columns, when the graph records them. */
  readonly classes: readonly ClassLabel[] | undefined;
  readonly metrics: ModelMetrics;
  /** performance.now() of the last request that addressed this version explicitly (by number or alias). */
  lastExplicitUse = 0;
  readonly #session: ScoringSession;
  readonly #batcher: MicroBatcher<readonly Instance[], RunOutputs>;
  readonly #options: LoadedModelOptions;
  /** The JSON of each class label, by index. */
  readonly #labelJson: readonly string[];
  #refs = 0;
  #retired = false;
  #released: Promise<void> | undefined;

  constructor(
    identity: ModelIdentity,
    signature: CompiledSignature,
    session: ScoringSession,
    metrics: ModelMetrics,
    classes: readonly ClassLabel[] | undefined,
    options: LoadedModelOptions = {},
  ) {
    this.identity = identity;
    this.summary = Object.freeze({ name: identity.name, version: identity.version, versionId: identity.versionId });
    this.signature = signature;
    this.#session = session;
    this.metrics = metrics;
    this.classes = classes;
    this.#labelJson = (classes ?? []).map((c) => JSON.stringify(c));
    this.responseHead = `{"model":${JSON.stringify(this.summary)},`;
    this.responseClasses = classes === undefined ? '' : `"classes":${JSON.stringify(classes)},`;
    this.#options = options;
    this.#batcher = new MicroBatcher((items, rows) => this.#run(items, rows), rowsOf, {
      ...options,
      onBatch: (rows, requests) => {
        metrics.batchSize.observe(rows);
        options.onBatch?.(rows, requests);
      },
    });
  }

  /** In-flight requests holding this model. */
  get refs(): number {
    return this.#refs;
  }

  get retired(): boolean {
    return this.#retired;
  }

  /** Whether the session has been released (or is being released). */
  get released(): boolean {
    return this.#released !== undefined;
  }

  /** Takes a reference for one request; false once the model is retired (resolve again). */
  acquire(): boolean {
    if (this.#retired) return false;
    this.#refs++;
    return true;
  }

  /** Gives back a reference taken by {@link acquire}; the last one after retirement releases the session. */
  release(): void {
    this.#refs--;
    if (this.#refs === 0 && this.#retired) void this.#releaseSession();
  }

  /**
   * Takes the model out of service: new requests no longer acquire it; the session is released now when nothing
   * holds it, else when the last in-flight request (queued ones included) gives it back. Idempotent.
   */
  retire(): Promise<void> {
    this.#retired = true;
    if (this.#refs === 0) return this.#releaseSession();
    return Promise.resolve();
  }

  /**
   * Scores validated instances in the next micro-batch; the caller must hold a reference. `abandoned` tells the
   * batcher when the caller has gone, so that waiting work is dropped (see MicroBatcher.submit).
   */
  score(instances: readonly Instance[], abandoned?: () => boolean): Promise<BatchSlice<RunOutputs>> {
    return this.#batcher.submit(instances, abandoned);
  }

  /** Rows waiting for this model's next run. */
  get queuedRows(): number {
    return this.#batcher.queuedRows;
  }

  /** Runs the graph once on synthetic values (0 for numbers, "" for strings): the first run's one-off costs. */
  async warmUp(): Promise<void> {
    const instance: Record<string, unknown> = {};
    for (const input of this.signature.inputs) instance[input.name] = input.numeric ? 0 : '';
    const outputs = await this.#run([[instance]], 1);
    this.predictionJsonParts({ result: outputs, offset: 0, rows: 1 });
  }

  /**
   * Each prediction of the caller's slice as JSON text, written straight from the output tensors: exactly
   * `JSON.stringify` of each of `this.predictions(slice)` without building the objects first (for 1,000-instance
   * requests, building and stringifying them was a tenth of the route's time). The response and the prediction log
   * share the text.
   */
  predictionJsonParts(slice: BatchSlice<RunOutputs>): string[] {
    const { result, offset, rows } = slice;
    const parts = new Array<string>(rows);
    if (this.signature.task === 'regression') {
      const values = result[OUTPUT_PREDICTION]!.data as Float64Array | Float32Array;
      for (let i = 0; i < rows; i++) {
        const v = values[offset + i]!;
        parts[i] = Number.isFinite(v) ? `{"prediction":${v}}` : '{"prediction":null}';
      }
      return parts;
    }
    const labels = result[OUTPUT_LABEL]!.data as BigInt64Array;
    const probabilities = result[OUTPUT_PROBABILITIES]!;
    const p = probabilities.data as Float32Array;
    const k = probabilities.dims[1] ?? 1;
    const labelJson = this.#labelJson;
    for (let i = 0; i < rows; i++) {
      const index = Number(labels[offset + i]);
      const start = (offset + i) * k;
      // JSON.stringify writes a non-finite number as null; String() writes a finite one exactly as it does.
      let row = Number.isFinite(p[start]!) ? String(p[start]!) : 'null';
      for (let j = 1; j < k; j++) row += Number.isFinite(p[start + j]!) ? `,${p[start + j]!}` : ',null';
      parts[i] =
        `{"label":${labelJson[index] ?? JSON.stringify(this.classes?.[index] ?? index)},"probabilities":[${row}]}`;
    }
    return parts;
  }

  /** Turns a caller's slice of a run's outputs into the API's predictions. */
  predictions(slice: BatchSlice<RunOutputs>): Prediction[] {
    const { result, offset, rows } = slice;
    const out: Prediction[] = new Array<Prediction>(rows);
    if (this.signature.task === 'regression') {
      const values = result[OUTPUT_PREDICTION]!.data as Float64Array | Float32Array;
      for (let i = 0; i < rows; i++) {
        const v = values[offset + i]!;
        out[i] = { prediction: Number.isFinite(v) ? v : null };
      }
      return out;
    }
    const labels = result[OUTPUT_LABEL]!.data as BigInt64Array;
    const probabilities = result[OUTPUT_PROBABILITIES]!;
    const p = probabilities.data as Float32Array;
    const k = probabilities.dims[1] ?? 1;
    const classes = this.classes;
    for (let i = 0; i < rows; i++) {
      const index = Number(labels[offset + i]);
      const start = (offset + i) * k;
      const row = new Array<number>(k);
      for (let j = 0; j < k; j++) row[j] = p[start + j]!;
      out[i] = { label: classes?.[index] ?? index, probabilities: row };
    }
    return out;
  }

  #run(items: readonly (readonly Instance[])[], rows: number): Promise<RunOutputs> {
    if (this.#released)
      return Promise.reject(new Error(`model ${this.identity.name} v${this.identity.version} was released`));
    return this.#session.run(buildFeeds(this.signature, items, rows), this.signature.fetches);
  }

  #releaseSession(): Promise<void> {
    this.#released ??= this.#session.release().then(
      () => this.#options.onReleased?.(this),
      (error: unknown) => this.#options.onReleaseError?.(this, error),
    );
    return this.#released;
  }
}

function rowsOf(instances: readonly Instance[]): number {
  return instances.length;
}

/**
 * One [rows, 1] tensor per input over the instances of every request in the batch, in order. Values were validated:
 * numbers or null for numeric inputs (null → NaN, the graph's missing marker), strings or null for string inputs
 * (null → "").
 */
export function buildFeeds(
  signature: CompiledSignature,
  batches: readonly (readonly Instance[])[],
  rows: number,
): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const dims = [rows, 1];
  for (const input of signature.inputs) {
    const name = input.name;
    if (input.numeric) {
      const data = input.tensorType === 'float64' ? new Float64Array(rows) : new Float32Array(rows);
      let r = 0;
      for (const instances of batches) {
        for (let i = 0; i < instances.length; i++) {
          const v = instances[i]![name];
          data[r++] = v === null ? Number.NaN : (v as number);
        }
      }
      feeds[name] =
        data instanceof Float64Array ? new ort.Tensor('float64', data, dims) : new ort.Tensor('float32', data, dims);
    } else {
      const data = new Array<string>(rows);
      let r = 0;
      for (const instances of batches) {
        for (let i = 0; i < instances.length; i++) {
          const v = instances[i]![name];
          data[r++] = v === null ? '' : (v as string);
        }
      }
      feeds[name] = new ort.Tensor('string', data, dims);
    }
  }
  return feeds;
}
