import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { createHash } from 'node:crypto';
import * as tar from 'tar';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { TaskLine } from '../../core/live-lines.js';
import { ServiceError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import {
  MINIO_SERVER,
  PROJECT_TOOLS_DIR,
  TEMPORAL_CLI,
  candidateDirectories,
  ensureBinary,
  locateBinary,
  locateGo,
  releaseFor,
  type ToolSpec,
} from '../../stack/binaries.js';
import type { ReleaseAsset } from '../../stack/binary-download.js';

const logger = createLogger({ level: 'silent', name: 'binaries-test' });

let scratch: string;
/** A folder standing in for PATH. */
let pathDir: string;
/** The per-user binary cache. */
let toolsDir: string;
/** Where no Go lives. */
let noGoDir: string;

/**
 * The real tool specs under a name that exists nowhere on this machine, so that a binary in the developer's PATH or
 * in the project's .tools/bin can never be found by accident; pin and install hints stay the real ones.
 */
function fakeOf(spec: ToolSpec): ToolSpec {
  // Without its release archives: a unit test never downloads the real ones (those below serve their own).
  const { releases: _releases, ...rest } = spec;
  return { ...rest, binary: `${spec.binary}-test-${randomUUID().slice(0, 8)}` };
}

function writeExecutable(dir: string, name: string, script = '#!/bin/sh\nexit 0\n'): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, script, { mode: 0o755 });
  return file;
}

beforeEach(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-binaries-test-'));
  pathDir = path.join(scratch, 'path');
  toolsDir = path.join(scratch, 'tools');
  noGoDir = path.join(scratch, 'no-go');
  for (const dir of [pathDir, toolsDir, noGoDir]) fs.mkdirSync(dir);
});

