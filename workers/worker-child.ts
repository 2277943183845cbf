import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { AppConfig, ServiceEndpoints } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { SupervisedRun } from '../stack/supervisor.js';
import type { QueueRole } from './run-workers.js';
import { WORKERS_READY } from './worker-process.js';

/** The entry point the child runs: both queues in one process. */
const ENTRY = fileURLToPath(new URL('./platform-workers.ts', import.meta.url));

/** How long the child may take to start polling (tsx load, workflow bundling, the Temporal connection). */
const READY_TIMEOUT_MS = 120_000;

export interface WorkerChild extends SupervisedRun {
  readonly pid: number | undefined;
}

export interface StartWorkerChildOptions {
  readonly config: AppConfig;
  readonly endpoints: ServiceEndpoints;
  readonly logger: Logger;
  /**
   * Where the child's JSON log lines go: `stdout` (the parent logs JSON on stdout too) or a file (the parent is on a
   * terminal and keeps its logs in files).
   */
  readonly logTo: 'stdout' | { readonly file: string };
  /** The queues the child serves; default both. */
  readonly roles?: readonly QueueRole[];
  /** Variables set on top of the child's environment (tests: a scratch data directory, a log level). */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * The environment of the worker child: the parent's, with the resolved endpoints as external services (the child
 * connects; it never starts a service) and JSON logs on stdout for the parent to route.
 */
function workerChildEnv(endpoints: ServiceEndpoints, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...base,
    LOG_FORMAT: 'json',
    TEMPORAL_ADDRESS: endpoints.temporal.address,
    TEMPORAL_NAMESPACE: endpoints.temporal.namespace,
    DATABASE_URL: endpoints.databaseUrl,
    S3_ENDPOINT: endpoints.s3.endpoint,
    S3_ACCESS_KEY: endpoints.s3.accessKey,
    S3_SECRET_KEY: endpoints.s3.secretKey,
    S3_BUCKET: endpoints.s3.bucket,
    S3_REGION: endpoints.s3.region,
  };
}

/**
 * Starts the main and training workers in a child process (workers/platform-workers.ts) and resolves once it says
 * its queues are polled. `finished` rejects when the child exits without being asked to (a crash, a native abort,
 * a kill); `stop()` asks it to shut down gracefully (SIGTERM: in-flight activities get WORKER_SHUTDOWN_GRACE_SECONDS)
 * and kills it after that bound.
 *
 * Why a child process and not workers restarted in this process: the workers run DuckDB, training threads and ONNX
 * export, native code whose abort (`terminate called ...`) or out-of-memory kill no JavaScript handler can catch. In
 * a child, such a death costs a restart of the workers; the supervising process, which owns Temporal, PostgreSQL
 * and MinIO, stays up. The cost is one more Node process (about 150 MB) and a few seconds per (re)start to load and
 * bundle the workflow code. The child stops by itself when its IPC channel closes, so it never outlives `npm start`.
 */
export async function startWorkerChild(options: StartWorkerChildOptions): Promise<WorkerChild> {
  const { config, endpoints, logger } = options;
  const roles = options.roles ?? ['main', 'training'];
  // The child runs TypeScript like this process does (`node --import tsx`); under another runner, tsx is added.
  const loader = process.execArgv.some((arg) => arg.includes('tsx')) ? [] : ['--import', 'tsx'];
  const child = spawn(process.execPath, [...loader, ...process.execArgv, ENTRY, roles.join(',')], {
    env: { ...workerChildEnv(endpoints), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    // Its own process group: a Ctrl-C on the terminal reaches `npm start` only, which then stops the API before the
    // workers (a second SIGINT would make the child exit without waiting for in-flight activities).
    detached: true,
  });
  const sink = options.logTo === 'stdout' ? undefined : openLog(options.logTo.file);
  const forward = (line: string) => {
    if (line.trim() === '') return;
    if (sink) sink.write(`${line}\n`);
    else process.stdout.write(`${line}\n`);
  };
  readline.createInterface({ input: child.stdout! }).on('line', forward);
  // stderr carries what is not a log line (a native abort's message): kept as a log line of its own.
  readline
    .createInterface({ input: child.stderr! })
    .on('line', (line) => line.trim() !== '' && logger.warn({ workerPid: child.pid, stderr: line }, 'worker stderr'));

  let stopRequested = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  void exited.then(() => sink?.end());
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const finished = exited.then(({ code, signal }) => {
    if (stopRequested && (code === 0 || signal === 'SIGTERM' || signal === 'SIGKILL')) return;
    throw new Error(
      `the worker process ${child.pid} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}`,
    );
  });
  // Observed by the supervisor; a rejection before it looks must not be an unhandled one.
  finished.catch(() => undefined);

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    stopRequested = true;
    child.kill('SIGTERM');
    const graceMs = (config.worker.shutdownGraceSeconds + 15) * 1000;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
    const outcome = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      logger.warn({ workerPid: child.pid, graceMs }, 'the worker process did not stop in time: killing it');
      child.kill('SIGKILL');
      await exited;
    }
  };

  try {
    await spawned;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the worker process did not start polling within ${READY_TIMEOUT_MS / 1000} s`)),
        READY_TIMEOUT_MS,
      );
      child.on('message', (message: unknown) => {
        if ((message as { type?: unknown } | null)?.type === WORKERS_READY) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`the worker process exited before it was ready (${signal ?? `code ${code}`})`));
      });
    });
  } catch (error) {
    await stop();
    throw error;
  }
  logger.info({ workerPid: child.pid }, 'worker process polling');
  return { pid: child.pid, finished, stop };
}

function openLog(file: string): fs.WriteStream {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const stream = fs.createWriteStream(file, { flags: 'a' });
  // A log that cannot be written must not take the platform down.
  stream.on('error', () => undefined);
  return stream;
}
