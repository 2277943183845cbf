/**
 * Data-stage benchmark: the data plane's stages on flights-3m.parquet (3,000,000 rows: date TIMESTAMP, delay BIGINT,
 * distance BIGINT, origin VARCHAR, destination VARCHAR), side by side, against real services.
 *
 *   npm run bench:data -- --runs 5
 *
 * It starts its own stack (random ports, temporary data directory), uploads the file to a bucket of the stack's
 * MinIO and measures, each as the median of `--runs` iterations after `--warmup` discarded ones:
 *
 * - **extract** (`extractSnapshot` of `s3://bench-landing/flights/`, all 3M rows, `findExisting` unset: listing,
 *   download into the object cache, DuckDB read, zstd Parquet write, sha256, upload), in four scenarios:
 *   `cold cache` (a fresh, empty object cache: the download is done) and `warm cache` (the object already cached),
 *   both with the snapshot removed from the store first so that it is uploaded again — these two carry the goal;
 *   `warm, stored` (cached object, snapshot already stored: the upload is skipped by content address) and
 *   `fingerprint hit` (`findExisting` knows the fingerprint: listing only), for comparison;
 * - **statistics** (`computeStatistics` of all 5 columns of the 3M-row snapshot);
 * - **validation** (`validateDataset` of the 3M-row snapshot against the schema inferred from the statistics of the
 *   January–February snapshot, with those statistics as `previous`);
 * - **prepare** (`prepareDataset` on the January–March snapshot, 1.48M rows: label, 5 feature expressions, time split,
 *   fitted transform, train/eval Parquet written).
 *
 * Statistics, validation and prepare read the snapshots from the local artifact cache (`materialize`, done once
 * beforehand, as a worker that already holds the snapshot would); each timed run opens its own sandboxed DuckDB
 * (2 threads) and closes it, which is included. Uploading the results (statistics JSON, report, prepared files) is
 * not. The span snapshots (January–February, January–March) are extracted once, untimed for the goals.
 *
 * It prints one table, a goal line per figure, writes `bench/results/data-stages-<timestamp>.json`, and exits
 * non-zero when a goal fails or a result is not what it must be (row counts, split sizes).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { createDataAccessPolicy } from '../data/access-policy.js';
import { DataEngine, sqlString } from '../data/engine.js';
import {
  extractSnapshot,
  type ExtractOptions,
  type ExtractPhase,
  type ExtractProgress,
  type Snapshot,
  type Span,
} from '../data/extract.js';
import { prepareDataset, type PreparedDataset, type PrepareSpec } from '../data/prepare.js';
import { inferSchema } from '../data/schema.js';
import { computeStatistics } from '../data/statistics.js';
import type { DatasetStatistics, ValidationReport } from '../data/types.js';
import { validateDataset } from '../data/validate.js';
import { startStack, type Stack } from '../stack/stack.js';
import { S3ArtifactStore } from '../storage/artifact-store.js';
import { artifactKey } from '../storage/content-hash.js';
import { S3ObjectSource, type ObjectInfo } from '../storage/object-source.js';
import {
  formatMs,
  formatTable,
  parseBenchArgs,
  runBenchmark,
  writeResultFile,
  type BenchmarkResult,
  type Metrics,
} from './harness.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FLIGHTS = path.join(REPO_ROOT, 'node_modules/vega-datasets/data/flights-3m.parquet');
const LANDING_BUCKET = 'bench-landing';
const SOURCE = `s3://${LANDING_BUCKET}/flights/`;

const EXPECTED_ROWS = 3_000_000;
const EXPECTED_COLUMNS = 5;
const EXPECTED_TRAIN_ROWS = 966_409;
const EXPECTED_EVAL_ROWS = 511_502;

const JAN_FEB: Span = { column: 'date', from: '2001-01-01', to: '2001-03-01' };
const JAN_MAR: Span = { column: 'date', from: '2001-01-01', to: '2001-04-01' };

/** The timed metric of every benchmark; extract benchmarks add their phases. */
const TOTAL = 'total';

const BENCH = {
  extractCold: 'extract: cold cache',
  extractWarm: 'extract: warm cache',
  extractStored: 'extract: warm, stored',
  extractHit: 'extract: fingerprint hit',
  statistics: 'statistics',
  validation: 'validation',
  prepare: 'prepare',
} as const;