afterEach(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

describe('candidateDirectories', () => {
  it('searches PATH first, then the project tools folder, then the per-user cache, without duplicates or blanks', () => {
    const envPath = ['/a', '', '/b', '/a'].join(path.delimiter);
    expect(candidateDirectories(toolsDir, envPath)).toEqual(['/a', '/b', PROJECT_TOOLS_DIR, toolsDir]);
  });
});

describe('locateBinary', () => {
  it('finds an executable on the given PATH', () => {
    const spec = fakeOf(TEMPORAL_CLI);
    const file = writeExecutable(pathDir, spec.binary);
    expect(locateBinary(spec, toolsDir, `${noGoDir}${path.delimiter}${pathDir}`)).toBe(file);
  });

  it('returns undefined when the binary is nowhere', () => {
    expect(locateBinary(fakeOf(TEMPORAL_CLI), toolsDir, pathDir)).toBeUndefined();
  });

  it('skips a file that is not executable, and a folder of that name', () => {
    const spec = fakeOf(MINIO_SERVER);
    fs.writeFileSync(path.join(pathDir, spec.binary), 'not executable', { mode: 0o644 });
    fs.mkdirSync(path.join(noGoDir, spec.binary), { mode: 0o755 });
    // As root, access(X_OK) only needs one x bit: the 0644 file really is not executable for anyone.
    expect(locateBinary(spec, toolsDir, `${noGoDir}${path.delimiter}${pathDir}`)).toBeUndefined();
  });

  it('finds a build in the per-user tools folder', () => {
    const spec = fakeOf(MINIO_SERVER);
    const file = writeExecutable(toolsDir, spec.binary);
    fs.writeFileSync(path.join(toolsDir, `${spec.binary}.package`), `${spec.goPackage}\n`);
    expect(locateBinary(spec, toolsDir, pathDir)).toBe(file);
  });

  it('accepts a cached build without a stamp file (built before stamps existed)', () => {
    const spec = fakeOf(MINIO_SERVER);
    const file = writeExecutable(toolsDir, spec.binary);
    expect(locateBinary(spec, toolsDir, pathDir)).toBe(file);
  });

  it('does not accept a cached build of another pin', () => {
    const spec = fakeOf(TEMPORAL_CLI);
    writeExecutable(toolsDir, spec.binary);
    fs.writeFileSync(path.join(toolsDir, `${spec.binary}.package`), 'github.com/temporalio/cli/cmd/temporal@v1.0.0\n');
    expect(locateBinary(spec, toolsDir, pathDir)).toBeUndefined();
  });

  it('prefers PATH over the cache, and takes a binary on PATH as it is even when the cache is stale', () => {
    const spec = fakeOf(TEMPORAL_CLI);
    const onPath = writeExecutable(pathDir, spec.binary);
    writeExecutable(toolsDir, spec.binary);
    fs.writeFileSync(path.join(toolsDir, `${spec.binary}.package`), 'something-else@v0\n');
    expect(locateBinary(spec, toolsDir, pathDir)).toBe(onPath);
  });
});

describe('locateGo', () => {
  it('finds go in the given search path only', () => {
    const go = writeExecutable(pathDir, 'go');
    expect(locateGo(`${noGoDir}${path.delimiter}${pathDir}`)).toBe(go);
    expect(locateGo(noGoDir)).toBeUndefined();
    expect(locateGo('')).toBeUndefined();
  });
});

describe('ensureBinary', () => {
  it('returns a binary that is already there without looking for Go', async () => {
    const spec = fakeOf(MINIO_SERVER);
    const file = writeExecutable(pathDir, spec.binary);
    await expect(ensureBinary(spec, { toolsDir, logger, envPath: pathDir, goSearchPath: noGoDir })).resolves.toBe(file);
  });

  it.each([TEMPORAL_CLI, MINIO_SERVER])(
    'without the $binary binary and without Go, throws a ServiceError that says how to get it',
    async (real) => {
      const spec = fakeOf(real);
      const error = await ensureBinary(spec, { toolsDir, logger, envPath: pathDir, goSearchPath: noGoDir }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ServiceError);
      const serviceError = error as ServiceError;
      expect(serviceError.service).toBe(real.service);
      expect(serviceError.message).toContain(`\`${spec.binary}\``);
      expect(serviceError.message).toContain(toolsDir);
      expect(serviceError.message).toMatch(/Go is not installed/);
      expect(serviceError.message).toContain('npm run provision');
      expect(serviceError.message).toMatch(/install/i);
      // Nothing was created while failing.
      expect(fs.readdirSync(toolsDir)).toEqual([]);
    },
  );

  it('does not fall back to a stale cached build when Go is missing', async () => {
    const spec = fakeOf(TEMPORAL_CLI);
    writeExecutable(toolsDir, spec.binary);
    fs.writeFileSync(path.join(toolsDir, `${spec.binary}.package`), 'old@v0\n');
    await expect(
      ensureBinary(spec, { toolsDir, logger, envPath: pathDir, goSearchPath: noGoDir }),
    ).rejects.toBeInstanceOf(ServiceError);
  });

  // A stand-in for `go` (a shell script: no real go install runs in unit tests) exercises the build path.
  it('builds with Go into the tools folder and stamps the pin, so the next lookup accepts the build', async () => {
    const spec = fakeOf(MINIO_SERVER);
    const goDir = path.join(scratch, 'go-ok');
    writeExecutable(
      goDir,
      'go',
      `#!/bin/sh\n[ "$1" = install ] && [ "$2" = "${spec.goPackage}" ] || exit 3\necho "go: downloading example.com/m v1" >&2\nprintf '#!/bin/sh\\n' > "$GOBIN/${spec.binary}"\nchmod 755 "$GOBIN/${spec.binary}"\n`,
    );
    const cache = path.join(scratch, 'new-cache');
    const built = await ensureBinary(spec, { toolsDir: cache, logger, envPath: pathDir, goSearchPath: goDir });
    expect(built).toBe(path.join(cache, spec.binary));
    expect(fs.readFileSync(path.join(cache, `${spec.binary}.package`), 'utf8').trim()).toBe(spec.goPackage);
    expect(locateBinary(spec, cache, pathDir)).toBe(built);
  });

  it('reports a failed go install with its last output line, the install hint and the build log', async () => {
    const spec = fakeOf(TEMPORAL_CLI);
    const goDir = path.join(scratch, 'go-fail');
    writeExecutable(goDir, 'go', '#!/bin/sh\necho "go: module lookup disabled by GOPROXY=off" >&2\nexit 1\n');
    const error = await ensureBinary(spec, { toolsDir, logger, envPath: pathDir, goSearchPath: goDir }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ServiceError);
    const serviceError = error as ServiceError;
    expect(serviceError.message).toContain(`go install ${spec.goPackage} failed with code 1`);
    expect(serviceError.message).toContain('GOPROXY=off');
    expect(serviceError.message).toContain('npm run provision');
    expect(serviceError.logFile).toBe(path.join(toolsDir, `${spec.binary}.build.log`));
    expect(fs.readFileSync(serviceError.logFile!, 'utf8')).toContain('GOPROXY=off');
    expect(fs.existsSync(path.join(toolsDir, `${spec.binary}.package`))).toBe(false);
  });
});

describe('the pinned release archives', () => {
  it('pins the Temporal CLI of the Go build (v1.5.1) for Linux and macOS, by sha256; MinIO publishes none', () => {
    for (const platform of ['linux-x64', 'linux-arm64', 'darwin-x64', 'darwin-arm64']) {
      const asset = releaseFor(TEMPORAL_CLI, platform);
      expect(asset?.url).toMatch(
        /^https:\/\/github\.com\/temporalio\/cli\/releases\/download\/v1\.5\.1\/temporal_cli_1\.5\.1_/,
      );
      expect(asset?.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(asset?.member).toBe('temporal');
    }
    expect(TEMPORAL_CLI.goPackage).toMatch(/@v1\.5\.1$/);
    expect(releaseFor(TEMPORAL_CLI, 'win32-x64')).toBeUndefined();
    expect(releaseFor(MINIO_SERVER)).toBeUndefined();
  });
});

describe('ensureBinary with a release archive (a local HTTP server serves fixture archives)', () => {
  let server: http.Server;
  let baseUrl: string;
  /** What the server answers, by path: an archive, or a status code. */
  const routes = new Map<string, Buffer | number>();
  const requests: string[] = [];

  beforeAll(async () => {
    server = http.createServer((request, response) => {
      requests.push(request.url ?? '');
      const route = routes.get(request.url ?? '');
      if (route === undefined || typeof route === 'number') {
        response.writeHead(route ?? 404).end();
        return;
      }
      response.writeHead(200, { 'content-type': 'application/gzip', 'content-length': route.length }).end(route);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    routes.clear();
    requests.length = 0;
  });

  /** A .tar.gz holding the given files (name: content), made with the same tar library that unpacks it. */
  async function archiveOf(files: Record<string, string>): Promise<Buffer> {
    const dir = fs.mkdtempSync(path.join(scratch, 'archive-'));
    for (const [name, content] of Object.entries(files)) {
      fs.writeFileSync(path.join(dir, name), content, { mode: 0o755 });
    }
    const chunks: Buffer[] = [];
    for await (const chunk of tar.c({ gzip: true, cwd: dir, portable: true }, Object.keys(files))) {
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  function serve(name: string, archive: Buffer, sha256 = sha256Of(archive)): ReleaseAsset {
    routes.set(`/${name}`, archive);
    return { url: `${baseUrl}/${name}`, sha256, member: 'temporal' };
  }

  function sha256Of(data: Buffer): string {
    return createHash('sha256').update(data).digest('hex');
  }

  /** A stand-in for Go that builds a script printing "built by go". */
  function fakeGo(spec: ToolSpec): string {
    const goDir = path.join(scratch, `go-${randomUUID().slice(0, 6)}`);
    writeExecutable(
      goDir,
      'go',
      `#!/bin/sh\nprintf '#!/bin/sh\\necho built by go\\n' > "$GOBIN/${spec.binary}"\nchmod 755 "$GOBIN/${spec.binary}"\n`,
    );
    return goDir;
  }

  /** Records what a task line was told, as the terminal would show it. */
  function recordingTask(): { task: (text: string) => TaskLine; events: string[] } {
    const events: string[] = [];
    return {
      events,
      task: (text) => {
        events.push(`start ${text}`);
        return {
          update: (t) => events.push(`update ${t}`),
          succeed: (t) => events.push(`succeed ${t}`),
          fail: (t) => events.push(`fail ${t}`),
        };
      },
    };
  }

  it('downloads, checks the sha256 and installs the executable, without looking for Go', async () => {
    const spec = fakeOf(TEMPORAL_CLI);
    const asset = serve(
      'ok.tar.gz',
      await archiveOf({ temporal: '#!/bin/sh\necho from the release\n', LICENSE: 'MIT' }),
    );
    const { task, events } = recordingTask();
    const binary = await ensureBinary(spec, {
      toolsDir,
      logger,
      envPath: pathDir,
      goSearchPath: noGoDir,
      release: asset,
      task,
    });
    expect(binary).toBe(path.join(toolsDir, spec.binary));
    expect(fs.readFileSync(binary, 'utf8')).toContain('from the release');
    expect(fs.statSync(binary).mode & 0o111).not.toBe(0);
    // Stamped with the pin, so the next lookup takes it; no staging folder or archive left behind.
    expect(locateBinary(spec, toolsDir, pathDir)).toBe(binary);
    expect(fs.readdirSync(toolsDir).sort()).toEqual([spec.binary, `${spec.binary}.package`].sort());
    expect(events.some((e) => e.startsWith('update') && e.includes('downloading the official release'))).toBe(true);
    expect(events.at(-1)).toMatch(
      new RegExp(`^succeed ${spec.binary}: downloaded the official release in \\d+s \\(sha256 checked\\)`),
    );
  });

  it.each([
    ['the archive is not the published one (sha256 mismatch)', 'mismatch'],
    ['the server answers 404', 'missing'],
    ['the server answers 500', 'error'],
    ['the archive holds no such executable', 'no-member'],
    ['the body is not a tar.gz', 'garbage'],
  ])('falls back to building with Go when %s, and installs nothing from the download', async (_what, kind) => {
    const spec = fakeOf(TEMPORAL_CLI);
    const good = await archiveOf({ temporal: '#!/bin/sh\necho from the release\n' });
    const asset: ReleaseAsset =
      kind === 'mismatch'
        ? serve('tampered.tar.gz', good, sha256Of(Buffer.from('something else')))
        : kind === 'no-member'
          ? serve('other.tar.gz', await archiveOf({ README: 'no binary here' }))
          : kind === 'garbage'
            ? serve('garbage.tar.gz', Buffer.from('not an archive at all'))
            : { url: `${baseUrl}/${kind}`, sha256: sha256Of(good), member: 'temporal' };
    if (kind === 'error') routes.set('/error', 500);
    const { task, events } = recordingTask();
    const binary = await ensureBinary(spec, {
      toolsDir,
      logger,
      envPath: pathDir,
      goSearchPath: fakeGo(spec),
      release: asset,
      task,
    });
    expect(fs.readFileSync(binary, 'utf8')).toContain('built by go');
    expect(requests.length).toBeGreaterThan(0);
    expect(events.at(-1)).toMatch(new RegExp(`^succeed ${spec.binary}: built from source`));
    expect(fs.readdirSync(toolsDir).filter((f) => f.includes('download'))).toEqual([]);
  });

  it('without Go, a failed download says both why the download failed and how to install by hand', async () => {
    const spec = fakeOf(TEMPORAL_CLI);
    // A port nothing listens on.
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));
    const release = { url: `http://127.0.0.1:${port}/x.tar.gz`, sha256: '0'.repeat(64), member: 'temporal' };
    const error = await ensureBinary(spec, { toolsDir, logger, envPath: pathDir, goSearchPath: noGoDir, release }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ServiceError);
    expect((error as Error).message).toContain(`the download failed: could not reach 127.0.0.1:${port} (ECONNREFUSED)`);
    expect((error as Error).message).toContain('npm run provision');
    expect(fs.readdirSync(toolsDir)).toEqual([]);
  });

  it('with downloads off, builds from source without asking any server', async () => {
    const spec: ToolSpec = {
      ...fakeOf(TEMPORAL_CLI),
      releases: { [`${process.platform}-${process.arch}`]: serve('unused.tar.gz', await archiveOf({ temporal: 'x' })) },
    };
    const binary = await ensureBinary(spec, {
      toolsDir,
      logger,
      envPath: pathDir,
      goSearchPath: fakeGo(spec),
      downloads: false,
    });
    expect(fs.readFileSync(binary, 'utf8')).toContain('built by go');
    expect(requests).toEqual([]);
  });

  it("uses the spec's archive for this platform when none is given", async () => {
    const spec: ToolSpec = {
      ...fakeOf(TEMPORAL_CLI),
      releases: {
        [`${process.platform}-${process.arch}`]: serve(
          'platform.tar.gz',
          await archiveOf({ temporal: '#!/bin/sh\necho platform\n' }),
        ),
      },
    };
    const binary = await ensureBinary(spec, { toolsDir, logger, envPath: pathDir, goSearchPath: noGoDir });
    expect(fs.readFileSync(binary, 'utf8')).toContain('platform');
    expect(requests).toEqual(['/platform.tar.gz']);
  });
});
