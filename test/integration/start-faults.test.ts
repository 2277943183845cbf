/**
 * `npm start` as a user runs it: `tsx stack/start.ts` as a child process with its own environment, data directory
 * and free ports (so it never collides with the test stack or a developer's stack). Checks how it fails (bad
 * configuration, a taken port, a missing binary), that a start and a stop leave nothing behind, that data survives a
 * restart, and that a crashed start's orphaned services do not block the next start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client as MinioClient } from 'minio';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { findFreePorts } from '../../stack/ports.js';
import { PLATFORM_DATABASE, postgresUrl } from '../../stack/postgres-server.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const tsx = path.join(repoRoot, 'node_modules', '.bin', 'tsx');
const READY_LINE = /temporal-mlops is ready in [\d.]+ s/;
const BUCKET = 'mlops-artifacts';
/** What `/readyz` answers when Temporal, PostgreSQL and the bucket all answer. */
const READY = {
  status: 200,
  body: { status: 'ready', checks: { temporal: { ok: true }, postgres: { ok: true }, s3: { ok: true } } },
};
/** Every process a test starts carries this variable (children inherit it), so leftovers can be found by it. */
const MARKER_VARIABLE = 'MLOPS_START_FAULTS_TEST';

interface Ports {
  readonly temporal: number;
  readonly temporalUi: number;
  readonly postgres: number;
  readonly minio: number;
  readonly minioConsole: number;
  readonly api: number;
}

interface Scenario {
  readonly root: string;
  readonly dataDir: string;
  readonly marker: string;
  readonly ports: Ports;
  readonly env: NodeJS.ProcessEnv;
}

interface StartRun {
  readonly child: ChildProcess;
  output(): string;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const scenarios: Scenario[] = [];
const runs: StartRun[] = [];
const servers: net.Server[] = [];

/** A fresh scratch folder, data directory (not created yet), free ports and a minimal environment. */
async function scenario(extraEnv: NodeJS.ProcessEnv = {}): Promise<Scenario> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-start-faults-'));
  // mkdtemp makes it private; the embedded PostgreSQL runs as `postgres` and must be able to enter it.
  fs.chmodSync(root, 0o755);
  const dataDir = path.join(root, 'data');
  const [temporal, temporalUi, postgres, minio, minioConsole, api] = (await findFreePorts(6)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const ports = { temporal, temporalUi, postgres, minio, minioConsole, api };
  const marker = randomUUID();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    LANG: 'C.UTF-8',
    NODE_ENV: 'development',
    LOG_LEVEL: 'info',
    MLOPS_DATA_DIR: dataDir,
    TEMPORAL_PORT: String(temporal),
    TEMPORAL_UI_PORT: String(temporalUi),
    POSTGRES_PORT: String(postgres),
    MINIO_PORT: String(minio),
    MINIO_CONSOLE_PORT: String(minioConsole),
    API_PORT: String(api),
    [MARKER_VARIABLE]: marker,
  };
  // Find the binaries where the rest of the test run finds them.
  for (const variable of ['MLOPS_TOOLS_DIR', 'XDG_CACHE_HOME']) {
    if (process.env[variable]) env[variable] = process.env[variable];
  }
  const created = { root, dataDir, marker, ports, env: { ...env, ...extraEnv } };
  scenarios.push(created);
  return created;
}

