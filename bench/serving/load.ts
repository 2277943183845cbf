/**
 * One measured load: autocannon against a target for some seconds, every response's latency recorded (autocannon's
 * own histogram has 1 ms resolution), and beside it the CPU of the server, of this process and of the machine, the
 * server's event loop and the micro-batches it formed.
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { processCpuSeconds, quantile } from '../harness.js';
import { autocannon, type CannonInstance, type CannonRequest, type CannonResult } from './autocannon.js';
import { scrapeCounters } from './server-counters.js';
import type { Server } from './server-process.js';

/**
 * Responses that complete in the first second of a measured load are left out of its throughput and latencies:
 * autocannon builds every connection's request buffers (32 × 1,000 bodies) synchronously while the first connections'
 * first requests are already out, so those latencies (about 0.3 s) are the load generator's, not the server's.
 */
export const RAMP_MS = 1000;

/** What a load is sent to: a server, the requests autocannon cycles through, and on how many connections. */
export interface Target {
  readonly server: Server;
  readonly requests: readonly CannonRequest[];
  readonly connections: number;
  readonly rowsPerRequest: number;
}

export interface LoadSample {
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

/** Latencies (ms) and completion times (performance.now()) of every response, in arrival order. */
export class ResponseLog {
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

/** Busy and total CPU time of the whole machine, in seconds (all cores). */
function machineCpuSeconds(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: (total - idle) / 100, total: total / 100 };
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
export async function measure(target: Target, seconds: number): Promise<{ sample: LoadSample; log: ResponseLog }> {
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
  const latencies = Float64Array.from(kept).sort();
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
      p50: quantile(latencies, 0.5),
      p90: quantile(latencies, 0.9),
      p99: quantile(latencies, 0.99),
      max: quantile(latencies, 1),
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

/** Unmeasured load on `target` for `seconds` (none when 0). */
export async function warmUp(target: Target, seconds: number): Promise<void> {
  if (seconds > 0) await cannon(target, seconds).done;
}
