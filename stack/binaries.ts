import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ServiceError } from '../core/errors.js';
import type { TaskLine } from '../core/live-lines.js';
import { formatElapsed } from '../core/live-lines.js';
import type { Logger } from '../core/logger.js';
import { DownloadError, downloadReleaseBinary, type ReleaseAsset } from './binary-download.js';

/** A server binary the stack manager needs, and how to build it from source with Go when it is missing. */
export interface ToolSpec {
  readonly service: string;
  readonly binary: string;
  /** `go install` argument; pinned so that every machine builds the same server. */
  readonly goPackage: string;
  /** What a user without Go should do instead. */
  readonly manualInstall: string;
  /**
   * The same pinned version as an official release archive, per `${platform}-${arch}`, with its published sha256:
   * seconds to download instead of minutes to build. Absent where the project publishes no binaries.
   */
  readonly releases?: Readonly<Record<string, ReleaseAsset>>;
}

const TEMPORAL_RELEASE = 'https://github.com/temporalio/cli/releases/download/v1.5.1';

export const TEMPORAL_CLI: ToolSpec = {
  service: 'Temporal',
  binary: 'temporal',
  // v1.5.1 is the newest tag that installs with `go install` (later tags carry a replace directive).
  goPackage: 'github.com/temporalio/cli/cmd/temporal@v1.5.1',
  manualInstall:
    'install the Temporal CLI (https://docs.temporal.io/cli#install) and put `temporal` on PATH, or install Go and run `npm run provision`',
  // The sha256 of each archive as published with the v1.5.1 release (its checksums file).
  releases: {
    'linux-x64': {
      url: `${TEMPORAL_RELEASE}/temporal_cli_1.5.1_linux_amd64.tar.gz`,
      sha256: 'ddc95e08b0b076efd4ea9733a3f488eb7d2be875f8834e616cd2a37358b4852d',
      member: 'temporal',
    },
    'linux-arm64': {
      url: `${TEMPORAL_RELEASE}/temporal_cli_1.5.1_linux_arm64.tar.gz`,
      sha256: 'bd1b0db9f18b051026de8bf6cc1505f2510f14bbb7a8b9a4a91fff46c77454f5',
      member: 'temporal',
    },
    'darwin-x64': {
      url: `${TEMPORAL_RELEASE}/temporal_cli_1.5.1_darwin_amd64.tar.gz`,
      sha256: 'bbb73e2a31135abe50a1f1cdb35030c42961df618e8ce9c60ae89f201540c5d9',
      member: 'temporal',
    },
    'darwin-arm64': {
      url: `${TEMPORAL_RELEASE}/temporal_cli_1.5.1_darwin_arm64.tar.gz`,
      sha256: 'cca01b7ea35ad56e2a328d9ae596bf716bd22313ef63c7a761c88354457c2415',
      member: 'temporal',
    },
  },
};

