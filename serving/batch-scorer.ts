/**
 * The batch scoring engine (what TFX's BulkInferrer runs): a registered model's ONNX graph over a Parquet dataset,
 * the predictions next to the input's columns in one Parquet file. The activity (activities/batch-scoring.ts) adds
 * what Temporal needs (idempotency, heartbeats, the stage's record, failures); this module knows nothing of Temporal.
 *
 * The input is streamed from DuckDB in chunks and fed to one onnxruntime session in batches, exactly as online
 * serving feeds it (null → NaN for numeric inputs, "" for string inputs; the graph's own preprocessing). Predictions
 * are appended to a DuckDB table as typed vectors, then joined back to the input by position and written with one
 * `COPY ... TO` (zstd): the input's columns never pass through JavaScript, so wide rows cost nothing extra.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  DOUBLE,
  DuckDBDataChunk,
  DuckDBDoubleVector,
  DuckDBVarCharVector,
  FLOAT,
  INTEGER,
  type DuckDBAppender,
  type DuckDBFloatVector,
  type DuckDBIntegerVector,
  type DuckDBType,
} from '@duckdb/node-api';
import * as ort from 'onnxruntime-node';
import { DomainError } from '../core/errors.js';
import { DataEngine, NUMERIC_TYPE_NAMES, sqlIdentifier, sqlString } from '../data/engine.js';
import type { DataAccessPolicy } from '../data/access-policy.js';
import { parseSourceSpec, resolveLocalFiles, resolveObjects } from '../data/sources.js';
import type { ObjectSource } from '../storage/object-source.js';
import { readClasses } from './load-model.js';
import type { ClassLabel } from './loaded-model.js';
import type { CompiledSignature } from './signature.js';

/** Output columns the predictions are written to (a pass-through column may not have one of these names). */
export const PREDICTION_COLUMN = 'prediction';
export const PROBABILITIES_COLUMN = 'probabilities';

export const DEFAULT_BATCH_ROWS = 50_000;
/** DuckDB's vector size: the most rows one data chunk holds. */
const CHUNK_ROWS = 2048;

/** A scoring job that cannot succeed as asked: a bad input or column, a missing version, unreadable data. */
export class BatchScoringError extends DomainError {
  override readonly name = 'BatchScoringError';
  constructor(kind: 'invalid' | 'not_found' | 'invalid_data', message: string, details?: Record<string, unknown>) {
    super(kind, message, details === undefined ? {} : { details });
  }
}

/** Where the scoring pass is, for progress reports: `total` is the input's row count. */
export interface ScoringProgress {
  readonly phase: 'scoring' | 'writing';
  readonly rows: number;
  readonly total: number;
}

/**
 * The local Parquet files of a scoring input: a local path, folder or glob as they are; `s3://` objects (an object,
 * a prefix or a glob, of any bucket) downloaded into `cacheDir` and verified. `onDownload` hears the bytes downloaded
 * so far after each object.
 *
 * @throws BatchScoringError (invalid) when the input is neither; the object source's errors when an object is
 *   missing or changes; an error named `AbortError` when `signal` fires during a download.
 */
export async function resolveScoringInput(
  source: string,
  options: {
    readonly objects: ObjectSource;
    readonly cacheDir: string;
    readonly signal: AbortSignal;
    readonly onDownload: (bytes: number) => void;
    /** What the input may read: the same data access policy as a pipeline's source. */
    readonly policy: DataAccessPolicy;
  },
): Promise<string[]> {
  const spec = parseSourceSpec(source);
  if (spec.kind === 'file') return (await resolveLocalFiles(spec, 'parquet', options.policy)).files.map((f) => f.name);
  if (spec.kind !== 's3') throw new BatchScoringError('invalid', `${source}: not a Parquet path or s3:// URI`);
  const { objects } = await resolveObjects(spec, options.objects, 'parquet', options.policy);
  const paths: string[] = [];
  let bytes = 0;
  for (const object of objects) {
    const downloaded = await options.objects.download(object, options.cacheDir, {
      extension: '.parquet',
      signal: options.signal,
    });
    bytes += downloaded.bytes;
    options.onDownload(bytes);
    paths.push(downloaded.path);
  }
  return paths;
}

