import fs from 'node:fs';
import { ManagedProcess } from './managed-process.js';
import { waitUntil } from './wait-until.js';

export interface MinioServerOptions {
  readonly binary: string;
  readonly storageDir: string;
  readonly logFile: string;
  readonly pidFile: string;
  readonly host: string;
  readonly port: number;
  readonly consolePort: number;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly timeoutMs: number;
  /** More of MinIO's environment (its notification targets: stack/minio-notifications.ts). */
  readonly environment?: Readonly<Record<string, string>>;
}

export interface RunningMinioServer {
  readonly endpoint: string;
  readonly process: ManagedProcess;
}

/** Starts a local MinIO server and resolves once its readiness endpoint answers 200. Objects persist on disk. */
export async function startMinioServer(options: MinioServerOptions): Promise<RunningMinioServer> {
  fs.mkdirSync(options.storageDir, { recursive: true });
  const endpoint = `http://${options.host}:${options.port}`;
  const child = await ManagedProcess.start({
    service: 'MinIO',
    command: options.binary,
    args: [
      'server',
      options.storageDir,
      '--address',
      `${options.host}:${options.port}`,
      '--console-address',
      `${options.host}:${options.consolePort}`,
      '--quiet',
    ],
    env: {
      ...process.env,
      MINIO_ROOT_USER: options.accessKey,
      MINIO_ROOT_PASSWORD: options.secretKey,
      MINIO_UPDATE: 'off',
      MINIO_CALLHOME_ENABLE: 'off',
      ...options.environment,
    },
    logFile: options.logFile,
    pidFile: options.pidFile,
    stopSignal: 'SIGTERM',
    stopTimeoutMs: 10_000,
  });
  try {
    await waitUntil(
      async () => (await fetch(`${endpoint}/minio/health/ready`, { signal: AbortSignal.timeout(2_000) })).ok,
      { service: 'MinIO', timeoutMs: options.timeoutMs, process: child, logFile: options.logFile },
    );
  } catch (error) {
    await child.stop();
    throw error;
  }
  return { endpoint, process: child };
}
