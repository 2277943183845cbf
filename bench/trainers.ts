/**
 * Trainers benchmark: our logistic regression and gradient-boosted trees on the flights data, side by side with
 * scikit-learn in one run, evaluated through the exported ONNX graph.
 *
 *   npm run bench:trainers -- --runs 3
 *
 * The task: `node_modules/vega-datasets/data/flights-3m.parquet`, label `delay > 15` (binary), time split on `date`:
 * train before 2001-03-01 (966,409 rows), eval March 2001 (511,502 rows). Prepared once, untimed, with
 * `prepareDataset` (fitted transform, train/eval Parquet with the raw feature values):
 *
 * - **logistic regression**: `hour(date)`, `dayofweek(date)` categorical (one-hot), `distance` numeric
 *   (standardized), `origin`, `destination` categorical (one-hot); default parameters (C = 1, L-BFGS, at most 100
 *   iterations). scikit-learn: `LogisticRegression(solver='lbfgs', C=1, max_iter=100)` on `OneHotEncoder` of the four
 *   categorical columns + `StandardScaler(distance)`.
 * - **gradient-boosted trees**: `hour`, `dayofweek`, `origin`, `destination` categorical (native categorical
 *   splits), `distance` numeric; default parameters (scikit-learn's), seed 0. scikit-learn:
 *   `HistGradientBoostingClassifier(categorical_features=[hour, day_of_week, origin, destination], random_state=0)`,
 *   the categories as integer codes. `--tree-calendar numeric` makes hour and day of week numeric on both sides.
 *
 * Each measured iteration runs scikit-learn (`/usr/bin/python3 bench/sklearn_reference.py`, on CSV files exported
 * with DuckDB from the same prepared Parquet) and ours (a child `node --import tsx` process running this file in
 * child mode: `trainFromParquet`, then `exportOnnx`), one after the other, alternating which goes first. Timed:
 * ours, the trainer call (`trainFromParquet` from the moment the data is loaded — its `onLoaded` hook — to the
 * model; loading the Parquet into typed arrays is reported as `load`); scikit-learn, `fit` (reading the CSV files
 * and, for logistic regression, one-hot encoding are reported separately). Peak memory: the child's `VmHWM` from
 * `/proc/self/status` (its whole life: node, tsx, DuckDB loading, training, export; helper threads included).
 *
 * Our models are evaluated through the exported graph only: onnxruntime-node (CPU) on all 511,502 eval rows, fed the
 * raw feature columns of the eval Parquet (numbers, strings) in batches of `--batch` rows, as serving would; AUC and
 * log loss (models/metrics.ts, defined as scikit-learn's) of its `probabilities` output. The graph is also compared
 * with the in-memory model (`predictRows`) on every 256th eval row.
 *
 * It prints a table and a goal line per figure, writes `bench/results/trainers-<timestamp>.json` and exits non-zero
 * when a goal fails. `--models` picks the trainers (comma-separated); goals of trainers left out are skipped.
 * `--threads N` runs both sides with N threads (scikit-learn: OMP_NUM_THREADS and OPENBLAS_NUM_THREADS; ours: the
 * trees' `threads` parameter; our logistic regression is single-threaded); by default each uses its own default
 * (scikit-learn: every core; our trees: up to 4 cores from 200,000 rows).
 *
 * `--learning-rate R` sets the trees' learning rate on both sides (ours `learningRate`, scikit-learn `learning_rate`;
 * every other parameter stays at its default): the defaults' 100 iterations at 0.1 leave both implementations short
 * of converging on this task, and the same budget at a larger rate is what reaches the accuracy goal.
 *
 * `--split random` replaces the time split with a random split of the same January–March 2001 rows, of the same
 * sizes: the rows before 2001-04-01 are copied (untimed) to a Parquet file with their position in the source file as
 * `source_row`, and `prepareDataset` splits that file with its stable hash split on `source_row` (seed 0), the eval
 * fraction chosen so that exactly the 511,502 rows of smallest hash bucket are eval. Both sides read the same
 * prepared files, so ours and scikit-learn train and evaluate on the same rows.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { DataEngine, sqlIdentifier, sqlString } from '../data/engine.js';
import { prepareDataset, type PreparedDataset, type PrepareSpec } from '../data/prepare.js';
import type { FittedTransform } from '../data/transform.js';
import { logLoss, rocAuc } from '../models/metrics.js';
import { columnsToOnnxFeeds, OUTPUT_PROBABILITIES, sessionSignature } from '../models/onnx/index.js';
import { predictRows } from '../models/predict.js';
import type { TrainerKind } from '../models/training-job.js';
import type { TrainedModel } from '../models/types.js';
import {
  formatMs,
  formatTable,
  parseBenchArgs,
  runBenchmark,
  summarize,
  writeResultFile,
  type BenchmarkResult,
  type Metrics,
  type MetricSummary,
} from './harness.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO_ROOT = path.resolve(path.dirname(THIS_FILE), '..');
const FLIGHTS = path.join(REPO_ROOT, 'node_modules/vega-datasets/data/flights-3m.parquet');
const SKLEARN_SCRIPT = path.join(REPO_ROOT, 'bench/sklearn_reference.py');
/** scikit-learn is importable only by the system Python. */
const PYTHON = '/usr/bin/python3';
/** Set in the environment of a child process: the path of its job file. */
const CHILD_ENV = 'BENCH_TRAINERS_CHILD';

