/**
 * Soak: the predict API under load for a minute with every log on, and many pipeline runs at once; then the
 * invariants a long-running platform must keep (issue 15, Reliability 7).
 *
 *   npm run bench:soak                                   # 60 s of serving, 20 concurrent pipeline runs
 *   npm run bench:soak -- --seconds 10 --runs 4          # a quick check
 *
 * It starts its own stack (random ports, temporary data directory; stopped at the end) and the main and training
 * workers in this process, and the API in a child process exactly as `npm run api` builds it (`startApi`,
 * NODE_ENV=production, API keys, the request log at info to a file, the prediction log at sample rate 1, its admin
 * key reported to this process), run with `--expose-gc` so memory can be read after a full collection.
 *
 * - Serving (`--parts serving`): the demo's model (`runFlightsDemo`: gradient-boosted trees on January–March 2001),
 *   deployed; the workers are stopped. The load carries a dedicated key with the `predict` scope, created through
 *   `POST /v1/keys` with the admin key; the per-key limit is set explicitly (`--rate-limit`, API_RATE_LIMIT_PER_SECOND,
 *   default 1,000,000 a second: the limiter takes a token on every request and never refuses one at this load). A
 *   ramp (`--ramp 8,16,32,64`, `--ramp-seconds 5` each) finds the peak concurrency (the most requests a second;
 *   `--connections N` skips it), then `--warmup-seconds` of load and `--seconds` of measured load at that
 *   concurrency, single-instance requests cycling through 1,000 distinct bodies (bench/serving/request-data.ts).
 *   Every answer other than 2xx, socket error and timeout counts as failed. The API's RSS and heap are read at the
 *   start, after the warm-up and at the end (each after a full GC, the prediction log drained) and every
 *   `--sample-seconds` in between; the prediction log's rows offered, written, dropped and found in the table are
 *   counted.
 * - Pipelines (`--parts pipeline`): `--runs` runs of the demo's pipeline on a one-week slice of its data (the demo
 *   test's: a 20-iteration model), over `--pipelines` pipelines (default one each), started at once
 *   (bench/soak/pipeline-soak.ts), then the registry's and metadata's consistency (bench/soak/consistency.ts).
 *
 * It prints each invariant as PASS or FAIL, writes `bench/results/soak-<timestamp>.json` and exits non-zero when
 * one fails.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { loadConfig, type AppConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { runFlightsDemo } from '../demo/flights.js';
import { findFreePorts } from '../stack/ports.js';
import { startStack } from '../stack/stack.js';
import { openStorage } from '../storage/open-storage.js';
import { startWorkers } from '../workers/run-workers.js';
import { check, formatMs, loadAverage, writeResultFile } from './harness.js';
import { releaseHeld, type Held } from './serving/platform.js';
import { prepareRequests } from './serving/request-data.js';
import { authHeaders, JSON_HEADERS, predictStatus, startNodeServer, type Server } from './serving/server-process.js';
import { checkConsistency } from './soak/consistency.js';
import { formatInvariants, invariant, type Invariant } from './soak/invariants.js';
import { parseSoakOptions, type SoakOptions } from './soak/options.js';
import { runPipelineSoak, type PipelineSoakResult } from './soak/pipeline-soak.js';
import { printPipelines, printServing } from './soak/report.js';
import { runServingSoak, type ServingSoakResult } from './soak/serving-soak.js';

const MIB = 2 ** 20;

/** The API under soak, in a child process, answering 200 for `deployment` (when given) before it counts as started. */
async function startSoakApi(
  held: Held,
  env: NodeJS.ProcessEnv,
  options: SoakOptions,
  logDir: string,
  probe: { deployment: string; body: string } | undefined,
): Promise<Server> {
  const apiEnv: NodeJS.ProcessEnv = {
    ...env,
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    PREDICTION_LOG_SAMPLE_RATE: '1',
    API_HOST: '127.0.0.1',
    API_PORT: String((await findFreePorts(1))[0]),
    API_RATE_LIMIT_PER_SECOND: String(options.rateLimit),
  };
  const endpoints = held.stack!.endpoints;
  const server = await startNodeServer('api', { kind: 'api', endpoints }, apiEnv, logDir, ['--expose-gc']);
  held.servers.set('api', server);
  check(server.token !== undefined, 'the API reported no admin key');
  if (probe) {
    const deadline = performance.now() + 120_000;
    for (;;) {
      const status = await predictStatus(server.url, probe.deployment, probe.body, server.token);
      if (status === 200) break;
      check(
        performance.now() < deadline,
        `the API did not answer ${probe.deployment} with 200 in 2 minutes (${status})`,
      );
      await sleep(250);
    }
  }
  return server;
}

