import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createCliOutput, resolveOutputMode } from '../../core/cli-output.js';
import { LiveLines, formatElapsed } from '../../core/live-lines.js';

const ESC = String.fromCharCode(27);

/** A stand-in terminal (or pipe) that records what is written to it. */
function fakeStream(options: {
  tty: boolean;
  columns?: number;
  rows?: number;
}): NodeJS.WriteStream & { text(): string } {
  let written = '';
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      written += chunk.toString();
      done();
    },
  }) as unknown as NodeJS.WriteStream & { text(): string };
  Object.assign(stream, {
    isTTY: options.tty,
    columns: options.columns ?? (options.tty ? 120 : undefined),
    rows: options.rows ?? (options.tty ? 40 : undefined),
    text: () => written,
  });
  return stream;
}

/** The visible text: escape sequences removed. */
function plain(text: string): string {
  return text.replace(new RegExp(`${ESC}\\[[0-9;?]*[A-Za-z]`, 'g'), '');
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('formatElapsed', () => {
  it.each([
    [0, '0s'],
    [1_499, '1s'],
    [59_400, '59s'],
    [60_000, '1m00s'],
    [125_000, '2m05s'],
    [3_725_000, '62m05s'],
  ])('%d ms reads %s', (ms, text) => {
    expect(formatElapsed(ms)).toBe(text);
  });
});

describe('LiveLines', () => {
  it('on a terminal, redraws a task line in place and leaves its final line in the scrollback', () => {
    const stream = fakeStream({ tty: true });
    const live = new LiveLines(stream);
    const task = live.task('temporal: building, 0 modules');
    task.update('temporal: building, 12 modules');
    live.print('a line printed meanwhile');
    task.succeed('temporal: built in 4m28s');
    live.close();
    const text = stream.text();
    expect(text).toContain(`${ESC}[1A`);
    expect(plain(text)).toContain('temporal: building, 12 modules');
    expect(plain(text)).toContain('a line printed meanwhile');
    expect(plain(text)).toMatch(/✔ temporal: built in 4m28s\n/);
  });

  it('off a terminal (or on one that reports no size), prints a task once and its end once, nothing redrawn', () => {
    for (const stream of [fakeStream({ tty: false }), fakeStream({ tty: true, columns: 0, rows: 0 })]) {
      const live = new LiveLines(stream);
      const task = live.task('minio: building');
      task.update('minio: building, 40 modules');
      task.fail('minio: go install failed');
      expect(stream.text()).toBe('minio: building\n✖ minio: go install failed\n');
    }
  });
});

describe('createCliOutput', () => {
  it('is JSON unless the format says human or says auto on a terminal', () => {
    expect(resolveOutputMode('auto', fakeStream({ tty: true }))).toBe('human');
    expect(resolveOutputMode('auto', fakeStream({ tty: false }))).toBe('json');
    expect(resolveOutputMode('json', fakeStream({ tty: true }))).toBe('json');
    expect(resolveOutputMode('human', fakeStream({ tty: false }))).toBe('human');
  });

  it('in human mode writes the JSON logs to the file, warnings also to the terminal, info only to the file', async () => {
    const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-cli-output-'));
    dirs.push(logDir);
    const stream = fakeStream({ tty: true });
    const output = createCliOutput({
      name: 'test',
      level: 'info',
      format: 'auto',
      logDir,
      logFileName: 'test.log',
      stdout: stream,
    });
    expect(output.mode).toBe('human');
    expect(output.logFile).toBe(path.join(logDir, 'test.log'));
    output.logger.info({ detail: 1 }, 'an info line for the file');
    output.logger.warn({ err: new Error('connection refused') }, 'Temporal not reachable yet');
    output.print('temporal-mlops is ready');
    output.logger.flush();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const screen = plain(stream.text());
    expect(screen).toContain('temporal-mlops is ready');
    expect(screen).toMatch(/WARN.*Temporal not reachable yet: connection refused/);
    expect(screen).not.toContain('an info line for the file');
    expect(screen).not.toContain('{"level"');
    const lines = fs
      .readFileSync(output.logFile!, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string });
    expect(lines.map((l) => l.msg)).toEqual(['an info line for the file', 'Temporal not reachable yet']);
  });

  it('in json mode logs JSON to stdout and draws no task', () => {
    const stream = fakeStream({ tty: false });
    const output = createCliOutput({
      name: 'test',
      level: 'info',
      format: 'auto',
      logDir: '/nonexistent',
      logFileName: 'x.log',
      stdout: stream,
    });
    expect(output.mode).toBe('json');
    expect(output.logFile).toBeUndefined();
    const task = output.task('building');
    task.update('still building');
    task.succeed('built');
    output.print('the banner');
    expect(stream.text()).toBe('the banner\n');
  });
});
