/**
 * The Evaluator (TFX's Evaluator): runs an exported ONNX graph on the prepared eval split, exactly as serving would
 * run it (raw feature values in, the graph's own preprocessing), and reports the task's metrics overall and per slice
 * (per value of chosen features).
 *
 * The eval file is streamed from DuckDB in chunks and fed to onnxruntime in batches; only typed arrays of one value
 * (or one row of class probabilities) per row are kept, so 500k rows need a few tens of MB, never row objects.
 */
import { performance } from 'node:perf_hooks';
import { DuckDBDoubleVector, type DuckDBDataChunk } from '@duckdb/node-api';
import * as ort from 'onnxruntime-node';
import { sqlIdentifier, sqlString, type DataEngine } from '../data/engine.js';
import type { FittedFeature, FittedTransform, LabelTask } from '../data/transform.js';
import type { MetricName } from '../pipelines/definition.js';
import type { SignatureField } from '../schema/registry.js';
import {
  accuracy,
  argmaxRows,
  brierScore,
  logLoss,
  mae,
  multiclassLogLoss,
  r2,
  rmse,
  rocAuc,
  thresholdMetrics,
} from './metrics.js';
import { columnsToOnnxFeeds, OUTPUT_PREDICTION, OUTPUT_PROBABILITIES, sessionSignature } from './onnx/index.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

/** Options of {@link evaluateOnnxModel}. */
export interface EvaluateOnnxOptions {
  /** The graph's bytes (the caller has checked their sha256). */
  readonly onnx: Uint8Array;
  /** A local prepared eval Parquet file: raw feature columns by feature name, then `label`. */
  readonly evalPath: string;
  /** The transform the model was trained with: gives the task and the classes. */
  readonly transform: FittedTransform;
  /** Reads the Parquet file; owned (and closed) by the caller. */
  readonly engine: DataEngine;
  /** Feature names whose values define slices; metrics are reported per value as well. */
  readonly slices?: readonly string[];
  /** Binary classifiers: rows with P(class 1) ≥ threshold are predicted positive. Default 0.5. */
  readonly threshold?: number;
  /** Slice values with fewer rows are counted in `skippedSlices`, not scored. Default 100. */
  readonly minSliceRows?: number;
  /** At most this many values (the most frequent) per slice feature. Default 50. */
  readonly maxSliceValues?: number;
  /** Rows per onnxruntime request (rounded up to DuckDB's chunk size). Default 50 000. */
  readonly batchRows?: number;
  /** A session already created from `onnx`: used instead of loading the bytes again, and not released. */
  readonly session?: ort.InferenceSession;
}

/** Metrics of the rows whose `feature` has `value`. */
export interface SliceMetrics {
  readonly feature: string;
  /** Categorical features: the raw string; numeric features: the number; null: missing (null, NaN, ±Infinity). */
  readonly value: string | number | null;
  readonly rows: number;
  readonly metrics: Record<string, number>;
}

/** What {@link evaluateOnnxModel} reports; every number is finite (the report is stored as JSON). */
export interface EvaluationReport {
  readonly task: LabelTask;
  readonly rows: number;
  /** Keys from METRIC_NAMES (pipelines/definition.ts); a metric undefined on these rows is absent. */
  readonly metrics: Record<string, number>;
  /** Per slice feature (in the order given), its scored values, most frequent first. */
  readonly slices: readonly SliceMetrics[];
  /** Slice values not scored: fewer than `minSliceRows` rows, or beyond the `maxSliceValues` most frequent. */
  readonly skippedSlices: number;
  /** The binary decision threshold used (binary tasks only). */
  readonly threshold?: number;
  readonly seconds: number;
}

/** The eval data or the model's output cannot be evaluated (a bad label, a missing column, a non-finite output). */
export class EvaluationError extends DomainError {
  override readonly name = 'EvaluationError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('invalid_data', message, options);
  }
}

