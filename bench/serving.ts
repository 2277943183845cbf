/**
 * Serving benchmark: online predictions of the flight-delay demo models over HTTP, against the HTTP ceiling of this
 * machine and against FastAPI + scikit-learn, in one run.
 *
 *   npm run bench:serving -- --runs 3 --duration 10
 *
 * Set-up (untimed). It starts its own stack (random ports, temporary data directory) and the main and training workers
 * in this process, and produces the models with the demo itself (`runFlightsDemo`, demo/flights.ts): the demo's
 * gradient-boosted trees (`flights-delay` v1, deployed), a second version of it (seed 1, compared on the AUC threshold
 * only, so it is deployed too: the other side of the hot swap), and a logistic-regression variant of the same
 * definition (`flights-delay-lr`, AUC threshold 0.6: a linear model does not reach the demo's 0.65). The workers are
 * then stopped. Request bodies are rows of the evaluation month (March 2001) computed with the definition's own
 * feature expressions (DuckDB, a fixed pseudo-random sample): 1,000 distinct single-instance bodies, and 16 distinct
 * bodies of 1,000 instances.
 *
 * Servers run in child processes, so that autocannon (in this process) and the server do not share one event loop:
 *
 * - `bare`: a Hono app with one `GET /constant` route returning a constant JSON body shaped like a one-instance
 *   prediction, served by the API's own server wrapper (server/serve.ts, @hono/node-server): the HTTP ceiling; and
 *   `POST /constant`, which parses the predict bodies before answering the same constant (for comparison);
 * - `api`: the API process exactly as `npm run api` builds it (`startApi`, server/start-api.ts: createApp with every
 *   resource, request ids, the request log at info level written to a file, serving with validation and metrics),
 *   with the prediction log at sample rate 1 (every request is written to `prediction_logs` in the stack's Postgres);
 * - `api-nolog`: the same with PREDICTION_LOG_SAMPLE_RATE=0 (the logging cost);
 * - `api-quiet`: the same with the prediction log off and LOG_LEVEL=warn (no request log line either);
 * - `peer`: bench/serving_reference.py, FastAPI + uvicorn (1 worker) + scikit-learn trained on the same training
 *   rows, when Debian's python3-sklearn, python3-fastapi and python3-uvicorn are installed (else it says so, and the
 *   goal is skipped).
 *
 * Each round measures every scenario once, one after the other, each after a warm-up of `--warmup-seconds` on the
 * same target: 32 connections (`--connections`) of single-instance requests cycling through the 1,000 bodies (each
 * server and model), batches of 1,000 instances on 8 connections (`--batch-connections`: the model's queue holds
 * 10,000 rows, so 32 concurrent 1,000-row requests would be refused by design), and a hot swap: while the load runs
 * on the trees, `--swaps` deploys alternate between the two versions through the registry (`deploy` → NOTIFY → the
 * pool loads the version and swaps it in). Latencies are recorded per response (autocannon's own histogram has 1 ms
 * resolution), and the first second of each measured load is left out (see RAMP_MS); a swap's window runs from the
 * deploy call to 250 ms after a probe (one request every 10 ms) first sees the new version answer. After a scenario
 * with the prediction log on, the next one waits until the log's queue is empty (read from `/metrics`). Figures are
 * medians over `--runs` rounds; recorded beside each: CPU use of the server, of the load generator and of the whole
 * machine (/proc), the server's event-loop utilization and longest stall, and the rows per session.run (the
 * micro-batches, from /metrics). The model alone is measured in this process too (onnxruntime-node
 * at batch 1 and 1,024, and the steps of loading it), and the peer reports scikit-learn's one-row predict_proba.
 * `--scenarios` picks scenarios by key; `--profile DIR` writes V8 CPU profiles of the API servers when they exit.
 *
 * It prints a table and a goal line per goal, writes `bench/results/serving-<timestamp>.json` and exits non-zero when
 * a goal fails (a skipped peer is not a failure).
 *
 * This file is the entry point; the parts are in bench/serving/: the options (options.ts), the scenarios
 * (scenarios.ts; steady-load.ts and hot-swap.ts run them, rounds.ts runs the rounds), the servers (servers.ts,
 * server-process.ts, server-child.ts, peer.ts), one measured load (load.ts), the set-up (platform.ts, models.ts,
 * request-data.ts, raw-onnx.ts) and the summaries, goals and result file (summary.ts, goals.ts, report.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { loadAverage } from './harness.js';
import type { ServingContext } from './serving/context.js';
import { DEPLOYMENTS } from './serving/models.js';
import { parseServingOptions } from './serving/options.js';
import { peerUnavailable } from './serving/peer.js';
import { releaseHeld, startPlatform, type Held } from './serving/platform.js';
import { measureRawOnnx } from './serving/raw-onnx.js';
import { reportResults, type ServingMeasurements } from './serving/report.js';
import { prepareRequests } from './serving/request-data.js';
import { runRounds } from './serving/rounds.js';
import { SCENARIOS } from './serving/scenarios.js';
import { startServers } from './serving/servers.js';

async function main(): Promise<void> {
  const options = parseServingOptions();
  const peerMissing = options.peer === 'off' ? 'turned off with --peer off' : peerUnavailable();
  const scenarios = SCENARIOS.filter((s) => options.scenarios.has(s.key) && (s.server !== 'peer' || !peerMissing));

  const loadAtStart = loadAverage();
  console.log(
    `${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
      `Node ${process.version}, ${new Date().toISOString()}, load average at start ${loadAtStart.join(' ')}`,
  );
  console.log(
    peerMissing
      ? `FastAPI + scikit-learn peer: SKIPPED (${peerMissing})`
      : 'FastAPI + scikit-learn peer: available (Debian python3-sklearn, python3-fastapi, python3-uvicorn)',
  );

  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-serving-'));
  fs.chmodSync(dataDir, 0o755);
  const logDir = path.join(dataDir, 'logs');
  fs.mkdirSync(logDir);
  const logger = createLogger({ level: 'warn', name: 'bench-serving' });
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', MLOPS_DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  for (const key of ['TEMPORAL_ADDRESS', 'DATABASE_URL', 'S3_ENDPOINT']) delete env[key];
  const config = loadConfig(env);

  const held: Held = { servers: new Map() };
  let measured: ServingMeasurements;
  try {
    const { endpoints, storage, models } = await startPlatform(held, config, logger, dataDir);
    // Inside DuckDB's work folder: the engine writes nowhere else.
    const duckdbDir = path.join(dataDir, 'duckdb');
    const trainCsv = peerMissing ? undefined : path.join(duckdbDir, 'peer-train.csv');
    const requests = await prepareRequests(duckdbDir, models.gbt[0], options.batchSize, trainCsv);
    const raw = await measureRawOnnx(storage.artifacts, models, requests.instances);
    const peerInfo = await startServers(held.servers, {
      needed: new Set(scenarios.map((s) => s.server)),
      env,
      endpoints,
      logDir,
      dataDir,
      profile: options.profile,
      names: DEPLOYMENTS,
      probeBody: requests.singleBodies[0]!,
      trainCsv,
    });
    const context: ServingContext = {
      options,
      servers: held.servers,
      names: DEPLOYMENTS,
      singleBodies: requests.singleBodies,
      batchBodies: requests.batchBodies,
      deployments: storage.deployments,
      gbtVersions: models.gbt,
    };
    measured = { ...(await runRounds(context, scenarios)), models, raw, peerInfo };
  } finally {
    await releaseHeld(held);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  const goals = reportResults({ options, scenarios, peerMissing, loadAtStart, measured });
  if (goals.some((g) => g.status === 'FAIL')) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`\nserving benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
  process.exit(1);
});
