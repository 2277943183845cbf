/** The prediction log and the micro-batches of an API server, read from its `/metrics`. */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { authHeaders, type Server } from './server-process.js';

export interface ServerCounters {
  readonly depth: number;
  readonly written: number;
  readonly dropped: number;
  /** Rows scored and session.run calls so far, every model together (the micro-batches). */
  readonly batchRows: number;
  readonly batchRuns: number;
}

/** The server's counters now, each summed over its label sets; undefined when `/metrics` does not answer. */
export async function scrapeCounters(server: Server): Promise<ServerCounters | undefined> {
  // `/metrics` needs the `read` scope: the server's (admin) key.
  const text = await fetch(`${server.url}/metrics`, { headers: authHeaders(server.token) }).then(
    (r) => (r.ok ? r.text() : undefined),
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
export async function drainPredictionLog(server: Server, ms = 120_000): Promise<number> {
  const began = performance.now();
  while (performance.now() - began < ms) {
    const counters = await scrapeCounters(server);
    if (!counters || counters.depth === 0) break;
    await sleep(200);
  }
  return performance.now() - began;
}
