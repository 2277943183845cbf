/**
 * Running exported graphs with onnxruntime-node (CPU): building input tensors from raw feature values, the way
 * serving receives them, and checking a graph against the trainer's own predictions before it is registered.
 */
import * as ort from 'onnxruntime-node';
import type { ModelSignature, SignatureField } from '../../schema/registry.js';
import { OnnxParityError } from './errors.js';
import { OUTPUT_PREDICTION, OUTPUT_PROBABILITIES } from './export.js';

/** onnxruntime's tensor type for each signature type a feature input may have. */
const TENSOR_TYPE = { float: 'float32', double: 'float64', string: 'string' } as const;
type InputType = keyof typeof TENSOR_TYPE;

function inputType(field: SignatureField): InputType {
  if (field.type in TENSOR_TYPE) return field.type as InputType;
  throw new TypeError(`input ${field.name} has type ${field.type}; only float, double and string inputs are fed`);
}

/**
 * A raw numeric value as the graph takes it: null/undefined → NaN (missing); booleans 1/0 and bigints as numbers, like
 * `applyTransform`. ±Infinity and NaN pass through: the graph treats them as missing.
 */
function numeric(name: string, raw: unknown): number {
  if (raw === null || raw === undefined) return Number.NaN;
  if (typeof raw === 'number') return raw;
  if (typeof raw === 'bigint') return Number(raw);
  if (typeof raw === 'boolean') return raw ? 1 : 0;
  throw new TypeError(`feature ${name} is numeric; got ${typeof raw}`);
}

/** A raw categorical value: null/undefined → "" (missing); numbers, bigints and booleans through `String()`. */
function categorical(name: string, raw: unknown): string {
  if (raw === null || raw === undefined) return '';
  if (typeof raw === 'string') return raw;
  if (typeof raw === 'number' || typeof raw === 'bigint' || typeof raw === 'boolean') return String(raw);
  throw new TypeError(`feature ${name} is categorical; got ${typeof raw}`);
}

function tensor(field: SignatureField, length: number, value: (i: number) => unknown): ort.Tensor {
  const type = inputType(field);
  if (type === 'string') {
    const data = Array.from({ length }, (_, i) => categorical(field.name, value(i)));
    return new ort.Tensor('string', data, [length, 1]);
  }
  const data = type === 'double' ? new Float64Array(length) : new Float32Array(length);
  for (let i = 0; i < length; i++) data[i] = numeric(field.name, value(i));
  return type === 'double'
    ? new ort.Tensor('float64', data, [length, 1])
    : new ort.Tensor('float32', data, [length, 1]);
}

/**
 * onnxruntime feeds for `rows` (raw feature values keyed by feature name; extra keys are ignored, absent ones are
 * missing): one [rows, 1] tensor per signature input. Missing values become the graph's markers: NaN for numeric
 * inputs, "" for categorical ones.
 *
 * @throws TypeError when a value has a type its feature cannot take (a string for a numeric feature, an object).
 */
export function toOnnxFeeds(
  signature: Pick<ModelSignature, 'inputs'>,
  rows: readonly Readonly<Record<string, unknown>>[],
): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const field of signature.inputs) feeds[field.name] = tensor(field, rows.length, (i) => rows[i]![field.name]);
  return feeds;
}

/**
 * The same as {@link toOnnxFeeds} for columns: `columns[feature][row]`. Every input's column must be present (use
 * an array of nulls for an all-missing feature) and all columns must have the same length.
 */
export function columnsToOnnxFeeds(
  signature: Pick<ModelSignature, 'inputs'>,
  columns: Readonly<Record<string, readonly unknown[]>>,
): { feeds: Record<string, ort.Tensor>; rows: number } {
  let rows: number | undefined;
  const feeds: Record<string, ort.Tensor> = {};
  for (const field of signature.inputs) {
    const column = columns[field.name];
    if (column === undefined) throw new TypeError(`no column for input ${field.name}`);
    if (rows !== undefined && column.length !== rows) {
      throw new TypeError(`column ${field.name} has ${column.length} values; ${rows} expected`);
    }
    rows = column.length;
    feeds[field.name] = tensor(field, column.length, (i) => column[i]);
  }
  return { feeds, rows: rows ?? 0 };
}