/**
 * Evaluates the graph `onnx` on every row of `evalPath`: binary classification gives auc, log_loss, accuracy,
 * precision, recall, f1 (at `threshold`, positive class = class index 1) and brier; multiclass the same keys, macro
 * averaged (see {@link computeMetrics}); regression rmse, mae and r2 of the `prediction` output.
 *
 * @throws EvaluationError when the file lacks an input's column, a label is not a valid class index (or a finite
 *   target), the file has no rows, or the graph lacks the task's output or produces a non-finite value.
 */
export async function evaluateOnnxModel(options: EvaluateOnnxOptions): Promise<EvaluationReport> {
  const started = performance.now();
  const { transform, engine } = options;
  const task = transform.label.task;
  const threshold = options.threshold ?? 0.5;
  const minSliceRows = options.minSliceRows ?? 100;
  const maxSliceValues = options.maxSliceValues ?? 50;
  const batchRows = options.batchRows ?? 50_000;
  if (!(threshold > 0 && threshold < 1)) throw new RangeError(`threshold must lie in (0, 1), got ${threshold}`);
  positiveInteger('minSliceRows', minSliceRows);
  positiveInteger('maxSliceValues', maxSliceValues);
  positiveInteger('batchRows', batchRows);
  const classCount = classCountOf(transform);
  const sliceFeatures = (options.slices ?? []).map((name) => {
    const feature = transform.features.find((f) => f.name === name);
    if (!feature) throw new EvaluationError(`slice ${JSON.stringify(name)} is not a feature of the transform`);
    return feature;
  });

  const file = sqlString(options.evalPath);
  const { types, rows } = await evalFile(engine, file);
  // One query at a time: the engine's single connection is shared.
  const sliceValues: Awaited<ReturnType<typeof topValues>>[] = [];
  for (const feature of sliceFeatures) sliceValues.push(await topValues(engine, file, feature, maxSliceValues));

  const scored = await withSession(options, (session) =>
    scoreFile(session, engine, `read_parquet(${file})`, types, {
      task,
      rows,
      classCount,
      batchRows,
      sliceFeatures,
      sliceCodes: sliceValues.map((s) => new Map(s.values.map((v, code) => [v.value, code]))),
    }),
  );

  const metrics = computeMetrics({ task, labels: scored.labels, outputs: scored.outputs, classCount, threshold });
  const slices: SliceMetrics[] = [];
  let skippedSlices = 0;
  for (const [s, feature] of sliceFeatures.entries()) {
    const { values, distinct } = sliceValues[s]!;
    const groups = groupRows(scored.sliceCodes[s]!, values.length);
    skippedSlices += distinct - values.length;
    for (const [code, { value }] of values.entries()) {
      const indexes = groups[code]!;
      if (indexes.length < minSliceRows) {
        skippedSlices++;
        continue;
      }
      const labels = new Float64Array(indexes.length);
      const outputs = new Float64Array(indexes.length * classCount);
      for (let i = 0; i < indexes.length; i++) {
        const row = indexes[i]!;
        labels[i] = scored.labels[row]!;
        for (let c = 0; c < classCount; c++) outputs[i * classCount + c] = scored.outputs[row * classCount + c]!;
      }
      slices.push({
        feature: feature.name,
        value,
        rows: indexes.length,
        metrics: computeMetrics({ task, labels, outputs, classCount, threshold }),
      });
    }
  }
  return {
    task,
    rows,
    metrics,
    slices,
    skippedSlices,
    ...(task === 'binary' ? { threshold } : {}),
    seconds: (performance.now() - started) / 1000,
  };
}

/** Options of {@link scoreOnnxModel}: the graph, the eval file and what reads it (as {@link EvaluateOnnxOptions}). */
export interface ScoreOnnxOptions extends Pick<
  EvaluateOnnxOptions,
  'onnx' | 'evalPath' | 'transform' | 'engine' | 'batchRows' | 'session'
> {
  /**
   * Score at most `rows` rows: a file with more gives a sample of exactly `rows`, chosen by a hash of each row's
   * position in the file and `seed` (an integer), so the same file, `rows` and `seed` always give the same rows.
   */
  readonly sample?: { readonly rows: number; readonly seed: number };
}

