/**
 * Starts the servers the chosen scenarios need: the bare Hono app, the API variants (each as `npm run api` builds it,
 * with its own logging settings) and the FastAPI peer.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceEndpoints } from '../../core/config.js';
import { findFreePorts } from '../../stack/ports.js';
import { check, formatMs } from '../harness.js';
import { startPeer, type PeerInfo } from './peer.js';
import type { ServerName } from './scenarios.js';
import { predictStatus, startNodeServer, type Server } from './server-process.js';

/** API_RATE_LIMIT_PER_SECOND of the API servers under load: the largest the configuration accepts. */
export const UNREACHED_RATE_LIMIT = 1_000_000;

/** The API variants: server name, LOG_LEVEL (the request log is at info) and PREDICTION_LOG_SAMPLE_RATE. */
const API_VARIANTS: readonly (readonly [ServerName, string, number])[] = [
  ['api', 'info', 1],
  ['api-nolog', 'info', 0],
  ['api-quiet', 'warn', 0],
];

export interface StartServersOptions {
  /** The servers to start; the others are left out. */
  readonly needed: ReadonlySet<ServerName>;
  /** The environment of the benchmark's stack, which the servers' own settings are laid over. */
  readonly env: NodeJS.ProcessEnv;
  readonly endpoints: ServiceEndpoints;
  /** Where each server's output goes (`<name>.log`), and where the peer keeps its files. */
  readonly logDir: string;
  readonly dataDir: string;
  /** `--profile DIR`: V8 CPU profiles of the API servers, written when they exit ('' for none). */
  readonly profile: string;
  readonly names: { readonly lr: string; readonly gbt: string };
  /** A request both models must answer 200 before the API counts as ready. */
  readonly probeBody: string;
  /** The training rows for the peer; without them the peer is not started. */
  readonly trainCsv: string | undefined;
}

/**
 * Starts the `needed` servers one after the other, each added to `servers` as soon as it runs (so that the caller
 * closes it whatever happens next). An API server counts as started once both models answer (at most 2 minutes
 * each). Returns what the peer reports of itself, when it was started.
 */
export async function startServers(
  servers: Map<ServerName, Server>,
  options: StartServersOptions,
): Promise<PeerInfo | undefined> {
  const { needed, env, endpoints, logDir, names, probeBody } = options;
  const serverEnv = (logLevel: string, sampleRate: number, port: number): NodeJS.ProcessEnv => ({
    ...env,
    NODE_ENV: 'production',
    LOG_LEVEL: logLevel,
    PREDICTION_LOG_SAMPLE_RATE: String(sampleRate),
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    // The load is one key's: at the default per-key limit (1,000 requests a second) most of it would be answered 429.
    // The limiter stays in the path (its bucket is taken on every request) at a limit the load never reaches.
    API_RATE_LIMIT_PER_SECOND: String(UNREACHED_RATE_LIMIT),
  });
  if (needed.has('bare')) servers.set('bare', await startNodeServer('bare', { kind: 'bare' }, env, logDir));
  for (const [name, level, rate] of API_VARIANTS) {
    if (!needed.has(name)) continue;
    const [port] = await findFreePorts(1);
    const profile = options.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(options.profile)}`] : [];
    const server = await startNodeServer(
      name,
      { kind: 'api', endpoints },
      serverEnv(level, rate, port!),
      logDir,
      profile,
    );
    servers.set(name, server);
    // The pool loads the deployments in the background: wait until both models answer.
    for (const model of [names.lr, names.gbt]) {
      const deadline = performance.now() + 120_000;
      for (;;) {
        const status = await predictStatus(server.url, model, probeBody, server.token);
        if (status === 200) break;
        check(performance.now() < deadline, `${name}: ${model} did not answer 200 within 2 minutes (${status})`);
        await sleep(250);
      }
    }
  }
  if (!needed.has('peer') || !options.trainCsv) return undefined;
  const peerBegan = performance.now();
  console.log('training the FastAPI peer (scikit-learn, one thread) on the same training rows...');
  const peer = await startPeer(options.trainCsv, names, probeBody, options.dataDir);
  servers.set('peer', peer.server);
  const info = peer.info;
  console.log(
    `  peer ready in ${formatMs(performance.now() - peerBegan)}: fit LR ${info.fit_s[names.lr]?.toFixed(1)} s, ` +
      `GBT ${info.fit_s[names.gbt]?.toFixed(1)} s; single-row predict_proba in-process: LR ` +
      `${info.predict_proba_single_row_ms[names.lr]?.toFixed(2)} ms, GBT ` +
      `${info.predict_proba_single_row_ms[names.gbt]?.toFixed(2)} ms`,
  );
  return info;
}
