/** The soak's command line, parsed and checked once. */
import { parseBenchArgs } from '../harness.js';

export type SoakPart = 'serving' | 'pipeline';

export interface SoakOptions {
  /** The parts to run: the serving soak, the pipeline soak, or both (the default). */
  readonly parts: ReadonlySet<SoakPart>;
  /** Seconds of the serving soak at peak concurrency, and of load at that concurrency before it (unmeasured). */
  readonly seconds: number;
  readonly warmupSeconds: number;
  /** The concurrencies the ramp tries, and how long each; `connections` skips the ramp. */
  readonly ramp: readonly number[];
  readonly rampSeconds: number;
  readonly connections: number | undefined;
  /** How often the API's memory and the prediction log's counters are read during the soak. */
  readonly sampleSeconds: number;
  /** The bounds on memory growth from after the warm-up to the end (both after a full collection), in MiB. */
  readonly maxHeapGrowthMiB: number;
  readonly maxRssGrowthMiB: number;
  /** API_RATE_LIMIT_PER_SECOND of the API under soak (per key; 0 turns the limiter off). */
  readonly rateLimit: number;
  /** Concurrent pipeline runs, and over how many pipelines (the runs are dealt round-robin). */
  readonly runs: number;
  readonly pipelines: number;
  /** The longest the pipeline runs may take together before the soak gives up on them. */
  readonly runTimeoutSeconds: number;
}

function number(name: string, raw: string, { min = 0, integer = true } = {}): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    console.error(`--${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${raw}`);
    process.exit(2);
  }
  return n;
}

/** Parses `process.argv`; prints usage and exits 2 on a malformed or unknown option. */
export function parseSoakOptions(): SoakOptions {
  const { runs, options } = parseBenchArgs({
    runs: 20,
    options: {
      parts: 'serving,pipeline',
      seconds: process.env.SOAK_SECONDS ?? '60',
      'warmup-seconds': '10',
      ramp: '8,16,32,64',
      'ramp-seconds': '5',
      connections: '',
      'sample-seconds': '2',
      'max-heap-growth-mib': '16',
      'max-rss-growth-mib': '64',
      'rate-limit': '1000000',
      pipelines: '',
      'run-timeout-seconds': '900',
    },
  });
  const parts = new Set(options.parts.split(',').map((p) => p.trim()));
  for (const part of parts) {
    if (part !== 'serving' && part !== 'pipeline') {
      console.error(`--parts takes serving and pipeline, got ${part}`);
      process.exit(2);
    }
  }
  const ramp = options.ramp.split(',').map((c) => number('ramp', c.trim(), { min: 1 }));
  const pipelines = options.pipelines === '' ? runs : number('pipelines', options.pipelines, { min: 1 });
  if (pipelines > runs) {
    console.error(`--pipelines (${pipelines}) cannot exceed --runs (${runs})`);
    process.exit(2);
  }
  return {
    parts: parts as Set<SoakPart>,
    seconds: number('seconds', options.seconds, { min: 2 }),
    warmupSeconds: number('warmup-seconds', options['warmup-seconds']),
    ramp,
    rampSeconds: number('ramp-seconds', options['ramp-seconds'], { min: 2 }),
    connections: options.connections === '' ? undefined : number('connections', options.connections, { min: 1 }),
    sampleSeconds: number('sample-seconds', options['sample-seconds'], { min: 0.5, integer: false }),
    maxHeapGrowthMiB: number('max-heap-growth-mib', options['max-heap-growth-mib'], { integer: false }),
    maxRssGrowthMiB: number('max-rss-growth-mib', options['max-rss-growth-mib'], { integer: false }),
    rateLimit: number('rate-limit', options['rate-limit']),
    runs,
    pipelines,
    runTimeoutSeconds: number('run-timeout-seconds', options['run-timeout-seconds'], { min: 1 }),
  };
}
