/**
 * Start-up benchmark: how long `npm start` takes to print its ready line, on a fresh data directory (cold) and on
 * one kept from a previous run (warm), and how long SIGTERM takes to stop everything it started.
 *
 *   npm run bench:startup -- --runs 5
 *
 * Each run gets its own data directory under a temporary folder and its own free ports, so the benchmark never
 * collides with a stack that is already running. After every stop it checks that no process of the run is left
 * (its process tree, and any process whose command line names its data directory) and fails loudly if one is.
 *
 * Options: `--launcher npm|tsx` (`npm start`, the user's command, or `node_modules/.bin/tsx stack/start.ts`);
 * `--signal-to group|pid` (the signal to the launcher's whole process group, as a terminal delivers Ctrl-C, or to the
 * launcher's pid only, as `kill PID`, systemd or a CI timeout do); `--signal SIGTERM|SIGINT` (SIGINT to the group is
 * a terminal's Ctrl-C); `--goal-seconds` (warm-start goal, default 10).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { findFreePorts } from '../stack/ports.js';
import { formatMs, formatTable, parseBenchArgs, runBenchmark, writeResultFile, type Metrics } from './harness.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const READY_LINE = /^temporal-mlops is ready in ([\d.]+) s/;
const READY_TIMEOUT_MS = 180_000;
const READYZ_TIMEOUT_MS = 30_000;
/** How long the launcher, and then the rest of its tree, may take to exit before it counts as left behind. */
const STOP_TIMEOUT_MS = 60_000;

const METRIC = {
  ready: 'spawn → ready line',
  selfReported: 'self-reported ready',
  readyz: 'ready line → /readyz 200',
  launcherExit: 'signal → launcher exit',
  stop: 'signal → all exited',
} as const;

// ---------------------------------------------------------------------------------------------------------------
// Processes, from /proc

interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  /** Start time in clock ticks since boot: with the pid, identifies one process even when pids are reused. */
  readonly startTime: string;
  readonly state: string;
  readonly cmdline: string;
}

function readProcess(pid: number): ProcessInfo | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    // cutime cstime priority nice threads itrealvalue starttime ...
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    return { pid, ppid: Number(fields[1]), startTime: fields[19]!, state: fields[0]!, cmdline };
  } catch {
    return undefined; // gone in the meantime
  }
}

function listProcesses(): ProcessInfo[] {
  return fs
    .readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map((entry) => readProcess(Number(entry)))
    .filter((p): p is ProcessInfo => p !== undefined);
}

/** The process `root` and all its descendants, now. */
function processTree(root: number): ProcessInfo[] {
  const all = listProcesses();
  const children = new Map<number, ProcessInfo[]>();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const tree = all.filter((p) => p.pid === root);
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!.pid) ?? []));
  return tree;
}

/** Still running: same pid and start time, and not a zombie (exited, waiting to be reaped). */
function isRunning(p: ProcessInfo): boolean {
  const now = readProcess(p.pid);
  return now !== undefined && now.startTime === p.startTime && now.state !== 'Z';
}

