import fs from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { ManagedProcess } from './managed-process.js';
import { waitUntil } from './wait-until.js';

export interface TemporalDevServerOptions {
  readonly binary: string;
  /** Folder for the SQLite state file; workflow histories survive restarts. */
  readonly stateDir: string;
  readonly logFile: string;
  readonly pidFile: string;
  readonly host: string;
  readonly port: number;
  readonly uiPort: number;
  readonly httpPort: number;
  readonly metricsPort: number;
  readonly namespace: string;
  readonly timeoutMs: number;
}

export interface RunningTemporalDevServer {
  readonly address: string;
  readonly uiUrl: string;
  readonly process: ManagedProcess;
}

/**
 * Starts `temporal server start-dev` on a SQLite file and resolves once the frontend answers gRPC calls and the
 * Web UI answers HTTP.
 */
export async function startTemporalDevServer(options: TemporalDevServerOptions): Promise<RunningTemporalDevServer> {
  fs.mkdirSync(options.stateDir, { recursive: true });
  const address = `${options.host}:${options.port}`;
  const uiUrl = `http://${options.host}:${options.uiPort}`;
  const args = [
    'server',
    'start-dev',
    '--db-filename',
    path.join(options.stateDir, 'temporal.db'),
    '--ip',
    options.host,
    '--port',
    String(options.port),
    '--ui-port',
    String(options.uiPort),
    '--http-port',
    String(options.httpPort),
    '--metrics-port',
    String(options.metricsPort),
    '--log-format',
    'json',
    '--log-level',
    'warn',
  ];
  if (options.namespace !== 'default') args.push('--namespace', options.namespace);
  const child = await ManagedProcess.start({
    service: 'Temporal',
    command: options.binary,
    args,
    logFile: options.logFile,
    pidFile: options.pidFile,
    stopSignal: 'SIGTERM',
    stopTimeoutMs: 10_000,
  });
  try {
    await waitUntil(() => frontendAnswers(address), {
      service: 'Temporal',
      timeoutMs: options.timeoutMs,
      process: child,
      logFile: options.logFile,
    });
    await waitUntil(async () => (await fetch(uiUrl, { signal: AbortSignal.timeout(2_000) })).ok, {
      service: 'Temporal UI',
      timeoutMs: options.timeoutMs,
      process: child,
      logFile: options.logFile,
    });
  } catch (error) {
    await child.stop();
    throw error;
  }
  return { address, uiUrl, process: child };
}

async function frontendAnswers(address: string): Promise<boolean> {
  const connection = await Connection.connect({ address, connectTimeout: 1_000 });
  try {
    await connection.workflowService.getSystemInfo({});
    return true;
  } finally {
    await connection.close();
  }
}