export interface ScoreFilesOptions {
  /** An existing folder the engine works in; the output is written there. */
  readonly workDir: string;
  /** Local Parquet files, read as one dataset (columns matched by name). */
  readonly files: readonly string[];
  readonly onnx: Uint8Array;
  readonly signature: CompiledSignature;
  /** Input columns copied to the output, in this order, before the predictions; default: every input column. */
  readonly passthrough: readonly string[] | undefined;
  /** Rows per onnxruntime run (rounded up to whole DuckDB chunks). */
  readonly batchRows: number;
  /** Called when scoring starts, after every batch, and when writing starts. */
  readonly onProgress: (progress: ScoringProgress) => void;
  /** Checked before every chunk read: when it fires, scoring stops with an error named `AbortError`. */
  readonly signal: AbortSignal;
}

export interface ScoredFiles {
  readonly rows: number;
  /** The output's columns, in order: the pass-through columns, then `prediction` (+ `probabilities`). */
  readonly columns: string[];
  /** Of the scoring pass alone (read, feed, run, append). */
  readonly seconds: number;
  /** `<workDir>/predictions.parquet`. */
  readonly outputPath: string;
}

/**
 * Streams the files through the model and writes `<workDir>/predictions.parquet` (zstd). Reads nothing but the
 * files and writes nothing outside `workDir`; the caller owns the folder.
 *
 * @throws BatchScoringError invalid_data (the files are not readable Parquet), invalid (a model input has no column
 *   or a numeric input a column that is not, a bad pass-through column, a model that does not say its classes).
 * @throws an error named `AbortError` when `signal` fires.
 */
export async function scoreFiles(options: ScoreFilesOptions): Promise<ScoredFiles> {
  const engine = await DataEngine.open({
    workDir: options.workDir,
    readableDirs: [...new Set(options.files.map((f) => path.dirname(f)))],
  });
  try {
    return await scoreWith(engine, options);
  } finally {
    engine.close();
  }
}

/** Column types of a numeric model input that DuckDB casts to DOUBLE exactly as serving would read them. */
function isNumericColumn(type: string): boolean {
  return NUMERIC_TYPE_NAMES.includes(type) || type.startsWith('DECIMAL') || type === 'BOOLEAN';
}

