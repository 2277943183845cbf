/**
 * The serving soak: the predict route of one deployment under single-instance load at its peak concurrency (found
 * by a short ramp, or given), for a fixed time with the request log and the prediction log on. It records every
 * response's status and latency, the API process's memory at start, after the warm-up and at the end (each after a
 * full collection) and every few seconds in between, and what the prediction log wrote and dropped.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { fmtInt, fmtMs } from '../serving/format.js';
import { measure, warmUp, type LoadSample, type Target } from '../serving/load.js';
import { drainPredictionLog, scrapeCounters, type ServerCounters } from '../serving/server-counters.js';
import { predictPath, JSON_HEADERS, authHeaders, type MemoryReading, type Server } from '../serving/server-process.js';
import { invariant, type Invariant } from './invariants.js';
import type { SoakOptions } from './options.js';

const MIB = 2 ** 20;

export interface RampStep {
  readonly connections: number;
  readonly reqPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly failed: number;
}

/** One reading during the soak: seconds since its start, the API's memory and the prediction log's queue. */
export interface MemorySample {
  readonly atSeconds: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly queueDepth: number | undefined;
}

export interface ServingSoakResult {
  readonly ramp: readonly RampStep[];
  readonly connections: number;
  readonly load: LoadSample;
  /** Every response of the soak (the first second included), by status class. */
  readonly responses: { readonly total: number; readonly ok: number; readonly failed: number };
  readonly memory: {
    readonly start: MemoryReading;
    readonly afterWarmup: MemoryReading;
    readonly end: MemoryReading;
    readonly samples: readonly MemorySample[];
  };
  readonly predictionLog: {
    /**
     * Rows the soak's requests offered to the log (one instance each, sample rate 1): the server's count of 2xx
     * answers, which exceeds the load generator's by the requests in flight when it stopped (at most one per
     * connection).
     */
    readonly offered: number;
    readonly written: number;
    readonly dropped: number;
    readonly rejected: number;
    readonly writeErrors: number;
    /** Rows added to `prediction_logs` for the deployment during the soak (and the drain after it). */
    readonly rowsInTable: number;
    readonly drainMs: number;
  };
  readonly invariants: readonly Invariant[];
}

export interface ServingSoakContext {
  /** The API under soak; its own token (admin) reads `/metrics`. */
  readonly server: Server;
  /** The key the load carries: a dedicated `predict` key. */
  readonly loadToken: string;
  readonly deployment: string;
  /** Distinct single-instance request bodies, cycled by the load. */
  readonly bodies: readonly string[];
  /** The platform database, to count the prediction log's rows. */
  readonly pool: pg.Pool;
}

function targetAt(ctx: ServingSoakContext, connections: number): Target {
  const headers = { ...JSON_HEADERS, ...authHeaders(ctx.loadToken) };
  return {
    server: ctx.server,
    requests: ctx.bodies.map((body) => ({ method: 'POST', path: predictPath(ctx.deployment), headers, body })),
    connections,
    rowsPerRequest: 1,
  };
}

async function memoryOf(server: Server, gc: boolean): Promise<MemoryReading> {
  const reading = await server.memory(gc);
  if (!reading) throw new Error(`${server.name}: its memory could not be read (the process is gone)`);
  return reading;
}

async function countRows(pool: pg.Pool, deployment: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('select count(*) as n from prediction_logs where deployment = $1', [
    deployment,
  ]);
  return Number(rows[0]?.n ?? 0);
}

/**
 * Counters beside the ones the serving benchmark reads: predictions the server answered 2xx (its own count, which
 * includes requests still in flight when the load generator stopped listening), and the prediction log's rejected
 * rows and failed writes.
 */
