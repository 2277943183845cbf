/**
 * Loading one registered version for serving: download its ONNX bytes (verified against the sha256 the registry
 * recorded), check that the graph's inputs are the registered signature's, create the session and warm it up.
 */
import * as ort from 'onnxruntime-node';
import { ONNX_METADATA } from '../models/onnx/export.js';
import { sessionSignature } from '../models/onnx/runtime.js';
import type { ModelVersion } from '../schema/registry.js';
import type { ArtifactStore } from '../storage/artifact-store.js';
import type { SessionDescription } from './inference-protocol.js';
import { LoadedModel, type ClassLabel, type LoadedModelOptions, type ScoringSession } from './loaded-model.js';
import type { ServingMetrics } from './metrics.js';
import { compileSignature } from './signature.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

/** Thrown when a version's graph cannot be served as registered. */
export class ModelLoadError extends DomainError {
  override readonly name = 'ModelLoadError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('integrity', message, options);
  }
}

export interface LoadModelDeps {
  readonly artifacts: Pick<ArtifactStore, 'get'>;
  readonly metrics: ServingMetrics;
  /** onnxruntime intra-op threads per session. Default 1: micro-batches are small and the event loop shares the CPU. */
  readonly sessionThreads?: number;
  readonly modelOptions?: LoadedModelOptions;
  /**
   * Where sessions are created and run: an {@link InferenceThread}'s `createSession` (what `createServing` uses) or,
   * by default, in this thread.
   */
  readonly createSession?: CreateSession;
}

/** A session serving can check and run, wherever it lives. */
export type ServingSession = ScoringSession & SessionDescription;

/** Creates a session from ONNX bytes. */
export type CreateSession = (
  bytes: Uint8Array,
  options: ort.InferenceSession.SessionOptions,
) => Promise<ServingSession>;

/** Sessions in the calling thread: creation and every run block its event loop for their duration. */
export const createSessionInProcess: CreateSession = (bytes, options) => ort.InferenceSession.create(bytes, options);

/** Loads and warms up `version` (of the model named `modelName`). */
export type ModelLoader = (modelName: string, version: ModelVersion) => Promise<LoadedModel>;

/**
 * The real loader: S3 → sha256 check → onnxruntime session → input check → warm-up run.
 *
 * @throws ArtifactNotFoundError or ArtifactIntegrityError (from the artifact store) when the object is missing or
 *   its bytes do not hash to the registered sha256; ModelLoadError or UnservableSignatureError when the graph does not
 *   match its signature; onnxruntime's error when the bytes are not a loadable graph.
 */
export function onnxModelLoader(deps: LoadModelDeps): ModelLoader {
  const threads = deps.sessionThreads ?? 1;
  const createSession = deps.createSession ?? createSessionInProcess;
  return async (modelName, version) => {
    const signature = compileSignature(version.signature);
    const bytes = await deps.artifacts.get({ uri: version.onnxUri, sha256: version.sha256 });
    const classes = readClasses(bytes);
    const session = await createSession(bytes, {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
    try {
      const actual = sessionSignature(session);
      for (const input of version.signature.inputs) {
        const found = actual.inputs.find((i) => i.name === input.name);
        if (!found || found.type !== input.type) {
          throw new ModelLoadError(
            `the graph's input ${input.name} is ${found ? found.type : 'absent'}; the registered signature says ${input.type}`,
          );
        }
      }
      if (actual.inputs.length !== version.signature.inputs.length) {
        throw new ModelLoadError(
          `the graph has ${actual.inputs.length} inputs; the registered signature has ${version.signature.inputs.length}`,
        );
      }
      for (const name of signature.fetches) {
        if (!session.outputNames.includes(name)) throw new ModelLoadError(`the graph has no output ${name}`);
      }
      const model = new LoadedModel(
        { name: modelName, version: version.version, versionId: version.id, sha256: version.sha256 },
        signature,
        session,
        deps.metrics.forModel(modelName, String(version.version)),
        classes,
        deps.modelOptions,
      );
      await model.warmUp();
      return model;
    } catch (error) {
      await session.release().catch(() => undefined);
      throw error;
    }
  };
}

/** The classes recorded in the graph's metadata (`temporal-mlops.classes`), or undefined when absent or unreadable. */
export function readClasses(bytes: Uint8Array): ClassLabel[] | undefined {
  const json = readMetadataProp(bytes, ONNX_METADATA.classes);
  if (json === undefined) return undefined;
  try {
    const classes: unknown = JSON.parse(json);
    if (
      Array.isArray(classes) &&
      classes.every((c) => typeof c === 'string' || typeof c === 'number' || typeof c === 'boolean')
    ) {
      return classes as ClassLabel[];
    }
  } catch {
    // A graph with unreadable metadata still serves; its labels are indices.
  }
  return undefined;
}

/** ModelProto's `metadata_props` (repeated StringStringEntryProto) field number. */
const METADATA_PROPS_FIELD = 14;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * One `metadata_props` value of a serialized ModelProto, read by walking the top-level protobuf fields and skipping
 * the others by their length. Decoding the whole message (the graph with every tree node) took 90-220 ms of the event
 * loop for a 2 MB tree ensemble, on the request thread, at every deploy; this takes microseconds.
 */
export function readMetadataProp(bytes: Uint8Array, key: string): string | undefined {
  try {
    let found: string | undefined;
    forEachField(bytes, 0, bytes.length, (field, start, end) => {
      if (field !== METADATA_PROPS_FIELD) return;
      let entryKey: string | undefined;
      let entryValue: string | undefined;
      forEachField(bytes, start, end, (entryField, s, e) => {
        if (entryField === 1) entryKey = utf8.decode(bytes.subarray(s, e));
        else if (entryField === 2) entryValue = utf8.decode(bytes.subarray(s, e));
      });
      if (entryKey === key) found = entryValue ?? '';
    });
    return found;
  } catch {
    return undefined;
  }
}

/** Calls `visit` for every length-delimited field in bytes[from, to); other wire types are skipped. */
function forEachField(
  bytes: Uint8Array,
  from: number,
  to: number,
  visit: (field: number, start: number, end: number) => void,
): void {
  let pos = from;
  const varint = (): number => {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= to) throw new RangeError('truncated varint');
      const byte = bytes[pos++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw new RangeError('varint too long');
  };
  while (pos < to) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    switch (tag % 8) {
      case 0:
        varint();
        break;
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      case 2: {
        const length = varint();
        const end = pos + length;
        if (end > to) throw new RangeError('field past the end');
        visit(field, pos, end);
        pos = end;
        break;
      }
      default:
        throw new RangeError(`unsupported wire type ${tag % 8}`);
    }
  }
  if (pos !== to) throw new RangeError('field past the end');
}
