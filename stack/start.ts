import path from 'node:path';
import { createCliOutput, type CliOutput } from '../core/cli-output.js';
import { loadConfig, type AppConfig } from '../core/config.js';
import { formatElapsed } from '../core/live-lines.js';
import { createLogger } from '../core/logger.js';
import { exitWithError } from '../core/shutdown.js';
import { notificationToken as notificationTokenOf } from '../server/notification-key.js';
import { startApi } from '../server/start-api.js';
import { startDemo, type RunningDemo } from '../demo/session.js';
import { startWorkerChild } from '../workers/worker-child.js';
import { ManagedProcess } from './managed-process.js';
import { startStack, type Stack } from './stack.js';
import { supervise, type Supervisor } from './supervisor.js';

/**
 * `npm start`: the whole platform in one command. Starts (or connects to) Temporal, PostgreSQL and S3, applies
 * migrations, starts the main and training workers and the API in this process, and prints where to look. Ctrl-C
 * or SIGTERM stops the API, then the workers (gracefully), then the services this command started, and only those.
 * On a terminal it prints short human lines and writes its JSON logs to `<data dir>/logs/platform.log`; otherwise
 * (or with LOG_FORMAT=json) it logs JSON lines on stdout.
 */
async function main(): Promise<void> {
  const startedAt = Date.now();
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (error) {
    exitWithError(createLogger({ level: 'info', name: 'start' }), error);
  }
  const output = createCliOutput({
    name: 'start',
    level: config.logLevel,
    format: config.logFormat,
    logDir: path.join(config.dataDir, 'logs'),
    logFileName: 'platform.log',
  });
  const { logger } = output;
  /** A line for people on a terminal; in json mode the log line beside it says the same. */
  const say = (text: string) => {
    if (output.mode === 'human') output.print(text);
  };
  say(`Starting temporal-mlops on ${config.dataDir} (JSON logs in ${output.logFile ?? 'stdout'})`);

  let stack: Stack | undefined;
  // The workers (a child process) and the API (in this process) are supervised: restarted with backoff if they die
  // (stack/supervisor.ts; why the workers run in a child: workers/worker-child.ts). This process owns the services.
  let workers: Supervisor | undefined;
  let apiSupervisor: Supervisor | undefined;
  /** The API's first instance, for the banner; a restarted one listens on the same host and port. */
  let api: StartedApi | undefined;
  let demo: RunningDemo | undefined;
  let stopping = false;
  const stopAll = async () => {
    await demo?.stop();
    await apiSupervisor?.stop().catch((error: unknown) => logger.error({ err: error }, 'API did not close cleanly'));
    await workers?.stop().catch((error: unknown) => logger.error({ err: error }, 'workers did not stop cleanly'));
    if (stack) await stack.stop();
    else await ManagedProcess.stopAll();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: stopping services without waiting for workers');
      void ManagedProcess.stopAll().finally(() => process.exit(130));
      return;
    }
    stopping = true;
    output.close();
    logger.info({ signal }, 'stopping temporal-mlops');
    say('Stopping temporal-mlops: API, then workers, then services (Ctrl-C again to stop at once)');
    stopAll().then(
      () => {
        logger.info('stopped');
        say('Stopped.');
        process.exit(0);
      },
      (error: unknown) => exitWithError(logger, error),
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A bug that escapes every handler ends this process, but never leaves the services it started without an owner:
  // they are stopped (bounded) before the exit, and any still alive at exit get their stop signal synchronously.
  const onFatal = (error: unknown) => {
    logger.fatal({ err: error }, 'fatal error: stopping temporal-mlops');
    if (stopping) return;
    stopping = true;
    output.close();
    const bound = setTimeout(() => process.exit(1), 30_000);
    bound.unref();
    void stopAll()
      .catch(() => undefined)
      .finally(() => process.exit(1));
  };
  process.on('uncaughtException', onFatal);
  process.on('unhandledRejection', onFatal);
  process.on('exit', () => ManagedProcess.signalAllNow());

  /** One step of the start: a live line on a terminal that settles as done or failed. */
  const step = async <T>(text: string, run: () => Promise<T>, done: (value: T) => string): Promise<T> => {
    const task = output.task(text);
    try {
      const value = await run();
      task.succeed(done(value));
      return value;
    } catch (error) {
      task.fail(`${text}: failed`);
      throw error;
    }
  };

  try {
    // With keys, MinIO authenticates its notifications with a token made now (its key is stored once the API is up).
    const notificationToken = config.api.auth === 'keys' ? await notificationTokenOf(config.dataDir) : undefined;
    const notifications = { endpoint: `${localApiUrl(config)}/v1/events/s3`, authToken: notificationToken };
    stack = await step(
      'starting Temporal, PostgreSQL and MinIO',
      () => startStack(config, { logger, ports: 'configured', task: output.task, notifications }),
      (s) =>
        `services ready in ${formatElapsed(Date.now() - startedAt)}: ${s.managed.length > 0 ? `started ${s.managed.join(', ')}` : 'all external'}`,
    );
    if (stopping) return;
    const endpoints = stack.endpoints;
    const workerLogs = output.logFile ? { file: path.join(config.dataDir, 'logs', 'workers.log') } : 'stdout';
    workers = await step(
      'starting the workers',
      () =>
        supervise({
          name: 'workers',
          logger,
          start: () => startWorkerChild({ config, endpoints, logger, logTo: workerLogs }),
        }),
      () => `workers polling ${config.temporal.taskQueue} and ${config.temporal.trainingTaskQueue}`,
    );
    if (stopping) return;
    const owner = stack.owner;
    apiSupervisor = await step(
      'starting the API',
      () =>
        supervise({
          name: 'API',
          logger,
          start: async () => {
            const server = await startApi({
              config,
              endpoints,
              logger,
              ...(notificationToken ? { notificationToken } : {}),
            });
            api ??= server;
            owner.update({ apiUrl: server.url });
            return { finished: server.finished, stop: () => server.close() };
          },
        }),
      () => `API listening on ${api?.url ?? '?'}`,
    );
    if (!api) return;
    if (stopping) return;
    printReady(output, config, stack, api, Date.now() - startedAt);
    // The flight-delay demo (MLOPS_DEMO=false skips it): runs in the background; a failure never stops the platform.
    if (config.demo) {
      demo = startDemo({ config, endpoints: stack.endpoints, apiUrl: api.url, logger, write: (t) => output.print(t) });
    }
  } catch (error) {
    if (stopping) return;
    stopping = true;
    output.close();
    await stopAll().catch(() => undefined);
    exitWithError(logger, error);
  }
}

type StartedApi = Awaited<ReturnType<typeof startApi>>;

/** The API's address as a process on this machine reaches it (a wildcard listen address is reached on loopback). */
function localApiUrl(config: AppConfig): string {
  const { host, port } = config.api;
  const local = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
  return `http://${local.includes(':') && !local.startsWith('[') ? `[${local}]` : local}:${port}`;
}

/** The banner's line on new-data notifications: what the local MinIO sends, or why it sends nothing. */
function notificationLines(stack: Stack, api: StartedApi): string[] {
  const configured = stack.notifications;
  if (!configured) return [];
  const watched = configured.rules.map((r) => `s3://${r.bucket}/${r.prefix}`).join(', ') || 'no readable bucket';
  const missing = configured.missingBuckets.length > 0 ? ` (no bucket ${configured.missingBuckets.join(', ')})` : '';
  const revoked = api.notificationKey === 'revoked' ? ' (its key is revoked: they get 401)' : '';
  return [`  New data     MinIO posts objects created under ${watched}${missing} to /v1/events/s3${revoked}`];
}

/**
 * How the API is guarded, for the banner. The admin key's token is printed on a terminal only, and only when this
 * start made it: JSON logs never carry it (they are shipped and kept), and a later start points at its file.
 */
function accessLines(output: CliOutput, config: AppConfig, api: StartedApi): string[] {
  if (config.api.auth === 'open') {
    return [`  WARNING      API_AUTH=open: anyone who reaches ${api.url} can act with every scope (no API keys)`];
  }
  const key = api.adminKey;
  if (!key) return ['  API keys     required (the admin key could not be checked: see the log)'];
  if (!key.token) return ['  API keys     required; no admin key file here (an operator manages the keys)'];
  if (key.created && output.mode === 'human') {
    return [`  Admin key    ${key.token}`, `               (shown once here; kept in ${key.file}, mode 0600)`];
  }
  return [`  Admin key    in ${key.file} (send it as Authorization: Bearer <key>)`];
}

function printReady(output: CliOutput, config: AppConfig, stack: Stack, api: StartedApi, ms: number): void {
  const { endpoints } = stack;
  const postgresData = stack.postgres?.relocatedBecause
    ? [
        `  PG data      ${stack.postgres.clusterDir} (the postgres user cannot enter ${stack.postgres.relocatedBecause}; recorded in ${config.dataDir}/postgres.location)`,
      ]
    : [];
  const lines = [
    `temporal-mlops is ready in ${(ms / 1000).toFixed(1)} s`,
    `  API          ${api.url}`,
    `  API docs     ${api.url}/docs`,
    ...accessLines(output, config, api),
    ...notificationLines(stack, api),
    `  Temporal UI  ${endpoints.temporal.uiUrl ?? '(external Temporal: use its UI)'}`,
    `  Temporal     ${endpoints.temporal.address} (namespace ${endpoints.temporal.namespace})`,
    `  S3           ${endpoints.s3.endpoint} (bucket ${endpoints.s3.bucket})`,
    `  PostgreSQL   ${endpoints.databaseUrl.replace(/\/\/([^:/]+):[^@]*@/, '//$1:***@')}`,
    ...postgresData,
    `  Data         ${config.dataDir} (service logs in ${config.dataDir}/logs)`,
    ...(output.logFile ? [`  Logs         ${output.logFile} (JSON, this process)`] : []),
    `  Started here ${stack.managed.length > 0 ? stack.managed.join(', ') : 'nothing (all services external)'}`,
    'Press Ctrl-C to stop.',
  ];
  output.logger.info(
    { ready: true, ms, api: api.url, temporalUi: endpoints.temporal.uiUrl, postgresData: stack.postgres?.clusterDir },
    'temporal-mlops is ready',
  );
  output.print(`\n${lines.join('\n')}\n`);
}

void main();
