/** What the serving benchmark prints and writes at the end: the table, the goals and notes, the result file. */
import path from 'node:path';
import { loadAverage, writeResultFile } from '../harness.js';
import { evaluateGoals, type Goal } from './goals.js';
import type { Models } from './models.js';
import type { ServingOptions } from './options.js';
import type { PeerInfo } from './peer.js';
import type { RawOnnx } from './raw-onnx.js';
import type { RoundsResult } from './rounds.js';
import type { Scenario } from './scenarios.js';
import { formatSummaryTable, summarizeSamples, type Summary } from './summary.js';

export interface ServingMeasurements extends RoundsResult {
  readonly models: Models;
  readonly raw: Record<string, RawOnnx>;
  readonly peerInfo: PeerInfo | undefined;
}

/**
 * Prints the medians over the rounds as a table, a line per goal and note and the load average, and writes
 * `bench/results/serving-<timestamp>.json` with every sample. Returns the goals.
 */
export function reportResults(input: {
  readonly options: ServingOptions;
  readonly scenarios: readonly Scenario[];
  readonly peerMissing: string | undefined;
  readonly loadAtStart: readonly number[];
  readonly measured: ServingMeasurements;
}): readonly Goal[] {
  const { options, scenarios, peerMissing, loadAtStart, measured } = input;
  const { runs, warmup, duration, warmupSeconds, connections, batchConnections, batchSize, swaps } = options;
  const { samples, swapSamples, logCounts, models, raw, peerInfo } = measured;
  const summaries = new Map<string, Summary>();
  for (const [key, list] of samples) summaries.set(key, summarizeSamples(list));
  const rows = scenarios
    .filter((s) => summaries.has(s.key))
    .map((s) => ({ scenario: s, summary: summaries.get(s.key)! }));
  console.log(`\nmedian of ${runs} round(s), ${duration} s each after ${warmupSeconds} s of warm-up:\n`);
  console.log(formatSummaryTable(rows));

  const { goals, notes } = evaluateGoals({ summaries, swapSamples, connections, batchSize, peerMissing });
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
    models: models.reports.map((r) => ({
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
  return goals;
}
