/**
 * A small benchmark harness: run a measured function several times against real services, keep every sample, and
 * report the median and the spread. No dependencies beyond Node.
 *
 * @example
 * const { runs, warmup } = parseBenchArgs({ runs: 5, warmup: 1 });
 * const result = await runBenchmark({ name: 'ping', runs, warmup, run: () => fetch('http://127.0.0.1:3000/healthz') });
 * console.log(formatTable([result]));
 * writeResultFile('ping', { results: [result] });
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** Named durations in milliseconds, as reported by `run` or `teardown`. */
export type Metrics = Record<string, number>;

/** Which iteration is running; warm-up iterations are run but their samples are discarded. */
export interface Iteration {
  /** 0-based index within its kind (warm-up or measured). */
  readonly index: number;
  readonly warmup: boolean;
}

/** What `runBenchmark` runs. `S` is the state handed from `setup` to `run` and `teardown`. */
export interface BenchmarkSpec<S> {
  /** Identifies the benchmark in tables and result files. */
  readonly name: string;
  /** Measured iterations (at least 1). */
  readonly runs: number;
  /** Iterations run first and discarded (caches, JIT, page cache). Default 0. */
  readonly warmup?: number;
  /** The metric the wall time of `run` is recorded under. Default: `name`. */
  readonly metric?: string;
  /** Untimed preparation for one iteration; its return value is passed to `run` and `teardown`. */
  readonly setup?: (iteration: Iteration) => S | Promise<S>;
  /**
   * The measured function. Its wall time (performance.now) is recorded under `metric`. It may return further
   * durations it timed itself; a returned value for `metric` replaces the wall time (for a run that checks
   * something after the interval that matters).
   */
  readonly run: (state: S, iteration: Iteration) => void | Metrics | Promise<void | Metrics>;
  /**
   * Untimed clean-up, run even when `run` throws. It may return durations it timed itself (for example how long a
   * service took to stop).
   */
  readonly teardown?: (state: S, iteration: Iteration) => void | Metrics | Promise<void | Metrics>;
  /** Called after each measured iteration with its samples, for progress output. */
  readonly onIteration?: (iteration: Iteration, metrics: Metrics) => void;
}

/** Summary statistics of one metric, in milliseconds. Percentiles interpolate linearly between samples. */
export interface MetricSummary {
  readonly metric: string;
  readonly unit: 'ms';
  readonly n: number;
  readonly median: number;
  readonly mean: number;
  readonly min: number;
  readonly max: number;
  /** First and third quartile, and their difference (the interquartile range). */
  readonly q1: number;
  readonly q3: number;
  readonly iqr: number;
  readonly p90: number;
  /** Every sample, in the order measured. */
  readonly samples: readonly number[];
}

/** The outcome of one `runBenchmark` call. */
export interface BenchmarkResult {
  readonly name: string;
  readonly runs: number;
  readonly warmup: number;
  readonly startedAt: string;
  readonly finishedAt: string;
  /** Metrics in the order they were first reported; the timed `run` metric comes first. */
  readonly metrics: readonly MetricSummary[];
}

/**
 * Runs `spec.warmup` discarded iterations, then `spec.runs` measured ones, strictly one after another, each as
 * setup → run (timed) → teardown. A failing iteration stops the benchmark: its error is thrown after its teardown.
 */
export async function runBenchmark<S = void>(spec: BenchmarkSpec<S>): Promise<BenchmarkResult> {
  if (!Number.isInteger(spec.runs) || spec.runs < 1) throw new Error(`${spec.name}: runs must be an integer >= 1`);
  const warmup = spec.warmup ?? 0;
  const metric = spec.metric ?? spec.name;
  const samples = new Map<string, number[]>([[metric, []]]);
  const startedAt = new Date().toISOString();

  const iterations: Iteration[] = [
    ...Array.from({ length: warmup }, (_, index) => ({ index, warmup: true })),
    ...Array.from({ length: spec.runs }, (_, index) => ({ index, warmup: false })),
  ];
  for (const iteration of iterations) {
    const state = (await spec.setup?.(iteration)) as S;
    let measured: Metrics = {};
    let failure: { error: unknown } | undefined;
    try {
      const started = performance.now();
      const returned = await spec.run(state, iteration);
      measured = { [metric]: performance.now() - started, ...(returned ?? {}) };
    } catch (error) {
      failure = { error };
    }
    try {
      Object.assign(measured, (await spec.teardown?.(state, iteration)) ?? {});
    } catch (error) {
      // When both fail, the run's error is the cause; the teardown's is usually a consequence.
      failure ??= { error };
    }
    if (failure) throw failure.error;
    if (iteration.warmup) continue;
    for (const [key, value] of Object.entries(measured)) {
      if (!samples.has(key)) samples.set(key, []);
      samples.get(key)!.push(value);
    }
    spec.onIteration?.(iteration, measured);
  }

  return {
    name: spec.name,
    runs: spec.runs,
    warmup,
    startedAt,
    finishedAt: new Date().toISOString(),
    metrics: [...samples].map(([key, values]) => summarize(key, values)),
  };
}

