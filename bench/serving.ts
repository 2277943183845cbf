/**
 * Serving benchmark: online predictions of the flight-delay demo models over HTTP, against the HTTP ceiling of this
 * machine and against FastAPI + scikit-learn, in one run.
 *
 *   npm run bench:serving -- --runs 3 --duration 10
 *
 * Set-up (untimed). It starts its own stack (random ports, temporary data directory) and the main and training workers
 * in this process, and produces the models with the demo itself (`runFlightsDemo`, demo/flights.ts): the demo's
 * gradient-boosted trees (`flights-delay` v1, deployed), a second version of it (seed 1, compared on the AUC threshold
 * only, so it is deployed too: the other side of the hot swap), and a logistic-regression variant of the same
 * definition (`flights-delay-lr`, AUC threshold 0.6: a linear model does not reach the demo's 0.65). The workers are
 * then stopped. Request bodies are rows of the evaluation month (March 2001) computed with the definition's own
 * feature expressions (DuckDB, a fixed pseudo-random sample): 1,000 distinct single-instance bodies, and 16 distinct
 * bodies of 1,000 instances.
 *
 * Servers run in child processes, so that autocannon (in this process) and the server do not share one event loop:
 *
 * - `bare`: a Hono app with one `GET /constant` route returning a constant JSON body shaped like a one-instance
 *   prediction, served by the API's own server wrapper (server/serve.ts, @hono/node-server): the HTTP ceiling; and
 *   `POST /constant`, which parses the predict bodies before answering the same constant (for comparison);
 * - `api`: the API process exactly as `npm run api` builds it (`startApi`, server/start-api.ts: createApp with every
 *   resource, request ids, the request log at info level written to a file, serving with validation and metrics),
 *   with the prediction log at sample rate 1 (every request is written to `prediction_logs` in the stack's Postgres);
 * - `api-nolog`: the same with PREDICTION_LOG_SAMPLE_RATE=0 (the logging cost);
 * - `api-quiet`: the same with the prediction log off and LOG_LEVEL=warn (no request log line either);
 * - `peer`: bench/serving_reference.py, FastAPI + uvicorn (1 worker) + scikit-learn trained on the same training
 *   rows, when Debian's python3-sklearn, python3-fastapi and python3-uvicorn are installed (else it says so, and the
 *   goal is skipped).
 *
 * Each round measures every scenario once, one after the other, each after a warm-up of `--warmup-seconds` on the
 * same target: 32 connections (`--connections`) of single-instance requests cycling through the 1,000 bodies (each
 * server and model), batches of 1,000 instances on 8 connections (`--batch-connections`: the model's queue holds
 * 10,000 rows, so 32 concurrent 1,000-row requests would be refused by design), and a hot swap: while the load runs
 * on the trees, `--swaps` deploys alternate between the two versions through the registry (`deploy` → NOTIFY → the
 * pool loads the version and swaps it in). Latencies are recorded per response (autocannon's own histogram has 1 ms
 * resolution), and the first second of each measured load is left out (see RAMP_MS); a swap's window runs from the
 * deploy call to 250 ms after a probe (one request every 10 ms) first sees the new version answer. After a scenario with the prediction log on, the next one waits until the log's queue is empty (read from
 * `/metrics`). Figures are medians over `--runs` rounds; recorded beside each: CPU use of the server, of the load
 * generator and of the whole machine (/proc), the server's event-loop utilization and longest stall, and the rows per
 * session.run (the micro-batches, from /metrics). The model alone is measured in this process too (onnxruntime-node
 * at batch 1 and 1,024, and the steps of loading it), and the peer reports scikit-learn's one-row predict_proba.
 * `--scenarios` picks scenarios by key; `--profile DIR` writes V8 CPU profiles of the API servers when they exit.
 *
 * It prints a table and a goal line per goal, writes `bench/results/serving-<timestamp>.json` and exits non-zero when
 * a goal fails (a skipped peer is not a failure).
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { Hono } from 'hono';
import * as ort from 'onnxruntime-node';
import { loadConfig, type ServiceEndpoints } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { DataEngine, sqlIdentifier, sqlString } from '../data/engine.js';
import {
  DEMO_PIPELINE,
  DEMO_SPAN,
  flightsDelayDefinition,
  flightsFile,
  runFlightsDemo,
  type DemoDeps,
  type DemoReport,
} from '../demo/flights.js';
import type { ModelVersion } from '../schema/registry.js';
import { startApiServer } from '../server/serve.js';
import { startApi } from '../server/start-api.js';
import { readClasses } from '../serving/load-model.js';
import { buildFeeds } from '../serving/loaded-model.js';
import { compileSignature, type Instance } from '../serving/signature.js';
import { findFreePorts } from '../stack/ports.js';
import { startStack, type Stack } from '../stack/stack.js';
import { openStorage, type PlatformStorage } from '../storage/open-storage.js';
import { startWorkers, type RunningWorkers } from '../workers/run-workers.js';
import { formatMs, parseBenchArgs, processCpuSeconds, writeResultFile } from './harness.js';

// ---------------------------------------------------------------------------------------------------------------
// Goals

const GOAL_CEILING_SHARE = 0.5;
const GOAL_P99_MS = 3;
const GOAL_PEER_FACTOR = 50;
const GOAL_LOG_COST = 0.15;
const GOAL_BATCH_ROWS_PER_S = 500_000;
const GOAL_SWAP_P99_FACTOR = 3;

const LR_PIPELINE = `${DEMO_PIPELINE}-lr`;
const SINGLE_BODIES = 1000;
const BATCH_BODIES = 16;
/**
 * Responses that complete in the first second of a measured load are left out of its throughput and latencies:
 * autocannon builds every connection's request buffers (32 × 1,000 bodies) synchronously while the first connections'
 * first requests are already out, so those latencies (about 0.3 s) are the load generator's, not the server's.
 */
const RAMP_MS = 1000;
/** After a probe first sees the new version, the swap window stays open this long (the old session's release). */
const SWAP_TAIL_MS = 250;
const PYTHON = '/usr/bin/python3';
const THIS_FILE = fileURLToPath(import.meta.url);
const PEER_SCRIPT = path.join(path.dirname(THIS_FILE), 'serving_reference.py');
const CHILD_ENV = 'BENCH_SERVING_CHILD';

// ---------------------------------------------------------------------------------------------------------------
// autocannon (CommonJS, untyped): the part of its API used here

