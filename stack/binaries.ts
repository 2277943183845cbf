import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ServiceError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** A server binary the stack manager needs, and how to build it from source with Go when it is missing. */
export interface ToolSpec {
  readonly service: string;
  readonly binary: string;
  /** `go install` argument; pinned so that every machine builds the same server. */
  readonly goPackage: string;
  /** What a user without Go should do instead. */
  readonly manualInstall: string;
}

export const TEMPORAL_CLI: ToolSpec = {
  service: 'Temporal',
  binary: 'temporal',
  // v1.5.1 is the newest tag that installs with `go install` (later tags carry a replace directive).
  goPackage: 'github.com/temporalio/cli/cmd/temporal@v1.5.1',
  manualInstall:
    'install the Temporal CLI (https://docs.temporal.io/cli#install) and put `temporal` on PATH, or install Go and run `npm run provision`',
};

export const MINIO_SERVER: ToolSpec = {
  service: 'MinIO',
  binary: 'minio',
  // MinIO is distributed as source only; this is what @latest resolved to when it was pinned.
  goPackage: 'github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c',
  manualInstall: 'put a `minio` server binary on PATH, or install Go and run `npm run provision`',
};

export const REQUIRED_TOOLS: readonly ToolSpec[] = [TEMPORAL_CLI, MINIO_SERVER];

const projectRoot = fileURLToPath(new URL('..', import.meta.url));
/** The project-local, git-ignored tools folder. */
export const PROJECT_TOOLS_DIR = path.join(projectRoot, '.tools', 'bin');

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Where a binary may already be: PATH first, then the project's tools folder, then the per-user cache. */
export function candidateDirectories(toolsDir: string, envPath = process.env.PATH ?? ''): string[] {
  const fromPath = envPath.split(path.delimiter).filter((d) => d !== '');
  return [...new Set([...fromPath, PROJECT_TOOLS_DIR, toolsDir])];
}

/** Records which pinned package a cached binary was built from. */
function stampFile(toolsDir: string, spec: ToolSpec): string {
  return path.join(toolsDir, `${spec.binary}.package`);
}

/**
 * True unless the per-user cache holds a build of another pin (the pin moved on): that one is rebuilt. Binaries on
 * PATH or in the project folder are the user's choice and are taken as they are.
 */
function isCurrentBuild(file: string, spec: ToolSpec, toolsDir: string): boolean {
  if (path.dirname(file) !== path.resolve(toolsDir)) return true;
  try {
    return fs.readFileSync(stampFile(toolsDir, spec), 'utf8').trim() === spec.goPackage;
  } catch {
    return true;
  }
}

/** The absolute path of the tool's binary, or undefined when it is nowhere to be found. */
export function locateBinary(spec: ToolSpec, toolsDir: string, envPath?: string): string | undefined {
  for (const dir of candidateDirectories(toolsDir, envPath)) {
    const file = path.join(dir, spec.binary);
    if (isExecutable(file) && isCurrentBuild(file, spec, toolsDir)) return file;
  }
  return undefined;
}

/** Go on PATH, or where its official installer puts it. */
export function locateGo(searchPath?: string): string | undefined {
  const dirs = (searchPath ?? `${process.env.PATH ?? ''}${path.delimiter}/usr/local/go/bin`).split(path.delimiter);
  for (const dir of dirs) {
    if (dir && isExecutable(path.join(dir, 'go'))) return path.join(dir, 'go');
  }
  return undefined;
}

/**
 * Returns the tool's binary, building it into `toolsDir` with `go install` when it is missing and Go is present
 * (minutes once; progress is logged every few seconds). Without Go, throws a ServiceError that says how to get it.
 */
export async function ensureBinary(
  spec: ToolSpec,
  options: { toolsDir: string; logger: Logger; envPath?: string; goSearchPath?: string },
): Promise<string> {
  const found = locateBinary(spec, options.toolsDir, options.envPath);
  if (found) return found;
  const go = locateGo(options.goSearchPath ?? options.envPath);
  if (!go) {
    throw new ServiceError(
      spec.service,
      `the \`${spec.binary}\` binary was not found on PATH, in ${PROJECT_TOOLS_DIR} or in ${options.toolsDir}, and Go is not installed to build it. To fix: ${spec.manualInstall}.`,
    );
  }
  await goInstall(go, spec, options);
  const built = path.join(options.toolsDir, spec.binary);
  if (!isExecutable(built)) {
    throw new ServiceError(spec.service, `go install finished but ${built} is not there`);
  }
  fs.writeFileSync(stampFile(options.toolsDir, spec), `${spec.goPackage}\n`);
  return built;
}

async function goInstall(go: string, spec: ToolSpec, options: { toolsDir: string; logger: Logger }): Promise<void> {
  fs.mkdirSync(options.toolsDir, { recursive: true });
  const logFile = path.join(options.toolsDir, `${spec.binary}.build.log`);
  const log = fs.openSync(logFile, 'w');
  const started = Date.now();
  options.logger.info(
    { tool: spec.binary, package: spec.goPackage, into: options.toolsDir },
    `building ${spec.binary} from source with go install (once per machine; takes a few minutes)`,
  );
  let downloaded = 0;
  let lastLine = '';
  const child = spawn(go, ['install', spec.goPackage], {
    env: { ...process.env, GOBIN: options.toolsDir, GOFLAGS: process.env.GOFLAGS ?? '-buildvcs=false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const onOutput = (chunk: Buffer): void => {
    fs.writeSync(log, chunk);
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.startsWith('go: downloading')) downloaded += 1;
      if (line.trim() !== '') lastLine = line.trim();
    }
  };
  child.stdout.on('data', onOutput);
  child.stderr.on('data', onOutput);
  const progress = setInterval(() => {
    const seconds = Math.round((Date.now() - started) / 1000);
    options.logger.info(
      { tool: spec.binary, elapsedSeconds: seconds, modulesDownloaded: downloaded },
      `still building ${spec.binary}: ${downloaded} modules downloaded, ${seconds} s elapsed`,
    );
  }, 15_000);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (exitCode) => resolve(exitCode));
    });
    if (code !== 0) {
      throw new ServiceError(
        spec.service,
        `go install ${spec.goPackage} failed with code ${code ?? 'unknown'}: ${lastLine}. To fix: ${spec.manualInstall}.`,
        logFile,
      );
    }
  } finally {
    clearInterval(progress);
    fs.closeSync(log);
  }
  options.logger.info(
    { tool: spec.binary, seconds: Math.round((Date.now() - started) / 1000) },
    `built ${spec.binary} into ${options.toolsDir}`,
  );
}