const EXPECTED_TRAIN_ROWS = 966_409;
const EXPECTED_EVAL_ROWS = 511_502;
const SPLIT: PrepareSpec['split'] = {
  kind: 'time',
  column: 'date',
  trainBefore: '2001-03-01',
  evalBefore: '2001-04-01',
};
/** `--split random`: the rows of the time split (January–March 2001), split by a stable hash of `source_row`. */
const RANDOM_SPLIT_ROWS_BEFORE = '2001-04-01';
const RANDOM_SPLIT_KEY = 'source_row';
const LABEL: PrepareSpec['label'] = { name: 'delayed', expression: 'delay > 15', task: 'binary' };
/** Rows of the eval split compared between the graph and the in-memory model: every STRIDE-th. */
const PARITY_STRIDE = 256;
const SEED = 0;
/** Peak RSS goal of our training process: 2 GB. */
const PEAK_RSS_LIMIT_BYTES = 2e9;

interface ModelSpec {
  readonly trainer: TrainerKind;
  readonly label: string;
  /** Our parameters (the rest are the defaults, which are scikit-learn's). */
  readonly params: Record<string, unknown>;
  /** Whether our trainer takes a `threads` parameter (set by `--threads`). */
  readonly threaded: boolean;
  readonly features: PrepareSpec['features'];
  readonly goals: { readonly minAuc: number; readonly maxTimeRatio: number };
}

const MODELS: readonly ModelSpec[] = [
  {
    trainer: 'logistic_regression',
    label: 'logistic regression',
    params: {},
    threaded: false,
    features: [
      { name: 'hour', expression: 'hour(date)', kind: 'categorical' },
      { name: 'day_of_week', expression: 'dayofweek(date)', kind: 'categorical' },
      { name: 'distance', expression: 'distance', kind: 'numeric' },
      { name: 'origin', expression: 'origin', kind: 'categorical' },
      { name: 'destination', expression: 'destination', kind: 'categorical' },
    ],
    goals: { minAuc: 0.64, maxTimeRatio: 1 },
  },
  {
    trainer: 'gradient_boosted_trees',
    label: 'gradient-boosted trees',
    params: { seed: SEED },
    threaded: true,
    features: [
      { name: 'hour', expression: 'hour(date)', kind: 'categorical' },
      { name: 'day_of_week', expression: 'dayofweek(date)', kind: 'categorical' },
      { name: 'distance', expression: 'distance', kind: 'numeric' },
      { name: 'origin', expression: 'origin', kind: 'categorical' },
      { name: 'destination', expression: 'destination', kind: 'categorical' },
    ],
    goals: { minAuc: 0.693, maxTimeRatio: 1.5 },
  },
];

/** Metric names of the timed iterations. */
const M = {
  iteration: 'iteration (both)',
  oursTrain: 'ours: train',
  oursLoad: 'ours: load',
  oursExport: 'ours: ONNX export',
  oursProcess: 'ours: process',
  sklearnFit: 'sklearn: fit',
  sklearnLoad: 'sklearn: load CSV',
  sklearnEncode: 'sklearn: encode',
  sklearnPredict: 'sklearn: predict eval',
  sklearnProcess: 'sklearn: process',
} as const;

// ---------------------------------------------------------------------------------------------------------------
// Child mode: one training of ours in its own process

interface ChildJob {
  readonly trainer: TrainerKind;
  readonly params: Record<string, unknown>;
  readonly trainPath: string;
  readonly transformPath: string;
  readonly workDir: string;
  readonly onnxPath: string;
  readonly modelPath: string;
  readonly resultPath: string;
}

interface ChildResult {
  readonly rows: number;
  readonly loadMs: number;
  readonly trainMs: number;
  readonly exportMs: number;
  readonly iterations: number;
  readonly lastLoss: number | null;
  /** VmHWM when the data was loaded, when training ended (before export) and at the end. */
  readonly peakRssAfterLoadBytes: number;
  readonly peakRssAfterTrainBytes: number;
  readonly peakRssBytes: number;
  /** `process.resourceUsage().maxRSS` at the end, in bytes (the same high-water mark, from getrusage). */
  readonly maxRssBytes: number;
  readonly onnxBytes: number;
  readonly onnxSha256: string;
  readonly model: Record<string, unknown>;
}

/** This process's peak resident set size (VmHWM) in bytes; getrusage's where /proc is missing. */
function peakRss(): number {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux: fall through
  }
  return process.resourceUsage().maxRSS * 1024;
}

function describeModel(model: TrainedModel): Record<string, unknown> {
  if (model.kind === 'gbt') {
    const nodes = model.trees.reduce((n, t) => n + t.nodes.length, 0);
    const leaves = model.trees.reduce((n, t) => n + t.nodes.filter((node) => node.kind === 'leaf').length, 0);
    const categoricalSplits = model.trees.reduce(
      (n, t) => n + t.nodes.filter((node) => node.kind === 'categorical').length,
      0,
    );
    return { kind: model.kind, trees: model.trees.length, nodes, leaves, categoricalSplits };
  }
  if (model.kind === 'linear') return { kind: model.kind, weights: model.weights[0]?.length ?? 0 };
  return { kind: model.kind, layers: model.layers.length };
}