/** Creates an API key with the `predict` scope only, through the API with its admin key; returns its token. */
async function createLoadKey(server: Server): Promise<string> {
  const response = await fetch(`${server.url}/v1/keys`, {
    method: 'POST',
    headers: { ...JSON_HEADERS, ...authHeaders(server.token) },
    body: JSON.stringify({ name: 'soak-load', scopes: ['predict'] }),
  });
  const body = (await response.json()) as { token?: string };
  check(response.status === 201 && typeof body.token === 'string', `creating the load key: ${response.status}`);
  return body.token;
}

/** Lines the API logged at error level or above, and the size of its log. */
function apiLogErrors(file: string): { lines: number; errors: string[]; bytes: number } {
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n').filter((l) => l.length > 0);
  const errors = lines.filter((l) => /"level":(5\d|6\d)\b/.test(l) || /^(Error|TypeError|RangeError)\b/.test(l));
  return { lines: lines.length, errors, bytes: Buffer.byteLength(text) };
}

async function produceServedModel(held: Held, config: AppConfig, dataDir: string) {
  const endpoints = held.stack!.endpoints;
  const client = new Client({ connection: held.connection!, namespace: endpoints.temporal.namespace });
  const began = performance.now();
  const report = await runFlightsDemo(
    {
      client,
      storage: held.storage!,
      taskQueue: config.temporal.taskQueue,
      trainingTaskQueue: config.temporal.trainingTaskQueue,
      links: { namespace: endpoints.temporal.namespace },
    },
    { trigger: 'bench-soak' },
  );
  const { result } = report;
  check(result.outcome === 'deployed', `the demo's outcome is ${result.outcome}, expected deployed`);
  console.log(
    `  demo model ${result.model.modelName} v${result.model.version} deployed, AUC ${result.metrics.auc?.toFixed(4)} ` +
      `(${formatMs(performance.now() - began)})`,
  );
  const version = await held.storage!.registry.getVersionById(result.model.versionId);
  check(version !== undefined, 'the demo version is not in the registry');
  const requests = await prepareRequests(path.join(dataDir, 'duckdb'), version, 1, undefined);
  return { deployment: result.deployment?.deploymentName ?? result.model.modelName, bodies: requests.singleBodies };
}

