/**
 * The InfraValidator (TFX's InfraValidator): before a version may be blessed, its graph must load in a fresh
 * onnxruntime session, as serving loads it, and answer a request of real rows in time with finite outputs.
 */
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { sqlIdentifier, sqlString, type DataEngine } from '../data/engine.js';
import {
  columnsToOnnxFeeds,
  OUTPUT_LABEL,
  OUTPUT_PREDICTION,
  OUTPUT_PROBABILITIES,
  sessionSignature,
} from './onnx/index.js';

/** What {@link infraValidate} found. */
export interface InfraValidationResult {
  /** Loaded, answered the sample request with finite outputs of the right size, within `maxLatencyMs`. */
  readonly passed: boolean;
  /** Creating the session (reported, not bounded). */
  readonly loadMs: number;
  /** The first request: building the feeds from raw columns and running them (0 when it never ran). */
  readonly latencyMs: number;
  /** Rows in the sample request. */
  readonly rows: number;
  readonly maxLatencyMs: number;
  /** Why it did not pass. */
  readonly error?: string;
}

/** Options of {@link infraValidate}. */
export interface InfraValidateOptions {
  readonly onnx: Uint8Array;
  /** A local prepared eval Parquet file (raw feature columns by name). */
  readonly evalPath: string;
  /** Reads the file; owned by the caller. */
  readonly engine: DataEngine;
  /** Rows of the sample request: the file's first `sampleRows` rows. */
  readonly sampleRows: number;
  /** Bound on the sample request's latency, `latencyMs`. */
  readonly maxLatencyMs: number;
}

/**
 * Loads `onnx` in a fresh CPU session, checks that it has the serving outputs (`prediction`, or `label` and
 * `probabilities`), reads the first `sampleRows` rows of the eval file by the session's input names and runs them as
 * one request. Passes when every step succeeds, the outputs are finite and have one row per input row, and the
 * request's latency (the first request after loading, feeds included: what the first caller after a deployment
 * waits) is at most `maxLatencyMs`. Load time is reported but not bounded: serving loads a model before it routes
 * traffic to it.
 *
 * Never throws for a bad model (bytes that do not parse, a wrong signature, an input the data lacks, a failing or
 * slow run): the result says `passed: false` and why. Throws only when the eval file itself cannot be read, which is
 * not the model's fault and worth a retry.
 */
export async function infraValidate(options: InfraValidateOptions): Promise<InfraValidationResult> {
  const { engine, sampleRows, maxLatencyMs } = options;
  if (!Number.isSafeInteger(sampleRows) || sampleRows < 1) {
    throw new RangeError(`sampleRows must be a positive integer, got ${sampleRows}`);
  }
  if (!(maxLatencyMs >= 0)) throw new RangeError(`maxLatencyMs must be a non-negative number, got ${maxLatencyMs}`);
  const file = sqlString(options.evalPath);
  const described = await engine.rows<{ column_name: string }>(`DESCRIBE SELECT * FROM read_parquet(${file})`);
  const columns = new Set(described.map((r) => r.column_name));

  let loadMs = 0;
  let latencyMs = 0;
  let rows = 0;
  const result = (error?: string): InfraValidationResult => ({
    passed: error === undefined,
    loadMs,
    latencyMs,
    rows,
    maxLatencyMs,
    ...(error === undefined ? {} : { error }),
  });

  let session: ort.InferenceSession | undefined;
  try {
    const loadStarted = performance.now();
    session = await ort.InferenceSession.create(options.onnx, { executionProviders: ['cpu'] });
    loadMs = performance.now() - loadStarted;

    const signature = sessionSignature(session);
    const outputs = session.outputNames;
    const expected = outputs.includes(OUTPUT_PREDICTION) ? [OUTPUT_PREDICTION] : [OUTPUT_LABEL, OUTPUT_PROBABILITIES];
    const absent = expected.filter((name) => !outputs.includes(name));
    if (absent.length > 0) {
      return result(
        `the graph's outputs are [${outputs.join(', ')}]; serving needs ${OUTPUT_PREDICTION}, or ${OUTPUT_LABEL} and ${OUTPUT_PROBABILITIES}`,
      );
    }
    const missing = signature.inputs.filter((field) => !columns.has(field.name)).map((field) => field.name);
    if (missing.length > 0) return result(`the eval data has no column for input(s) ${missing.join(', ')}`);

    const select = signature.inputs.map((field) => {
      const column = sqlIdentifier(field.name);
      return field.type === 'string' ? `CAST(${column} AS VARCHAR)` : `CAST(${column} AS DOUBLE)`;
    });
    const reader = await engine.connection.runAndReadAll(
      `SELECT ${select.join(', ')} FROM read_parquet(${file}) LIMIT ${sampleRows}`,
    );
    const values = reader.getColumnsJS();
    rows = reader.currentRowCount;
    if (rows === 0) return result('the eval data has no rows to send');
    const sample = Object.fromEntries(signature.inputs.map((field, i) => [field.name, values[i] ?? []]));

    const requestStarted = performance.now();
    const { feeds } = columnsToOnnxFeeds(signature, sample);
    const answer = await session.run(feeds);
    latencyMs = performance.now() - requestStarted;

    for (const name of expected) {
      const problem = checkOutput(name, answer[name], rows);
      if (problem) return result(problem);
    }
    if (!(latencyMs <= maxLatencyMs)) {
      return result(
        `the sample request of ${rows} rows took ${latencyMs.toFixed(3)} ms; the bound is ${maxLatencyMs} ms`,
      );
    }
    return result();
  } catch (error) {
    return result(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
  } finally {
    // A failed release must not turn a verdict into an exception.
    await session?.release().catch(() => undefined);
  }
}

/** Why an output is unusable, or undefined when it has one finite entry (or row of entries) per request row. */
function checkOutput(name: string, tensor: ort.Tensor | undefined, rows: number): string | undefined {
  if (!tensor) return `the graph did not return ${name}`;
  if (tensor.dims[0] !== rows) return `${name} has ${tensor.dims[0]} rows for a request of ${rows}`;
  const data = tensor.data;
  if (data instanceof Float32Array || data instanceof Float64Array) {
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) return `${name} has the non-finite value ${data[i]} at index ${i}`;
    }
  } else if (!(data instanceof BigInt64Array)) {
    return `${name} is a ${tensor.type} tensor, not a number tensor`;
  }
  return undefined;
}
