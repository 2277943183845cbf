/**
 * Reading one monitoring window: the deployment's logged champion predictions in [start, end), each with its
 * feedback label when one was sent, streamed out of Postgres with COPY and counted onto the baseline's bins in one
 * pass. Postgres renders each row's parts as text (the features as logged, the output's label, probabilities or
 * prediction, the feedback label) while this process counts the rows already received, reading each row's fields
 * in place in the decoded chunk: the features with flat-json.ts (JSON.parse only for an instance outside its subset),
 * the probabilities with the same number reader.
 *
 * Measured (bench/monitoring-window.ts times the alternative in every round): aggregating the counts in SQL instead
 * (width_bucket per numeric feature, GROUPING SETS over the jsonb of each row) took about twice as long as this
 * stream did with one JSON.parse per row, before any metric was computed. Against that version (2 loaded cores,
 * 1,000,000 rows, medians): this process's CPU went from about 2.0 s to 1.1 s — reading in place instead of
 * JSON.parse and a slice per field saved 0.5 s, storage/copy-out-rows.ts instead of pg-copy-streams 0.4 s.
 */
import type pg from 'pg';
import type { LabelTask } from '../models/types.js';
import { CopyOutRows } from '../storage/copy-out-rows.js';
import { droppedExportsOverlapping, type ExportedPart } from '../storage/prediction-log-window.js';
import { CategoricalAccumulator, NumericAccumulator } from './distances.js';
import { FlatObjectReader, lastTokenEnd, readJsonNumber, skipWhitespace, type JsonScalar } from './flat-json.js';
import { GrowableFloat64 } from './live-metrics.js';

/** Which rows a window holds. */
export interface WindowQuery {
  readonly deployment: string;
  /** Only rows this version answered as the champion. */
  readonly versionId: string;
  readonly start: Date;
  /** Exclusive. */
  readonly end: Date;
}

/** How one feature is counted: on baseline bins (numeric with edges), by value (categorical), or missing only. */
export type FeaturePlan =
  | { readonly name: string; readonly kind: 'numeric'; readonly edges?: readonly number[] }
  | { readonly name: string; readonly kind: 'categorical' };

export interface ScanPlan {
  readonly features: readonly FeaturePlan[];
  /** The label's task when known (from the pipeline definition); otherwise read off the outputs. */
  readonly task?: LabelTask;
  /** Regression: the training label's bins, to count the predictions on. */
  readonly predictionEdges?: readonly number[];
  /** Collect P(class 1) (binary) or every probability row (multiclass) of every row, for the estimate. */
  readonly keepProbabilities: boolean;
}

/** A feature's counts; `values` is absent for a numeric feature counted without bins. */
export interface FeatureCounts {
  readonly plan: FeaturePlan;
  readonly numeric?: NumericAccumulator;
  readonly categorical?: CategoricalAccumulator;
  /** Without bins: rows where it was missing. */
  missingOnly: number;
}

export interface WindowScan {
  rows: number;
  readonly features: FeatureCounts[];
  /** Classifiers: the served label's text per row; regression: the predictions on the label's bins. */
  readonly predictedLabels: CategoricalAccumulator;
  readonly predictedValues?: NumericAccumulator;
  /** Rows whose output had probabilities (classifiers) or a prediction (regression). */
  scoredRows: number;
  /** Classes per probability index, as served (the label of rows whose probabilities peak there). */
  readonly servedClasses: Map<number, string>;
  classCount: number;
  /** Binary: P(class 1) per row; multiclass: rows × classCount. Only with `keepProbabilities`. */
  readonly probabilities: GrowableFloat64;
  /** Feedback: the label's text per labelled row, and that row's probabilities (rows × classCount) or prediction. */
  readonly feedbackLabels: string[];
  readonly feedbackOutputs: GrowableFloat64;
  /** Whether the outputs were probabilities (classifier) or predictions (regression); undefined without outputs. */
  outputKind?: 'probabilities' | 'prediction';
  /**
   * Exports whose partitions were dropped, of the days the window touches: rows Postgres no longer holds, found in
   * the same transaction as the streamed rows (see {@link scanWindow}); counted in by window-exported.ts.
   */
  exportedParts: readonly ExportedPart[];
  /** Of `rows`, those read from the serving-log warehouse. */
  exportedRows: number;
}