async function child(jobPath: string): Promise<void> {
  const job = JSON.parse(fs.readFileSync(jobPath, 'utf8')) as ChildJob;
  // Imported here, not at the top: the parent process never loads the trainers.
  const { trainFromParquet } = await import('../models/train.js');
  const transform = JSON.parse(fs.readFileSync(job.transformPath, 'utf8')) as FittedTransform;
  // As the training thread opens it (models/training-thread.ts).
  const engine = await DataEngine.open({ workDir: job.workDir, readableDirs: [path.dirname(job.trainPath)] });
  let loadedAt = Number.NaN;
  let rows = 0;
  let peakRssAfterLoadBytes = 0;
  let iterations = 0;
  let lastLoss: number | null = null;
  let model: TrainedModel;
  let trainedAt: number;
  const started = performance.now();
  try {
    model = await trainFromParquet(engine, job.trainer, job.params, job.trainPath, transform, {
      onLoaded: (loadedRows) => {
        loadedAt = performance.now();
        rows = loadedRows;
        peakRssAfterLoadBytes = peakRss();
      },
      onProgress: (progress) => {
        iterations++;
        lastLoss = progress.loss;
      },
    });
    trainedAt = performance.now();
  } finally {
    engine.close();
  }
  const peakRssAfterTrainBytes = peakRss();
  // exportOnnx as models/onnx/index.ts re-exports it, from its own module: the index also loads onnxruntime, which
  // this process does not need.
  const { exportOnnx } = await import('../models/onnx/export.js');
  const exportStarted = performance.now();
  const exported = exportOnnx(model, transform);
  const exportMs = performance.now() - exportStarted;
  fs.writeFileSync(job.onnxPath, exported.bytes);
  fs.writeFileSync(job.modelPath, JSON.stringify(model));
  const result: ChildResult = {
    rows,
    loadMs: loadedAt - started,
    trainMs: trainedAt - loadedAt,
    exportMs,
    iterations,
    lastLoss,
    peakRssAfterLoadBytes,
    peakRssAfterTrainBytes,
    peakRssBytes: peakRss(),
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    onnxBytes: exported.bytes.byteLength,
    onnxSha256: createHash('sha256').update(exported.bytes).digest('hex'),
    model: describeModel(model),
  };
  fs.writeFileSync(job.resultPath, JSON.stringify(result));
}

// ---------------------------------------------------------------------------------------------------------------
// Parent: preparation, the two sides, ONNX evaluation

/** What sklearn_reference.py writes. */
interface SklearnResult {
  readonly estimator: string;
  readonly params: Record<string, unknown>;
  readonly iterations: number;
  readonly converged?: boolean;
  readonly design_columns?: number;
  readonly load_s: number;
  readonly encode_s: number;
  readonly fit_s: number;
  readonly predict_s: number;
  readonly train_rows: number;
  readonly eval_rows: number;
  readonly eval_positives: number;
  readonly auc: number;
  readonly log_loss: number;
  readonly peak_rss_bytes: number;
  readonly versions: Record<string, string>;
  readonly thread_pools: unknown;
}

interface Prepared {
  readonly spec: ModelSpec;
  readonly dataset: PreparedDataset;
  readonly transformPath: string;
}

/** Runs a process to its end; rejects with the tail of its output when it fails. Returns its wall time. */
function runProcess(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8000);
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      if (code === 0) resolve(performance.now() - started);
      else reject(new Error(`${path.basename(command)} ${args.join(' ')} exited with ${code ?? signal}:\n${output}`));
    });
  });
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

function loadAverage(): number[] {
  return os.loadavg().map((v) => Math.round(v * 100) / 100);
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;

/**
 * The prepared split as sklearn_reference.py reads it: hour, day_of_week, distance, origin and destination as
 * integer codes (the training split's categories first, sorted, then those only in the eval split), label; rows in
 * file order.
 */
async function exportCsv(
  engine: DataEngine,
  prepared: PreparedDataset,
  dir: string,
): Promise<{ train: string; eval: string }> {
  const train = `read_parquet(${sqlString(prepared.train.path)})`;
  const evalSplit = `read_parquet(${sqlString(prepared.eval.path)})`;
  for (const column of ['origin', 'destination']) {
    const c = sqlIdentifier(column);
    await engine.run(
      `CREATE OR REPLACE TEMP TABLE ${sqlIdentifier(`codes_${column}`)} AS
       SELECT v, CAST(row_number() OVER (ORDER BY in_train DESC, v) - 1 AS INTEGER) AS code
       FROM (SELECT v, bool_or(in_train) AS in_train
             FROM (SELECT ${c} AS v, true AS in_train FROM ${train}
                   UNION ALL SELECT ${c}, false FROM ${evalSplit})
             GROUP BY v)`,
    );
  }
  const out = { train: path.join(dir, 'train.csv'), eval: path.join(dir, 'eval.csv') };
  for (const [split, file] of [
    [train, out.train],
    [evalSplit, out.eval],
  ] as const) {
    const source = split.replace(/\)$/, ', file_row_number = true)');
    await engine.run(
      `COPY (SELECT p.hour, p.day_of_week, p.distance, o.code AS origin, d.code AS destination, p.label
             FROM ${source} p
             JOIN codes_origin o ON p.origin = o.v
             JOIN codes_destination d ON p.destination = d.v
             ORDER BY p.file_row_number)
       TO ${sqlString(file)} (FORMAT csv, HEADER true)`,
    );
  }
  return out;
}

