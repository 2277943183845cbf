/** The serving benchmark's command line, parsed and checked once. */
import { parseBenchArgs } from '../harness.js';
import { SCENARIOS } from './scenarios.js';

export interface ServingOptions {
  /** Measured rounds, and discarded rounds before them. */
  readonly runs: number;
  readonly warmup: number;
  /** Seconds of measured load per scenario, and of unmeasured load on the same target before it. */
  readonly duration: number;
  readonly warmupSeconds: number;
  /** Connections of the single-instance loads, and of the batch loads. */
  readonly connections: number;
  readonly batchConnections: number;
  /** Instances per batch request. */
  readonly batchSize: number;
  /** Deploys during the hot swap's load. */
  readonly swaps: number;
  /** `off` leaves the FastAPI peer out; `auto` runs it where Python has what it needs. */
  readonly peer: 'auto' | 'off';
  /** Where V8 CPU profiles of the API servers go ('' for none). */
  readonly profile: string;
  /** The keys of the scenarios asked for (all known). */
  readonly scenarios: ReadonlySet<string>;
}

function positive(name: string, raw: string, integer = true): number {
  const n = Number(raw);
  if (!(n > 0) || (integer && !Number.isInteger(n))) {
    console.error(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got ${raw}`);
    process.exit(2);
  }
  return n;
}

/** Parses `process.argv`; prints usage and exits 2 on a malformed or unknown option, an unknown scenario. */
export function parseServingOptions(): ServingOptions {
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
  const peer = options.peer;
  if (peer !== 'auto' && peer !== 'off') {
    console.error(`--peer must be auto or off, got ${peer}`);
    process.exit(2);
  }
  return {
    runs,
    warmup,
    duration,
    warmupSeconds,
    connections,
    batchConnections,
    batchSize,
    swaps,
    peer,
    profile: options.profile,
    scenarios: wanted,
  };
}
