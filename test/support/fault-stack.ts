/**
 * A private stack for the fault tests: real Temporal, PostgreSQL and MinIO on fixed free ports under a temporary
 * data directory (never the test run's shared stack, which other files use concurrently), whose services a test can
 * stop (gracefully or with SIGKILL) and start again on the same ports and data, as an operator or a crash would.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type AppConfig, type ServiceEndpoints } from '../../core/config.js';
import { locateBinary, MINIO_SERVER, TEMPORAL_CLI } from '../../stack/binaries.js';
import type { ManagedProcess } from '../../stack/managed-process.js';
import { startMinioServer } from '../../stack/minio-server.js';
import { findFreePorts } from '../../stack/ports.js';
import { startPostgresServer } from '../../stack/postgres-server.js';
import { stackLayout, startStack, type Stack } from '../../stack/stack.js';
import { startTemporalDevServer } from '../../stack/temporal-dev-server.js';
import { testLogger } from './platform.js';

export type FaultService = 'postgres' | 'minio' | 'temporal';

export interface FaultStack {
  readonly endpoints: ServiceEndpoints;
  readonly config: AppConfig;
  /** The temporary folder holding the data directory; removed by close(). */
  readonly root: string;
  /**
   * Stops a service: `SIGKILL` is a crash; otherwise the service's own clean-shutdown signal (PostgreSQL's fast
   * shutdown, MinIO's and Temporal's SIGTERM). Resolves once the process is gone.
   */
  stop(service: FaultService, how: 'clean' | 'SIGKILL'): Promise<void>;
  /** Starts a stopped service again on its ports and data; resolves once it answers. */
  start(service: FaultService): Promise<void>;
  /** Stops everything and removes the data directory. */
  close(): Promise<void>;
}

const STOP_SIGNALS: Record<FaultService, NodeJS.Signals> = {
  postgres: 'SIGINT',
  minio: 'SIGTERM',
  temporal: 'SIGTERM',
};

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface StartedOnPorts {
  root: string;
  dataDir: string;
  config: AppConfig;
  stack: Stack;
  ports: { temporal: number; temporalUi: number; postgres: number; minio: number; minioConsole: number };
}

/**
 * Free ports are picked here and bound by the servers a moment later; another process (a concurrent test file's
 * server, Temporal's own cluster ports) can take one in between, and Temporal then panics on "address already in use".
 * That race is not what the fault tests test: start again, in a new folder, on other ports.
 */
async function startOnFreePorts(attempts = 3): Promise<StartedOnPorts> {
  for (let attempt = 1; ; attempt++) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-faults-'));
    // The embedded PostgreSQL runs as `postgres` when we are root: it must be able to enter the folder.
    fs.chmodSync(root, 0o755);
    const dataDir = path.join(root, 'data');
    const [temporal, temporalUi, postgres, minio, minioConsole] = (await findFreePorts(5)) as [
      number,
      number,
      number,
      number,
      number,
    ];
    const config = loadConfig({
      NODE_ENV: 'test',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      MLOPS_DATA_DIR: dataDir,
      TEMPORAL_PORT: String(temporal),
      TEMPORAL_UI_PORT: String(temporalUi),
      POSTGRES_PORT: String(postgres),
      MINIO_PORT: String(minio),
      MINIO_CONSOLE_PORT: String(minioConsole),
      ...(process.env.MLOPS_TOOLS_DIR ? { MLOPS_TOOLS_DIR: process.env.MLOPS_TOOLS_DIR } : {}),
    });
    try {
      const stack = await startStack(config, { logger: testLogger, ports: 'configured' });
      return { root, dataDir, config, stack, ports: { temporal, temporalUi, postgres, minio, minioConsole } };
    } catch (error) {
      fs.rmSync(root, { recursive: true, force: true });
      if (attempt >= attempts || !/address already in use/.test(String((error as Error)?.message))) throw error;
      testLogger.warn({ err: error, attempt }, 'a fault-stack port was taken while it started; trying other ports');
    }
  }
}

export async function startFaultStack(): Promise<FaultStack> {
  const { root, dataDir, config, stack, ports } = await startOnFreePorts();
  const { temporal, temporalUi, postgres, minio, minioConsole } = ports;
  const layout = stackLayout(dataDir);
  const restarted = new Map<FaultService, ManagedProcess>();
  const timeoutMs = 60_000;

  const pidOf = (service: FaultService): number | undefined => {
    try {
      const pid = Number(fs.readFileSync(layout.pid(service), 'utf8').split('\n')[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };

  const stop = async (service: FaultService, how: 'clean' | 'SIGKILL') => {
    const pid = pidOf(service);
    if (pid === undefined || !isAlive(pid)) throw new Error(`${service} is not running`);
    process.kill(pid, how === 'SIGKILL' ? 'SIGKILL' : STOP_SIGNALS[service]);
    const deadline = Date.now() + 30_000;
    while (isAlive(pid)) {
      if (Date.now() > deadline) throw new Error(`${service} (pid ${pid}) did not stop`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // A SIGKILLed service leaves its pid file; the next start would otherwise try to stop that pid.
    fs.rmSync(layout.pid(service), { force: true });
  };

  const start = async (service: FaultService) => {
    if (service === 'postgres') {
      const server = await startPostgresServer({
        clusterDir: stack.postgres!.clusterDir,
        binaryCopyDir: config.postgresFallbackDir,
        logFile: layout.log('postgres'),
        pidFile: layout.pid('postgres'),
        host: '127.0.0.1',
        port: postgres,
        timeoutMs,
      });
      restarted.set(service, server.process);
    } else if (service === 'minio') {
      const server = await startMinioServer({
        binary: locateBinary(MINIO_SERVER, config.toolsDir)!,
        storageDir: layout.minioStorage,
        logFile: layout.log('minio'),
        pidFile: layout.pid('minio'),
        host: '127.0.0.1',
        port: minio,
        consolePort: minioConsole,
        accessKey: config.s3.accessKey,
        secretKey: config.s3.secretKey,
        timeoutMs,
      });
      restarted.set(service, server.process);
    } else {
      const [httpPort, metricsPort] = (await findFreePorts(2)) as [number, number];
      const server = await startTemporalDevServer({
        binary: locateBinary(TEMPORAL_CLI, config.toolsDir)!,
        stateDir: layout.temporalState,
        logFile: layout.log('temporal'),
        pidFile: layout.pid('temporal'),
        host: '127.0.0.1',
        port: temporal,
        uiPort: temporalUi,
        httpPort,
        metricsPort,
        namespace: config.temporal.namespace,
        timeoutMs,
      });
      restarted.set(service, server.process);
    }
  };

  return {
    endpoints: stack.endpoints,
    config,
    root,
    stop,
    start,
    close: async () => {
      await Promise.allSettled([...restarted.values()].map((p) => p.stop()));
      await stack.stop();
      if (!process.env.KEEP_TEST_DATA) fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