async function extraCounters(server: Server): Promise<{ answered: number; rejected: number; writeErrors: number }> {
  const text = await fetch(`${server.url}/metrics`, { headers: authHeaders(server.token) }).then((r) => r.text());
  const sum = (name: string, labels = '[^}]*') =>
    [...text.matchAll(new RegExp(`^${name}(?:\\{${labels}\\})? (\\S+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
  return {
    answered: sum('mlops_serving_requests_total', '[^}]*status="2\\d\\d"[^}]*'),
    rejected: sum('mlops_serving_prediction_logs_rejected_total'),
    writeErrors: sum('mlops_serving_prediction_log_write_errors_total'),
  };
}

const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;

/** Tries each ramp concurrency for `rampSeconds`; the peak is the one that answered the most requests a second. */
async function findPeak(ctx: ServingSoakContext, options: SoakOptions): Promise<{ steps: RampStep[]; peak: number }> {
  const steps: RampStep[] = [];
  for (const connections of options.ramp) {
    const { sample } = await measure(targetAt(ctx, connections), options.rampSeconds);
    const step = {
      connections,
      reqPerSec: sample.reqPerSec,
      p50: sample.p50,
      p99: sample.p99,
      failed: sample.errors + sample.timeouts + sample.non2xx,
    };
    steps.push(step);
    console.log(
      `  ramp ${connections} connections: ${fmtInt(step.reqPerSec)} req/s, p50 ${fmtMs(step.p50)} ` +
        `p99 ${fmtMs(step.p99)} ms, failed ${step.failed}`,
    );
    await drainPredictionLog(ctx.server);
  }
  const best = steps.reduce((a, b) => (b.reqPerSec > a.reqPerSec ? b : a));
  return { steps, peak: best.connections };
}

/** Runs the ramp (unless `--connections`), the warm-up and the soak; returns the figures and the invariants. */
export async function runServingSoak(ctx: ServingSoakContext, options: SoakOptions): Promise<ServingSoakResult> {
  const { server } = ctx;
  const start = await memoryOf(server, true);
  console.log(`  API at start (after a full GC): RSS ${mib(start.rss)}, heap used ${mib(start.heapUsed)}`);
  let ramp: RampStep[] = [];
  let connections = options.connections;
  if (connections === undefined) {
    const found = await findPeak(ctx, options);
    ramp = found.steps;
    connections = found.peak;
    console.log(`  peak concurrency: ${connections} connections (the most requests a second in the ramp)`);
  }
  const target = targetAt(ctx, connections);
  await warmUp(target, options.warmupSeconds);
  await drainPredictionLog(server);
  const afterWarmup = await memoryOf(server, true);
  console.log(
    `  after ${options.warmupSeconds} s of warm-up at ${connections} connections (full GC): ` +
      `RSS ${mib(afterWarmup.rss)}, heap used ${mib(afterWarmup.heapUsed)}`,
  );

  const countersBefore = await scrapeCounters(server);
  const extraBefore = await extraCounters(server);
  const rowsBefore = await countRows(ctx.pool, ctx.deployment);
  const samples: MemorySample[] = [];
  let sampling = true;
  const began = performance.now();
  const sampler = (async () => {
    while (sampling) {
      const [memory, counters] = await Promise.all([server.memory(false), scrapeCounters(server)]);
      if (memory) {
        samples.push({
          atSeconds: (performance.now() - began) / 1000,
          rss: memory.rss,
          heapUsed: memory.heapUsed,
          queueDepth: counters?.depth,
        });
      }
      await sleep(options.sampleSeconds * 1000);
    }
  })();
  console.log(`  soak: ${options.seconds} s at ${connections} connections...`);
  let measured: Awaited<ReturnType<typeof measure>>;
  try {
    measured = await measure(target, options.seconds);
  } finally {
    sampling = false;
    await sampler;
  }
  const { sample: load, log } = measured;
  const drainMs = await drainPredictionLog(server);
  const countersAfter = await scrapeCounters(server);
  const extraAfter = await extraCounters(server);
  const rowsAfter = await countRows(ctx.pool, ctx.deployment);
  const end = await memoryOf(server, true);

  let ok = 0;
  for (let i = 0; i < log.count; i++) if (log.statuses[i]! >= 200 && log.statuses[i]! < 300) ok++;
  const failed = load.errors + load.timeouts + load.non2xx;
  const delta = (key: keyof ServerCounters) =>
    countersBefore && countersAfter ? countersAfter[key] - countersBefore[key] : Number.NaN;
  const predictionLog = {
    offered: extraAfter.answered - extraBefore.answered,
    written: delta('written'),
    dropped: delta('dropped'),
    rejected: extraAfter.rejected - extraBefore.rejected,
    writeErrors: extraAfter.writeErrors - extraBefore.writeErrors,
    rowsInTable: rowsAfter - rowsBefore,
    drainMs,
  };
  const heapGrowth = end.heapUsed - afterWarmup.heapUsed;
  const rssGrowth = end.rss - afterWarmup.rss;
  const rampFailed = ramp.reduce((a, s) => a + s.failed, 0);
  const invariants = [
    invariant(
      'serving: no failed request in the soak',
      failed === 0 && ok === log.count,
      `${fmtInt(load.requests)} requests, ${fmtInt(ok)} answered 2xx; ${load.non2xx} non-2xx, ` +
        `${load.errors} socket errors, ${load.timeouts} timeouts`,
    ),
    invariant('serving: no failed request in the ramp', rampFailed === 0, `${rampFailed} failed`),
    invariant(
      'serving: heap growth bounded',
      heapGrowth <= options.maxHeapGrowthMiB * MIB,
      `heap used after a full GC ${mib(afterWarmup.heapUsed)} after the warm-up → ${mib(end.heapUsed)} at the end ` +
        `(${heapGrowth >= 0 ? '+' : ''}${mib(heapGrowth)}; bound ${options.maxHeapGrowthMiB} MiB)`,
    ),
    invariant(
      'serving: RSS growth bounded',
      rssGrowth <= options.maxRssGrowthMiB * MIB,
      `RSS ${mib(afterWarmup.rss)} after the warm-up → ${mib(end.rss)} at the end ` +
        `(${rssGrowth >= 0 ? '+' : ''}${mib(rssGrowth)}; bound ${options.maxRssGrowthMiB} MiB)`,
    ),
    invariant(
      'serving: the server answered what the load generator saw, and at most one in-flight request per connection more',
      predictionLog.offered >= ok && predictionLog.offered <= ok + connections,
      `${fmtInt(predictionLog.offered)} answered 2xx by the server's count, ${fmtInt(ok)} seen by the load generator`,
    ),
    invariant(
      'serving: the prediction log accounts for every answered request',
      predictionLog.written + predictionLog.dropped + predictionLog.rejected === predictionLog.offered &&
        predictionLog.rowsInTable === predictionLog.written &&
        predictionLog.writeErrors === 0,
      `${fmtInt(predictionLog.offered)} rows offered (sample rate 1), ${fmtInt(predictionLog.written)} written ` +
        `(${fmtInt(predictionLog.rowsInTable)} new rows in prediction_logs), ${fmtInt(predictionLog.dropped)} dropped, ` +
        `${predictionLog.rejected} rejected, ${predictionLog.writeErrors} write errors`,
    ),
  ];
  return {
    ramp,
    connections,
    load,
    responses: { total: log.count, ok, failed },
    memory: { start, afterWarmup, end, samples },
    predictionLog,
    invariants,
  };
}