function launch(s: Scenario): StartRun {
  // Its own process group, so a "crash" can kill tsx and the Node process it runs, and nothing else.
  const child = spawn(tsx, ['stack/start.ts'], {
    cwd: repoRoot,
    env: s.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const run = { child, output: () => output, exit };
  runs.push(run);
  return run;
}

function tail(run: StartRun, lines = 30): string {
  return run.output().trimEnd().split('\n').slice(-lines).join('\n');
}

async function waitForReady(run: StartRun, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void run.exit.then((e) => (exited = e));
  while (!READY_LINE.test(run.output())) {
    if (exited) throw new Error(`start exited (${JSON.stringify(exited)}) before it was ready:\n${tail(run)}`);
    if (Date.now() > deadline) throw new Error(`start not ready after ${timeoutMs} ms:\n${tail(run)}`);
    await sleep(100);
  }
}

async function waitForExit(
  run: StartRun,
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const outcome = await Promise.race([run.exit, timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') throw new Error(`start did not exit within ${timeoutMs} ms:\n${tail(run)}`);
  return { ...outcome, ms: Date.now() - started };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Processes (other than this one) whose command line names the data directory or that carry the marker. */
function leftovers(s: Scenario): { pid: number; cmdline: string }[] {
  const found: { pid: number; cmdline: string }[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      if (cmdline === '') continue; // a zombie or a kernel thread
      let environ = '';
      try {
        environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
      } catch {
        // not ours to read
      }
      if (cmdline.includes(s.dataDir) || environ.split('\0').includes(`${MARKER_VARIABLE}=${s.marker}`)) {
        found.push({ pid, cmdline });
      }
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Leftovers may take a moment to be reaped after their parent exits. */
async function expectNothingLeft(s: Scenario): Promise<void> {
  const deadline = Date.now() + 3_000;
  let left = leftovers(s);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100);
    left = leftovers(s);
  }
  expect(left).toEqual([]);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids recorded in <dataDir>/run, by service. */
function pidFiles(s: Scenario): Record<string, number> {
  const runDir = path.join(s.dataDir, 'run');
  if (!fs.existsSync(runDir)) return {};
  return Object.fromEntries(
    fs
      .readdirSync(runDir)
      .filter((f) => f.endsWith('.pid'))
      .map((f) => [path.basename(f, '.pid'), Number(fs.readFileSync(path.join(runDir, f), 'utf8').split('\n')[0])]),
  );
}

async function httpStatus(url: string): Promise<number> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  await response.body?.cancel();
  return response.status;
}

async function readyz(s: Scenario): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`http://127.0.0.1:${s.ports.api}/readyz`, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, body: await response.json() };
}

function minio(s: Scenario): MinioClient {
  return new MinioClient({
    endPoint: '127.0.0.1',
    port: s.ports.minio,
    useSSL: false,
    accessKey: 'minioadmin',
    secretKey: 'minioadmin',
    region: 'us-east-1',
    pathStyle: true,
  });
}

async function withDatabase<T>(s: Scenario, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: postgresUrl('127.0.0.1', s.ports.postgres, PLATFORM_DATABASE) });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** SIGTERM, then a clean exit (code 0) within 20 s that leaves no process and no pid file behind. */
async function stopCleanly(s: Scenario, run: StartRun): Promise<void> {
  run.child.kill('SIGTERM');
  const { code, signal, ms } = await waitForExit(run, 20_000);
  expect({ code, signal }, tail(run)).toEqual({ code: 0, signal: null });
  expect(ms).toBeLessThan(20_000);
  await expectNothingLeft(s);
  expect(pidFiles(s)).toEqual({});
}

afterEach(async () => {
  for (const run of runs.splice(0)) {
    if (run.child.exitCode === null && run.child.signalCode === null && run.child.pid !== undefined) {
      try {
        process.kill(-run.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  await Promise.allSettled(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  for (const s of scenarios.splice(0)) {
    for (const { pid } of leftovers(s)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // Give the killed processes a moment to release their files before the folder goes.
    const deadline = Date.now() + 5_000;
    while (leftovers(s).length > 0 && Date.now() < deadline) await sleep(100);
    if (!process.env.KEEP_TEST_DATA) fs.rmSync(s.root, { recursive: true, force: true });
  }
});

describe('npm start fails fast and leaves nothing behind', () => {
  it('on a malformed variable: exit code 1, the variables named, nothing created or started', async () => {
    const s = await scenario({ API_PORT: 'abc', S3_BUCKET: 'Not_A_Bucket' });
    const run = launch(s);
    const { code } = await waitForExit(run, 30_000);
    expect(code, tail(run)).toBe(1);
    expect(run.output()).toContain('API_PORT');
    expect(run.output()).toContain('S3_BUCKET');
    expect(run.output()).not.toMatch(READY_LINE);
    expect(fs.existsSync(s.dataDir)).toBe(false);
    await expectNothingLeft(s);
  });

  it('on a taken port: non-zero exit naming the port and its variable, nothing started', async () => {
    const s = await scenario();
    const blocker = net.createServer();
    servers.push(blocker);
    await new Promise<void>((resolve) => blocker.listen(s.ports.postgres, '127.0.0.1', resolve));
    const run = launch(s);
    const { code } = await waitForExit(run, 30_000);
    expect(code, tail(run)).not.toBe(0);
    expect(run.output()).toContain(`port ${s.ports.postgres}`);
    expect(run.output()).toContain('POSTGRES_PORT');
    expect(run.output()).not.toMatch(READY_LINE);
    for (const service of ['postgres', 'minio', 'temporal']) {
      expect(fs.existsSync(path.join(s.dataDir, service)), service).toBe(false);
    }
    await expectNothingLeft(s);
  });

  it('on a missing binary: non-zero exit naming the binary and how to install it, nothing started', async () => {
    const s = await scenario();
    // PATH holds only `node` (tsx needs it): no `temporal`, no `minio`, no `go` there; the tools folder is empty.
    const binDir = path.join(s.root, 'bin');
    const toolsDir = path.join(s.root, 'tools');
    const goDir = path.join(s.root, 'go');
    fs.mkdirSync(binDir);
    fs.mkdirSync(toolsDir);
    fs.symlinkSync(process.execPath, path.join(binDir, 'node'));
    Object.assign(s.env, {
      PATH: binDir,
      MLOPS_TOOLS_DIR: toolsDir,
      // The stack manager also looks for Go in /usr/local/go/bin, which PATH cannot hide. Where Go is found there,
      // this makes its `go install` fail at once (no module downloads) instead of building for minutes.
      GOPROXY: 'off',
      GOTOOLCHAIN: 'local',
      GOPATH: path.join(goDir, 'path'),
      GOMODCACHE: path.join(goDir, 'mod'),
      GOCACHE: path.join(goDir, 'cache'),
    });
    delete s.env.XDG_CACHE_HOME;
    const run = launch(s);
    const { code } = await waitForExit(run, 60_000);
    const output = run.output();
    expect(code, tail(run)).not.toBe(0);
    expect(output).toMatch(/`(temporal|minio)`/);
    expect(output).toMatch(/Temporal CLI|`minio` server binary/);
    expect(output).toContain('npm run provision');
    expect(output).not.toMatch(READY_LINE);
    expect(fs.readdirSync(toolsDir).filter((f) => !f.endsWith('.build.log'))).toEqual([]);
    for (const service of ['postgres', 'minio', 'temporal']) {
      expect(fs.existsSync(path.join(s.dataDir, service)), service).toBe(false);
    }
    await expectNothingLeft(s);
  });
});

describe('npm start brings the platform up and down', () => {
  it('starts cold, serves, stops on SIGTERM leaving nothing; starts warm with the data kept', async () => {
    const s = await scenario();

    // Cold start: initdb, a new Temporal database, an empty MinIO.
    const cold = launch(s);
    await waitForReady(cold, 120_000);
    expect(cold.output()).toContain(`http://127.0.0.1:${s.ports.api}`);
    expect(await readyz(s)).toMatchObject(READY);
    expect(await httpStatus(`http://127.0.0.1:${s.ports.temporalUi}/`)).toBe(200);
    expect(Object.keys(pidFiles(s)).sort()).toEqual(['minio', 'postgres', 'temporal']);
    expect(cold.output()).toContain('registered Temporal search attributes');

    // Data that must survive a restart.
    await withDatabase(s, async (client) => {
      await client.query('create table start_faults_marker (value text not null)');
      await client.query('insert into start_faults_marker values ($1)', [s.marker]);
    });
    await minio(s).putObject(BUCKET, 'start-faults/marker.txt', Buffer.from(s.marker));

    await stopCleanly(s, cold);
    expect(cold.output()).toMatch(/"msg":"stopped"/);

    // Warm start on the same data directory.
    const warm = launch(s);
    await waitForReady(warm, 90_000);
    expect(fs.existsSync(path.join(s.dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
    expect(await readyz(s)).toMatchObject(READY);
    expect(await httpStatus(`http://127.0.0.1:${s.ports.temporalUi}/`)).toBe(200);
    // Temporal kept its namespace state: the search attributes are already there.
    expect(warm.output()).not.toContain('registered Temporal search attributes');
    const rows = await withDatabase(s, (client) => client.query('select value from start_faults_marker'));
    expect(rows.rows).toEqual([{ value: s.marker }]);
    expect(await minio(s).bucketExists(BUCKET)).toBe(true);
    const object = await minio(s).getObject(BUCKET, 'start-faults/marker.txt');
    const chunks: Buffer[] = [];
    for await (const chunk of object) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString('utf8')).toBe(s.marker);

    await stopCleanly(s, warm);
  }, 300_000);

  it('comes up again after a crash, stopping the services the crashed start left running', async () => {
    const s = await scenario();
    const first = launch(s);
    await waitForReady(first, 120_000);
    const orphans = pidFiles(s);
    expect(Object.keys(orphans).sort()).toEqual(['minio', 'postgres', 'temporal']);

    // Crash: SIGKILL tsx and the Node process running start.ts; the services (own process groups) survive.
    process.kill(-first.child.pid!, 'SIGKILL');
    await waitForExit(first, 10_000);
    for (const [service, pid] of Object.entries(orphans)) expect(isAlive(pid), `${service} orphan`).toBe(true);

    const second = launch(s);
    await waitForReady(second, 120_000);
    for (const [service, pid] of Object.entries(orphans)) expect(isAlive(pid), `${service} orphan`).toBe(false);
    const restarted = pidFiles(s);
    expect(Object.keys(restarted).sort()).toEqual(['minio', 'postgres', 'temporal']);
    for (const service of Object.keys(orphans)) expect(restarted[service]).not.toBe(orphans[service]);
    expect(await readyz(s)).toMatchObject(READY);

    await stopCleanly(s, second);
  }, 300_000);
});