/** Processes of a run still alive: from its last process-tree snapshot, or naming its data directory. */
function leftovers(snapshot: readonly ProcessInfo[], dataDir: string): ProcessInfo[] {
  const found = new Map<number, ProcessInfo>();
  for (const p of snapshot) if (isRunning(p)) found.set(p.pid, readProcess(p.pid) ?? p);
  for (const p of listProcesses()) {
    if (p.pid !== process.pid && p.state !== 'Z' && p.cmdline.includes(dataDir + path.sep)) found.set(p.pid, p);
  }
  return [...found.values()];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------------------
// One `npm start`

type Launcher = 'npm' | 'tsx';
type SignalTarget = 'group' | 'pid';

/** One started stack: the launcher process, its output, and what the stop left behind. */
class StackRun {
  /** Every run not yet stopped, so an aborted benchmark can still stop them. */
  static readonly live = new Set<StackRun>();

  private readonly child: ChildProcess;
  private readonly output: string[] = [];
  private readonly exited: Promise<void>;
  private launcherExited = false;
  private snapshot: ProcessInfo[] = [];
  apiUrl: string;

  private constructor(
    readonly dataDir: string,
    launcher: Launcher,
    env: NodeJS.ProcessEnv,
    apiPort: number,
  ) {
    const [command, args] =
      launcher === 'npm' ? ['npm', ['start']] : [path.join(REPO_ROOT, 'node_modules/.bin/tsx'), ['stack/start.ts']];
    // Its own process group (as a terminal runs a foreground job), so a group signal reaches the whole job.
    this.child = spawn(command, args, { cwd: REPO_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.apiUrl = `http://127.0.0.1:${apiPort}`;
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    void this.exited.then(() => (this.launcherExited = true));
    StackRun.live.add(this);
  }

  /** Spawns the launcher and resolves at its ready line, with the durations measured on the way. */
  static async start(dataDir: string, launcher: Launcher): Promise<{ run: StackRun; metrics: Metrics }> {
    const [temporal, temporalUi, postgres, minio, minioConsole, api] = await findFreePorts(6);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      MLOPS_DATA_DIR: dataDir,
      TEMPORAL_PORT: String(temporal),
      TEMPORAL_UI_PORT: String(temporalUi),
      POSTGRES_PORT: String(postgres),
      MINIO_PORT: String(minio),
      MINIO_CONSOLE_PORT: String(minioConsole),
      API_PORT: String(api),
      LOG_LEVEL: 'info',
      // Start-up and stop only: the demo pipeline would run (and be stopped) in the middle of the measurement.
      MLOPS_DEMO: 'false',
    };
    // The local stack, never an external service someone has configured in this shell.
    for (const key of ['TEMPORAL_ADDRESS', 'DATABASE_URL', 'S3_ENDPOINT']) delete env[key];

    const started = performance.now();
    const run = new StackRun(dataDir, launcher, env, api!);
    const metrics = await new Promise<Metrics>((resolve, reject) => {
      let selfReportedMs: number | undefined;
      const timer = setTimeout(
        () => reject(run.failure(`no ready line within ${READY_TIMEOUT_MS / 1000} s`)),
        READY_TIMEOUT_MS,
      );
      const onLine = (line: string) => {
        run.output.push(line);
        if (run.output.length > 200) run.output.shift();
        if (line.startsWith('{') && line.includes('"ready":true')) {
          try {
            const record = JSON.parse(line) as { ms?: number; api?: string };
            selfReportedMs = record.ms;
            if (record.api) run.apiUrl = record.api;
          } catch {
            // not JSON after all: only the text line decides readiness
          }
        }
        const match = READY_LINE.exec(line);
        if (match) {
          const readyMs = performance.now() - started;
          clearTimeout(timer);
          resolve({ [METRIC.ready]: readyMs, [METRIC.selfReported]: selfReportedMs ?? Number(match[1]) * 1000 });
        }
      };
      readline.createInterface({ input: run.child.stdout! }).on('line', onLine);
      readline.createInterface({ input: run.child.stderr! }).on('line', (line) => {
        run.output.push(`[stderr] ${line}`);
        if (run.output.length > 200) run.output.shift();
      });
      void run.exited.then(() => {
        clearTimeout(timer);
        reject(run.failure(`exited before its ready line (exit code ${run.child.exitCode ?? run.child.signalCode})`));
      });
    });
    return { run, metrics };
  }

  /** Time from now until `GET /readyz` answers 200 (it should at once: the ready line comes after the API). */
  async waitForReadyz(): Promise<number> {
    const started = performance.now();
    let last = 'no answer';
    while (performance.now() - started < READYZ_TIMEOUT_MS) {
      try {
        const response = await fetch(`${this.apiUrl}/readyz`, { signal: AbortSignal.timeout(5_000) });
        await response.arrayBuffer();
        if (response.status === 200) return performance.now() - started;
        last = `HTTP ${response.status}`;
      } catch (error) {
        last = (error as Error).message;
      }
      await sleep(50);
    }
    throw this.failure(`GET ${this.apiUrl}/readyz did not answer 200 within ${READYZ_TIMEOUT_MS / 1000} s (${last})`);
  }

  /**
   * Sends SIGTERM and waits until the launcher and every process of its tree (snapshotted just before the signal)
   * have exited. Throws, after killing them, when any process of the run is left.
   */
  async stop(target: SignalTarget, signal: NodeJS.Signals): Promise<Metrics> {
    this.snapshot = processTree(this.child.pid!);
    const started = performance.now();
    process.kill(target === 'group' ? -this.child.pid! : this.child.pid!, signal);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS)))]);
    clearTimeout(timer);
    const launcherExit = performance.now() - started;
    while (performance.now() - started < launcherExit + STOP_TIMEOUT_MS) {
      if (leftovers(this.snapshot, this.dataDir).length === 0) break;
      await sleep(20);
    }
    const stopped = performance.now() - started;
    const left = leftovers(this.snapshot, this.dataDir);
    StackRun.live.delete(this);
    if (left.length > 0) {
      await killAll(left);
      throw this.failure(
        `${left.length} process(es) still running ${(stopped / 1000).toFixed(1)} s after ${signal} ` +
          `(sent to the ${target === 'group' ? 'process group' : 'pid'} of ` +
          `${this.child.spawnargs.join(' ')}); killed them now:\n` +
          left.map((p) => `  pid ${p.pid} (parent ${p.ppid}): ${p.cmdline.slice(0, 200)}`).join('\n'),
      );
    }
    return { [METRIC.launcherExit]: launcherExit, [METRIC.stop]: stopped };
  }

  /** Last resort when the benchmark aborts: SIGTERM the group, then SIGKILL whatever of the run is left. */
  async kill(): Promise<void> {
    StackRun.live.delete(this);
    const tree = processTree(this.child.pid!);
    if (!this.launcherExited) {
      try {
        process.kill(-this.child.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    const deadline = performance.now() + 20_000;
    while (performance.now() < deadline && leftovers(tree, this.dataDir).length > 0) await sleep(100);
    await killAll(leftovers(tree, this.dataDir));
  }

  private failure(message: string): Error {
    return new Error(
      `${message}\n  data directory ${this.dataDir}\n  last output:\n${this.output
        .slice(-30)
        .map((l) => `    ${l.slice(0, 300)}`)
        .join('\n')}`,
    );
  }
}

/** SIGKILLs each process (only those identified by pid and start time as the run's own). */
async function killAll(processes: readonly ProcessInfo[]): Promise<void> {
  for (const p of processes) {
    if (!isRunning(p)) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  await sleep(200);
}

// ---------------------------------------------------------------------------------------------------------------
// The benchmark

async function main(): Promise<void> {
  const { runs, warmup, options } = parseBenchArgs({
    runs: 5,
    warmup: 1,
    options: { launcher: 'npm', signal: 'SIGTERM', 'signal-to': 'group', 'goal-seconds': '10' },
  });
  const signal = options.signal as NodeJS.Signals;
  if (!['SIGTERM', 'SIGINT'].includes(signal)) throw new Error(`--signal must be SIGTERM or SIGINT, got ${signal}`);
  const launcher = options.launcher as Launcher;
  const signalTo = options['signal-to'] as SignalTarget;
  const goalMs = Number(options['goal-seconds']) * 1000;
  if (!['npm', 'tsx'].includes(launcher)) throw new Error(`--launcher must be npm or tsx, got ${launcher}`);
  if (!['group', 'pid'].includes(signalTo)) throw new Error(`--signal-to must be group or pid, got ${signalTo}`);
  if (!(goalMs > 0)) throw new Error(`--goal-seconds must be a positive number`);

  // The embedded PostgreSQL runs as the `postgres` user when we are root: every folder down to its data
  // directory must be enterable by that user (mkdtemp makes 0700 folders).
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'temporal-mlops-bench-'));
  fs.chmodSync(root, 0o755);
  const newDataDir = () => {
    const dir = fs.mkdtempSync(path.join(root, 'data-'));
    fs.chmodSync(dir, 0o755);
    return dir;
  };

  let aborting = false;
  const abort = async (signal: NodeJS.Signals) => {
    if (aborting) return;
    aborting = true;
    console.error(`\n${signal}: stopping the stacks this benchmark started...`);
    await Promise.allSettled([...StackRun.live].map((r) => r.kill()));
    fs.rmSync(root, { recursive: true, force: true });
    process.exit(130);
  };
  process.on('SIGINT', (signal) => void abort(signal));
  process.on('SIGTERM', (signal) => void abort(signal));

  console.log(
    `start-up benchmark: ${runs} run(s) + ${warmup} warm-up, launcher ${launcher === 'npm' ? '`npm start`' : 'tsx stack/start.ts'}, ` +
      `${signal} to the ${signalTo === 'group' ? 'process group' : 'launcher pid'}; ${os.cpus().length} CPUs, ` +
      `load average ${os
        .loadavg()
        .map((v) => v.toFixed(2))
        .join(' ')}`,
  );

  const progress = (kind: string) => (iteration: { index: number }, m: Metrics) =>
    console.log(
      `  ${kind} #${iteration.index + 1}: ready ${formatMs(m[METRIC.ready]!)} (self-reported ${formatMs(
        m[METRIC.selfReported]!,
      )}), /readyz +${formatMs(m[METRIC.readyz]!)}, stop ${formatMs(m[METRIC.stop]!)} (launcher exited after ${formatMs(
        m[METRIC.launcherExit]!,
      )})`,
    );

  // Start → ready → /readyz → stop, timed; the stop is the teardown so that it always runs.
  const measure = async (dataDir: string): Promise<{ run: StackRun; metrics: Metrics }> => {
    const started = await StackRun.start(dataDir, launcher);
    started.metrics[METRIC.readyz] = await started.run.waitForReadyz();
    return started;
  };
  interface State {
    dataDir: string;
    run?: StackRun;
  }
  const stopRun = async (state: State): Promise<Metrics> => (state.run ? state.run.stop(signalTo, signal) : {});

  // Data directories kept after a cold run, for the warm runs.
  const keptDirs: string[] = [];
  const results = [];
  try {
    console.log('cold start (fresh data directory):');
    results.push(
      await runBenchmark<State>({
        name: 'cold start',
        metric: METRIC.ready,
        runs,
        warmup,
        setup: () => ({ dataDir: newDataDir() }),
        run: async (state) => {
          const { run, metrics } = await measure(state.dataDir);
          state.run = run;
          return metrics;
        },
        teardown: async (state) => {
          const metrics = await stopRun(state);
          keptDirs.push(state.dataDir);
          return metrics;
        },
        onIteration: progress('cold'),
      }),
    );

    console.log('warm start (data directory kept from a previous run):');
    results.push(
      await runBenchmark<State>({
        name: 'warm start',
        metric: METRIC.ready,
        runs,
        warmup,
        setup: async () => {
          const kept = keptDirs.shift();
          if (kept) return { dataDir: kept };
          // More warm runs than cold ones: initialise a directory first, untimed.
          const dataDir = newDataDir();
          const { run } = await measure(dataDir);
          await run.stop(signalTo, signal);
          return { dataDir };
        },
        run: async (state) => {
          const { run, metrics } = await measure(state.dataDir);
          state.run = run;
          return metrics;
        },
        teardown: async (state) => {
          const metrics = await stopRun(state);
          fs.rmSync(state.dataDir, { recursive: true, force: true });
          return metrics;
        },
        onIteration: progress('warm'),
      }),
    );
  } finally {
    await Promise.allSettled([...StackRun.live].map((r) => r.kill()));
    fs.rmSync(root, { recursive: true, force: true });
  }

  const warmMedian = results[1]!.metrics.find((m) => m.metric === METRIC.ready)!.median;
  const pass = warmMedian < goalMs;
  const verdict = `goal: warm start to ready under ${goalMs / 1000} s: ${pass ? 'PASS' : 'FAIL'} (median ${formatMs(warmMedian)})`;
  console.log(`\n${formatTable(results)}\n\n${verdict}`);
  const file = writeResultFile('startup', {
    launcher,
    signal,
    signalTo,
    goal: { metric: `warm start: ${METRIC.ready}`, underMs: goalMs, medianMs: warmMedian, pass },
    results,
  });
  console.log(`results: ${path.relative(process.cwd(), file)}`);
  if (!pass) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`\nstart-up benchmark failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
