/**
 * The rounds: each measures every chosen scenario once, one after the other, each after `--warmup-seconds` of load on
 * the same target. After a scenario with the prediction log on, the next one waits until the log's queue is empty.
 */
import { formatMs, loadAverage } from '../harness.js';
import type { ServingContext } from './context.js';
import { fmtInt } from './format.js';
import { runHotSwapScenario, type SwapSample } from './hot-swap.js';
import { warmUp, type LoadSample, type Target } from './load.js';
import type { Scenario } from './scenarios.js';
import { drainPredictionLog, scrapeCounters } from './server-counters.js';
import { JSON_HEADERS, predictHeaders, predictPath } from './server-process.js';
import { runSteadyScenario } from './steady-load.js';

/** What the prediction log wrote and dropped during one scenario's load, and how long its queue took to empty. */
export interface PredictionLogCount {
  readonly scenario: string;
  readonly round: number;
  readonly written: number;
  readonly dropped: number;
  readonly drainMs: number;
}

/** The measured rounds' samples (the discarded rounds' are left out). */
export interface RoundsResult {
  /** Every scenario's samples by key, one per round. */
  readonly samples: Map<string, LoadSample[]>;
  readonly swapSamples: readonly SwapSample[];
  readonly logCounts: readonly PredictionLogCount[];
}

/** The server, requests and concurrency of a scenario. */
function targetOf(ctx: ServingContext, scenario: Scenario): Target {
  const { servers, singleBodies, batchBodies, names, options } = ctx;
  const server = servers.get(scenario.server)!;
  if (scenario.server === 'bare') {
    const requests = scenario.post
      ? singleBodies.map((body) => ({ method: 'POST' as const, path: '/constant', headers: JSON_HEADERS, body }))
      : [{ method: 'GET' as const, path: '/constant' }];
    return { server, requests, connections: options.connections, rowsPerRequest: 1 };
  }
  const model = names[scenario.model!];
  const bodies = scenario.batch ? batchBodies : singleBodies;
  return {
    server,
    requests: bodies.map((body) => ({
      method: 'POST',
      path: predictPath(model),
      headers: predictHeaders(server),
      body,
    })),
    connections: scenario.batch ? options.batchConnections : options.connections,
    rowsPerRequest: scenario.batch ? options.batchSize : 1,
  };
}

/** Runs `--warmup` discarded rounds, then `--runs` measured ones, printing a line per scenario. */
export async function runRounds(ctx: ServingContext, scenarios: readonly Scenario[]): Promise<RoundsResult> {
  const { runs, warmup, warmupSeconds } = ctx.options;
  const samples = new Map<string, LoadSample[]>();
  const swapSamples: SwapSample[] = [];
  const logCounts: PredictionLogCount[] = [];
  const rounds = warmup + runs;
  for (let round = 0; round < rounds; round++) {
    const discarded = round < warmup;
    console.log(
      `\nround ${round + 1} of ${rounds}${discarded ? ' (warm-up, discarded)' : ''}, load ${loadAverage().join(' ')}`,
    );
    for (const scenario of scenarios) {
      const target = targetOf(ctx, scenario);
      await warmUp(target, warmupSeconds);
      const logged = scenario.server === 'api';
      const before = logged ? await scrapeCounters(target.server) : undefined;
      let sample: LoadSample;
      if (scenario.swap) {
        const swap = await runHotSwapScenario(ctx, scenario, target);
        sample = swap.load;
        if (!discarded) swapSamples.push(swap);
      } else {
        sample = await runSteadyScenario(ctx, scenario, target);
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
  return { samples, swapSamples, logCounts };
}