/** The issue's goals, each on the median `total` of one benchmark. */
const GOALS: readonly { readonly benchmark: string; readonly label: string; readonly underMs: number }[] = [
  { benchmark: BENCH.extractCold, label: 'extract + snapshot, 3M rows from S3, cold cache', underMs: 5_000 },
  { benchmark: BENCH.extractWarm, label: 'extract + snapshot, 3M rows from S3, warm cache', underMs: 5_000 },
  { benchmark: BENCH.statistics, label: 'statistics, 5 columns of 3M rows', underMs: 2_000 },
  { benchmark: BENCH.validation, label: 'validation of 3M rows against schema + previous', underMs: 2_000 },
  { benchmark: BENCH.prepare, label: 'prepare, 1.48M rows (Jan-Mar)', underMs: 5_000 },
];

const PREPARE: Omit<PrepareSpec, 'input'> = {
  label: { name: 'delayed', expression: 'delay > 15', task: 'binary' },
  features: [
    { name: 'hour', expression: 'hour(date)', kind: 'numeric' },
    { name: 'day_of_week', expression: 'dayofweek(date)', kind: 'numeric' },
    { name: 'distance', expression: 'distance', kind: 'numeric' },
    { name: 'origin', expression: 'origin', kind: 'categorical' },
    { name: 'destination', expression: 'destination', kind: 'categorical' },
  ],
  split: { kind: 'time', column: 'date', trainBefore: '2001-03-01', evalBefore: '2001-04-01' },
};

/** Turns progress reports into per-phase durations: each phase lasts until the next one starts. */
function phaseClock() {
  const starts: { phase: ExtractPhase; at: number }[] = [];
  const began = performance.now();
  return {
    onProgress: (progress: ExtractProgress) => {
      if (starts.at(-1)?.phase !== progress.phase) starts.push({ phase: progress.phase, at: performance.now() });
    },
    metrics: (): Metrics => {
      const out: Metrics = {};
      let previous = { phase: 'start' as string, at: began };
      for (const next of starts) {
        if (previous.phase !== 'start') out[`phase ${previous.phase}`] = next.at - previous.at;
        previous = next;
      }
      return out;
    },
  };
}

function loadAverage(): number[] {
  return os.loadavg().map((v) => Math.round(v * 100) / 100);
}

function progress(name: string) {
  return (iteration: { index: number }, metrics: Metrics) =>
    console.log(`${name} #${iteration.index + 1}: ${formatMs(metrics[TOTAL] ?? Number.NaN)}`);
}

/**
 * Where two JSON values differ: each path with both values and, for numbers, the relative difference. Used to show
 * what varies between runs that should give the same statistics.
 */
function differences(a: unknown, b: unknown, at = ''): { path: string; a: unknown; b: unknown; relative?: number }[] {
  if (typeof a === 'number' && typeof b === 'number') {
    if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return [];
    return [{ path: at, a, b, relative: Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b)) }];
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((key) =>
      differences((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], `${at}/${key}`),
    );
  }
  return a === b ? [] : [{ path: at, a, b }];
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

