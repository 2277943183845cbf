import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ServiceError } from '../core/errors.js';

export interface ManagedProcessOptions {
  /** Service name used in messages ("PostgreSQL", "MinIO", ...). */
  readonly service: string;
  readonly command: string;
  readonly args: readonly string[];
  /** stdout and stderr are appended here, so a failed start can point the user at the cause. */
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Run as another user (the PostgreSQL server refuses to run as root). */
  readonly uid?: number;
  readonly gid?: number;
  /** The signal that asks the process for a clean shutdown. */
  readonly stopSignal?: NodeJS.Signals;
  /** How long a clean shutdown may take before SIGKILL. */
  readonly stopTimeoutMs?: number;
  /**
   * Records the pid, so that a process orphaned by a crashed stack manager is recognised (and stopped) by the next
   * start instead of holding its port and data directory.
   */
  readonly pidFile?: string;
}

/**
 * A child process owned by the stack manager: its output goes to a log file, its early exit is observable, and
 * `stop()` asks it to shut down, then kills it after a bound. Only processes started here are ever signalled.
 */
export class ManagedProcess {
  /** Every process started and not yet exited, so a signal during start-up can still stop them all. */
  static readonly live = new Set<ManagedProcess>();

  /** Stops every live managed process (the last resort of a signal handler that has no stack yet). */
  static async stopAll(): Promise<void> {
    await Promise.allSettled([...ManagedProcess.live].map((p) => p.stop()));
  }

  /**
   * Synchronously asks every live managed process to shut down (its stop signal), without waiting: the last resort
   * of a process that is exiting (`process.on('exit')` cannot wait), so no service is left without its owner.
   */
  static signalAllNow(): void {
    for (const managed of ManagedProcess.live) {
      try {
        managed.child.kill(managed.options.stopSignal ?? 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }

  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private exitedState: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  private constructor(
    readonly options: ManagedProcessOptions,
    child: ChildProcess,
  ) {
    this.child = child;
    ManagedProcess.live.add(this);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        ManagedProcess.live.delete(this);
        this.exitedState = { code, signal };
        resolve({ code, signal });
      });
    });
  }

  /**
   * Spawns the process. Rejects when the executable cannot be started at all (missing, not executable); a process
   * that starts and then exits is reported through `exited`.
   */
  static async start(options: ManagedProcessOptions): Promise<ManagedProcess> {
    fs.mkdirSync(path.dirname(options.logFile), { recursive: true });
    const log = fs.openSync(options.logFile, 'a');
    fs.writeSync(log, `\n--- ${new Date().toISOString()} ${options.command} ${options.args.join(' ')}\n`);
    try {
      if (options.pidFile) await stopOrphan(options.pidFile, options.stopSignal ?? 'SIGTERM');
      const child = spawn(options.command, options.args, {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: ['ignore', log, log],
        uid: options.uid,
        gid: options.gid,
        // Its own process group: a Ctrl-C in the terminal reaches the stack manager only, which then stops the
        // workers before the services they depend on.
        detached: true,
      });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', () => resolve());
        child.once('error', (error) =>
          reject(
            new ServiceError(options.service, `could not run ${options.command}: ${error.message}`, undefined, {
              cause: error,
            }),
          ),
        );
      });
      const managed = new ManagedProcess(options, child);
      if (options.pidFile && child.pid !== undefined) {
        fs.mkdirSync(path.dirname(options.pidFile), { recursive: true });
        fs.writeFileSync(options.pidFile, `${child.pid}\n${options.command}\n`);
        const pidFile = options.pidFile;
        void managed.exited.then(() => fs.rmSync(pidFile, { force: true }));
      }
      return managed;
    } finally {
      fs.closeSync(log);
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get hasExited(): boolean {
    return this.exitedState !== undefined;
  }

  /** Describes how the process ended, for error messages. */
  describeExit(): string {
    const state = this.exitedState;
    if (!state) return 'still running';
    return state.signal ? `killed by ${state.signal}` : `exited with code ${state.code ?? 'unknown'}`;
  }

  /** The last lines of the log file, to put the cause of a failed start in front of the user. */
  tailLog(lines = 15): string {
    try {
      const text = fs.readFileSync(this.options.logFile, 'utf8');
      return text.trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** Asks for a clean shutdown, then kills after `stopTimeoutMs`. Idempotent. */
  async stop(): Promise<void> {
    if (this.hasExited) return;
    this.child.kill(this.options.stopSignal ?? 'SIGTERM');
    const timeoutMs = this.options.stopTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const outcome = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout' && !this.hasExited) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops the process recorded in `pidFile` if it is still alive and still runs the recorded command (so a reused pid
 * of an unrelated process is never signalled).
 */
export async function stopOrphan(pidFile: string, signal: NodeJS.Signals): Promise<void> {
  let recorded: string;
  try {
    recorded = fs.readFileSync(pidFile, 'utf8');
  } catch {
    return;
  }
  const [pidText, command] = recorded.split('\n');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || !command || !isAlive(pid)) {
    fs.rmSync(pidFile, { force: true });
    return;
  }
  let cmdline: string;
  try {
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
  } catch {
    return;
  }
  if (cmdline !== command) {
    fs.rmSync(pidFile, { force: true });
    return;
  }
  process.kill(pid, signal);
  const deadline = Date.now() + 15_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  fs.rmSync(pidFile, { force: true });
}