/** {@link scoreFiles} on an engine that can read the files: checks the columns, scores, writes the output. */
async function scoreWith(engine: DataEngine, options: ScoreFilesOptions): Promise<ScoredFiles> {
  const { signature, batchRows } = options;
  const source = `read_parquet([${options.files.map(sqlString).join(', ')}], union_by_name = true)`;

  let described: { column_name: string; column_type: string }[];
  try {
    described = await engine.rows(`DESCRIBE SELECT * FROM ${source}`);
  } catch (error) {
    throw new BatchScoringError('invalid_data', `the input cannot be read as Parquet: ${(error as Error).message}`);
  }
  const types = new Map(described.map((c) => [c.column_name, c.column_type]));
  const available = () => [...types.keys()].join(', ');
  for (const field of signature.inputs) {
    const type = types.get(field.name);
    if (type === undefined) {
      throw new BatchScoringError(
        'invalid',
        `the input has no column ${JSON.stringify(field.name)}, an input of the model (the input's columns: ${available()})`,
        { column: field.name },
      );
    }
    if (field.numeric && !isNumericColumn(type)) {
      throw new BatchScoringError(
        'invalid',
        `column ${JSON.stringify(field.name)} is ${type}; the model's input ${field.name} is numeric`,
        { column: field.name },
      );
    }
  }
  const passthrough = options.passthrough ?? [...types.keys()];
  const outputNames =
    signature.task === 'classification' ? [PREDICTION_COLUMN, PROBABILITIES_COLUMN] : [PREDICTION_COLUMN];
  const seen = new Set<string>();
  for (const column of passthrough) {
    if (!types.has(column)) {
      throw new BatchScoringError(
        'invalid',
        `pass-through column ${JSON.stringify(column)} is not in the input (its columns: ${available()})`,
        {
          column,
        },
      );
    }
    if (outputNames.includes(column)) {
      throw new BatchScoringError(
        'invalid',
        `the input's column ${JSON.stringify(column)} would clash with the predictions' column of that name: ` +
          'leave it out with passthrough',
        { column },
      );
    }
    if (seen.has(column))
      throw new BatchScoringError('invalid', `pass-through column ${JSON.stringify(column)} is listed twice`, {
        column,
      });
    seen.add(column);
  }

  const total = Number((await engine.rows<{ n: number }>(`SELECT count(*) AS n FROM ${source}`))[0]?.n ?? 0);
  options.onProgress({ phase: 'scoring', rows: 0, total });

  const classes = readClasses(options.onnx);
  const session = await ort.InferenceSession.create(options.onnx, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
  });
  const started = performance.now();
  const classification = signature.task === 'classification';
  let predictions: PredictionSink;
  let scoresPath: string;
  try {
    predictions = await PredictionSink.create(
      path.join(engine.workDir, 'scores'),
      classification ? classCountOf(session, classes) : undefined,
    );
    try {
      const read = await streamScores(session, engine, source, signature, predictions, {
        batchRows,
        total,
        onBatch: (rows) => options.onProgress({ phase: 'scoring', rows, total }),
        signal: options.signal,
      });
      if (read !== total) throw new Error(`read ${read} rows of the input; it has ${total}`);
      scoresPath = await predictions.finish();
    } finally {
      predictions.close();
    }
  } finally {
    await session.release();
  }
  const seconds = (performance.now() - started) / 1000;

  options.onProgress({ phase: 'writing', rows: total, total });
  const outputPath = path.join(engine.workDir, 'predictions.parquet');
  const selected = [
    ...passthrough.map((c) => `src.${sqlIdentifier(c)}`),
    `${predictions.predictionSql(classes)} AS ${sqlIdentifier(PREDICTION_COLUMN)}`,
    ...(classification ? [`${predictions.probabilitiesSql()} AS ${sqlIdentifier(PROBABILITIES_COLUMN)}`] : []),
  ];
  // Both sides are read in insertion order (DuckDB preserves it), so row i of the input meets prediction i.
  const scores = `read_parquet(${sqlString(scoresPath)}) AS p`;
  const from =
    passthrough.length > 0
      ? `(SELECT ${passthrough.map(sqlIdentifier).join(', ')} FROM ${source}) AS src POSITIONAL JOIN ${scores}`
      : scores;
  await engine.run(
    `COPY (SELECT ${selected.join(', ')} FROM ${from}) TO ${sqlString(outputPath)} (FORMAT parquet, COMPRESSION zstd)`,
  );
  return { rows: total, columns: [...passthrough, ...outputNames], seconds, outputPath };
}

/** K of a classifier: the `probabilities` output's declared width, else the number of recorded classes. */
function classCountOf(session: ort.InferenceSession, classes: readonly ClassLabel[] | undefined): number {
  const meta = session.outputMetadata.find((m) => m.name === PROBABILITIES_COLUMN);
  const width = meta?.isTensor ? meta.shape[1] : undefined;
  if (typeof width === 'number' && width > 0) return width;
  if (classes && classes.length > 0) return classes.length;
  throw new BatchScoringError('invalid', 'the model does not say how many classes it predicts');
}

/**
 * The predictions, appended as typed data chunks to a table of a DuckDB instance of their own (an appender flushing
 * on the connection that streams the input would end that stream), then written to a Parquet file: classification
 * the class index and one FLOAT column per class, regression one DOUBLE.
 */
class PredictionSink {
  static readonly TABLE = 'scores';
  readonly #types: DuckDBType[];
  #closed = false;

  private constructor(
    private readonly engine: DataEngine,
    private readonly appender: DuckDBAppender,
    readonly classCount: number | undefined,
  ) {
    this.#types = classCount === undefined ? [DOUBLE] : [INTEGER, ...Array.from({ length: classCount }, () => FLOAT)];
  }

  /** Opens the sink's engine in `workDir` (which the caller's engine must be able to read). */
  static async create(workDir: string, classCount: number | undefined): Promise<PredictionSink> {
    const columns =
      classCount === undefined
        ? ['value DOUBLE']
        : ['label INTEGER', ...Array.from({ length: classCount }, (_, k) => `p${k} FLOAT`)];
    const engine = await DataEngine.open({ workDir, threads: 1 });
    try {
      await engine.run(`CREATE TABLE ${PredictionSink.TABLE} (${columns.join(', ')})`);
      return new PredictionSink(engine, await engine.connection.createAppender(PredictionSink.TABLE), classCount);
    } catch (error) {
      engine.close();
      throw error;
    }
  }