async function main(): Promise<void> {
  const { runs, warmup } = parseBenchArgs({ runs: 5, warmup: 1 });
  const loadAtStart = loadAverage();
  console.log(
    `${os.cpus().length} cores, Node ${process.version}, ${new Date().toISOString()}, ` +
      `load average at start ${loadAtStart.join(' ')}`,
  );
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-data-'));
  // The embedded PostgreSQL runs as `postgres` and must be able to enter the data directory.
  fs.chmodSync(dataDir, 0o755);
  const logger = createLogger({ level: 'warn', name: 'bench-data' });
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', MLOPS_DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  // Always the local stack, never an external service configured in this shell.
  for (const key of ['TEMPORAL_ADDRESS', 'DATABASE_URL', 'S3_ENDPOINT']) delete env[key];
  let stack: Stack | undefined;
  const results: BenchmarkResult[] = [];
  const facts: Record<string, unknown> = {};
  try {
    const started = performance.now();
    stack = await startStack(loadConfig(env), { logger, ports: 'random' });
    console.log(`stack ready in ${formatMs(performance.now() - started)}`);

    const artifacts = S3ArtifactStore.fromConfig(stack.endpoints.s3);
    const client = artifacts.client;
    if (!(await client.bucketExists(LANDING_BUCKET))) {
      await client.makeBucket(LANDING_BUCKET, stack.endpoints.s3.region);
    }
    await client.fPutObject(LANDING_BUCKET, 'flights/flights-3m.parquet', FLIGHTS);
    const objects = new S3ObjectSource(client);
    const listed: ObjectInfo | undefined = (await objects.list(LANDING_BUCKET, 'flights/'))[0];
    if (!listed) throw new Error(`nothing listed under ${SOURCE} after the upload`);
    console.log(`uploaded ${SOURCE}flights-3m.parquet: ${listed.size} bytes, ETag ${listed.etag}`);
    facts.sourceBytes = listed.size;

    const scratch = path.join(dataDir, 'bench-scratch');
    const sharedCache = path.join(scratch, 'object-cache');
    const artifactCache = path.join(scratch, 'artifact-cache');
    const base: Pick<ExtractOptions, 'source' | 'artifacts' | 'objectSource' | 'policy'> = {
      source: SOURCE,
      artifacts,
      objectSource: objects,
      policy: createDataAccessPolicy({ roots: [], buckets: [LANDING_BUCKET] }),
    };

    // -------------------------------------------------------------------------------------------------------------
    // Extract: all 3M rows

    const artifactShas = new Set<string>();
    let full: Snapshot | undefined;
    const extract = (name: string) =>
      runBenchmark<{ workDir: string; cacheDir: string; clock: ReturnType<typeof phaseClock> }>({
        name,
        runs,
        warmup,
        metric: TOTAL,
        setup: async (iteration) => {
          const id = `${name.replace(/\W+/g, '-')}-${iteration.warmup ? 'w' : 'm'}${iteration.index}`;
          const cacheDir = name === BENCH.extractCold ? path.join(scratch, `cache-${id}`) : sharedCache;
          if (name !== BENCH.extractCold) {
            // Prime the shared cache (outside the timed run; a no-op once it holds the object).
            await objects.download(listed, sharedCache, { extension: '.parquet' });
          }
          if ((name === BENCH.extractCold || name === BENCH.extractWarm) && full) {
            // The snapshot must not be in the store, so this run really uploads it.
            await client.removeObject(artifacts.bucket, artifactKey(full.artifact.sha256));
          }
          if (name === BENCH.extractStored && full && !(await artifacts.exists(full.artifact))) {
            await extractSnapshot({ ...base, workDir: path.join(scratch, 'prime'), cacheDir });
          }
          return { workDir: path.join(scratch, `work-${id}`), cacheDir, clock: phaseClock() };
        },
        run: async ({ workDir, cacheDir, clock }) => {
          const snapshot = await extractSnapshot({
            ...base,
            workDir,
            cacheDir,
            onProgress: clock.onProgress,
            ...(name === BENCH.extractHit
              ? { findExisting: async (fingerprint: string) => (fingerprint === full?.fingerprint ? full : undefined) }
              : {}),
          });
          check(snapshot.rowCount === EXPECTED_ROWS, `expected ${EXPECTED_ROWS} rows, got ${snapshot.rowCount}`);
          check(!full || snapshot.fingerprint === full.fingerprint, 'the fingerprint changed between runs');
          full ??= snapshot;
          artifactShas.add(snapshot.artifact.sha256);
          return clock.metrics();
        },
        teardown: ({ workDir, cacheDir }) => {
          fs.rmSync(workDir, { recursive: true, force: true });
          if (cacheDir !== sharedCache) fs.rmSync(cacheDir, { recursive: true, force: true });
        },
        onIteration: progress(name),
      });
    for (const name of [BENCH.extractCold, BENCH.extractWarm, BENCH.extractStored, BENCH.extractHit]) {
      results.push(await extract(name));
    }
    if (!full) throw new Error('no snapshot was extracted');
    check(full.columns.length === EXPECTED_COLUMNS, `expected ${EXPECTED_COLUMNS} columns`);
    facts.snapshot = {
      bytes: full.artifact.bytes,
      sha256: full.artifact.sha256,
      fingerprint: full.fingerprint,
      columns: full.columns,
      byteStableAcrossExtractions: artifactShas.size === 1,
      artifactSha256s: [...artifactShas],
    };
    console.log(
      `snapshot: ${full.artifact.bytes} bytes; Parquet byte-stable across ${4 * (runs + warmup)} extractions: ` +
        `${artifactShas.size === 1}`,
    );

    // -------------------------------------------------------------------------------------------------------------
    // Untimed inputs of the later stages: the span snapshots, local copies of all three

    const spanSnapshot = async (label: string, span: Span) => {
      const began = performance.now();
      const snapshot = await extractSnapshot({
        ...base,
        span,
        workDir: path.join(scratch, 'span'),
        cacheDir: sharedCache,
      });
      const ms = performance.now() - began;
      console.log(`${label} snapshot (span, warm cache, once): ${snapshot.rowCount} rows in ${formatMs(ms)}`);
      return { snapshot, ms };
    };
    const janFeb = await spanSnapshot('Jan-Feb', JAN_FEB);
    const janMar = await spanSnapshot('Jan-Mar', JAN_MAR);
    check(
      janMar.snapshot.rowCount === EXPECTED_TRAIN_ROWS + EXPECTED_EVAL_ROWS,
      `expected ${EXPECTED_TRAIN_ROWS + EXPECTED_EVAL_ROWS} Jan-Mar rows, got ${janMar.snapshot.rowCount}`,
    );
    facts.spanSnapshots = {
      janFeb: { span: JAN_FEB, rows: janFeb.snapshot.rowCount, bytes: janFeb.snapshot.artifact.bytes, ms: janFeb.ms },
      janMar: { span: JAN_MAR, rows: janMar.snapshot.rowCount, bytes: janMar.snapshot.artifact.bytes, ms: janMar.ms },
    };
    const fullFile = await artifacts.materialize(full.artifact, artifactCache);
    const janFebFile = await artifacts.materialize(janFeb.snapshot.artifact, artifactCache);
    const janMarFile = await artifacts.materialize(janMar.snapshot.artifact, artifactCache);
    const relation = (file: string) => `read_parquet(${sqlString(file)})`;

    /** A fresh work folder and a sandboxed engine that may read the artifact cache, as the activities open one. */
    let engineRuns = 0;
    const withEngine = async <T>(work: (engine: DataEngine) => Promise<T>): Promise<T> => {
      const engine = await DataEngine.open({
        workDir: path.join(scratch, `engine-${engineRuns++}`),
        readableDirs: [artifactCache],
      });
      try {
        return await work(engine);
      } finally {
        engine.close();
        fs.rmSync(engine.workDir, { recursive: true, force: true });
      }
    };

    // -------------------------------------------------------------------------------------------------------------
    // Statistics: all 5 columns of 3M rows

    let fullStats: DatasetStatistics | undefined;
    const statisticsDiffs = new Map<string, { runs: number; maxRelative: number }>();
    results.push(
      await runBenchmark({
        name: BENCH.statistics,
        runs,
        warmup,
        metric: TOTAL,
        run: async () => {
          const statistics = await withEngine((engine) => computeStatistics(engine, relation(fullFile)));
          check(statistics.rowCount === EXPECTED_ROWS, `statistics: expected ${EXPECTED_ROWS} rows`);
          check(statistics.columns.length === EXPECTED_COLUMNS, `statistics: expected ${EXPECTED_COLUMNS} columns`);
          for (const d of fullStats ? differences(fullStats, statistics) : []) {
            // Paths of column arrays name the column, not its index.
            const where = d.path.replace(
              /^\/columns\/(\d+)/,
              (_, i: string) => `/${statistics.columns[Number(i)]!.name}`,
            );
            const seen = statisticsDiffs.get(where) ?? { runs: 0, maxRelative: 0 };
            statisticsDiffs.set(where, {
              runs: seen.runs + 1,
              maxRelative: Math.max(seen.maxRelative, d.relative ?? Number.POSITIVE_INFINITY),
            });
          }
          fullStats ??= statistics;
        },
        onIteration: progress(BENCH.statistics),
      }),
    );
    // Compared with the first (warm-up) run's statistics.
    facts.statisticsDifferencesBetweenRuns = Object.fromEntries(statisticsDiffs);
    const differing = [...statisticsDiffs].map(([p, d]) => `${p} (${d.runs}, ${d.maxRelative.toExponential(1)})`);
    console.log(
      differing.length === 0
        ? 'statistics identical across runs: true'
        : 'statistics identical across runs: false; differing fields (runs differing from the first, largest ' +
            `relative difference): ${differing.join(', ')}`,
    );

    // -------------------------------------------------------------------------------------------------------------
    // Validation: the 3M-row snapshot against the schema and statistics of Jan-Feb

    const janFebStats = await withEngine((engine) => computeStatistics(engine, relation(janFebFile)));
    const schema = inferSchema(janFebStats);
    let report: ValidationReport | undefined;
    results.push(
      await runBenchmark({
        name: BENCH.validation,
        runs,
        warmup,
        metric: TOTAL,
        run: async () => {
          report = await withEngine((engine) =>
            validateDataset(engine, relation(fullFile), { schema, statistics: fullStats!, previous: janFebStats }),
          );
          check(report.rowCount === EXPECTED_ROWS, `validation: expected ${EXPECTED_ROWS} rows`);
        },
        onIteration: progress(BENCH.validation),
      }),
    );
    const anomalies = report!.anomalies.map((a) => ({ column: a.column, type: a.type, value: a.value }));
    facts.validation = {
      schemaFrom: { span: JAN_FEB, rows: janFebStats.rowCount },
      ok: report!.ok,
      anomalies,
      drift: report!.drift,
    };
    console.log(
      `validation: ${anomalies.length} anomalies (${anomalies.map((a) => `${a.column ?? '-'} ${a.type}`).join(', ')})`,
    );

    // -------------------------------------------------------------------------------------------------------------
    // Prepare: Jan-Mar, time split, fitted transform

    let prepared: PreparedDataset | undefined;
    results.push(
      await runBenchmark({
        name: BENCH.prepare,
        runs,
        warmup,
        metric: TOTAL,
        run: async () => {
          prepared = await withEngine((engine) =>
            prepareDataset(engine, { ...PREPARE, input: janMarFile }, path.join(engine.workDir, 'out')),
          );
          check(
            prepared.train.rows === EXPECTED_TRAIN_ROWS && prepared.eval.rows === EXPECTED_EVAL_ROWS,
            `prepare: expected ${EXPECTED_TRAIN_ROWS}/${EXPECTED_EVAL_ROWS} train/eval rows, ` +
              `got ${prepared.train.rows}/${prepared.eval.rows}`,
          );
        },
        onIteration: progress(BENCH.prepare),
      }),
    );
    facts.prepare = {
      inputRows: janMar.snapshot.rowCount,
      trainRows: prepared!.train.rows,
      evalRows: prepared!.eval.rows,
      droppedNullLabels: prepared!.droppedNullLabels,
      rowsOutsideSplit: prepared!.rowsOutsideSplit,
      classes: prepared!.labelInfo.classes,
      classCounts: prepared!.labelInfo.classCounts,
    };
    console.log(
      `prepare: ${prepared!.train.rows} train rows, ${prepared!.eval.rows} eval rows, ` +
        `${prepared!.droppedNullLabels} dropped for a null label`,
    );
  } finally {
    await stack?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  const goals = GOALS.map((goal) => {
    const medianMs = results.find((r) => r.name === goal.benchmark)!.metrics.find((m) => m.metric === TOTAL)!.median;
    return { ...goal, medianMs, pass: medianMs < goal.underMs };
  });
  console.log(`\n${formatTable(results)}\n`);
  for (const goal of goals) {
    console.log(
      `goal: ${goal.label} under ${goal.underMs / 1000} s: ${goal.pass ? 'PASS' : 'FAIL'} ` +
        `(median ${formatMs(goal.medianMs)})`,
    );
  }
  const loadAtEnd = loadAverage();
  console.log(`load average at start ${loadAtStart.join(' ')}, at end ${loadAtEnd.join(' ')}`);
  const file = writeResultFile('data-stages', {
    source: SOURCE,
    rows: EXPECTED_ROWS,
    loadAverageAtStart: loadAtStart,
    loadAverageAtEnd: loadAtEnd,
    goals,
    ...facts,
    results,
  });
  console.log(`results: ${path.relative(process.cwd(), file)}`);
  if (goals.some((g) => !g.pass)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`\ndata-stage benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
  process.exit(1);
});