interface CannonRequest {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

interface CannonOptions {
  readonly url: string;
  readonly connections: number;
  readonly duration: number;
  readonly requests: CannonRequest[];
  readonly timeout?: number;
}

interface CannonResult {
  readonly duration: number;
  readonly requests: { readonly total: number };
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
}

interface CannonInstance {
  on(
    event: 'response',
    listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void,
  ): void;
  stop(): void;
}

type Autocannon = (options: CannonOptions, done: (error: Error | null, result: CannonResult) => void) => CannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

// ---------------------------------------------------------------------------------------------------------------
// Child processes: the servers

type ChildSpec = { readonly kind: 'bare' } | { readonly kind: 'api'; readonly endpoints: ServiceEndpoints };

type ChildMessage =
  | { readonly type: 'ready'; readonly url: string }
  | { readonly type: 'usage'; readonly id: number; readonly loop: EventLoopReading };

/** The server's event loop: busy and idle time so far (ms), and the longest delay since the previous reading. */
interface EventLoopReading {
  readonly idle: number;
  readonly active: number;
  readonly maxDelayMs: number;
}

type ParentMessage = { readonly type: 'usage'; readonly id: number } | { readonly type: 'close' };

/** A one-instance prediction's shape, constant: what the bare route answers. */
const CONSTANT_BODY = {
  model: { name: DEMO_PIPELINE, version: 1, versionId: '00000000-0000-4000-8000-000000000000' },
  requestId: '00000000-0000-4000-8000-000000000001',
  classes: [false, true],
  predictions: [{ label: false, probabilities: [0.8123456789, 0.1876543211] }],
};

/** What runs in a server child process. */
async function childMain(spec: ChildSpec): Promise<void> {
  let server: { url: string; close(): Promise<void> };
  if (spec.kind === 'bare') {
    const app = new Hono();
    app.get('/constant', (c) => c.json(CONSTANT_BODY));
    app.post('/constant', async (c) => {
      await c.req.json();
      return c.json(CONSTANT_BODY);
    });
    const logger = createLogger({ level: 'warn', name: 'bench-bare' });
    server = await startApiServer({ app, host: '127.0.0.1', port: 0, logger });
  } else {
    // As server/main.ts: the configuration from the environment (set by the parent), the logger at its level.
    const config = loadConfig(process.env);
    const logger = createLogger({ level: config.logLevel, name: 'api' });
    server = await startApi({ config, endpoints: spec.endpoints, logger });
  }
  // How long timers fire late: a long synchronous task (a model load, a GC pause) shows here.
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const stop = () => void server.close().finally(() => process.exit(0));
  process.on('disconnect', stop);
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'close') stop();
    else if (message.type === 'usage') {
      const { idle, active } = performance.eventLoopUtilization();
      const maxDelayMs = delay.max / 1e6;
      delay.reset();
      process.send?.({ type: 'usage', id: message.id, loop: { idle, active, maxDelayMs } } satisfies ChildMessage);
    }
  });
  process.send?.({ type: 'ready', url: server.url } satisfies ChildMessage);
}

/** A server child process, as the parent sees it. */
interface Server {
  readonly name: string;
  readonly url: string;
  readonly pid: number;
  readonly log: string;
  /** The event loop's busy and idle time so far, and its longest delay since the last call (node servers only). */
  eventLoop(): Promise<EventLoopReading | undefined>;
  close(): Promise<void>;
}

function waitForExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