/** Summary statistics of a list of durations (ms). */
export function summarize(metric: string, samples: readonly number[]): MetricSummary {
  if (samples.length === 0) throw new Error(`${metric}: no samples`);
  const sorted = [...samples].sort((a, b) => a - b);
  const q1 = quantile(sorted, 0.25);
  const q3 = quantile(sorted, 0.75);
  return {
    metric,
    unit: 'ms',
    n: samples.length,
    median: quantile(sorted, 0.5),
    mean: samples.reduce((sum, v) => sum + v, 0) / samples.length,
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    q1,
    q3,
    iqr: q3 - q1,
    p90: quantile(sorted, 0.9),
    samples: [...samples],
  };
}

/**
 * The q-quantile (0..1) of ascending `sorted` samples, interpolating linearly between neighbours; NaN when there are
 * none. Any array-like will do (a sorted `Float64Array` of latencies, for example).
 */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  const a = sorted[lower]!;
  const b = sorted[upper]!;
  return a + (b - a) * (position - lower);
}

/** A duration for people: `850 ms` below one second, `12.34 s` above. */
export function formatMs(ms: number): string {
  return Math.abs(ms) < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** A plain-text table of every metric of every result: median, min, max, p90, IQR, n. */
export function formatTable(results: readonly BenchmarkResult[]): string {
  const header = ['benchmark', 'metric', 'n', 'median', 'min', 'max', 'p90', 'IQR'];
  const rows = results.flatMap((r) =>
    r.metrics.map((m) => [
      r.name,
      m.metric,
      String(m.n),
      formatMs(m.median),
      formatMs(m.min),
      formatMs(m.max),
      formatMs(m.p90),
      formatMs(m.iqr),
    ]),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  // Text columns left-aligned, numbers right-aligned.
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Where result files go: `bench/results/` (git-ignored). */
export const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

/** The machine a benchmark ran on, recorded with every result file. */
export function describeMachine() {
  const cpus = os.cpus();
  return {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: loadAverage(),
  };
}

/** The 1, 5 and 15 minute load averages, rounded to two decimals. */
export function loadAverage(): number[] {
  return os.loadavg().map((v) => Math.round(v * 100) / 100);
}

/** Throws `Error(message)` unless `condition` holds: a benchmark's sanity check of what it set up or measured. */
export function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

/** utime + stime of a process, in seconds (Linux /proc; NaN once it is gone). */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces: fields count from after its closing parenthesis (utime and stime are 14, 15).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/**
 * Writes `data` (plus the machine description and the command line) as JSON to
 * `bench/results/<name>-<timestamp>.json` and returns the path.
 */
export function writeResultFile(name: string, data: Record<string, unknown>, dir: string = RESULTS_DIR): string {
  fs.mkdirSync(dir, { recursive: true });
  const timestamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(dir, `${name}-${timestamp}.json`);
  const payload = { name, command: invokedAs(), machine: describeMachine(), ...data };
  fs.writeFileSync(file, `${JSON.stringify(payload, null, 2)}\n`);
  return file;
}

/** The command that ran this script, as the user typed it when it came through `npm run`. */
export function invokedAs(): string {
  const args = process.argv.slice(2).join(' ');
  const script = process.env.npm_lifecycle_event;
  if (script) return `npm run ${script}${args ? ` -- ${args}` : ''}`;
  return `tsx ${path.relative(process.cwd(), process.argv[1] ?? '')}${args ? ` ${args}` : ''}`;
}

/** Parsed command line of a benchmark script. */
export interface BenchArgs<K extends string> {
  readonly runs: number;
  readonly warmup: number;
  /** The script's own string options, with their defaults applied. */
  readonly options: Record<K, string>;
}

/**
 * Parses `--runs N` and `--warmup N` (positive / non-negative integers) plus the script's own string options
 * (`--name value` or `--name=value`), with defaults. Unknown options and `--help` print usage and exit.
 *
 * @example const { runs, options } = parseBenchArgs({ runs: 5, warmup: 1, options: { launcher: 'npm' } });
 */
export function parseBenchArgs<K extends string = never>(
  defaults: { runs: number; warmup?: number; options?: Record<K, string> },
  argv: readonly string[] = process.argv.slice(2),
): BenchArgs<K> {
  const own = (defaults.options ?? {}) as Record<K, string>;
  const usage = [
    `options: --runs N (default ${defaults.runs})  --warmup N (default ${defaults.warmup ?? 0})`,
    ...Object.entries<string>(own).map(([key, value]) => `         --${key} VALUE (default ${value})`),
  ].join('\n');
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        runs: { type: 'string' },
        warmup: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(Object.keys(own).map((key) => [key, { type: 'string' as const }])),
      },
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const integer = (flag: string, fallback: number, min: number): number => {
    const raw = values[flag];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) {
      console.error(`--${flag} must be an integer >= ${min}, got ${String(raw)}\n${usage}`);
      process.exit(2);
    }
    return n;
  };
  const options = Object.fromEntries(
    Object.entries<string>(own).map(([key, fallback]) => [key, (values[key] as string | undefined) ?? fallback]),
  ) as Record<K, string>;
  return { runs: integer('runs', defaults.runs, 1), warmup: integer('warmup', defaults.warmup ?? 0, 0), options };
}