/** An empty scan for a plan; rows are added with {@link accumulateRow}. */
export function emptyScan(plan: ScanPlan): WindowScan {
  return {
    rows: 0,
    features: plan.features.map((f) => ({
      plan: f,
      ...(f.kind === 'numeric' && f.edges?.length ? { numeric: new NumericAccumulator(f.edges) } : {}),
      ...(f.kind === 'categorical' ? { categorical: new CategoricalAccumulator() } : {}),
      missingOnly: 0,
    })),
    predictedLabels: new CategoricalAccumulator(),
    ...(plan.predictionEdges?.length ? { predictedValues: new NumericAccumulator(plan.predictionEdges) } : {}),
    scoredRows: 0,
    servedClasses: new Map(),
    classCount: 0,
    probabilities: new GrowableFloat64(1 << 16),
    feedbackLabels: [],
    feedbackOutputs: new GrowableFloat64(),
    exportedParts: [],
    exportedRows: 0,
  };
}

/** One window row's parts, as text (null where SQL gave NULL). */
export interface WindowRow {
  /** The logged instance, as JSON text. */
  readonly features: string;
  /** `outputs->>'label'`: the served class label's text. */
  readonly label: string | null;
  /** `outputs->'probabilities'`: a JSON array of numbers. */
  readonly probabilities: string | null;
  /** `outputs->>'prediction'`. */
  readonly prediction: string | null;
  /** The feedback label's text (`label #>> '{}'`), when feedback was sent for the request. */
  readonly feedback: string | null;
}

/** A categorical value's text form, as the statistics give it (`true`/`false` for booleans); undefined if missing. */
function categoryOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : undefined;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return undefined;
}

/** A numeric value, NaN when missing or not a number (a numeric string counts as its number). */
function numberOf(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '') return Number(value);
  return Number.NaN;
}

/** `[0.25, 0.75]` → its numbers, written into `out`; returns how many. Any text: an element that is no number is NaN. */
function parseNumberList(text: string, out: number[]): number {
  let count = 0;
  let from = text.indexOf('[') + 1;
  const close = text.lastIndexOf(']');
  while (from < close) {
    let comma = text.indexOf(',', from);
    if (comma < 0 || comma > close) comma = close;
    out[count++] = Number(text.slice(from, comma));
    from = comma + 1;
  }
  return count;
}

/**
 * {@link parseNumberList} of `text[from, to)` without slicing it: a JSON array of numbers is read in place; any
 * other text is handed to parseNumberList, so both give the same numbers.
 */
function readNumberList(text: string, from: number, to: number, out: number[]): number {
  let pos = skipWhitespace(text, from);
  if (text.charCodeAt(pos) === 0x5b) {
    let count = 0;
    pos = skipWhitespace(text, pos + 1);
    if (text.charCodeAt(pos) === 0x5d && pos === to - 1) return 0;
    for (;;) {
      const value = readJsonNumber(text, pos);
      if (value !== value) break;
      out[count++] = value;
      pos = skipWhitespace(text, lastTokenEnd());
      const c = text.charCodeAt(pos);
      if (c === 0x5d) {
        if (pos === to - 1) return count;
        break;
      }
      if (c !== 0x2c) break;
      pos = skipWhitespace(text, pos + 1);
    }
  }
  return parseNumberList(text.slice(from, to), out);
}

/** The current row's probabilities (or prediction), reused from row to row. */
const probabilityRow: number[] = [];

/** The current row's feature values, in plan order, reused from row to row. */
const featureValues: unknown[] = [];

/** One reader per plan, for the plan's feature names. */
const readers = new WeakMap<ScanPlan, FlatObjectReader>();

function readerOf(plan: ScanPlan): FlatObjectReader {
  let reader = readers.get(plan);
  if (!reader) {
    reader = new FlatObjectReader(plan.features.map((f) => f.name));
    readers.set(plan, reader);
  }
  return reader;
}

/**
 * The values of the plan's features in the logged instance `text[from, to)` (COPY-escaped when `copyEscaped`), into
 * {@link featureValues}: read in place when it is a flat object, else parsed with JSON.parse. Text that is not a JSON
 * object leaves every feature missing.
 */
