/**
 * The hot-swap scenario: while the single-instance load runs on the trees, deploys alternate between their two
 * versions through the deployment store (`deploy` → NOTIFY → the pool loads the version and swaps it in). A probe request
 * every 10 ms records which version answers; a swap's window runs from the deploy call to `SWAP_TAIL_MS` after the
 * probe first sees the new version, and the latencies of the requests in flight during the windows are kept apart.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ModelVersion } from '../../schema/registry.js';
import type { PlatformStorage } from '../../storage/open-storage.js';
import { quantile } from '../harness.js';
import type { ServingContext } from './context.js';
import { fmtInt, fmtMs } from './format.js';
import { measure, RAMP_MS, type LoadSample, type Target } from './load.js';
import type { Scenario } from './scenarios.js';
import { predictHeaders, predictPath } from './server-process.js';

/** After a probe first sees the new version, the swap window stays open this long (the old session's release). */
const SWAP_TAIL_MS = 250;

interface SwapRecord {
  readonly toVersion: number;
  /** From the deploy call to its commit. */
  readonly deployMs: number;
  /** From the deploy call to the first probe answered by the new version. */
  readonly swapMs: number | undefined;
}

export interface SwapSample {
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
  deployments: PlatformStorage['deployments'];
  deployment: string;
  versions: readonly ModelVersion[];
  probeBody: string;
}): Promise<SwapSample> {
  const { target, seconds, swaps, deployments, deployment, versions, probeBody } = options;
  const probes: { at: number; version: number | undefined; status: number }[] = [];
  let probing = true;
  const prober = (async () => {
    while (probing) {
      const at = performance.now();
      const answer = await fetch(`${target.server.url}${predictPath(deployment)}`, {
        method: 'POST',
        headers: predictHeaders(target.server),
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

  const current = (await deployments.activeRevisions(deployment)).find((r) => r.role === 'champion');
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
    await deployments.deploy({
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
  const insideSorted = Float64Array.from(inside).sort();
  return {
    load: sample,
    swaps: swapRecords,
    failed: sample.errors + sample.non2xx + sample.timeouts + failedProbes,
    windowRequests: inside.length,
    windowP99: quantile(insideSorted, 0.99),
    windowMax: quantile(insideSorted, 1),
    outsideP99: quantile(Float64Array.from(outside).sort(), 0.99),
    probeVersions,
  };
}

/** Runs the hot swap on `target` (the trees, already warm) for `--duration` seconds and prints its line. */
export async function runHotSwapScenario(ctx: ServingContext, scenario: Scenario, target: Target): Promise<SwapSample> {
  const swap = await hotSwap({
    target,
    seconds: ctx.options.duration,
    swaps: ctx.options.swaps,
    deployments: ctx.deployments,
    deployment: ctx.names.gbt,
    versions: ctx.gbtVersions,
    probeBody: ctx.singleBodies[0]!,
  });
  const sample = swap.load;
  console.log(
    `  ${scenario.label}: ${fmtInt(sample.reqPerSec)} req/s, p99 ${fmtMs(sample.p99)} ms; ` +
      `${swap.swaps.length} swaps (${swap.swaps.map((s) => (s.swapMs === undefined ? 'not seen' : `${fmtInt(s.swapMs)} ms`)).join(', ')}), ` +
      `window p99 ${fmtMs(swap.windowP99)} ms (max ${fmtMs(swap.windowMax)}) over ${swap.windowRequests} requests, ` +
      `outside ${fmtMs(swap.outsideP99)} ms; failed ${swap.failed}`,
  );
  return swap;
}