/** Every row of an eval file (or the sample of them asked for) run through a graph, in file order. */
export interface EvalScores {
  readonly task: LabelTask;
  /** 2 for binary, K for multiclass, 1 for regression. */
  readonly classCount: number;
  /** Rows of the file: more than `labels.length` when a sample was scored. */
  readonly fileRows: number;
  /** Class indexes (classification) or targets (regression). */
  readonly labels: Float64Array;
  /** Classification: probabilities row-major, rows × classCount (binary: [1 − p, p]); regression: predictions. */
  readonly outputs: Float64Array;
}

/**
 * Runs the graph on every row of `evalPath` (or on `sample.rows` of them) exactly as {@link evaluateOnnxModel} does
 * and returns each row's label and outputs instead of metrics (what a calibration of the probabilities is fitted on).
 * Reads only; memory grows with the rows scored, not with the file.
 *
 * @throws EvaluationError in the cases evaluateOnnxModel throws it, or when a sampled file has a column named
 *   `file_row_number`.
 * @example await scoreOnnxModel({ onnx, evalPath, transform, engine, sample: { rows: 200_000, seed: 1 } })
 */
export async function scoreOnnxModel(options: ScoreOnnxOptions): Promise<EvalScores> {
  const { transform, engine } = options;
  const task = transform.label.task;
  const batchRows = options.batchRows ?? 50_000;
  positiveInteger('batchRows', batchRows);
  if (options.sample) {
    positiveInteger('sample.rows', options.sample.rows);
    if (!Number.isSafeInteger(options.sample.seed)) throw new RangeError(`sample.seed: ${options.sample.seed}`);
  }
  const classCount = classCountOf(transform);
  const file = sqlString(options.evalPath);
  const { types, rows: fileRows } = await evalFile(engine, file);
  const sample = options.sample && fileRows > options.sample.rows ? options.sample : undefined;
  if (sample && types.has('file_row_number'))
    throw new EvaluationError('the eval file has a column named file_row_number: it cannot be sampled');
  // As models/dataset.ts sampleRows: the rows whose hashed position comes first, read in file order.
  const from = sample
    ? `(SELECT * FROM read_parquet(${file}, file_row_number = true)
        ORDER BY hash(file_row_number, ${sample.seed}), file_row_number LIMIT ${sample.rows})`
    : `read_parquet(${file})`;
  const spec: ScoreSpec = {
    task,
    rows: sample?.rows ?? fileRows,
    ...(sample ? { orderBy: 'file_row_number' } : {}),
    classCount,
    batchRows,
    sliceFeatures: [],
    sliceCodes: [],
  };
  const scored = await withSession(options, (session) => scoreFile(session, engine, from, types, spec));
  return { task, classCount, fileRows, labels: scored.labels, outputs: scored.outputs };
}

/** Input of {@link computeMetrics}. */
export interface MetricsInput {
  readonly task: LabelTask;
  /** Class indexes (classification) or targets (regression). */
  readonly labels: Float64Array;
  /** Classification: probabilities row-major, rows × classCount (binary: [1 − p, p]); regression: predictions. */
  readonly outputs: Float64Array;
  /** 2 for binary, K for multiclass, 1 for regression. */
  readonly classCount: number;
  /** Binary decision threshold on P(class 1). */
  readonly threshold: number;
}

/**
 * The task's metrics of one set of rows, as scikit-learn defines them. Multiclass: auc is the mean one-vs-rest
 * `roc_auc` over the classes that have both positives and negatives here; precision, recall and f1 are macro averages
 * over the classes that occur as a label or a prediction here (scikit-learn's `average='macro'`, 0 when undefined),
 * f1 being the mean of the per-class F1; brier is the mean over rows of Σₖ (pₖ − [y = k])². A metric that is
 * undefined here (auc with one class) is absent, never NaN.
 */