export const MINIO_SERVER: ToolSpec = {
  service: 'MinIO',
  binary: 'minio',
  // MinIO is distributed as source only (no official binaries to download); this is what @latest resolved to when
  // it was pinned.
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

export interface EnsureBinaryOptions {
  readonly toolsDir: string;
  readonly logger: Logger;
  readonly envPath?: string;
  readonly goSearchPath?: string;
  /** Whether to try the spec's official release archive before building from source (default true). */
  readonly downloads?: boolean;
  /** The archive to try instead of the spec's one for this platform (tests serve a fixture archive). */
  readonly release?: ReleaseAsset;
  /** Shows people what is happening (a line redrawn in place on a terminal). */
  readonly task?: (text: string) => TaskLine;
}

const NO_TASK: TaskLine = { update: () => undefined, succeed: () => undefined, fail: () => undefined };

/** The spec's official release archive for this machine, if the project publishes one. */
export function releaseFor(spec: ToolSpec, platform = `${process.platform}-${process.arch}`): ReleaseAsset | undefined {
  return spec.releases?.[platform];
}

/**
 * Returns the tool's binary. When it is missing: downloads the pinned official release archive where there is one
 * (sha256 checked before it is unpacked), and otherwise, or when that fails (offline, a proxy, a mismatch), builds it
 * into `toolsDir` with `go install` (minutes once; progress is logged every few seconds). Without either, throws a
 * ServiceError that says how to get it.
 */
export async function ensureBinary(spec: ToolSpec, options: EnsureBinaryOptions): Promise<string> {
  const found = locateBinary(spec, options.toolsDir, options.envPath);
  if (found) return found;
  const started = Date.now();
  const task = options.task?.(`${spec.binary}: not found, getting it`) ?? NO_TASK;
  const built = path.join(options.toolsDir, spec.binary);
  const asset = options.release ?? (options.downloads === false ? undefined : releaseFor(spec));
  let downloadFailure: string | undefined;
  if (asset) {
    try {
      await download(spec, asset, built, options, task);
      fs.writeFileSync(stampFile(options.toolsDir, spec), `${spec.goPackage}\n`);
      task.succeed(
        `${spec.binary}: downloaded the official release in ${formatElapsed(Date.now() - started)} (sha256 checked) into ${options.toolsDir}`,
      );
      return built;
    } catch (error) {
      if (!(error instanceof DownloadError)) {
        task.fail(`${spec.binary}: ${(error as Error).message}`);
        throw error;
      }
      downloadFailure = error.message;
      options.logger.warn(
        { tool: spec.binary, err: error },
        `could not download ${spec.binary}, building it from source instead`,
      );
    }
  }
  const go = locateGo(options.goSearchPath ?? options.envPath);
  if (!go) {
    const why = downloadFailure ? ` (the download failed: ${downloadFailure})` : '';
    task.fail(`${spec.binary}: not found, and Go is not installed to build it`);
    throw new ServiceError(
      spec.service,
      `the \`${spec.binary}\` binary was not found on PATH, in ${PROJECT_TOOLS_DIR} or in ${options.toolsDir}, and Go is not installed to build it${why}. To fix: ${spec.manualInstall}.`,
    );
  }
  try {
    await goInstall(go, spec, options, task);
  } catch (error) {
    task.fail(`${spec.binary}: ${(error as Error).message}`);
    throw error;
  }
  if (!isExecutable(built)) {
    task.fail(`${spec.binary}: go install finished but ${built} is not there`);
    throw new ServiceError(spec.service, `go install finished but ${built} is not there`);
  }
  fs.writeFileSync(stampFile(options.toolsDir, spec), `${spec.goPackage}\n`);
  task.succeed(`${spec.binary}: built from source in ${formatElapsed(Date.now() - started)} into ${options.toolsDir}`);
  return built;
}

async function download(
  spec: ToolSpec,
  asset: ReleaseAsset,
  target: string,
  options: EnsureBinaryOptions,
  task: TaskLine,
): Promise<void> {
  options.logger.info({ tool: spec.binary, url: asset.url, into: options.toolsDir }, `downloading ${spec.binary}`);
  task.update(`${spec.binary}: downloading the official release`);
  const started = Date.now();
  const { bytes } = await downloadReleaseBinary(asset, target, {
    onProgress: ({ bytes: done, totalBytes }) => {
      const mb = (n: number) => (n / 1e6).toFixed(1);
      task.update(
        `${spec.binary}: downloading the official release, ${mb(done)}${totalBytes ? ` of ${mb(totalBytes)}` : ''} MB`,
      );
    },
  });
  options.logger.info(
    { tool: spec.binary, bytes, ms: Date.now() - started, sha256: asset.sha256 },
    `downloaded ${spec.binary} into ${options.toolsDir}`,
  );
}

async function goInstall(go: string, spec: ToolSpec, options: EnsureBinaryOptions, task: TaskLine): Promise<void> {
  fs.mkdirSync(options.toolsDir, { recursive: true });
  const logFile = path.join(options.toolsDir, `${spec.binary}.build.log`);
  const log = fs.openSync(logFile, 'w');
  const started = Date.now();
  options.logger.info(
    { tool: spec.binary, package: spec.goPackage, into: options.toolsDir },
    `building ${spec.binary} from source with go install (once per machine; takes a few minutes)`,
  );
  // With Go's module cache warm nothing is downloaded: then the line says only what runs.
  const building = (modules: number) =>
    `${spec.binary}: building from source with go install (once per machine)${modules > 0 ? `, ${modules} module${modules === 1 ? '' : 's'} downloaded` : ''}`;
  task.update(building(0));
  let downloaded = 0;
  let lastLine = '';
  const child = spawn(go, ['install', spec.goPackage], {
    env: { ...process.env, GOBIN: options.toolsDir, GOFLAGS: process.env.GOFLAGS ?? '-buildvcs=false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const onOutput = (chunk: Buffer): void => {
    fs.writeSync(log, chunk);
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.startsWith('go: downloading')) {
        downloaded += 1;
        task.update(building(downloaded));
      }
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