/**
 * `--split random`: copies the January–March 2001 rows of the flights file, with their position in it as
 * `source_row`, to a Parquet file in the engine's work folder, and returns that file and the hash split of it whose
 * eval part is exactly the EXPECTED_EVAL_ROWS rows of smallest bucket (the bucket is computed as `hashSplitSql` does:
 * the first 8 hex digits of `md5(CAST(source_row AS VARCHAR) || ':' || seed)`).
 */
async function randomSplitInput(engine: DataEngine): Promise<{ input: string; split: PrepareSpec['split'] }> {
  const input = path.join(engine.workDir, 'flights-2001q1.parquet');
  await engine.run(
    `COPY (SELECT * EXCLUDE (file_row_number), file_row_number AS ${sqlIdentifier(RANDOM_SPLIT_KEY)}
           FROM read_parquet(${sqlString(FLIGHTS)}, file_row_number = true)
           WHERE date < CAST(${sqlString(RANDOM_SPLIT_ROWS_BEFORE)} AS TIMESTAMP)
           ORDER BY file_row_number)
     TO ${sqlString(input)} (FORMAT parquet)`,
  );
  const bucket = `CAST(('0x' || substr(md5(CAST(${sqlIdentifier(RANDOM_SPLIT_KEY)} AS VARCHAR) || ${sqlString(`:${SEED}`)}), 1, 8)) AS UBIGINT)`;
  const rows = await engine.rows<{ b: bigint | number }>(
    `SELECT b FROM (SELECT DISTINCT ${bucket} AS b FROM read_parquet(${sqlString(input)}))
     WHERE b >= (SELECT ${bucket} AS b FROM read_parquet(${sqlString(input)}) ORDER BY b LIMIT 1 OFFSET ${EXPECTED_EVAL_ROWS - 1})
     ORDER BY b LIMIT 2`,
  );
  check(rows.length === 2, `--split random: fewer than ${EXPECTED_EVAL_ROWS + 1} distinct buckets`);
  const last = Number(rows[0]!.b);
  // Buckets below last + 1 are eval; the count of rows is checked after preparing (a tie at `last` would show there).
  return {
    input,
    split: { kind: 'hash', key: RANDOM_SPLIT_KEY, evalFraction: (last + 1) / 2 ** 32, seed: SEED },
  };
}

/** The eval split's raw feature columns (as serving would receive them: numbers, strings, null) and labels. */
async function readEvalColumns(
  engine: DataEngine,
  prepared: Prepared,
): Promise<{ columns: Record<string, unknown[]>; labels: Float64Array }> {
  const names = prepared.dataset.transform.features.map((f) => f.name);
  const reader = await engine.connection.runAndReadAll(
    `SELECT ${[...names, 'label'].map(sqlIdentifier).join(', ')} FROM read_parquet(${sqlString(prepared.dataset.eval.path)})`,
  );
  const all = reader.getColumnsJS();
  const columns = Object.fromEntries(names.map((name, i) => [name, all[i]! as unknown[]]));
  const labels = Float64Array.from(all[names.length]! as number[]);
  return { columns, labels };
}

interface OnnxEvaluation {
  readonly auc: number;
  readonly logLoss: number;
  readonly rows: number;
  readonly batches: number;
  readonly batchRows: number;
  /** Session creation, and feeding + running all batches. */
  readonly loadMs: number;
  readonly runMs: number;
  /** Largest |P(ONNX) − P(in-memory model)| over the parity sample. */
  readonly parity: { readonly rows: number; readonly maxAbsDiff: number };
}

