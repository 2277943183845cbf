/** The soak's summaries, as printed: the serving soak's figures and the pipeline runs' times and outcomes. */
import { formatMs, quantile } from '../harness.js';
import type { SoakOptions } from './options.js';
import type { PipelineSoakResult } from './pipeline-soak.js';
import type { ServingSoakResult } from './serving-soak.js';

const MIB = 2 ** 20;

export function printServing(result: ServingSoakResult, options: SoakOptions): void {
  const { load, memory, predictionLog } = result;
  const mib = (b: number) => (b / MIB).toFixed(1);
  console.log(
    `\nServing soak: ${options.seconds} s at ${result.connections} connections (first second left out of the rates)\n` +
      `  requests ${load.requests.toLocaleString('en-US')}, failed ${result.responses.failed}, ` +
      `${Math.round(load.reqPerSec).toLocaleString('en-US')} req/s, p50 ${load.p50.toFixed(2)} ms, ` +
      `p90 ${load.p90.toFixed(2)} ms, p99 ${load.p99.toFixed(2)} ms, max ${load.max.toFixed(1)} ms\n` +
      `  API ${load.serverCores.toFixed(2)} cores (loop ${((load.serverEventLoop ?? Number.NaN) * 100).toFixed(0)} % busy, ` +
      `longest stall ${load.serverLoopMaxDelayMs?.toFixed(1)} ms), load generator ${load.generatorCores.toFixed(2)}, ` +
      `machine ${load.machineCores.toFixed(2)}\n` +
      `  memory (MiB, after a full GC): start RSS ${mib(memory.start.rss)} heap ${mib(memory.start.heapUsed)}; ` +
      `after warm-up RSS ${mib(memory.afterWarmup.rss)} heap ${mib(memory.afterWarmup.heapUsed)}; ` +
      `end RSS ${mib(memory.end.rss)} heap ${mib(memory.end.heapUsed)}`,
  );
  if (memory.samples.length > 0) {
    const rss = memory.samples.map((s) => s.rss);
    const heap = memory.samples.map((s) => s.heapUsed);
    const depth = memory.samples.map((s) => s.queueDepth ?? 0);
    console.log(
      `  during the soak (${memory.samples.length} readings, no forced GC): RSS ${mib(Math.min(...rss))}–${mib(Math.max(...rss))} MiB, ` +
        `heap used ${mib(Math.min(...heap))}–${mib(Math.max(...heap))} MiB, prediction log queue at most ` +
        `${Math.max(...depth).toLocaleString('en-US')} rows`,
    );
  }
  console.log(
    `  prediction log: ${predictionLog.offered.toLocaleString('en-US')} rows offered, ` +
      `${predictionLog.written.toLocaleString('en-US')} written, ${predictionLog.dropped.toLocaleString('en-US')} dropped, ` +
      `${predictionLog.rowsInTable.toLocaleString('en-US')} new rows in prediction_logs; queue empty ` +
      `${formatMs(predictionLog.drainMs)} after the load`,
  );
}

export function printPipelines(result: PipelineSoakResult): void {
  const times = Float64Array.from(result.runs.map((r) => r.ms)).sort();
  const outcomes = new Map<string, number>();
  for (const run of result.runs) {
    const key = run.result?.outcome ?? 'failed';
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  }
  console.log(
    `\nPipeline soak: ${result.runs.length} runs over ${result.pipelines.length} pipeline(s), ` +
      `${result.landed.rows.toLocaleString('en-US')} landed rows\n` +
      `  all done ${formatMs(result.wallMs)} after the first start request; per run (start request → result) ` +
      `min ${formatMs(quantile(times, 0))}, median ${formatMs(quantile(times, 0.5))}, max ${formatMs(quantile(times, 1))}\n` +
      `  outcomes: ${[...outcomes].map(([k, v]) => `${k} ${v}`).join(', ')}`,
  );
}
