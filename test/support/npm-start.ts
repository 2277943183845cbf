/**
 * Runs `npm start` as a user does, as a child process with its own environment, data directory and free ports (so
 * it never collides with the test stack or a developer's stack), and looks at what it leaves behind. Shared by the
 * process-level tests of the start (start-faults, front-door).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client as MinioClient } from 'minio';
import pg from 'pg';
import { expect } from 'vitest';
import { findFreePorts } from '../../stack/ports.js';
import { PLATFORM_DATABASE, postgresUrl } from '../../stack/postgres-server.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const READY_LINE = /temporal-mlops is ready in [\d.]+ s/;
export const BUCKET = 'mlops-artifacts';
/** What `/readyz` answers when Temporal, PostgreSQL and the bucket all answer. */
export const READY = {
  status: 200,
  body: { status: 'ready', checks: { temporal: { ok: true }, postgres: { ok: true }, s3: { ok: true } } },
};
/** Every process a test starts carries this variable (children inherit it), so leftovers can be found by it. */
const MARKER_VARIABLE = 'MLOPS_START_FAULTS_TEST';

export interface Ports {
  readonly temporal: number;
  readonly temporalUi: number;
  readonly postgres: number;
  readonly minio: number;
  readonly minioConsole: number;
  readonly api: number;
}

export interface Scenario {
  readonly root: string;
  /** The checkout `npm start` runs in: this repository, or a copy of it (privateCheckout). */
  readonly cwd: string;
  readonly dataDir: string;
  readonly marker: string;
  readonly ports: Ports;
  readonly env: NodeJS.ProcessEnv;
}

export interface StartRun {
  readonly child: ChildProcess;
  output(): string;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const scenarios: Scenario[] = [];
const runs: StartRun[] = [];
/** Servers a test opened to take a port; closed by cleanUpStarts. */
export const servers: net.Server[] = [];

/** A fresh scratch folder, data directory (not created yet), free ports and a minimal environment. */
export async function scenario(extraEnv: NodeJS.ProcessEnv = {}): Promise<Scenario> {
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
    // Not the fixed SDK metrics port: scenarios run side by side, and beside a developer's stack.
    WORKER_METRICS_PORT: '0',
    [MARKER_VARIABLE]: marker,
  };
  // Find the binaries where the rest of the test run finds them.
  for (const variable of ['MLOPS_TOOLS_DIR', 'XDG_CACHE_HOME']) {
    if (process.env[variable]) env[variable] = process.env[variable];
  }
  const created = { root, cwd: repoRoot, dataDir, marker, ports, env: { ...env, ...extraEnv } };
  scenarios.push(created);
  return created;
}

/**
 * Runs `npm start` (tsx stack/start.ts) in the scenario's checkout. `terminal: true` runs it on a pseudo-terminal
 * (util-linux `script`, sized 160x50), as a person in a terminal would: stdout is a TTY there.
 */
export function launch(s: Scenario, options: { terminal?: boolean } = {}): StartRun {
  const tsx = path.join(s.cwd, 'node_modules', '.bin', 'tsx');
  // Its own process group, so a "crash" can kill tsx and the Node process it runs, and nothing else.
  const child = options.terminal
    ? spawn('script', ['-qfec', `stty cols 160 rows 50; exec ${tsx} stack/start.ts`, '/dev/null'], {
        cwd: s.cwd,
        env: s.env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      })
    : spawn(tsx, ['stack/start.ts'], { cwd: s.cwd, env: s.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
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

export function tail(run: StartRun, lines = 30): string {
  return run.output().trimEnd().split('\n').slice(-lines).join('\n');
}

export async function waitForReady(run: StartRun, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void run.exit.then((e) => (exited = e));
  while (!READY_LINE.test(run.output())) {
    if (exited) throw new Error(`start exited (${JSON.stringify(exited)}) before it was ready:\n${tail(run)}`);
    if (Date.now() > deadline) throw new Error(`start not ready after ${timeoutMs} ms:\n${tail(run)}`);
    await sleep(100);
  }
}

export async function waitForExit(
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

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Processes (other than this one) whose command line names the data directory or that carry the marker. */
export function leftovers(s: Scenario): { pid: number; cmdline: string }[] {
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
export async function expectNothingLeft(s: Scenario): Promise<void> {
  const deadline = Date.now() + 3_000;
  let left = leftovers(s);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100);
    left = leftovers(s);
  }
  expect(left).toEqual([]);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids recorded in <dataDir>/run, by service. */
export function pidFiles(s: Scenario): Record<string, number> {
  const runDir = path.join(s.dataDir, 'run');
  if (!fs.existsSync(runDir)) return {};
  return Object.fromEntries(
    fs
      .readdirSync(runDir)
      .filter((f) => f.endsWith('.pid'))
      .map((f) => [path.basename(f, '.pid'), Number(fs.readFileSync(path.join(runDir, f), 'utf8').split('\n')[0])]),
  );
}

export async function httpStatus(url: string): Promise<number> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  await response.body?.cancel();
  return response.status;
}

export async function readyz(s: Scenario): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`http://127.0.0.1:${s.ports.api}/readyz`, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, body: await response.json() };
}

export function minio(s: Scenario): MinioClient {
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

export async function withDatabase<T>(s: Scenario, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: postgresUrl('127.0.0.1', s.ports.postgres, PLATFORM_DATABASE) });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** SIGTERM, then a clean exit (code 0) within 20 s that leaves no process and no pid file behind. */
export async function stopCleanly(s: Scenario, run: StartRun): Promise<void> {
  run.child.kill('SIGTERM');
  const { code, signal, ms } = await waitForExit(run, 20_000);
  expect({ code, signal }, tail(run)).toEqual({ code: 0, signal: null });
  expect(ms).toBeLessThan(20_000);
  await expectNothingLeft(s);
  expect(pidFiles(s)).toEqual({});
  expect(fs.existsSync(path.join(s.dataDir, 'run', 'owner.json')), 'the claim on the data directory').toBe(false);
}

/** Kills what a test left running and removes its folders: call it in afterEach. */
export async function cleanUpStarts(): Promise<void> {
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
}