/** Runs the graph on every eval row in batches; AUC and log loss of its P(class 1); parity with the model. */
async function evaluateOnnx(
  bytes: Uint8Array,
  model: TrainedModel,
  transform: FittedTransform,
  evalData: { columns: Record<string, unknown[]>; labels: Float64Array },
  batchRows: number,
): Promise<OnnxEvaluation> {
  const loadStarted = performance.now();
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'] });
  const loadMs = performance.now() - loadStarted;
  const rows = evalData.labels.length;
  const probabilities = new Float64Array(rows);
  let batches = 0;
  const runStarted = performance.now();
  try {
    const signature = sessionSignature(session);
    for (let start = 0; start < rows; start += batchRows) {
      const end = Math.min(rows, start + batchRows);
      const batch = Object.fromEntries(
        signature.inputs.map((field) => [field.name, evalData.columns[field.name]!.slice(start, end)]),
      );
      const { feeds } = columnsToOnnxFeeds(signature, batch);
      const output = (await session.run(feeds, [OUTPUT_PROBABILITIES]))[OUTPUT_PROBABILITIES];
      if (!output) throw new Error(`the graph has no ${OUTPUT_PROBABILITIES} output`);
      const data = output.data as Float32Array;
      check(data.length === 2 * (end - start), `expected ${2 * (end - start)} probabilities, got ${data.length}`);
      for (let i = 0; i < end - start; i++) probabilities[start + i] = data[2 * i + 1]!;
      batches++;
    }
  } finally {
    await session.release();
  }
  const runMs = performance.now() - runStarted;

  const sample: Record<string, unknown>[] = [];
  for (let r = 0; r < rows; r += PARITY_STRIDE) {
    sample.push(Object.fromEntries(transform.features.map((f) => [f.name, evalData.columns[f.name]![r]])));
  }
  const expected = predictRows(model, transform, sample);
  let maxAbsDiff = 0;
  for (let i = 0; i < sample.length; i++) {
    maxAbsDiff = Math.max(maxAbsDiff, Math.abs(expected[2 * i + 1]! - probabilities[i * PARITY_STRIDE]!));
  }
  return {
    auc: rocAuc(evalData.labels, probabilities),
    logLoss: logLoss(evalData.labels, probabilities),
    rows,
    batches,
    batchRows,
    loadMs,
    runMs,
    parity: { rows: sample.length, maxAbsDiff },
  };
}

interface ModelOutcome {
  readonly spec: ModelSpec;
  /** Our parameters as run. */
  readonly params: Record<string, unknown>;
  readonly benchmark: BenchmarkResult;
  readonly ours: readonly ChildResult[];
  readonly sklearn: readonly SklearnResult[];
  readonly onnx: OnnxEvaluation;
  readonly onnxDistinctModels: number;
}