export function computeMetrics(input: MetricsInput): Record<string, number> {
  const { task, labels, outputs, classCount, threshold } = input;
  const out: Partial<Record<MetricName, number>> = {};
  if (task === 'regression') {
    out.rmse = rmse(labels, outputs);
    out.mae = mae(labels, outputs);
    out.r2 = r2(labels, outputs);
  } else if (task === 'binary') {
    const p = new Float64Array(labels.length);
    let positives = 0;
    for (let i = 0; i < labels.length; i++) {
      p[i] = outputs[2 * i + 1]!;
      positives += labels[i]!;
    }
    if (positives > 0 && positives < labels.length) out.auc = rocAuc(labels, p);
    out.log_loss = logLoss(labels, p);
    const at = thresholdMetrics(labels, p, threshold);
    out.accuracy = at.accuracy;
    out.precision = at.precision;
    out.recall = at.recall;
    out.f1 = at.f1;
    out.brier = brierScore(labels, p);
  } else {
    Object.assign(out, multiclassMetrics(labels, outputs, classCount));
  }
  // Defensive: the report is JSON, and a NaN would read as a passing (or failing) comparison by accident.
  return Object.fromEntries(Object.entries(out).filter(([, v]) => Number.isFinite(v)));
}

function multiclassMetrics(
  labels: Float64Array,
  probabilities: Float64Array,
  k: number,
): Partial<Record<MetricName, number>> {
  const n = labels.length;
  const predicted = argmaxRows(probabilities, k);
  const truePositives = new Float64Array(k);
  const labelled = new Float64Array(k);
  const predictedCount = new Float64Array(k);
  let brier = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i]!;
    const hat = predicted[i]!;
    labelled[y]!++;
    predictedCount[hat]!++;
    if (y === hat) truePositives[y]!++;
    for (let c = 0; c < k; c++) brier += (probabilities[i * k + c]! - (c === y ? 1 : 0)) ** 2;
  }
  let aucSum = 0;
  let aucClasses = 0;
  let precision = 0;
  let recall = 0;
  let f1 = 0;
  let present = 0;
  const isClass = new Float64Array(n);
  const score = new Float64Array(n);
  for (let c = 0; c < k; c++) {
    if (labelled[c]! > 0 && labelled[c]! < n) {
      for (let i = 0; i < n; i++) {
        isClass[i] = labels[i] === c ? 1 : 0;
        score[i] = probabilities[i * k + c]!;
      }
      aucSum += rocAuc(isClass, score);
      aucClasses++;
    }
    if (labelled[c]! === 0 && predictedCount[c]! === 0) continue;
    present++;
    const p = predictedCount[c]! > 0 ? truePositives[c]! / predictedCount[c]! : 0;
    const r = labelled[c]! > 0 ? truePositives[c]! / labelled[c]! : 0;
    precision += p;
    recall += r;
    f1 += p + r > 0 ? (2 * p * r) / (p + r) : 0;
  }
  return {
    ...(aucClasses > 0 ? { auc: aucSum / aucClasses } : {}),
    log_loss: multiclassLogLoss(labels, probabilities, k),
    accuracy: accuracy(labels, predicted),
    precision: precision / present,
    recall: recall / present,
    f1: f1 / present,
    brier: brier / n,
  };
}

// ---------------------------------------------------------------------------------------------------------------

function positiveInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
}

function classCountOf(transform: FittedTransform): number {
  const task = transform.label.task;
  const classCount = task === 'regression' ? 1 : (transform.label.classes?.length ?? 0);
  if (task !== 'regression' && classCount < 2) {
    throw new EvaluationError(`a ${task} label needs at least 2 classes; the transform has ${classCount}`);
  }
  return classCount;
}

/** The eval file's column types and row count; it must have a label column and rows. */
async function evalFile(engine: DataEngine, file: string): Promise<{ types: Map<string, string>; rows: number }> {
  const types = await columnTypes(engine, file);
  if (!types.has('label')) throw new EvaluationError('the eval file has no label column');
  const rows = Number((await engine.rows<{ n: number }>(`SELECT count(*) AS n FROM read_parquet(${file})`))[0]?.n);
  if (!(rows > 0)) throw new EvaluationError('the eval file has no rows');
  return { types, rows };
}

