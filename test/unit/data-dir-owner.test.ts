import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AlreadyRunningError,
  DataDirOwner,
  isLiveOwner,
  processStartTicks,
  type OwnerRecord,
} from '../../stack/data-dir-owner.js';

let dataDir: string;
const children: { kill(): void }[] = [];

beforeEach(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-owner-test-'));
});

afterEach(() => {
  for (const child of children.splice(0)) child.kill();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** A claim as another process would have written it. */
function writeClaim(record: OwnerRecord | string): void {
  const file = DataDirOwner.fileFor(dataDir);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, typeof record === 'string' ? record : `${JSON.stringify(record)}\n`);
}

/** A live process that is not this one (a sleeping child). */
function liveOther(): OwnerRecord {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  const pid = child.pid!;
  return {
    pid,
    startTicks: processStartTicks(pid),
    startedAt: '2026-12-07T00:00:00.000Z',
    apiUrl: 'http://127.0.0.1:3999',
  };
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const result = spawnSync('sh', ['-c', 'echo $$']);
  return Number(result.stdout.toString().trim());
}

describe('DataDirOwner', () => {
  it('claims a free data directory, records pid and start time, and releases it', () => {
    const owner = DataDirOwner.claim(dataDir);
    const record = JSON.parse(fs.readFileSync(owner.file, 'utf8')) as OwnerRecord;
    expect(record.pid).toBe(process.pid);
    expect(record.startTicks).toBe(processStartTicks(process.pid));
    owner.update({ apiUrl: 'http://127.0.0.1:3000' });
    expect(JSON.parse(fs.readFileSync(owner.file, 'utf8'))).toMatchObject({
      pid: process.pid,
      apiUrl: 'http://127.0.0.1:3000',
    });
    owner.release();
    expect(fs.existsSync(owner.file)).toBe(false);
    owner.release();
  });

  it('refuses a directory that a live process holds, naming it, and leaves its claim alone', () => {
    const other = liveOther();
    writeClaim(other);
    const before = fs.readFileSync(DataDirOwner.fileFor(dataDir), 'utf8');
    let error: unknown;
    try {
      DataDirOwner.claim(dataDir);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AlreadyRunningError);
    expect((error as Error).message).toContain(
      `already running on ${dataDir}: pid ${other.pid}, API on http://127.0.0.1:3999`,
    );
    expect(fs.readFileSync(DataDirOwner.fileFor(dataDir), 'utf8')).toBe(before);
  });

  it('takes over the claim of a process that is gone', () => {
    writeClaim({ pid: deadPid(), startTicks: 1, startedAt: '2026-12-07T00:00:00.000Z' });
    const owner = DataDirOwner.claim(dataDir);
    expect((JSON.parse(fs.readFileSync(owner.file, 'utf8')) as OwnerRecord).pid).toBe(process.pid);
    owner.release();
  });

  it('takes over a claim whose pid now belongs to another process (another start time)', () => {
    const other = liveOther();
    writeClaim({ ...other, startTicks: (other.startTicks ?? 0) + 1 });
    expect(isLiveOwner({ ...other, startTicks: (other.startTicks ?? 0) + 1 })).toBe(false);
    expect(isLiveOwner(other)).toBe(true);
    DataDirOwner.claim(dataDir).release();
  });

  it('takes over a half-written claim', () => {
    writeClaim('{"pid":12');
    DataDirOwner.claim(dataDir).release();
  });

  it('does not remove a claim that another process holds when releasing', () => {
    const owner = DataDirOwner.claim(dataDir);
    const other = liveOther();
    writeClaim(other);
    owner.release();
    expect(fs.existsSync(owner.file)).toBe(true);
  });
});