function readFeatures(plan: ScanPlan, text: string, from: number, to: number, copyEscaped: boolean): void {
  if (readerOf(plan).read(text, from, to, featureValues as JsonScalar[])) return;
  let instance: unknown;
  try {
    const json = text.slice(from, to);
    instance = JSON.parse(copyEscaped ? unescapeCopyText(json) : json);
  } catch {
    // Counted as missing everywhere: the row still was served.
  }
  valuesOf(plan, instance);
}

/** The plan's features of a parsed instance, into {@link featureValues}; all missing when it is not an object. */
function valuesOf(plan: ScanPlan, parsed: unknown): void {
  const instance: Record<string, unknown> =
    parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  for (let i = 0; i < plan.features.length; i++) featureValues[i] = instance[plan.features[i]!.name];
}

/** Counts one row of the window into `scan`. A row whose features are not a JSON object counts every feature missing. */
export function accumulateRow(scan: WindowScan, plan: ScanPlan, row: WindowRow): void {
  readFeatures(plan, row.features, 0, row.features.length, false);
  const outputs = row.probabilities === null ? -1 : parseNumberList(row.probabilities, probabilityRow);
  countRow(scan, plan, row.label, outputs, row.prediction, row.feedback);
}

/**
 * Counts one row whose logged instance is already parsed (rows read from the serving-log warehouse); `row.features`
 * is not read. An instance that is not an object counts every feature missing, as in {@link accumulateRow}.
 */
export function accumulateInstance(
  scan: WindowScan,
  plan: ScanPlan,
  parsed: unknown,
  row: Omit<WindowRow, 'features'>,
): void {
  valuesOf(plan, parsed);
  const outputs = row.probabilities === null ? -1 : parseNumberList(row.probabilities, probabilityRow);
  countRow(scan, plan, row.label, outputs, row.prediction, row.feedback);
}

/**
 * Counts a row whose feature values are in {@link featureValues} and whose probabilities, when it has them
 * (`probabilities` ≥ 0: how many), are in {@link probabilityRow}.
 */
function countRow(
  scan: WindowScan,
  plan: ScanPlan,
  label: string | null,
  probabilities: number,
  prediction: string | null,
  feedback: string | null,
): void {
  scan.rows++;
  const features = scan.features;
  for (let i = 0; i < features.length; i++) {
    const feature = features[i]!;
    const value = featureValues[i];
    if (feature.categorical) feature.categorical.add(categoryOf(value));
    else if (feature.numeric) feature.numeric.add(numberOf(value));
    else if (!Number.isFinite(numberOf(value))) feature.missingOnly++;
  }

  let outputs = 0;
  if (probabilities >= 0) {
    const k = probabilities;
    if (k > 0) {
      scan.outputKind = 'probabilities';
      scan.scoredRows++;
      scan.classCount = Math.max(scan.classCount, k);
      let best = 0;
      for (let i = 1; i < k; i++) if (probabilityRow[i]! > probabilityRow[best]!) best = i;
      if (label !== null && !scan.servedClasses.has(best)) scan.servedClasses.set(best, label);
      if (plan.keepProbabilities) {
        if (k === 2 && plan.task !== 'multiclass') scan.probabilities.push(probabilityRow[1]!);
        else for (let i = 0; i < k; i++) scan.probabilities.push(probabilityRow[i]!);
      }
      outputs = k;
    }
    scan.predictedLabels.add(label ?? undefined);
  } else if (prediction !== null) {
    const value = Number(prediction);
    scan.outputKind = 'prediction';
    scan.scoredRows++;
    scan.predictedValues?.add(value);
    probabilityRow[0] = value;
    outputs = 1;
  } else if (label !== null) {
    scan.predictedLabels.add(label);
  }
  if (feedback !== null && outputs > 0) {
    scan.feedbackLabels.push(feedback);
    for (let i = 0; i < outputs; i++) scan.feedbackOutputs.push(probabilityRow[i]!);
  }
}

/** Undoes COPY's text escaping (backslash sequences); most fields have none and are returned as they are. */
export function unescapeCopyText(field: string): string {
  if (!field.includes('\\')) return field;
  return field.replace(/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/g, (_, code: string) => {
    switch (code) {
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'v':
        return '\v';
      default:
        if (code[0] === 'x' && code.length > 1) return String.fromCharCode(parseInt(code.slice(1), 16));
        if (/^[0-7]+$/.test(code)) return String.fromCharCode(parseInt(code, 8));
        return code;
    }
  });
}