/** Runs `work` on the caller's session, else on one created from the bytes and released afterwards. */
async function withSession<T>(
  options: Pick<EvaluateOnnxOptions, 'onnx' | 'session'>,
  work: (session: ort.InferenceSession) => Promise<T>,
): Promise<T> {
  const session = options.session ?? (await ort.InferenceSession.create(options.onnx, { executionProviders: ['cpu'] }));
  try {
    return await work(session);
  } finally {
    if (!options.session) await session.release();
  }
}

async function columnTypes(engine: DataEngine, file: string): Promise<Map<string, string>> {
  const rows = await engine.rows<{ column_name: string; column_type: string }>(
    `DESCRIBE SELECT * FROM read_parquet(${file})`,
  );
  return new Map(rows.map((r) => [r.column_name, r.column_type]));
}

/** A slice feature's value as reported: numbers that are not finite are missing, like everywhere else. */
function sliceSql(feature: FittedFeature): string {
  const column = sqlIdentifier(feature.name);
  if (feature.kind === 'categorical') return `CAST(${column} AS VARCHAR)`;
  return `CASE WHEN isfinite(CAST(${column} AS DOUBLE)) THEN CAST(${column} AS DOUBLE) END`;
}

type SliceValue = string | number | null;

/** The `max` most frequent values of a slice feature (count descending, then value), and how many distinct exist. */
async function topValues(
  engine: DataEngine,
  file: string,
  feature: FittedFeature,
  max: number,
): Promise<{ values: { value: SliceValue; rows: number }[]; distinct: number }> {
  const rows = await engine.rows<{ v: SliceValue; n: number; d: number }>(
    `SELECT v, n, count(*) OVER () AS d
     FROM (SELECT ${sliceSql(feature)} AS v, count(*) AS n FROM read_parquet(${file}) GROUP BY ALL)
     ORDER BY n DESC, v ASC NULLS LAST LIMIT ${max}`,
  );
  return { values: rows.map((r) => ({ value: r.v, rows: r.n })), distinct: rows[0]?.d ?? 0 };
}

/** Row indexes of each slice code (codes < 0, values not scored, are dropped), in file order. */
function groupRows(codes: Int32Array, count: number): Int32Array[] {
  const sizes = new Int32Array(count);
  for (const code of codes) if (code >= 0) sizes[code]!++;
  const groups = Array.from(sizes, (size) => new Int32Array(size));
  const filled = new Int32Array(count);
  for (let row = 0; row < codes.length; row++) {
    const code = codes[row]!;
    if (code >= 0) groups[code]![filled[code]!++] = row;
  }
  return groups;
}

interface Scored {
  readonly labels: Float64Array;
  /** rows × classCount probabilities, or rows predictions. */
  readonly outputs: Float64Array;
  /** Per slice feature, each row's index into its scored values; −1 for a value not among them. */
  readonly sliceCodes: readonly Int32Array[];
}

interface ScoreSpec {
  readonly task: LabelTask;
  /** The rows `from` gives. */
  readonly rows: number;
  /** The order they are read in; default the relation's own (file order for a bare read_parquet). */
  readonly orderBy?: string;
  readonly classCount: number;
  readonly batchRows: number;
  readonly sliceFeatures: readonly FittedFeature[];
  readonly sliceCodes: readonly Map<SliceValue, number>[];
}

/**
 * Streams the relation `from` (over the eval file) and runs every row through the graph, keeping labels, outputs and
 * slice codes.
 */
