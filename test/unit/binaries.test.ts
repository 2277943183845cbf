import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
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
  type ToolSpec,
} from '../../stack/binaries.js';

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
  return { ...spec, binary: `${spec.binary}-test-${randomUUID().slice(0, 8)}` };
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