/** The COPY statement of a window (COPY takes no parameters: the values are quoted literals). */
export function windowCopySql(query: WindowQuery, quote: (value: string) => string): string {
  return `COPY (
    SELECT l.features, l.outputs->>'label', l.outputs->'probabilities', l.outputs->>'prediction', f.label #>> '{}'
    FROM prediction_logs l LEFT JOIN prediction_feedback f ON f.request_id = l.request_id
    WHERE l.deployment = ${quote(query.deployment)} AND l.role = 'champion' AND l.error IS NULL
      AND l.version_id = ${quote(query.versionId)}::uuid
      AND l.logged_at >= ${quote(query.start.toISOString())}::timestamptz
      AND l.logged_at < ${quote(query.end.toISOString())}::timestamptz
  ) TO STDOUT`;
}

/** A field of a COPY text row, `text[from, to)`: null for `\\N`, else its text unescaped. */
function fieldAt(text: string, from: number, to: number): string | null {
  if (to - from === 2 && text.charCodeAt(from) === 0x5c && text.charCodeAt(from + 1) === 0x4e) return null;
  return unescapeCopyText(text.slice(from, to));
}

/**
 * Counts the rows of COPY text (whole lines, as {@link windowCopySql} selects them) into `scan`, reading each row's
 * fields in place.
 */
export function accumulateCopyText(scan: WindowScan, plan: ScanPlan, text: string): void {
  let start = 0;
  while (start < text.length) {
    const end = text.indexOf('\n', start);
    const t1 = text.indexOf('\t', start);
    const t2 = text.indexOf('\t', t1 + 1);
    const t3 = text.indexOf('\t', t2 + 1);
    const t4 = text.indexOf('\t', t3 + 1);
    readFeatures(plan, text, start, t1, true);
    const probabilities =
      t3 - t2 === 3 && text.charCodeAt(t2 + 1) === 0x5c ? -1 : readNumberList(text, t2 + 1, t3, probabilityRow);
    countRow(
      scan,
      plan,
      fieldAt(text, t1 + 1, t2),
      probabilities,
      fieldAt(text, t3 + 1, t4),
      fieldAt(text, t4 + 1, end),
    );
    start = end + 1;
  }
}

/**
 * Streams the window's rows out of Postgres and counts them into a fresh scan. Rows are counted as their chunks
 * arrive, so Postgres renders the next rows while this process counts the last ones. In the same transaction, after
 * the stream, it lists the exports of the window's days whose partitions were dropped (`exportedParts`): the COPY
 * holds the partitions it read until the commit, so no day is dropped halfway and no row is missed or counted twice.
 * Those rows are not counted here: see `countExportedRows` (window-exported.ts).
 *
 * Measured (bench/monitoring-window.ts, 2 cores): cutting the window into time slices, each streamed over its own
 * connection, gained nothing: this process counting and one Postgres backend rendering already keep both cores busy.
 */
export async function scanWindow(pool: pg.Pool, query: WindowQuery, plan: ScanPlan): Promise<WindowScan> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('begin');
    const scan = await streamWindow(client, query, plan);
    scan.exportedParts = await droppedExportsOverlapping(client, query.start, query.end);
    await client.query('commit');
    return scan;
  } catch (error) {
    // A client left inside a COPY or a transaction is not given back to the pool.
    broken = error as Error;
    throw error;
  } finally {
    client.release(broken);
  }
}

/** Streams the window's rows over `client` (inside its transaction) and counts them into a fresh scan. */
async function streamWindow(client: pg.PoolClient, query: WindowQuery, plan: ScanPlan): Promise<WindowScan> {
  const scan = emptyScan(plan);
  const sql = windowCopySql(query, (v) => client.escapeLiteral(v));
  const stream = client.query(new CopyOutRows(sql));
  let rest: Buffer = Buffer.alloc(0);
  for await (const received of stream as AsyncIterable<Buffer>) {
    // A chunk may end inside a row, or inside a multi-byte character: decode up to its last newline only.
    const chunk = rest.length > 0 ? Buffer.concat([rest, received]) : received;
    const lastNewline = chunk.lastIndexOf(0x0a);
    rest = chunk.subarray(lastNewline + 1);
    if (lastNewline < 0) continue;
    accumulateCopyText(scan, plan, chunk.toString('utf8', 0, lastNewline + 1));
  }
  if (rest.length > 0) throw new Error('the window stream ended inside a row');
  return scan;
}