async function benchmarkModel(
  prepared: Prepared,
  csv: { train: string; eval: string },
  evalData: { columns: Record<string, unknown[]>; labels: Float64Array },
  scratch: string,
  runs: number,
  warmup: number,
  batchRows: number,
  threads: number | undefined,
  learningRate: number | undefined,
): Promise<ModelOutcome> {
  const { spec } = prepared;
  const tuned = learningRate !== undefined && spec.trainer === 'gradient_boosted_trees';
  const params = {
    ...spec.params,
    ...(threads !== undefined && spec.threaded ? { threads } : {}),
    ...(tuned ? { learningRate } : {}),
  };
  const pythonEnv: NodeJS.ProcessEnv =
    threads !== undefined
      ? { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) }
      : process.env;
  const ours: ChildResult[] = [];
  const sklearn: SklearnResult[] = [];
  const onnxFiles = new Map<string, { onnx: string; model: string }>();
  const dir = path.join(scratch, spec.trainer);
  fs.mkdirSync(dir, { recursive: true });

  const runOurs = async (id: string): Promise<Metrics> => {
    const job: ChildJob = {
      trainer: spec.trainer,
      params,
      trainPath: prepared.dataset.train.path,
      transformPath: prepared.transformPath,
      workDir: path.join(dir, `work-${id}`),
      onnxPath: path.join(dir, `model-${id}.onnx`),
      modelPath: path.join(dir, `model-${id}.json`),
      resultPath: path.join(dir, `ours-${id}.json`),
    };
    const jobPath = path.join(dir, `job-${id}.json`);
    fs.writeFileSync(jobPath, JSON.stringify(job));
    const wall = await runProcess(process.execPath, ['--import', 'tsx', THIS_FILE], {
      ...process.env,
      [CHILD_ENV]: jobPath,
    });
    const result = JSON.parse(fs.readFileSync(job.resultPath, 'utf8')) as ChildResult;
    fs.rmSync(job.workDir, { recursive: true, force: true });
    check(
      result.rows === EXPECTED_TRAIN_ROWS,
      `ours: expected ${EXPECTED_TRAIN_ROWS} training rows, got ${result.rows}`,
    );
    if (!onnxFiles.has(result.onnxSha256))
      onnxFiles.set(result.onnxSha256, { onnx: job.onnxPath, model: job.modelPath });
    ours.push(result);
    return {
      [M.oursTrain]: result.trainMs,
      [M.oursLoad]: result.loadMs,
      [M.oursExport]: result.exportMs,
      [M.oursProcess]: wall,
    };
  };

  const runSklearn = async (id: string): Promise<Metrics> => {
    const out = path.join(dir, `sklearn-${id}.json`);
    const args = [SKLEARN_SCRIPT, '--model', spec.trainer, '--train', csv.train, '--eval', csv.eval, '--out', out];
    if (tuned) args.push('--learning-rate', String(learningRate));
    if (spec.trainer === 'gradient_boosted_trees') {
      const categorical = spec.features.filter((f) => f.kind === 'categorical').map((f) => f.name);
      args.push('--categorical', categorical.join(','));
    }
    const wall = await runProcess(PYTHON, [...args, '--seed', String(SEED)], pythonEnv);
    const result = JSON.parse(fs.readFileSync(out, 'utf8')) as SklearnResult;
    check(
      result.train_rows === EXPECTED_TRAIN_ROWS && result.eval_rows === EXPECTED_EVAL_ROWS,
      `sklearn: expected ${EXPECTED_TRAIN_ROWS}/${EXPECTED_EVAL_ROWS} rows, got ${result.train_rows}/${result.eval_rows}`,
    );
    sklearn.push(result);
    return {
      [M.sklearnFit]: result.fit_s * 1000,
      [M.sklearnLoad]: result.load_s * 1000,
      ...(result.encode_s > 0 ? { [M.sklearnEncode]: result.encode_s * 1000 } : {}),
      [M.sklearnPredict]: result.predict_s * 1000,
      [M.sklearnProcess]: wall,
    };
  };

  const benchmark = await runBenchmark({
    name: spec.label,
    runs,
    warmup,
    metric: M.iteration,
    // Alternate which side goes first, so that neither always runs on a machine the other has just warmed or heated.
    run: async (_state, iteration) => {
      const id = `${iteration.warmup ? 'w' : 'm'}${iteration.index}`;
      const sklearnFirst = iteration.index % 2 === 0;
      const first = sklearnFirst ? await runSklearn(id) : await runOurs(id);
      const second = sklearnFirst ? await runOurs(id) : await runSklearn(id);
      return { ...first, ...second };
    },
    onIteration: (iteration, metrics) =>
      console.log(
        `${spec.label} #${iteration.index + 1}: ours train ${formatMs(metrics[M.oursTrain]!)} ` +
          `(load ${formatMs(metrics[M.oursLoad]!)}, peak RSS ${mb(ours.at(-1)!.peakRssBytes)}), ` +
          `sklearn fit ${formatMs(metrics[M.sklearnFit]!)} (load ${formatMs(metrics[M.sklearnLoad]!)}, ` +
          `AUC ${sklearn.at(-1)!.auc.toFixed(4)})`,
      ),
  });

  // Every distinct graph the runs produced is evaluated; the figures reported are the last one's (the runs are
  // deterministic, so there should be one).
  let onnx: OnnxEvaluation | undefined;
  const evaluations: OnnxEvaluation[] = [];
  for (const files of onnxFiles.values()) {
    const model = JSON.parse(fs.readFileSync(files.model, 'utf8')) as TrainedModel;
    onnx = await evaluateOnnx(fs.readFileSync(files.onnx), model, prepared.dataset.transform, evalData, batchRows);
    evaluations.push(onnx);
  }
  if (!onnx) throw new Error(`${spec.label}: no model was exported`);
  const worst = evaluations.reduce((a, b) => (b.auc < a.auc ? b : a));
  console.log(
    `${spec.label}: ONNX on ${onnx.rows} eval rows (${onnx.batches} batches of ${batchRows}): AUC ` +
      `${worst.auc.toFixed(4)}, log loss ${worst.logLoss.toFixed(4)}, ${formatMs(onnx.runMs)} ` +
      `(${Math.round(onnx.rows / (onnx.runMs / 1000)).toLocaleString('en-US')} rows/s); ` +
      `max |ONNX - model| on ${onnx.parity.rows} rows ${onnx.parity.maxAbsDiff.toExponential(2)}; ` +
      `${onnxFiles.size} distinct graph(s) over ${ours.length} trainings`,
  );
  return { spec, params, benchmark, ours, sklearn, onnx: worst, onnxDistinctModels: onnxFiles.size };
}

function metricOf(result: BenchmarkResult, metric: string): MetricSummary {
  const found = result.metrics.find((m) => m.metric === metric);
  if (!found) throw new Error(`${result.name}: no metric ${metric}`);
  return found;
}

function median(values: readonly number[]): number {
  return summarize('median', values).median;
}