const SIGNATURE_TYPE: Readonly<Partial<Record<ort.Tensor.Type, string>>> = {
  float32: 'float',
  float64: 'double',
  string: 'string',
  int64: 'int64',
  bool: 'bool',
};

function field(meta: ort.InferenceSession.ValueMetadata): SignatureField {
  if (!meta.isTensor) return { name: meta.name, type: 'non-tensor' };
  return {
    name: meta.name,
    type: SIGNATURE_TYPE[meta.type] ?? meta.type,
    shape: meta.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : null)),
  };
}

/** The signature onnxruntime reads from a loaded graph (dynamic axes as null). */
export function sessionSignature(
  session: Pick<ort.InferenceSession, 'inputMetadata' | 'outputMetadata'>,
): ModelSignature {
  return { inputs: session.inputMetadata.map(field), outputs: session.outputMetadata.map(field) };
}

/** Options of {@link verifyOnnx}. */
export interface VerifyOnnxOptions {
  /** Sample rows as raw feature columns: `inputs[feature][row]`, as serving would receive them. */
  readonly inputs: Readonly<Record<string, readonly unknown[]>>;
  /**
   * What the trainer predicts for these rows, row-major: classification the probabilities (rows × K), regression the
   * predictions (rows).
   */
  readonly expected: Float64Array | readonly number[];
  /** Largest allowed absolute difference; default 1e-5. */
  readonly tolerance?: number;
  /**
   * Adds `relativeTolerance * |expected|` to the allowed difference (default 0): regression targets in the thousands
   * cannot agree to 1e-5 once a tree ensemble has summed its leaves in float32.
   */
  readonly relativeTolerance?: number;
  /** The output to compare; default `probabilities` when the graph has it, else `prediction`. */
  readonly output?: string;
}

/** Result of {@link verifyOnnx}. */
export interface OnnxParity {
  readonly maxAbsDiff: number;
  readonly rows: number;
  readonly output: string;
}

/**
 * Loads `bytes` in a fresh onnxruntime CPU session, runs it on `inputs` and compares `output` with `expected`.
 * NaN matches only NaN.
 *
 * @throws OnnxParityError when a difference exceeds the tolerance.
 * @throws TypeError when the expected values do not have the output's size.
 */
export async function verifyOnnx(bytes: Uint8Array, options: VerifyOnnxOptions): Promise<OnnxParity> {
  const tolerance = options.tolerance ?? 1e-5;
  const relative = options.relativeTolerance ?? 0;
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'] });
  try {
    const signature = sessionSignature(session);
    const output =
      options.output ?? (session.outputNames.includes(OUTPUT_PROBABILITIES) ? OUTPUT_PROBABILITIES : OUTPUT_PREDICTION);
    const { feeds, rows } = columnsToOnnxFeeds(signature, options.inputs);
    const result = await session.run(feeds, [output]);
    const tensor = result[output];
    if (tensor === undefined) throw new TypeError(`the graph has no output ${output}`);
    const actual = tensor.data;
    if (typeof actual[0] === 'string' || typeof actual[0] === 'bigint') {
      throw new TypeError(`output ${output} is not a floating-point tensor`);
    }
    const values = actual as Float32Array | Float64Array;
    if (values.length !== options.expected.length) {
      throw new TypeError(`output ${output} has ${values.length} values; ${options.expected.length} expected`);
    }
    const width = rows > 0 ? values.length / rows : 1;
    let maxAbsDiff = 0;
    let worst = -1;
    let failed = -1;
    for (let i = 0; i < values.length; i++) {
      const e = options.expected[i]!;
      const a = values[i]!;
      const diff = Number.isNaN(e) && Number.isNaN(a) ? 0 : Number.isNaN(e - a) ? Infinity : Math.abs(e - a);
      if (diff > maxAbsDiff) {
        maxAbsDiff = diff;
        worst = i;
      }
      if (failed < 0 && !(diff <= tolerance + relative * Math.abs(e))) failed = i;
    }
    if (failed >= 0)
      throw new OnnxParityError(maxAbsDiff, Math.floor((worst >= 0 ? worst : failed) / width), tolerance, output);
    return { maxAbsDiff, rows, output };
  } finally {
    await session.release();
  }
}