async function scoreFile(
  session: ort.InferenceSession,
  engine: DataEngine,
  from: string,
  types: ReadonlyMap<string, string>,
  spec: ScoreSpec,
): Promise<Scored> {
  const { task, rows, classCount } = spec;
  const signature = sessionSignature(session);
  const output = task === 'regression' ? OUTPUT_PREDICTION : OUTPUT_PROBABILITIES;
  if (!session.outputNames.includes(output)) {
    throw new EvaluationError(`a ${task} graph must have a ${output} output; it has ${session.outputNames.join(', ')}`);
  }
  for (const input of signature.inputs) {
    if (!types.has(input.name)) throw new EvaluationError(`the eval file has no column for input ${input.name}`);
  }
  const select = [...signature.inputs.map(inputSql), 'CAST(label AS DOUBLE)', ...spec.sliceFeatures.map(sliceSql)].map(
    (sql, i) => `${sql} AS __c${i}`,
  );
  const labelColumn = signature.inputs.length;

  const labels = new Float64Array(rows);
  const outputs = new Float64Array(rows * classCount);
  const sliceCodes = spec.sliceFeatures.map(() => new Int32Array(rows));
  let pending: unknown[][] = signature.inputs.map(() => []);
  let pendingRows = 0;
  let done = 0;
  let read = 0;

  const flush = async () => {
    const columns = Object.fromEntries(signature.inputs.map((field, i) => [field.name, pending[i]!]));
    const { feeds } = columnsToOnnxFeeds(signature, columns);
    const tensor = (await session.run(feeds, [output]))[output];
    const data = tensor?.data;
    if (!(data instanceof Float32Array || data instanceof Float64Array)) {
      throw new EvaluationError(`output ${output} is not a floating-point tensor`);
    }
    if (data.length !== pendingRows * classCount) {
      throw new EvaluationError(`output ${output} has ${data.length} values for ${pendingRows} rows × ${classCount}`);
    }
    const offset = done * classCount;
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      if (!Number.isFinite(v)) {
        throw new EvaluationError(`the model's ${output} is ${v} for eval row ${done + Math.floor(i / classCount)}`);
      }
      outputs[offset + i] = v;
    }
    done += pendingRows;
    pending = signature.inputs.map(() => []);
    pendingRows = 0;
  };

  const order = spec.orderBy ? ` ORDER BY ${spec.orderBy}` : '';
  const result = await engine.connection.stream(`SELECT ${select.join(', ')} FROM ${from}${order}`);
  for (let chunk = await result.fetchChunk(); chunk && chunk.rowCount > 0; chunk = await result.fetchChunk()) {
    const count = chunk.rowCount;
    if (read + count > rows)
      throw new EvaluationError(`the eval file changed while it was read (${rows} rows)`, { retryable: true });
    for (const [i, column] of pending.entries()) for (const v of chunk.getColumnValues(i)) column.push(v);
    readLabels(chunk, labelColumn, labels, read, task, classCount);
    for (const [s, codes] of sliceCodes.entries()) {
      const lookup = spec.sliceCodes[s]!;
      const values = chunk.getColumnValues(labelColumn + 1 + s);
      for (let r = 0; r < count; r++) codes[read + r] = lookup.get(values[r] as SliceValue) ?? -1;
    }
    read += count;
    pendingRows += count;
    if (pendingRows >= spec.batchRows) await flush();
  }
  if (pendingRows > 0) await flush();
  if (read !== rows) throw new EvaluationError(`read ${read} eval rows; the file has ${rows}`);
  return { labels, outputs, sliceCodes };
}

/** The SQL that gives an input's column as the graph's feeds take it: DOUBLE (null = missing) or VARCHAR. */
function inputSql(field: SignatureField): string {
  const column = sqlIdentifier(field.name);
  return field.type === 'string' ? `CAST(${column} AS VARCHAR)` : `CAST(${column} AS DOUBLE)`;
}

function readLabels(
  chunk: DuckDBDataChunk,
  column: number,
  out: Float64Array,
  start: number,
  task: LabelTask,
  classCount: number,
): void {
  const vector = chunk.getColumnVector(column);
  if (!(vector instanceof DuckDBDoubleVector)) throw new TypeError(`expected a DOUBLE label vector`);
  for (let r = 0; r < chunk.rowCount; r++) {
    const v = vector.getItem(r);
    const valid =
      v !== null && (task === 'regression' ? Number.isFinite(v) : Number.isInteger(v) && v >= 0 && v < classCount);
    if (!valid) {
      const expected = task === 'regression' ? 'a finite number' : `a class index in [0, ${classCount})`;
      throw new EvaluationError(`eval row ${start + r} has label ${v}; expected ${expected}`);
    }
    out[start + r] = v;
  }
}