async function main(): Promise<void> {
  const options = parseSoakOptions();
  const loadAtStart = loadAverage();
  console.log(
    `${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
      `Node ${process.version}, ${new Date().toISOString()}, load average at start ${loadAtStart.join(' ')}`,
  );
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-soak-'));
  fs.chmodSync(dataDir, 0o755);
  const logDir = path.join(dataDir, 'logs');
  fs.mkdirSync(logDir);
  fs.mkdirSync(path.join(dataDir, 'duckdb'));
  const logger = createLogger({ level: 'warn', name: 'bench-soak' });
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', MLOPS_DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  for (const key of ['TEMPORAL_ADDRESS', 'DATABASE_URL', 'S3_ENDPOINT']) delete env[key];
  const config = loadConfig(env);
  const workerConfig = { ...config, dataDir: path.join(dataDir, 'worker') };

  const held: Held = { servers: new Map() };
  const invariants: Invariant[] = [];
  let serving: ServingSoakResult | undefined;
  let pipelines: PipelineSoakResult | undefined;
  let apiLog: ReturnType<typeof apiLogErrors> | undefined;
  try {
    const began = performance.now();
    held.stack = await startStack(config, { logger, ports: 'random' });
    const endpoints = held.stack.endpoints;
    console.log(`stack ready in ${formatMs(performance.now() - began)}`);
    held.connection = await Connection.connect({ address: endpoints.temporal.address });
    const storage = (held.storage = openStorage(endpoints, { logger, applicationName: 'bench-soak', poolSize: 8 }));
    await storage.artifacts.ensureBucket();
    const start = () =>
      startWorkers({ config: workerConfig, endpoints, logger, roles: ['main', 'training'] }).then((w) => {
        held.workers = w;
      });
    await start();

    let api: Server;
    if (options.parts.has('serving')) {
      console.log('producing the served model with the demo pipeline:');
      const served = await produceServedModel(held, config, dataDir);
      // As in the serving benchmark: nothing but the API and the stack work during the load.
      await held.workers?.shutdown();
      held.workers = undefined;
      api = await startSoakApi(held, env, options, logDir, { deployment: served.deployment, body: served.bodies[0]! });
      const loadToken = await createLoadKey(api);
      console.log(
        `\nserving soak on ${served.deployment}: API pid ${api.pid}, load key "soak-load" (predict scope), ` +
          `API_RATE_LIMIT_PER_SECOND=${options.rateLimit}`,
      );
      serving = await runServingSoak(
        { server: api, loadToken, deployment: served.deployment, bodies: served.bodies, pool: storage.database.pool },
        options,
      );
      invariants.push(...serving.invariants);
      printServing(serving, options);
    } else {
      api = await startSoakApi(held, env, options, logDir, undefined);
    }

    if (options.parts.has('pipeline')) {
      if (!held.workers) await start();
      console.log(`\npipeline soak:`);
      pipelines = await runPipelineSoak(
        {
          client: new Client({ connection: held.connection, namespace: endpoints.temporal.namespace }),
          storage,
          taskQueue: config.temporal.taskQueue,
          trainingTaskQueue: config.temporal.trainingTaskQueue,
        },
        {
          runs: options.runs,
          pipelines: options.pipelines,
          timeoutSeconds: options.runTimeoutSeconds,
          prefix: `soak-${Date.now().toString(36)}`,
        },
      );
      printPipelines(pipelines);
      invariants.push(...(await checkConsistency(storage, pipelines, api)));
    }
    await api.close();
    held.servers.delete('api');
    apiLog = apiLogErrors(api.log);
    invariants.push(
      invariant(
        'API: nothing logged at error level',
        apiLog.errors.length === 0,
        `${apiLog.lines.toLocaleString('en-US')} log lines (${(apiLog.bytes / MIB).toFixed(0)} MiB), ` +
          `${apiLog.errors.length} at error level${apiLog.errors.length ? `: ${apiLog.errors.slice(0, 3).join(' | ')}` : ''}`,
      ),
    );
  } finally {
    await releaseHeld(held);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  console.log(`\nInvariants (load average at start ${loadAtStart.join(' ')}, at the end ${loadAverage().join(' ')}):`);
  console.log(formatInvariants(invariants));
  const file = writeResultFile('soak', {
    options: { ...options, parts: [...options.parts] },
    loadAverage: { start: loadAtStart, end: loadAverage() },
    serving: serving && {
      ramp: serving.ramp,
      connections: serving.connections,
      load: serving.load,
      responses: serving.responses,
      memory: serving.memory,
      predictionLog: serving.predictionLog,
    },
    pipelines: pipelines && {
      landed: pipelines.landed,
      landMs: pipelines.landMs,
      wallMs: pipelines.wallMs,
      runs: pipelines.runs.map((r) => ({
        index: r.index,
        pipeline: r.pipeline,
        runId: r.runId,
        ms: r.ms,
        outcome: r.result?.outcome,
        versionId: r.result?.model.versionId,
        created: r.result?.model.created,
        error: r.error,
      })),
    },
    apiLog: apiLog && { lines: apiLog.lines, bytes: apiLog.bytes, errors: apiLog.errors.slice(0, 20) },
    invariants,
  });
  console.log(`results: ${path.relative(process.cwd(), file)}`);
  if (invariants.length === 0 || invariants.some((i) => !i.ok)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`\nsoak failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
  process.exit(1);
});