  /** Writes every appended prediction, in order, to a Parquet file in the sink's folder; returns its path. */
  async finish(): Promise<string> {
    this.appender.flushSync();
    const file = path.join(this.engine.workDir, 'scores.parquet');
    await this.engine.run(`COPY ${PredictionSink.TABLE} TO ${sqlString(file)} (FORMAT parquet)`);
    return file;
  }

  /** Releases the appender and the engine; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.appender.closeSync();
    } finally {
      this.engine.close();
    }
  }

  /** Appends one run's outputs (`rows` predictions). */
  append(outputs: ort.InferenceSession.ReturnType, rows: number): void {
    if (this.classCount === undefined) {
      const values = outputs[PREDICTION_COLUMN]?.data;
      if (!(values instanceof Float64Array || values instanceof Float32Array) || values.length !== rows) {
        throw new Error(`the model's ${PREDICTION_COLUMN} output has ${values?.length ?? 0} values for ${rows} rows`);
      }
      this.#appendChunks(rows, (chunk, offset, count) => {
        const vector = chunk.getColumnVector(0) as DuckDBDoubleVector;
        for (let i = 0; i < count; i++) {
          const v = values[offset + i]!;
          vector.setItem(i, Number.isFinite(v) ? v : null);
        }
        vector.flush();
      });
      return;
    }
    const k = this.classCount;
    const labels = outputs.label?.data;
    const probabilities = outputs[PROBABILITIES_COLUMN]?.data;
    if (!(labels instanceof BigInt64Array) || labels.length !== rows) {
      throw new Error(`the model's label output has ${labels?.length ?? 0} values for ${rows} rows`);
    }
    if (!(probabilities instanceof Float32Array) || probabilities.length !== rows * k) {
      throw new Error(
        `the model's ${PROBABILITIES_COLUMN} output has ${probabilities?.length ?? 0} values for ${rows} × ${k}`,
      );
    }
    this.#appendChunks(rows, (chunk, offset, count) => {
      const label = chunk.getColumnVector(0) as DuckDBIntegerVector;
      for (let i = 0; i < count; i++) label.setItem(i, Number(labels[offset + i]));
      label.flush();
      for (let c = 0; c < k; c++) {
        const vector = chunk.getColumnVector(1 + c) as DuckDBFloatVector;
        for (let i = 0; i < count; i++) vector.setItem(i, probabilities[(offset + i) * k + c]!);
        vector.flush();
      }
    });
  }

  #appendChunks(rows: number, fill: (chunk: DuckDBDataChunk, offset: number, count: number) => void): void {
    for (let offset = 0; offset < rows; offset += CHUNK_ROWS) {
      const count = Math.min(CHUNK_ROWS, rows - offset);
      const chunk = DuckDBDataChunk.create(this.#types, count);
      fill(chunk, offset, count);
      this.appender.appendDataChunk(chunk);
    }
  }

  /** The output's `prediction`: the class as the training data had it (its index when unknown), or the value. */
  predictionSql(classes: readonly ClassLabel[] | undefined): string {
    if (this.classCount === undefined) return 'p.value';
    if (!classes || classes.length === 0) return 'p.label';
    return `(${classListSql(classes)})[p.label + 1]`;
  }

  /** The output's `probabilities`: FLOAT[] in the order of the classes. */
  probabilitiesSql(): string {
    const k = this.classCount ?? 0;
    return `[${Array.from({ length: k }, (_, c) => `p.p${c}`).join(', ')}]::FLOAT[]`;
  }
}

/** The classes as a typed DuckDB list literal: BOOLEAN[], BIGINT[], DOUBLE[] or VARCHAR[] (mixed types as text). */
function classListSql(classes: readonly ClassLabel[]): string {
  if (classes.every((c) => typeof c === 'boolean')) return `[${classes.join(', ')}]::BOOLEAN[]`;
  if (classes.every((c) => typeof c === 'number' && Number.isFinite(c))) {
    const integral = classes.every((c) => Number.isSafeInteger(c));
    return `[${classes.map((c) => String(c)).join(', ')}]::${integral ? 'BIGINT' : 'DOUBLE'}[]`;
  }
  return `[${classes.map((c) => sqlString(String(c))).join(', ')}]::VARCHAR[]`;
}

