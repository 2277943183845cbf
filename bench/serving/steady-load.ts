/**
 * The steady-load scenarios: single-instance or batch requests at a constant concurrency on one server (the bare
 * route, the API, the peer), measured for `--duration` seconds.
 */
import type { ServingContext } from './context.js';
import { fmtCores, fmtInt, fmtMs } from './format.js';
import { measure, type LoadSample, type Target } from './load.js';
import type { Scenario } from './scenarios.js';

/** Measures the load on `target` (already warm) and prints its line. */
export async function runSteadyScenario(ctx: ServingContext, scenario: Scenario, target: Target): Promise<LoadSample> {
  const { sample } = await measure(target, ctx.options.duration);
  console.log(
    `  ${scenario.label}: ${fmtInt(sample.reqPerSec)} req/s` +
      (scenario.batch ? ` (${fmtInt(sample.rowsPerSec)} rows/s)` : '') +
      `, p50 ${fmtMs(sample.p50)} p90 ${fmtMs(sample.p90)} p99 ${fmtMs(sample.p99)} ms, ` +
      `failed ${sample.errors + sample.non2xx + sample.timeouts}, server ${fmtCores(sample.serverCores)} cores` +
      (sample.serverEventLoop !== undefined ? ` (loop ${(sample.serverEventLoop * 100).toFixed(0)} % busy)` : '') +
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
  return sample;
}
