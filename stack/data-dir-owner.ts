import fs from 'node:fs';
import path from 'node:path';
import { ServiceError } from '../core/errors.js';

/** What the owner of a data directory records about itself, so a second start can tell who runs the platform. */
export interface OwnerRecord {
  readonly pid: number;
  /** The process's start time in clock ticks since boot (Linux); a reused pid has another one. */
  readonly startTicks: number | null;
  readonly startedAt: string;
  /** Filled in once the API listens. */
  readonly apiUrl?: string;
}

/**
 * Thrown when another live process already runs the platform on this data directory. Nothing was touched.
 */
export class AlreadyRunningError extends Error {
  override readonly name = 'AlreadyRunningError';
  constructor(
    readonly dataDir: string,
    readonly owner: OwnerRecord,
  ) {
    super(
      `already running on ${dataDir}: pid ${owner.pid}, ${owner.apiUrl ? `API on ${owner.apiUrl}` : 'still starting'}, since ${owner.startedAt}. ` +
        `To fix: use that one, stop it (Ctrl-C in its terminal, or kill ${owner.pid}), or start another with its own MLOPS_DATA_DIR and ports.`,
    );
  }
}

/** The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or null off Linux. */
export function processStartTicks(pid: number): number | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[19]);
  return Number.isFinite(ticks) ? ticks : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, owned by another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the recorded owner is the process that is alive under its pid now (not a later process given that pid). */
export function isLiveOwner(owner: OwnerRecord): boolean {
  if (!Number.isInteger(owner.pid) || owner.pid <= 0 || !isAlive(owner.pid)) return false;
  if (owner.startTicks === null) return true;
  return processStartTicks(owner.pid) === owner.startTicks;
}

function readOwner(file: string): { text: string; owner: OwnerRecord | undefined } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return { text, owner: JSON.parse(text) as OwnerRecord };
  } catch {
    // Half-written by an owner that died while writing it.
    return { text, owner: undefined };
  }
}

/**
 * The claim of one process on a data directory: one platform per data directory. A second start finds the first
 * one alive and refuses before it touches anything (services, pid files, ports); a start that finds the claim of a
 * process that is gone (killed, crashed) takes it over, and only then cleans up the services that process left.
 */
export class DataDirOwner {
  private constructor(
    readonly file: string,
    private record: OwnerRecord,
  ) {}

  /** Where the claim lives. */
  static fileFor(dataDir: string): string {
    return path.join(dataDir, 'run', 'owner.json');
  }

  /**
   * Claims `dataDir` for this process.
   *
   * @throws AlreadyRunningError when a live process holds it.
   */
  static claim(dataDir: string): DataDirOwner {
    const file = DataDirOwner.fileFor(dataDir);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const record: OwnerRecord = {
      pid: process.pid,
      startTicks: processStartTicks(process.pid),
      startedAt: new Date().toISOString(),
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        // O_EXCL: of two starts racing for the same directory, exactly one creates the file.
        fs.writeFileSync(file, `${JSON.stringify(record)}\n`, { flag: 'wx' });
        return new DataDirOwner(file, record);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const existing = readOwner(file);
      if (!existing) continue;
      if (existing.owner && isLiveOwner(existing.owner)) {
        if (existing.owner.pid === process.pid) return new DataDirOwner(file, existing.owner);
        throw new AlreadyRunningError(dataDir, existing.owner);
      }
      // The owner is gone. Remove its claim only if it is still the one just read, so a claim another start made
      // in the meantime is never removed.
      const again = readOwner(file);
      if (again?.text === existing.text) fs.rmSync(file, { force: true });
    }
    throw new ServiceError('temporal-mlops', `could not claim ${dataDir}: ${file} keeps changing`);
  }

  /** Adds what a second start should be told (the API's URL) to the claim. */
  update(details: { apiUrl: string }): void {
    this.record = { ...this.record, ...details };
    const staging = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(staging, `${JSON.stringify(this.record)}\n`);
    fs.renameSync(staging, this.file);
  }

  /** Gives the directory up, if the claim is still this process's. Idempotent. */
  release(): void {
    const current = readOwner(this.file);
    if (current?.owner?.pid === this.record.pid && current.owner.startTicks === this.record.startTicks) {
      fs.rmSync(this.file, { force: true });
    }
  }
}