/** The SQL of an input's column as the graph's feeds take it: DOUBLE (null = missing) or VARCHAR. */
function inputSql(name: string, numeric: boolean): string {
  return `CAST(${sqlIdentifier(name)} AS ${numeric ? 'DOUBLE' : 'VARCHAR'})`;
}

interface StreamOptions {
  readonly batchRows: number;
  readonly total: number;
  readonly onBatch: (rowsDone: number) => void;
  readonly signal: AbortSignal;
}

/**
 * Reads the model's inputs chunk by chunk into reusable typed buffers and runs the session every `batchRows` rows
 * (rounded up to whole chunks); returns the number of rows read. The next batch is read while the session runs the
 * current one (one run in flight at a time; predictions are appended in order).
 */
async function streamScores(
  session: ort.InferenceSession,
  engine: DataEngine,
  source: string,
  signature: CompiledSignature,
  sink: PredictionSink,
  options: StreamOptions,
): Promise<number> {
  const inputs = signature.inputs;
  const capacity = options.batchRows + CHUNK_ROWS;
  const buffers = inputs.map((input) =>
    input.tensorType === 'string'
      ? new Array<string>(capacity)
      : input.tensorType === 'float32'
        ? new Float32Array(capacity)
        : new Float64Array(capacity),
  );
  let pending = 0;
  let done = 0;
  let inflight: Promise<void> | undefined;

  /** Starts a run on the buffered rows (copied: the buffers are free again at once) after the previous one ended. */
  const flush = async () => {
    const rows = pending;
    const feeds: Record<string, ort.Tensor> = {};
    for (const [i, input] of inputs.entries()) {
      const buffer = buffers[i]!;
      feeds[input.name] =
        buffer instanceof Array
          ? new ort.Tensor('string', buffer.slice(0, rows), [rows, 1])
          : buffer instanceof Float32Array
            ? new ort.Tensor('float32', buffer.slice(0, rows), [rows, 1])
            : new ort.Tensor('float64', buffer.slice(0, rows), [rows, 1]);
    }
    pending = 0;
    await inflight;
    const run = session.run(feeds, signature.fetches).then((outputs) => {
      sink.append(outputs, rows);
      done += rows;
      options.onBatch(done);
    });
    // Awaited by the next flush or at the end; marked handled now so a failure is not reported as unhandled first.
    run.catch(() => undefined);
    inflight = run;
  };

  const select = inputs.map((input, i) => `${inputSql(input.name, input.tensorType !== 'string')} AS __c${i}`);
  let read = 0;
  try {
    const result = await engine.connection.stream(`SELECT ${select.join(', ')} FROM ${source}`);
    for (let chunk = await result.fetchChunk(); chunk && chunk.rowCount > 0; chunk = await result.fetchChunk()) {
      if (options.signal.aborted) {
        throw new DOMException('batch scoring was cancelled', { name: 'AbortError', cause: options.signal.reason });
      }
      const count = chunk.rowCount;
      for (const [i, buffer] of buffers.entries()) {
        const vector = chunk.getColumnVector(i);
        if (buffer instanceof Array) {
          if (!(vector instanceof DuckDBVarCharVector)) throw new TypeError(`expected a VARCHAR vector for input ${i}`);
          for (let r = 0; r < count; r++) buffer[pending + r] = vector.getItem(r) ?? '';
        } else {
          if (!(vector instanceof DuckDBDoubleVector)) throw new TypeError(`expected a DOUBLE vector for input ${i}`);
          for (let r = 0; r < count; r++) buffer[pending + r] = vector.getItem(r) ?? Number.NaN;
        }
      }
      pending += count;
      read += count;
      if (read > options.total) throw new Error(`the input changed while it was read (${options.total} rows)`);
      if (pending >= options.batchRows) await flush();
    }
    if (pending > 0) await flush();
    await inflight;
  } finally {
    // Never leave a run going on a session the caller is about to release.
    await inflight?.catch(() => undefined);
  }
  return read;
}