async function startNodeServer(
  name: string,
  spec: ChildSpec,
  env: NodeJS.ProcessEnv,
  logDir: string,
  nodeOptions: readonly string[] = [],
): Promise<Server> {
  const log = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(log, 'a');
  const child = fork(THIS_FILE, [], {
    execArgv: ['--import', 'tsx', ...nodeOptions],
    env: { ...env, [CHILD_ENV]: JSON.stringify(spec) },
    stdio: ['ignore', fd, fd, 'ipc'],
  });
  fs.closeSync(fd);
  const pending = new Map<number, (reading: EventLoopReading) => void>();
  let nextId = 0;
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready after 60 s\n${tail(log)}`)), 60_000);
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve(message.url);
      } else if (message.type === 'usage') {
        pending.get(message.id)?.(message.loop);
        pending.delete(message.id);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name}: exited with ${code} before it was ready\n${tail(log)}`));
    });
  });
  return {
    name,
    url,
    pid: child.pid!,
    log,
    eventLoop: () =>
      new Promise((resolve) => {
        if (!child.connected) return resolve(undefined);
        const id = nextId++;
        pending.set(id, resolve);
        child.send({ type: 'usage', id } satisfies ParentMessage);
      }),
    close: async () => {
      if (child.connected) child.send({ type: 'close' } satisfies ParentMessage);
      await waitForExit(child, 15_000);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The FastAPI + scikit-learn peer

interface PeerInfo {
  readonly train_rows: number;
  readonly load_s: number;
  readonly fit_s: Record<string, number>;
  readonly predict_proba_single_row_ms: Record<string, number>;
  readonly versions: Record<string, string>;
  readonly omp_num_threads: string | null;
}

/** Why the peer cannot run here, or undefined when it can. */
function peerUnavailable(): string | undefined {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} is missing`;
  const missing = ['sklearn', 'fastapi', 'uvicorn'].filter(
    (module) => spawnSync(PYTHON, ['-c', `import ${module}`], { stdio: 'ignore' }).status !== 0,
  );
  if (missing.length === 0) return undefined;
  const packages = { sklearn: 'python3-sklearn', fastapi: 'python3-fastapi', uvicorn: 'python3-uvicorn' };
  return (
    `Python module(s) ${missing.join(', ')} not installed: apt-get install -y ` +
    missing.map((m) => packages[m as keyof typeof packages]).join(' ')
  );
}

async function startPeer(
  trainCsv: string,
  names: { lr: string; gbt: string },
  probeBody: string,
  dir: string,
): Promise<{ server: Server; info: PeerInfo }> {
  const [port] = await findFreePorts(1);
  const log = path.join(dir, 'peer.log');
  const infoFile = path.join(dir, 'peer-info.json');
  const fd = fs.openSync(log, 'a');
  // One thread: training HistGradientBoosting with OpenMP threads spinning on 2 shared cores is erratic (see the
  // trainers benchmark), and a one-row predict_proba gains nothing from threads.
  const child = spawn(
    PYTHON,
    [
      PEER_SCRIPT,
      ...['--train', trainCsv, '--port', String(port), '--lr-name', names.lr, '--gbt-name', names.gbt],
      ...['--out', infoFile],
    ],
    { stdio: ['ignore', fd, fd], env: { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' } },
  );
  fs.closeSync(fd);
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 600_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the FastAPI peer exited with ${child.exitCode}\n${tail(log)}`);
    if (performance.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the FastAPI peer was not ready after 10 minutes\n${tail(log)}`);
    }
    const status = await fetch(`${url}/v1/models/${names.lr}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: probeBody,
    }).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) break;
    await sleep(500);
  }
  const info = JSON.parse(fs.readFileSync(infoFile, 'utf8')) as PeerInfo;
  return {
    info,
    server: {
      name: 'peer',
      url,
      pid: child.pid!,
      log,
      eventLoop: () => Promise.resolve(undefined),
      close: async () => {
        child.kill('SIGTERM');
        await waitForExit(child, 10_000);
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// CPU accounting

/** Busy and total CPU time of the whole machine, in seconds (all cores). */
function machineCpuSeconds(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: (total - idle) / 100, total: total / 100 };
}

// ---------------------------------------------------------------------------------------------------------------
// Load

/** Latencies (ms) and completion times (performance.now()) of every response, in arrival order. */
class ResponseLog {
  latencies = new Float64Array(1 << 16);
  ends = new Float64Array(1 << 16);
  statuses = new Uint16Array(1 << 16);
  count = 0;

  push(status: number, latencyMs: number): void {
    if (this.count === this.latencies.length) {
      const grow = <T extends Float64Array | Uint16Array>(a: T, make: (n: number) => T) => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.latencies = grow(this.latencies, (n) => new Float64Array(n));
      this.ends = grow(this.ends, (n) => new Float64Array(n));
      this.statuses = grow(this.statuses, (n) => new Uint16Array(n));
    }
    this.latencies[this.count] = latencyMs;
    this.ends[this.count] = performance.now();
    this.statuses[this.count] = status;
    this.count++;
  }
}

/** The q-quantile of `values`, interpolating between neighbours (as the harness's `quantile`). */
function percentile(values: Float64Array, q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  return sorted[lower]! + (sorted[upper]! - sorted[lower]!) * (position - lower);
}

interface LoadSample {
  readonly seconds: number;
  readonly requests: number;
  readonly reqPerSec: number;
  readonly rowsPerSec: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  /** Cores the server process used on average. */
  readonly serverCores: number;
  /** Share of the server's event loop that was busy (node servers). */
  readonly serverEventLoop: number | undefined;
  /** The longest the server's event loop was blocked (timers late), in ms (node servers). */
  readonly serverLoopMaxDelayMs: number | undefined;
  /** Rows per session.run on average: the micro-batches formed under this load (the API). */
  readonly rowsPerRun: number | undefined;
  /** Cores this process (autocannon) used on average. */
  readonly generatorCores: number;
  /** Cores busy on the whole machine on average (everything: the stack, other users). */
  readonly machineCores: number;
  /** The slowest responses: when they completed (ms after the load started) and their latency. */
  readonly slowest: readonly { readonly atMs: number; readonly latencyMs: number }[];
}

interface Target {
  readonly server: Server;
  readonly requests: readonly CannonRequest[];
  readonly connections: number;
  readonly rowsPerRequest: number;
}

function cannon(
  target: Target,
  seconds: number,
  log?: ResponseLog,
): { instance: CannonInstance; done: Promise<CannonResult> } {
  let instance!: CannonInstance;
  const done = new Promise<CannonResult>((resolve, reject) => {
    instance = autocannon(
      {
        url: target.server.url,
        connections: target.connections,
        duration: seconds,
        // Fresh objects: autocannon keeps each request's encoded buffer on it, Host header included.
        requests: target.requests.map((r) => ({ ...r })),
        timeout: 10,
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
  if (log) instance.on('response', (_client, status, _bytes, ms) => log.push(status, ms));
  return { instance, done };
}

/** Runs the load for `seconds` and measures it (the response log is returned for the hot swap's windows). */
async function measure(target: Target, seconds: number): Promise<{ sample: LoadSample; log: ResponseLog }> {
  const log = new ResponseLog();
  const api = target.server.name.startsWith('api');
  const metricsBefore = api ? await scrapeCounters(target.server) : undefined;
  const loopBefore = await target.server.eventLoop();
  const serverBefore = processCpuSeconds(target.server.pid);
  const machineBefore = machineCpuSeconds();
  const generatorBefore = process.cpuUsage();
  const began = performance.now();
  const { done } = cannon(target, seconds, log);
  const result = await done;
  const ended = performance.now();
  const wall = (ended - began) / 1000;
  const generator = process.cpuUsage(generatorBefore);
  const machineAfter = machineCpuSeconds();
  const serverCpu = processCpuSeconds(target.server.pid) - serverBefore;
  const loopAfter = await target.server.eventLoop();
  const metricsAfter = api ? await scrapeCounters(target.server) : undefined;
  // Steady state only: responses that completed after the ramp (see RAMP_MS), counted up to the end of the load.
  const from = began + RAMP_MS;
  const steadySeconds = (ended - from) / 1000;
  const kept: number[] = [];
  const keptIndex: number[] = [];
  let ok = 0;
  for (let i = 0; i < log.count; i++) {
    if (log.ends[i]! < from) continue;
    kept.push(log.latencies[i]!);
    keptIndex.push(i);
    if (log.statuses[i]! >= 200 && log.statuses[i]! < 300) ok++;
  }
  const latencies = Float64Array.from(kept);
  const eventLoop =
    loopBefore && loopAfter
      ? (loopAfter.active - loopBefore.active) /
        (loopAfter.active - loopBefore.active + loopAfter.idle - loopBefore.idle)
      : undefined;
  const order = keptIndex.sort((a, b) => log.latencies[b]! - log.latencies[a]!).slice(0, 5);
  return {
    log,
    sample: {
      seconds: steadySeconds,
      requests: result.requests.total,
      reqPerSec: latencies.length / steadySeconds,
      rowsPerSec: (ok * target.rowsPerRequest) / steadySeconds,
      p50: percentile(latencies, 0.5),
      p90: percentile(latencies, 0.9),
      p99: percentile(latencies, 0.99),
      max: percentile(latencies, 1),
      errors: result.errors,
      timeouts: result.timeouts,
      non2xx: result.non2xx,
      serverCores: serverCpu / wall,
      serverEventLoop: eventLoop,
      serverLoopMaxDelayMs: loopAfter?.maxDelayMs,
      rowsPerRun:
        metricsBefore && metricsAfter && metricsAfter.batchRuns > metricsBefore.batchRuns
          ? (metricsAfter.batchRows - metricsBefore.batchRows) / (metricsAfter.batchRuns - metricsBefore.batchRuns)
          : undefined,
      generatorCores: (generator.user + generator.system) / 1e6 / wall,
      machineCores: (machineAfter.busy - machineBefore.busy) / wall,
      slowest: order.map((i) => ({ atMs: log.ends[i]! - began, latencyMs: log.latencies[i]! })),
    },
  };
}

async function warmUp(target: Target, seconds: number): Promise<void> {
  if (seconds > 0) await cannon(target, seconds).done;
}

// ---------------------------------------------------------------------------------------------------------------
// The prediction log and the micro-batches, read from /metrics

interface ServerCounters {
  readonly depth: number;
  readonly written: number;
  readonly dropped: number;
  /** Rows scored and session.run calls so far, every model together (the micro-batches). */
  readonly batchRows: number;
  readonly batchRuns: number;
}

async function scrapeCounters(server: Server): Promise<ServerCounters | undefined> {
  const text = await fetch(`${server.url}/metrics`).then(
    (r) => r.text(),
    () => undefined,
  );
  if (text === undefined) return undefined;
  // Summed over every label set.
  const value = (name: string) => {
    let sum = 0;
    for (const match of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(match[1]);
    return sum;
  };
  return {
    depth: value('mlops_serving_prediction_log_queue_depth'),
    written: value('mlops_serving_prediction_logs_written_total'),
    dropped: value('mlops_serving_prediction_logs_dropped_total'),
    batchRows: value('mlops_serving_batch_size_sum'),
    batchRuns: value('mlops_serving_batch_size_count'),
  };
}

/** Waits until the prediction log's queue is empty (at most `ms`); returns how long it took. */
async function drainPredictionLog(server: Server, ms = 120_000): Promise<number> {
  const began = performance.now();
  while (performance.now() - began < ms) {
    const counters = await scrapeCounters(server);
    if (!counters || counters.depth === 0) break;
    await sleep(200);
  }
  return performance.now() - began;
}

// ---------------------------------------------------------------------------------------------------------------
// The hot swap

interface SwapRecord {
  readonly toVersion: number;
  /** From the deploy call to its commit. */
  readonly deployMs: number;
  /** From the deploy call to the first probe answered by the new version. */
  readonly swapMs: number | undefined;
}

interface SwapSample {
  readonly load: LoadSample;
  readonly swaps: readonly SwapRecord[];
  readonly failed: number;
  readonly windowRequests: number;
  readonly windowP99: number;
  readonly windowMax: number;
  readonly outsideP99: number;
  /** The probes' answers by version, to show both versions answered. */
  readonly probeVersions: Record<string, number>;
}

async function hotSwap(options: {
  target: Target;
  seconds: number;
  swaps: number;
  registry: PlatformStorage['registry'];
  deployment: string;
  versions: readonly ModelVersion[];
  probeBody: string;
}): Promise<SwapSample> {
  const { target, seconds, swaps, registry, deployment, versions, probeBody } = options;
  const probes: { at: number; version: number | undefined; status: number }[] = [];
  let probing = true;
  const prober = (async () => {
    while (probing) {
      const at = performance.now();
      const answer = await fetch(`${target.server.url}/v1/models/${deployment}/predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: probeBody,
      }).then(
        async (r) => ({ status: r.status, body: (await r.json()) as { model?: { version: number } } }),
        () => ({ status: 0, body: {} as { model?: { version: number } } }),
      );
      probes.push({ at: performance.now(), version: answer.body.model?.version, status: answer.status });
      const wait = 10 - (performance.now() - at);
      if (wait > 0) await sleep(wait);
    }
  })();

  const current = (await registry.activeRevisions(deployment)).find((r) => r.role === 'champion');
  let index = Math.max(
    0,
    versions.findIndex((v) => v.id === current?.versionId),
  );
  const swapRecords: SwapRecord[] = [];
  const windows: [number, number][] = [];
  const loadRun = measure(target, seconds);
  const began = performance.now();
  for (let k = 1; k <= swaps; k++) {
    const due = began + ((seconds * 1000) / (swaps + 1)) * k;
    await sleep(Math.max(0, due - performance.now()));
    index = (index + 1) % versions.length;
    const version = versions[index]!;
    const start = performance.now();
    await registry.deploy({
      deploymentName: deployment,
      modelName: deployment,
      versionId: version.id,
      actor: 'bench:serving',
      reason: 'hot swap under load',
    });
    const deployMs = performance.now() - start;
    let seen: number | undefined;
    const deadline = start + 10_000;
    while (seen === undefined && performance.now() < deadline) {
      seen = probes.find((p) => p.at >= start && p.version === version.version)?.at;
      if (seen === undefined) await sleep(5);
    }
    swapRecords.push({ toVersion: version.version, deployMs, swapMs: seen === undefined ? undefined : seen - start });
    windows.push([start, (seen ?? deadline) + SWAP_TAIL_MS]);
  }
  const { sample, log } = await loadRun;
  probing = false;
  await prober;

  const inside: number[] = [];
  const outside: number[] = [];
  for (let i = 0; i < log.count; i++) {
    if (log.ends[i]! < began + RAMP_MS) continue;
    const end = log.ends[i]!;
    const latency = log.latencies[i]!;
    const start = end - latency;
    (windows.some(([from, to]) => end >= from && start <= to) ? inside : outside).push(latency);
  }
  const probeVersions: Record<string, number> = {};
  for (const p of probes) {
    const key = p.version !== undefined ? `v${p.version}` : `status ${p.status}`;
    probeVersions[key] = (probeVersions[key] ?? 0) + 1;
  }
  const failedProbes = probes.filter((p) => p.status !== 200).length;
  return {
    load: sample,
    swaps: swapRecords,
    failed: sample.errors + sample.non2xx + sample.timeouts + failedProbes,
    windowRequests: inside.length,
    windowP99: percentile(Float64Array.from(inside), 0.99),
    windowMax: percentile(Float64Array.from(inside), 1),
    outsideP99: percentile(Float64Array.from(outside), 0.99),
    probeVersions,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Raw onnxruntime, in this process: what the model itself costs

interface RawOnnx {
  readonly batch1RunsPerSec: number;
  readonly batch1024RowsPerSec: number;
  /** What loading the version costs the thread that loads it, in ms (serving loads on its event loop). */
  readonly load: { readonly readClassesMs: number; readonly createSessionMs: number; readonly firstRunMs: number };
}

async function rawOnnx(bytes: Uint8Array, version: ModelVersion, instances: readonly Instance[]): Promise<RawOnnx> {
  // The steps of serving/load-model.ts, timed: the classes from the graph's metadata (a protobuf decode), the session
  // (onnxruntime-node parses and optimizes the graph synchronously), the first run.
  let began = performance.now();
  readClasses(bytes);
  const readClassesMs = performance.now() - began;
  began = performance.now();
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const createSessionMs = performance.now() - began;
  try {
    const signature = compileSignature(version.signature);
    began = performance.now();
    await session.run(buildFeeds(signature, [instances.slice(0, 1)], 1), signature.fetches);
    const firstRunMs = performance.now() - began;
    const rate = async (rows: readonly Instance[], ms: number) => {
      const feeds = buildFeeds(signature, [rows], rows.length);
      for (let i = 0; i < 50; i++) await session.run(feeds, signature.fetches);
      let runs = 0;
      const began = performance.now();
      while (performance.now() - began < ms) {
        await session.run(feeds, signature.fetches);
        runs++;
      }
      return runs / ((performance.now() - began) / 1000);
    };
    const batch = Array.from({ length: 1024 }, (_, i) => instances[i % instances.length]!);
    return {
      load: { readClassesMs, createSessionMs, firstRunMs },
      batch1RunsPerSec: await rate(instances.slice(0, 1), 1500),
      batch1024RowsPerSec: 1024 * (await rate(batch, 1500)),
    };
  } finally {
    await session.release();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Models and data

interface Models {
  readonly gbt: readonly [ModelVersion, ModelVersion];
  readonly lr: ModelVersion;
  readonly reports: readonly DemoReport[];
}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

/** The demo's trees (v1), a second version of them (seed 1) and a logistic regression, all deployed. */
async function produceModels(deps: DemoDeps, registry: PlatformStorage['registry']): Promise<Models> {
  const step = async (label: string, run: () => Promise<DemoReport>) => {
    const began = performance.now();
    const report = await run();
    const { result } = report;
    console.log(
      `  ${label}: ${result.model.modelName} v${result.model.version} ${result.outcome}, ` +
        `AUC ${result.metrics.auc?.toFixed(4)} (${formatMs(performance.now() - began)})`,
    );
    check(result.outcome === 'deployed', `${label}: outcome ${result.outcome}, expected deployed`);
    return report;
  };
  const first = await step('demo (gradient-boosted trees)', () => runFlightsDemo(deps, { trigger: 'bench' }));
  const landed = first.landed;
  const second = await step('trees, seed 1 (the hot swap’s other version)', () =>
    runFlightsDemo(deps, {
      landed,
      trigger: 'bench',
      definition: {
        trainer: { kind: 'gradient_boosted_trees', params: { seed: 1 } },
        validation: { thresholds: [{ metric: 'auc', min: 0.65 }] },
      },
    }),
  );
  check(
    second.result.model.versionId !== first.result.model.versionId,
    'seed 1 trained the same bytes as seed 0: no second version to swap to',
  );
  const lr = await step('logistic regression', () =>
    runFlightsDemo(deps, {
      pipeline: LR_PIPELINE,
      landed,
      trigger: 'bench',
      definition: {
        trainer: { kind: 'logistic_regression', params: {} },
        validation: { thresholds: [{ metric: 'auc', min: 0.6 }] },
      },
    }),
  );
  const version = async (report: DemoReport) => {
    const found = await registry.getVersionById(report.result.model.versionId);
    check(found !== undefined, `version ${report.result.model.versionId} is not in the registry`);
    return found;
  };
  return {
    gbt: [await version(first), await version(second)],
    lr: await version(lr),
    reports: [first, second, lr],
  };
}

/** The eval month's rows (a fixed pseudo-random sample) as instances, and the training rows as CSV for the peer. */
async function prepareData(
  dir: string,
  version: ModelVersion,
  rows: number,
  trainCsv: string | undefined,
): Promise<Instance[]> {
  const definition = flightsDelayDefinition('s3://unused/flights.parquet');
  const split = definition.split;
  check(split?.kind === 'time' && split.evalBefore !== undefined, 'the demo definition has no bounded time split');
  const { trainBefore, evalBefore } = split;
  const source = flightsFile();
  const engine = await DataEngine.open({ workDir: dir, readableDirs: [path.dirname(source)], threads: 2 });
  try {
    const features = definition.features.map((f) => `${f.expression} AS ${sqlIdentifier(f.name)}`).join(', ');
    const between = (from: string, to: string) =>
      `date >= TIMESTAMP ${sqlString(from)} AND date < TIMESTAMP ${sqlString(to)}`;
    const sample = await engine.rows<Record<string, unknown>>(
      `SELECT ${features} FROM read_parquet(${sqlString(source)}, file_row_number = true)
       WHERE ${between(trainBefore, evalBefore)}
       ORDER BY md5(CAST(file_row_number AS VARCHAR)) LIMIT ${rows}`,
    );
    check(sample.length === rows, `only ${sample.length} eval rows`);
    if (trainCsv) {
      await engine.run(
        `COPY (SELECT ${features}, CAST((${definition.label.expression}) AS INTEGER) AS label
               FROM read_parquet(${sqlString(source)}) WHERE ${between(DEMO_SPAN.from, trainBefore)})
         TO ${sqlString(trainCsv)} (FORMAT csv, HEADER true)`,
      );
    }
    const inputs = version.signature.inputs;
    return sample.map((row) => {
      const instance: Record<string, unknown> = {};
      for (const input of inputs) {
        check(input.name in row, `the signature's input ${input.name} is not a feature of the demo definition`);
        const value = row[input.name];
        instance[input.name] =
          value === null || value === undefined ? null : input.type === 'string' ? String(value) : Number(value);
      }
      return instance;
    });
  } finally {
    engine.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios, summaries, goals

type ServerName = 'bare' | 'api' | 'api-nolog' | 'api-quiet' | 'peer';

interface Scenario {
  readonly key: string;
  readonly label: string;
  readonly server: ServerName;
  readonly model?: 'lr' | 'gbt';
  readonly batch?: boolean;
  readonly swap?: boolean;
  /** The bare route's POST variant: the single-instance bodies, parsed, then the constant answer. */
  readonly post?: boolean;
}

const SCENARIOS: readonly Scenario[] = [
  { key: 'ceiling', label: 'bare Hono, GET constant JSON (ceiling)', server: 'bare' },
  { key: 'ceiling-post', label: 'bare Hono, POST body parsed, constant JSON', server: 'bare', post: true },
  { key: 'lr', label: 'predict LR, 1 instance, logs on', server: 'api', model: 'lr' },
  { key: 'gbt', label: 'predict GBT, 1 instance, logs on', server: 'api', model: 'gbt' },
  { key: 'swap', label: 'predict GBT, 1 instance, logs on, hot swaps', server: 'api', model: 'gbt', swap: true },
  { key: 'lr-nolog', label: 'predict LR, 1 instance, prediction log off', server: 'api-nolog', model: 'lr' },
  { key: 'gbt-nolog', label: 'predict GBT, 1 instance, prediction log off', server: 'api-nolog', model: 'gbt' },
  { key: 'lr-quiet', label: 'predict LR, 1 instance, prediction + request log off', server: 'api-quiet', model: 'lr' },
  { key: 'lr-batch', label: 'predict LR, 1,000 instances, logs on', server: 'api', model: 'lr', batch: true },
  { key: 'gbt-batch', label: 'predict GBT, 1,000 instances, logs on', server: 'api', model: 'gbt', batch: true },
  {
    key: 'lr-batch-nolog',
    label: 'predict LR, 1,000 instances, prediction log off',
    server: 'api-nolog',
    model: 'lr',
    batch: true,
  },
  {
    key: 'gbt-batch-nolog',
    label: 'predict GBT, 1,000 instances, prediction log off',
    server: 'api-nolog',
    model: 'gbt',
    batch: true,
  },
  { key: 'peer-lr', label: 'FastAPI + sklearn LR, 1 instance', server: 'peer', model: 'lr' },
  { key: 'peer-gbt', label: 'FastAPI + sklearn GBT, 1 instance', server: 'peer', model: 'gbt' },
];

function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const mid = (finite.length - 1) / 2;
  return (finite[Math.floor(mid)]! + finite[Math.ceil(mid)]!) / 2;
}

type Summary = { readonly [K in Exclude<keyof LoadSample, 'slowest'>]: number } & {
  readonly reqPerSecMin: number;
  readonly reqPerSecMax: number;
};

function summarizeSamples(samples: readonly LoadSample[]): Summary {
  const m = (key: Exclude<keyof LoadSample, 'slowest'>) => median(samples.map((s) => s[key] ?? Number.NaN));
  const sum = (key: 'errors' | 'timeouts' | 'non2xx' | 'requests') => samples.reduce((a, s) => a + s[key], 0);
  const rates = samples.map((s) => s.reqPerSec);
  return {
    seconds: m('seconds'),
    requests: sum('requests'),
    reqPerSec: m('reqPerSec'),
    reqPerSecMin: Math.min(...rates),
    reqPerSecMax: Math.max(...rates),
    rowsPerSec: m('rowsPerSec'),
    p50: m('p50'),
    p90: m('p90'),
    p99: m('p99'),
    max: m('max'),
    errors: sum('errors'),
    timeouts: sum('timeouts'),
    non2xx: sum('non2xx'),
    serverCores: m('serverCores'),
    serverEventLoop: m('serverEventLoop'),
    serverLoopMaxDelayMs: m('serverLoopMaxDelayMs'),
    rowsPerRun: m('rowsPerRun'),
    generatorCores: m('generatorCores'),
    machineCores: m('machineCores'),
  };
}

const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const fmtMs = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '—');
const fmtCores = (n: number | undefined) => (n !== undefined && Number.isFinite(n) ? n.toFixed(2) : '—');

function formatSummaryTable(rows: readonly { scenario: Scenario; summary: Summary }[]): string {
  const header = [
    'scenario',
    'req/s',
    '(min–max)',
    'rows/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'max ms',
    'failed',
    'server cores',
    'loop busy',
    'loop stall ms',
    'rows/run',
    'cannon cores',
    'machine cores',
  ];
  const body = rows.map(({ scenario, summary: s }) => [
    scenario.label,
    fmtInt(s.reqPerSec),
    `${fmtInt(s.reqPerSecMin)}–${fmtInt(s.reqPerSecMax)}`,
    fmtInt(s.rowsPerSec),
    fmtMs(s.p50),
    fmtMs(s.p90),
    fmtMs(s.p99),
    fmtMs(s.max),
    String(s.errors + s.non2xx + s.timeouts),
    fmtCores(s.serverCores),
    Number.isFinite(s.serverEventLoop) ? `${(s.serverEventLoop * 100).toFixed(0)} %` : '—',
    fmtMs(s.serverLoopMaxDelayMs),
    Number.isFinite(s.rowsPerRun) ? s.rowsPerRun.toFixed(1) : '—',
    fmtCores(s.generatorCores),
    fmtCores(s.machineCores),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

interface Goal {
  readonly label: string;
  readonly status: 'PASS' | 'FAIL' | 'SKIPPED';
  readonly detail: string;
}

function goal(label: string, pass: boolean, detail: string): Goal {
  return { label, status: pass ? 'PASS' : 'FAIL', detail };
}

function loadAverage(): number[] {
  return os.loadavg().map((v) => Math.round(v * 100) / 100);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function positive(name: string, raw: string, integer = true): number {
  const n = Number(raw);
  if (!(n > 0) || (integer && !Number.isInteger(n))) {
    console.error(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got ${raw}`);
    process.exit(2);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const { runs, warmup, options } = parseBenchArgs({
    runs: 3,
    warmup: 0,
    options: {
      duration: '10',
      'warmup-seconds': '2',
      connections: '32',
      'batch-connections': '8',
      'batch-size': '1000',
      swaps: '4',
      peer: 'auto',
      profile: '',
      scenarios: SCENARIOS.map((s) => s.key).join(','),
    },
  });
  const duration = positive('duration', options.duration);
  const warmupSeconds = Number(options['warmup-seconds']);
  const connections = positive('connections', options.connections);
  const batchConnections = positive('batch-connections', options['batch-connections']);
  const batchSize = positive('batch-size', options['batch-size']);
  const swaps = positive('swaps', options.swaps);
  const wanted = new Set(options.scenarios.split(',').map((s) => s.trim()));
  const unknown = [...wanted].filter((key) => !SCENARIOS.some((s) => s.key === key));
  if (unknown.length > 0) {
    console.error(`unknown scenario(s) ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.key).join(', ')}`);
    process.exit(2);
  }
  if (!['auto', 'off'].includes(options.peer)) {
    console.error(`--peer must be auto or off, got ${options.peer}`);
    process.exit(2);
  }
  const peerMissing = options.peer === 'off' ? 'turned off with --peer off' : peerUnavailable();
  const scenarios = SCENARIOS.filter((s) => wanted.has(s.key) && (s.server !== 'peer' || !peerMissing));

  const loadAtStart = loadAverage();
  console.log(
    `${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
      `Node ${process.version}, ${new Date().toISOString()}, load average at start ${loadAtStart.join(' ')}`,
  );
  console.log(
    peerMissing
      ? `FastAPI + scikit-learn peer: SKIPPED (${peerMissing})`
      : 'FastAPI + scikit-learn peer: available (Debian python3-sklearn, python3-fastapi, python3-uvicorn)',
  );

  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-serving-'));
  fs.chmodSync(dataDir, 0o755);
  const logDir = path.join(dataDir, 'logs');
  fs.mkdirSync(logDir);
  const logger = createLogger({ level: 'warn', name: 'bench-serving' });
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', MLOPS_DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  for (const key of ['TEMPORAL_ADDRESS', 'DATABASE_URL', 'S3_ENDPOINT']) delete env[key];
  const config = loadConfig(env);

  let stack: Stack | undefined;
  let connection: Connection | undefined;
  let storage: PlatformStorage | undefined;
  let workers: RunningWorkers | undefined;
  const servers = new Map<ServerName, Server>();
  const samples = new Map<string, LoadSample[]>();
  const swapSamples: SwapSample[] = [];
  const logCounts: { scenario: string; round: number; written: number; dropped: number; drainMs: number }[] = [];
  let peerInfo: PeerInfo | undefined;
  let models: Models | undefined;
  const raw: Record<string, RawOnnx> = {};
  try {
    const began = performance.now();
    stack = await startStack(config, { logger, ports: 'random' });
    const endpoints = stack.endpoints;
    console.log(`stack ready in ${formatMs(performance.now() - began)}`);
    connection = await Connection.connect({ address: endpoints.temporal.address });
    storage = openStorage(endpoints, { logger, applicationName: 'bench-serving', poolSize: 4 });
    await storage.artifacts.ensureBucket();
    workers = await startWorkers({
      config: { ...config, dataDir: path.join(dataDir, 'worker') },
      endpoints,
      logger,
      roles: ['main', 'training'],
    });
    console.log('producing the models with the demo pipeline:');
    models = await produceModels(
      {
        client: new Client({ connection, namespace: endpoints.temporal.namespace }),
        storage,
        taskQueue: config.temporal.taskQueue,
        trainingTaskQueue: config.temporal.trainingTaskQueue,
        links: { namespace: endpoints.temporal.namespace },
      },
      storage.registry,
    );
    await workers.shutdown();
    workers = undefined;
    const [gbtV1, gbtV2] = models.gbt;
    const lrNames = models.lr.signature.inputs.map((i) => `${i.name}:${i.type}`).join(',');
    const gbtNames = gbtV1.signature.inputs.map((i) => `${i.name}:${i.type}`).join(',');
    check(lrNames === gbtNames, `the models' inputs differ: ${lrNames} vs ${gbtNames}`);

    // Inside DuckDB's work folder: the engine writes nowhere else.
    const duckdbDir = path.join(dataDir, 'duckdb');
    const trainCsv = peerMissing ? undefined : path.join(duckdbDir, 'peer-train.csv');
    const instances = await prepareData(duckdbDir, gbtV1, Math.max(SINGLE_BODIES, BATCH_BODIES * batchSize), trainCsv);
    const headers = { 'content-type': 'application/json' };
    const predictPath = (name: string) => `/v1/models/${name}/predict`;
    const names = { lr: LR_PIPELINE, gbt: DEMO_PIPELINE };
    const singleBodies = instances.slice(0, SINGLE_BODIES).map((i) => JSON.stringify({ instances: [i] }));
    const batchBodies = Array.from({ length: BATCH_BODIES }, (_, b) =>
      JSON.stringify({ instances: instances.slice(b * batchSize, (b + 1) * batchSize) }),
    );
    console.log(
      `request bodies: ${SINGLE_BODIES} single-instance (${singleBodies[0]!.length} bytes, e.g. ${singleBodies[0]}), ` +
        `${BATCH_BODIES} of ${batchSize} instances (~${Math.round(batchBodies[0]!.length / 1024)} KiB)`,
    );

    for (const [key, version] of [
      ['lr', models.lr],
      ['gbt', gbtV1],
    ] as const) {
      raw[key] = await rawOnnx(
        await storage.artifacts.get({ uri: version.onnxUri, sha256: version.sha256 }),
        version,
        instances,
      );
      console.log(
        `raw onnxruntime-node, in this process, ${key}: batch 1 ${fmtInt(raw[key].batch1RunsPerSec)} runs/s, ` +
          `batch 1,024 ${fmtInt(raw[key].batch1024RowsPerSec)} rows/s; loading: classes ` +
          `${fmtMs(raw[key].load.readClassesMs)} ms, session ${fmtMs(raw[key].load.createSessionMs)} ms, ` +
          `first run ${fmtMs(raw[key].load.firstRunMs)} ms`,
      );
    }

    // The servers.
    const needed = new Set(scenarios.map((s) => s.server));
    const serverEnv = (logLevel: string, sampleRate: number, port: number): NodeJS.ProcessEnv => ({
      ...env,
      NODE_ENV: 'production',
      LOG_LEVEL: logLevel,
      PREDICTION_LOG_SAMPLE_RATE: String(sampleRate),
      API_HOST: '127.0.0.1',
      API_PORT: String(port),
    });
    const apiVariants: [ServerName, string, number][] = [
      ['api', 'info', 1],
      ['api-nolog', 'info', 0],
      ['api-quiet', 'warn', 0],
    ];
    if (needed.has('bare')) servers.set('bare', await startNodeServer('bare', { kind: 'bare' }, env, logDir));
    for (const [name, level, rate] of apiVariants) {
      if (!needed.has(name)) continue;
      const [port] = await findFreePorts(1);
      // --profile DIR: V8 CPU profiles of the API servers, written when they exit.
      const profile = options.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(options.profile)}`] : [];
      const server = await startNodeServer(
        name,
        { kind: 'api', endpoints },
        serverEnv(level, rate, port!),
        logDir,
        profile,
      );
      servers.set(name, server);
      // The pool loads the deployments in the background: wait until both models answer.
      for (const model of [names.lr, names.gbt]) {
        const deadline = performance.now() + 120_000;
        for (;;) {
          const status = await fetch(`${server.url}${predictPath(model)}`, {
            method: 'POST',
            headers,
            body: singleBodies[0]!,
          }).then(
            (r) => r.status,
            () => 0,
          );
          if (status === 200) break;
          check(performance.now() < deadline, `${name}: ${model} did not answer 200 within 2 minutes (${status})`);
          await sleep(250);
        }
      }
    }
    if (needed.has('peer') && trainCsv) {
      const peerBegan = performance.now();
      console.log('training the FastAPI peer (scikit-learn, one thread) on the same training rows...');
      const peer = await startPeer(trainCsv, names, singleBodies[0]!, dataDir);
      servers.set('peer', peer.server);
      peerInfo = peer.info;
      console.log(
        `  peer ready in ${formatMs(performance.now() - peerBegan)}: fit LR ${peerInfo.fit_s[names.lr]?.toFixed(1)} s, ` +
          `GBT ${peerInfo.fit_s[names.gbt]?.toFixed(1)} s; single-row predict_proba in-process: LR ` +
          `${peerInfo.predict_proba_single_row_ms[names.lr]?.toFixed(2)} ms, GBT ` +
          `${peerInfo.predict_proba_single_row_ms[names.gbt]?.toFixed(2)} ms`,
      );
    }

    const targetOf = (scenario: Scenario): Target => {
      const server = servers.get(scenario.server)!;
      if (scenario.server === 'bare') {
        const requests: CannonRequest[] = scenario.post
          ? singleBodies.map((body) => ({ method: 'POST', path: '/constant', headers, body }))
          : [{ method: 'GET', path: '/constant' }];
        return { server, requests, connections, rowsPerRequest: 1 };
      }
      const model = names[scenario.model!];
      const bodies = scenario.batch ? batchBodies : singleBodies;
      return {
        server,
        requests: bodies.map((body) => ({ method: 'POST', path: predictPath(model), headers, body })),
        connections: scenario.batch ? batchConnections : connections,
        rowsPerRequest: scenario.batch ? batchSize : 1,
      };
    };

    const rounds = warmup + runs;
    for (let round = 0; round < rounds; round++) {
      const discarded = round < warmup;
      console.log(
        `\nround ${round + 1} of ${rounds}${discarded ? ' (warm-up, discarded)' : ''}, load ${loadAverage().join(' ')}`,
      );
      for (const scenario of scenarios) {
        const target = targetOf(scenario);
        await warmUp(target, warmupSeconds);
        const logged = scenario.server === 'api';
        const before = logged ? await scrapeCounters(target.server) : undefined;
        let sample: LoadSample;
        if (scenario.swap) {
          const swap = await hotSwap({
            target,
            seconds: duration,
            swaps,
            registry: storage.registry,
            deployment: names.gbt,
            versions: [gbtV1, gbtV2],
            probeBody: singleBodies[0]!,
          });
          sample = swap.load;
          if (!discarded) swapSamples.push(swap);
          console.log(
            `  ${scenario.label}: ${fmtInt(sample.reqPerSec)} req/s, p99 ${fmtMs(sample.p99)} ms; ` +
              `${swap.swaps.length} swaps (${swap.swaps.map((s) => (s.swapMs === undefined ? 'not seen' : `${fmtInt(s.swapMs)} ms`)).join(', ')}), ` +
              `window p99 ${fmtMs(swap.windowP99)} ms (max ${fmtMs(swap.windowMax)}) over ${swap.windowRequests} requests, ` +
              `outside ${fmtMs(swap.outsideP99)} ms; failed ${swap.failed}`,
          );
        } else {
          sample = (await measure(target, duration)).sample;
          console.log(
            `  ${scenario.label}: ${fmtInt(sample.reqPerSec)} req/s` +
              (scenario.batch ? ` (${fmtInt(sample.rowsPerSec)} rows/s)` : '') +
              `, p50 ${fmtMs(sample.p50)} p90 ${fmtMs(sample.p90)} p99 ${fmtMs(sample.p99)} ms, ` +
              `failed ${sample.errors + sample.non2xx + sample.timeouts}, server ${fmtCores(sample.serverCores)} cores` +
              (sample.serverEventLoop !== undefined
                ? ` (loop ${(sample.serverEventLoop * 100).toFixed(0)} % busy)`
                : '') +
              `, cannon ${fmtCores(sample.generatorCores)}, machine ${fmtCores(sample.machineCores)}` +
              (sample.serverLoopMaxDelayMs !== undefined
                ? `; longest loop stall ${fmtMs(sample.serverLoopMaxDelayMs)} ms`
                : '') +
              (sample.rowsPerRun !== undefined ? `; ${sample.rowsPerRun.toFixed(1)} rows per session.run` : '') +
              `; slowest ${sample.slowest
                .slice(0, 3)
                .map((x) => `${fmtMs(x.latencyMs)} ms at ${(x.atMs / 1000).toFixed(2)} s`)
                .join(', ')}`,
          );
        }
        if (logged && before) {
          const drainMs = await drainPredictionLog(target.server);
          const after = await scrapeCounters(target.server);
          if (after) {
            const counts = {
              scenario: scenario.key,
              round,
              written: after.written - before.written,
              dropped: after.dropped - before.dropped,
              drainMs,
            };
            if (!discarded) logCounts.push(counts);
            console.log(
              `    prediction log: ${fmtInt(counts.written)} rows written, ${fmtInt(counts.dropped)} dropped; ` +
                `queue empty ${formatMs(drainMs)} after the load`,
            );
          }
        }
        if (!discarded) samples.set(scenario.key, [...(samples.get(scenario.key) ?? []), sample]);
      }
    }
  } finally {
    await Promise.allSettled([...servers.values()].map((s) => s.close()));
    await workers?.shutdown().catch(() => undefined);
    await storage?.close().catch(() => undefined);
    await connection?.close().catch(() => undefined);
    await stack?.stop().catch((error: unknown) => console.error('the stack did not stop cleanly', error));
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  // Summaries and goals.
  const summaries = new Map<string, Summary>();
  for (const [key, list] of samples) summaries.set(key, summarizeSamples(list));
  const rows = scenarios
    .filter((s) => summaries.has(s.key))
    .map((s) => ({ scenario: s, summary: summaries.get(s.key)! }));
  console.log(`\nmedian of ${runs} round(s), ${duration} s each after ${warmupSeconds} s of warm-up:\n`);
  console.log(formatSummaryTable(rows));

  const goals: Goal[] = [];
  const s = (key: string) => summaries.get(key);
  const ceiling = s('ceiling');
  for (const model of ['lr', 'gbt'] as const) {
    const ours = s(model);
    const name = model === 'lr' ? 'logistic regression' : 'gradient-boosted trees';
    if (ours && ceiling) {
      const share = ours.reqPerSec / ceiling.reqPerSec;
      goals.push(
        goal(
          `${name}: throughput ≥ ${GOAL_CEILING_SHARE * 100} % of the bare Hono route (validation, metrics, logs on)`,
          share >= GOAL_CEILING_SHARE,
          `${fmtInt(ours.reqPerSec)} vs ${fmtInt(ceiling.reqPerSec)} req/s: ${(share * 100).toFixed(1)} %`,
        ),
      );
    }
    if (ours) {
      goals.push(
        goal(
          `${name}: p99 under ${GOAL_P99_MS} ms at that load`,
          ours.p99 < GOAL_P99_MS,
          `p99 ${fmtMs(ours.p99)} ms (p50 ${fmtMs(ours.p50)}, p90 ${fmtMs(ours.p90)}) at ${connections} connections`,
        ),
      );
    }
    const peer = s(`peer-${model}`);
    if (ours && peer) {
      const factor = ours.reqPerSec / peer.reqPerSec;
      goals.push(
        goal(
          `${name}: ≥ ${GOAL_PEER_FACTOR}× FastAPI + scikit-learn`,
          factor >= GOAL_PEER_FACTOR,
          `${fmtInt(ours.reqPerSec)} vs ${fmtInt(peer.reqPerSec)} req/s: ${factor.toFixed(1)}× ` +
            `(peer p50 ${fmtMs(peer.p50)} ms, p99 ${fmtMs(peer.p99)} ms)`,
        ),
      );
    } else if (ours && peerMissing) {
      goals.push({
        label: `${name}: ≥ ${GOAL_PEER_FACTOR}× FastAPI + scikit-learn`,
        status: 'SKIPPED',
        detail: peerMissing,
      });
    }
    const nolog = s(`${model}-nolog`);
    if (ours && nolog) {
      const cost = 1 - ours.reqPerSec / nolog.reqPerSec;
      goals.push(
        goal(
          `${name}: logging every request (prediction log at sample rate 1) costs ≤ ${GOAL_LOG_COST * 100} % of throughput`,
          cost <= GOAL_LOG_COST,
          `${fmtInt(ours.reqPerSec)} with vs ${fmtInt(nolog.reqPerSec)} req/s without: ${(cost * 100).toFixed(1)} %`,
        ),
      );
    }
    const batch = s(`${model}-batch`);
    if (batch) {
      const nologBatch = s(`${model}-batch-nolog`);
      goals.push(
        goal(
          `${name}: batches of ${batchSize} instances ≥ ${fmtInt(GOAL_BATCH_ROWS_PER_S)} rows/s over HTTP (logs on)`,
          batch.rowsPerSec >= GOAL_BATCH_ROWS_PER_S,
          `${fmtInt(batch.rowsPerSec)} rows/s (${fmtInt(batch.reqPerSec)} req/s, p99 ${fmtMs(batch.p99)} ms)` +
            (nologBatch ? `; prediction log off: ${fmtInt(nologBatch.rowsPerSec)} rows/s` : ''),
        ),
      );
    }
  }
  // Not a goal (the goal is the prediction log's cost): the request log's line per request, and both together.
  const notes: string[] = [];
  const [lrOn, lrNolog, lrQuiet] = [s('lr'), s('lr-nolog'), s('lr-quiet')];
  if (lrOn && lrNolog && lrQuiet) {
    const pct = (a: number, b: number) => `${((1 - a / b) * 100).toFixed(1)} %`;
    notes.push(
      `logistic regression: the request log (one pino line per request) costs ${pct(lrNolog.reqPerSec, lrQuiet.reqPerSec)} ` +
        `(${fmtInt(lrNolog.reqPerSec)} vs ${fmtInt(lrQuiet.reqPerSec)} req/s); request log and prediction log together ` +
        `${pct(lrOn.reqPerSec, lrQuiet.reqPerSec)} (${fmtInt(lrOn.reqPerSec)} vs ${fmtInt(lrQuiet.reqPerSec)} req/s)`,
    );
  }
  const swapSummary = s('swap');
  if (swapSummary && swapSamples.length > 0) {
    const failed = swapSamples.reduce((a, x) => a + x.failed, 0);
    const notSeen = swapSamples.reduce((a, x) => a + x.swaps.filter((w) => w.swapMs === undefined).length, 0);
    const swapCount = swapSamples.reduce((a, x) => a + x.swaps.length, 0);
    goals.push(
      goal(
        'hot swap under full load: zero failed requests',
        failed === 0 && notSeen === 0,
        `${swapCount} deploys over ${swapSamples.length} run(s), ${fmtInt(swapSummary.requests)} requests, ${failed} failed` +
          (notSeen > 0 ? `, ${notSeen} swap(s) never observed` : ''),
      ),
    );
    const steady = s('gbt');
    const windowP99 = median(swapSamples.map((x) => x.windowP99));
    if (steady) {
      goals.push(
        goal(
          `hot swap: p99 during the swap under ${GOAL_SWAP_P99_FACTOR}× the steady p99`,
          windowP99 < GOAL_SWAP_P99_FACTOR * steady.p99,
          `window p99 ${fmtMs(windowP99)} ms vs steady ${fmtMs(steady.p99)} ms: ${(windowP99 / steady.p99).toFixed(2)}× ` +
            `(outside the windows in the same runs ${fmtMs(median(swapSamples.map((x) => x.outsideP99)))} ms; ` +
            `swap seen ${fmtInt(median(swapSamples.flatMap((x) => x.swaps.map((w) => w.swapMs ?? Number.NaN))))} ms ` +
            `after the deploy call, median)`,
        ),
      );
    }
  }
  console.log('');
  for (const g of goals) console.log(`goal: ${g.label}: ${g.status} (${g.detail})`);
  for (const note of notes) console.log(`note: ${note}`);
  const loadAtEnd = loadAverage();
  console.log(`load average at start ${loadAtStart.join(' ')}, at end ${loadAtEnd.join(' ')}`);
  const file = writeResultFile('serving', {
    options: { runs, warmup, duration, warmupSeconds, connections, batchConnections, batchSize, swaps },
    loadAverageAtStart: loadAtStart,
    loadAverageAtEnd: loadAtEnd,
    peer: peerMissing ? { skipped: peerMissing } : peerInfo,
    models: models?.reports.map((r) => ({
      pipeline: r.pipeline,
      model: r.result.model,
      metrics: r.result.metrics,
      outcome: r.result.outcome,
    })),
    rawOnnx: raw,
    goals,
    notes,
    scenarios: rows.map(({ scenario, summary }) => ({
      ...scenario,
      summary,
      samples: samples.get(scenario.key),
    })),
    predictionLog: logCounts,
    hotSwap: swapSamples,
  });
  console.log(`results: ${path.relative(process.cwd(), file)}`);
  if (goals.some((g) => g.status === 'FAIL')) process.exitCode = 1;
}

const childSpec = process.env[CHILD_ENV];
if (childSpec) {
  childMain(JSON.parse(childSpec) as ChildSpec).catch((error: unknown) => {
    console.error(
      `serving benchmark server failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`,
    );
    process.exit(1);
  });
} else {
  main().catch((error: unknown) => {
    console.error(`\nserving benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
    process.exit(1);
  });
}