/** The side-by-side table: one row per model and implementation. */
function comparisonTable(outcomes: readonly ModelOutcome[]): string {
  const header = ['model', 'implementation', 'eval AUC', 'log loss', 'train median', 'min', 'max', 'load', 'peak RSS'];
  const rows = outcomes.flatMap((o) => {
    const train = metricOf(o.benchmark, M.oursTrain);
    const fit = metricOf(o.benchmark, M.sklearnFit);
    return [
      [
        o.spec.label,
        'ours (ONNX)',
        o.onnx.auc.toFixed(4),
        o.onnx.logLoss.toFixed(4),
        formatMs(train.median),
        formatMs(train.min),
        formatMs(train.max),
        formatMs(metricOf(o.benchmark, M.oursLoad).median),
        mb(Math.max(...o.ours.map((r) => r.peakRssBytes))),
      ],
      [
        o.spec.label,
        'scikit-learn',
        median(o.sklearn.map((r) => r.auc)).toFixed(4),
        median(o.sklearn.map((r) => r.log_loss)).toFixed(4),
        formatMs(fit.median),
        formatMs(fit.min),
        formatMs(fit.max),
        formatMs(metricOf(o.benchmark, M.sklearnLoad).median),
        mb(Math.max(...o.sklearn.map((r) => r.peak_rss_bytes))),
      ],
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

interface Goal {
  readonly label: string;
  readonly pass: boolean | null;
  readonly detail: string;
}

function goalsOf(spec: ModelSpec, outcome: ModelOutcome | undefined): Goal[] {
  const aucLabel = `${spec.label}: eval AUC through ONNX >= ${spec.goals.minAuc.toFixed(3)}`;
  const timeLabel =
    spec.goals.maxTimeRatio === 1
      ? `${spec.label}: training time <= scikit-learn's`
      : `${spec.label}: training time <= ${spec.goals.maxTimeRatio} x scikit-learn's`;
  const rssLabel = `${spec.label}: peak RSS of our training under ${PEAK_RSS_LIMIT_BYTES / 1e9} GB`;
  if (!outcome) return [aucLabel, timeLabel, rssLabel].map((label) => ({ label, pass: null, detail: 'not run' }));
  const ours = metricOf(outcome.benchmark, M.oursTrain).median;
  const theirs = metricOf(outcome.benchmark, M.sklearnFit).median;
  const peak = Math.max(...outcome.ours.map((r) => r.peakRssBytes));
  return [
    {
      label: aucLabel,
      pass: outcome.onnx.auc >= spec.goals.minAuc,
      detail: `${outcome.onnx.auc.toFixed(4)}; scikit-learn ${median(outcome.sklearn.map((r) => r.auc)).toFixed(4)}`,
    },
    {
      label: timeLabel,
      pass: ours <= spec.goals.maxTimeRatio * theirs,
      detail: `median ${formatMs(ours)} vs ${formatMs(theirs)}, ratio ${(ours / theirs).toFixed(2)}`,
    },
    {
      label: rssLabel,
      pass: peak < PEAK_RSS_LIMIT_BYTES,
      detail: `largest of ${outcome.ours.length} runs ${mb(peak)}`,
    },
  ];
}

async function main(): Promise<void> {
  const { runs, warmup, options } = parseBenchArgs({
    runs: 3,
    warmup: 0,
    options: {
      models: MODELS.map((m) => m.trainer).join(','),
      batch: '50000',
      threads: 'default',
      split: 'time',
      'learning-rate': 'default',
      'tree-calendar': 'categorical',
    },
  });
  const learningRate = options['learning-rate'] === 'default' ? undefined : Number(options['learning-rate']);
  if (learningRate !== undefined && !(learningRate > 0 && learningRate <= 1)) {
    throw new Error(`--learning-rate must be a number in (0, 1] or 'default'`);
  }
  if (options.split !== 'time' && options.split !== 'random') throw new Error(`--split must be 'time' or 'random'`);
  const randomSplit = options.split === 'random';
  const chosen = options.models.split(',').map((s) => s.trim());
  const unknown = chosen.filter((name) => !MODELS.some((m) => m.trainer === name));
  if (unknown.length > 0) throw new Error(`unknown --models ${unknown.join(', ')}`);
  const batchRows = Number(options.batch);
  if (!Number.isInteger(batchRows) || batchRows < 1) throw new Error(`--batch must be a positive integer`);
  if (options['tree-calendar'] !== 'categorical' && options['tree-calendar'] !== 'numeric') {
    throw new Error(`--tree-calendar must be 'categorical' or 'numeric'`);
  }
  const calendarKind: 'categorical' | 'numeric' = options['tree-calendar'];
  const specs = MODELS.filter((m) => chosen.includes(m.trainer)).map((m): ModelSpec =>
    m.trainer === 'gradient_boosted_trees'
      ? {
          ...m,
          features: m.features.map((f) =>
            f.name === 'hour' || f.name === 'day_of_week' ? { ...f, kind: calendarKind } : f,
          ),
        }
      : m,
  );
  const threads = options.threads === 'default' ? undefined : Number(options.threads);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
    throw new Error(`--threads must be a positive integer or 'default'`);
  }

  const loadAtStart = loadAverage();
  console.log(
    `${os.cpus().length} cores, Node ${process.version}, ${new Date().toISOString()}, ` +
      `load average at start ${loadAtStart.join(' ')}; threads: ${threads ?? "each library's default"}; ` +
      `split: ${options.split}; trees' hour and day of week: ${calendarKind}; trees' learning rate: ${learningRate ?? 'default (0.1)'}`,
  );
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-trainers-'));
  const outcomes: ModelOutcome[] = [];
  const facts: Record<string, unknown> = {};
  let splitUsed: PrepareSpec['split'] = SPLIT;
  try {
    for (const spec of specs) {
      // Untimed preparation: the prepared splits and transform, the CSV files for scikit-learn, the eval columns.
      const engine = await DataEngine.open({
        workDir: path.join(scratch, `prepare-${spec.trainer}`),
        readableDirs: [path.dirname(FLIGHTS)],
      });
      let prepared: Prepared;
      let csv: { train: string; eval: string };
      let evalData: { columns: Record<string, unknown[]>; labels: Float64Array };
      try {
        const source = randomSplit ? await randomSplitInput(engine) : { input: FLIGHTS, split: SPLIT };
        splitUsed = source.split;
        const began = performance.now();
        const dataset = await prepareDataset(
          engine,
          { input: source.input, label: LABEL, features: spec.features, split: source.split },
          path.join(engine.workDir, 'prepared'),
        );
        check(
          dataset.train.rows === EXPECTED_TRAIN_ROWS && dataset.eval.rows === EXPECTED_EVAL_ROWS,
          `prepare: expected ${EXPECTED_TRAIN_ROWS}/${EXPECTED_EVAL_ROWS} rows, got ${dataset.train.rows}/${dataset.eval.rows}`,
        );
        const transformPath = path.join(engine.workDir, 'transform.json');
        fs.writeFileSync(transformPath, JSON.stringify(dataset.transform));
        prepared = { spec, dataset, transformPath };
        const prepareMs = performance.now() - began;
        const csvStarted = performance.now();
        csv = await exportCsv(engine, dataset, engine.workDir);
        const csvMs = performance.now() - csvStarted;
        evalData = await readEvalColumns(engine, prepared);
        const positives = evalData.labels.reduce((n, y) => n + y, 0);
        console.log(
          `${spec.label}: prepared ${dataset.train.rows} / ${dataset.eval.rows} rows in ${formatMs(prepareMs)}, ` +
            `CSV for scikit-learn in ${formatMs(csvMs)}; eval positives ${positives} ` +
            `(${((100 * positives) / dataset.eval.rows).toFixed(1)} %)`,
        );
        facts[spec.trainer] = {
          features: spec.features,
          classCounts: dataset.labelInfo.classCounts,
          vocabularySizes: Object.fromEntries(
            dataset.transform.features.flatMap((f) =>
              f.kind === 'categorical' ? [[f.name, f.categorical.vocabulary.length]] : [],
            ),
          ),
          evalPositives: positives,
        };
      } finally {
        engine.close();
      }
      const outcome = await benchmarkModel(
        prepared,
        csv,
        evalData,
        scratch,
        runs,
        warmup,
        batchRows,
        threads,
        learningRate,
      );
      const sklearnPositives = outcome.sklearn[0]!.eval_positives;
      check(
        sklearnPositives === (facts[spec.trainer] as { evalPositives: number }).evalPositives,
        `sklearn's eval split has ${sklearnPositives} positives, ours a different count`,
      );
      outcomes.push(outcome);
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }

  const goals = MODELS.flatMap((spec) =>
    goalsOf(
      spec,
      outcomes.find((o) => o.spec.trainer === spec.trainer),
    ),
  );
  console.log(`\n${formatTable(outcomes.map((o) => o.benchmark))}\n`);
  console.log(`${comparisonTable(outcomes)}\n`);
  for (const o of outcomes) {
    const last = o.ours.at(-1)!;
    const theirs = o.sklearn.at(-1)!;
    const pools = Array.isArray(theirs.thread_pools)
      ? (theirs.thread_pools as { user_api?: string; num_threads?: number }[])
      : [];
    const poolText = pools.map((p) => `${p.user_api ?? '?'} ${p.num_threads ?? '?'}`).join(', ');
    console.log(
      `${o.spec.label}: ours ${JSON.stringify(o.params)}: ${last.iterations} iterations, ` +
        `${JSON.stringify(last.model)}, ONNX ${last.onnxBytes} bytes, ${o.onnxDistinctModels} distinct graph(s); ` +
        `scikit-learn ${theirs.estimator}: ${theirs.iterations} iterations` +
        (theirs.converged === false ? ' (did not converge)' : '') +
        `, threads ${poolText}`,
    );
  }
  for (const goal of goals) {
    const verdict = goal.pass === null ? 'SKIPPED' : goal.pass ? 'PASS' : 'FAIL';
    console.log(`goal: ${goal.label}: ${verdict} (${goal.detail})`);
  }
  const loadAtEnd = loadAverage();
  console.log(`load average at start ${loadAtStart.join(' ')}, at end ${loadAtEnd.join(' ')}`);
  const file = writeResultFile('trainers', {
    source: path.relative(REPO_ROOT, FLIGHTS),
    label: LABEL,
    split: randomSplit ? { kind: 'random', rowsBefore: RANDOM_SPLIT_ROWS_BEFORE, prepared: splitUsed } : SPLIT,
    trainRows: EXPECTED_TRAIN_ROWS,
    evalRows: EXPECTED_EVAL_ROWS,
    loadAverageAtStart: loadAtStart,
    loadAverageAtEnd: loadAtEnd,
    threads: threads ?? 'default',
    goals,
    ...facts,
    models: outcomes.map((o) => ({
      trainer: o.spec.trainer,
      params: o.params,
      onnx: o.onnx,
      onnxDistinctModels: o.onnxDistinctModels,
      ours: o.ours,
      sklearn: o.sklearn,
    })),
    results: outcomes.map((o) => o.benchmark),
  });
  console.log(`results: ${path.relative(process.cwd(), file)}`);
  if (goals.some((g) => g.pass === false)) process.exitCode = 1;
}

const childJob = process.env[CHILD_ENV];
if (childJob) {
  child(childJob).catch((error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : error);
    process.exit(1);
  });
} else {
  main().catch((error: unknown) => {
    console.error(`\ntrainers benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
    process.exit(1);
  });
}
