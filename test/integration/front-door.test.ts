/**
 * The front door, as a new user meets it: `npm start` as root from a checkout in a private home folder (PostgreSQL's
 * data goes where the `postgres` user can reach it), one platform per data directory (a second start refuses and
 * leaves the first one serving), human lines on a terminal with the JSON logs in `.data/logs/`, and the progress
 * line of a binary build redrawn in place.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DataDirOwner } from '../../stack/data-dir-owner.js';
import {
  READY,
  READY_LINE,
  cleanUpStarts,
  launch,
  pidFiles,
  readyz,
  repoRoot,
  scenario,
  stopCleanly,
  tail,
  waitForExit,
  waitForReady,
  withDatabase,
  type Scenario,
  type StartRun,
} from '../support/npm-start.js';

afterEach(cleanUpStarts);

const ESC = String.fromCharCode(27);
/** Whether the terminal saw a line redrawn in place: log-update erases the previous frame (cursor up, erase line). */
function redrawsInPlace(screen: string): boolean {
  return screen.includes(`${ESC}[1A`) && screen.includes(`${ESC}[2K`);
}
/** A JSON log line as pino writes it. */
const JSON_LOG_LINE = /^\{"level":\d+/m;

/**
 * This working tree (tracked and untracked files that git does not ignore) copied to `<root>/home/temporal-mlops`
 * with `home` at mode 0700, as a checkout in /root is; node_modules is hard-linked (same inodes, reached only
 * through the private folder). The data directory is the default `.data` inside it; PostgreSQL's fallback folder
 * is a scratch stand-in for /var/lib/temporal-mlops.
 */
function privateCheckout(s: Scenario): Scenario & { readonly fallbackDir: string } {
  const home = path.join(s.root, 'home');
  fs.mkdirSync(home);
  fs.chmodSync(home, 0o700);
  const checkout = path.join(home, 'temporal-mlops');
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: repoRoot })
    .toString('utf8')
    .split('\0')
    .filter((f) => f !== '' && fs.existsSync(path.join(repoRoot, f)));
  for (const file of files) {
    fs.mkdirSync(path.dirname(path.join(checkout, file)), { recursive: true });
    fs.copyFileSync(path.join(repoRoot, file), path.join(checkout, file));
  }
  execFileSync('cp', ['-al', path.join(repoRoot, 'node_modules'), path.join(checkout, 'node_modules')]);
  const fallbackDir = path.join(s.root, 'var-lib-temporal-mlops');
  const env: NodeJS.ProcessEnv = { ...s.env, MLOPS_POSTGRES_FALLBACK_DIR: fallbackDir };
  delete env.MLOPS_DATA_DIR;
  return { ...s, cwd: checkout, dataDir: path.join(checkout, '.data'), env, fallbackDir };
}

/** The owner's pid from its claim on the data directory. */
function ownerPid(s: Scenario): number {
  return (JSON.parse(fs.readFileSync(DataDirOwner.fileFor(s.dataDir), 'utf8')) as { pid: number }).pid;
}

/** Stops a start that runs on a pseudo-terminal: SIGTERM to the platform process itself, then `script` ends. */
async function stopOnTerminal(s: Scenario, run: StartRun): Promise<void> {
  process.kill(ownerPid(s), 'SIGTERM');
  const { code } = await waitForExit(run, 30_000);
  expect(code, tail(run)).toBe(0);
  expect(pidFiles(s)).toEqual({});
}

describe('npm start as root, from a checkout in a private home folder', () => {
  it('keeps PostgreSQL data where postgres can reach it, prints human lines on a terminal, and refuses a second start', async () => {
    const base = await scenario({ MLOPS_DEMO: 'false' });
    const s = privateCheckout(base);
    const runningAsRoot = process.getuid?.() === 0;

    // First start, on a terminal.
    const first = launch(s, { terminal: true });
    await waitForReady(first, 180_000);
    expect(await readyz(s)).toMatchObject(READY);
    const screen = first.output();
    expect(screen).toMatch(/Starting temporal-mlops on .*\.data/);
    expect(screen).toMatch(/services ready in \d+s: started/);
    expect(screen).toContain('workers polling mlops-main and mlops-training');
    expect(redrawsInPlace(screen)).toBe(true);
    // No JSON on the terminal: the structured logs are in the data directory's logs folder.
    expect(screen).not.toMatch(JSON_LOG_LINE);
    const logFile = path.join(s.dataDir, 'logs', 'platform.log');
    expect(screen).toContain(logFile);
    const logLines = fs.readFileSync(logFile, 'utf8').trim().split('\n');
    expect(logLines.length).toBeGreaterThan(2);
    for (const line of logLines) expect(() => JSON.parse(line) as unknown, line).not.toThrow();
    expect(logLines.some((l) => l.includes('"msg":"temporal-mlops is ready"'))).toBe(true);
    // The workers run in a child process of their own, with a log file of their own.
    const workerLines = fs
      .readFileSync(path.join(s.dataDir, 'logs', 'workers.log'), 'utf8')
      .trim()
      .split('\n');
    for (const line of workerLines) expect(() => JSON.parse(line) as unknown, line).not.toThrow();
    // The first start made the admin key: shown once on the terminal, never in a log.
    const adminKey = fs.readFileSync(path.join(s.dataDir, 'secrets', 'admin-api-key'), 'utf8').trim();
    expect(adminKey).toMatch(/^mlk_/);
    expect(screen).toContain(`Admin key    ${adminKey}`);
    expect(fs.readFileSync(logFile, 'utf8')).not.toContain(adminKey);

    // PostgreSQL's cluster: under the fallback folder when the postgres user cannot enter the private home.
    const pointer = path.join(s.dataDir, 'postgres.location');
    if (runningAsRoot) {
      expect(fs.existsSync(pointer)).toBe(true);
      const clusterDir = fs.readFileSync(pointer, 'utf8').trim();
      expect(clusterDir.startsWith(`${s.fallbackDir}/temporal-mlops-data-`)).toBe(true);
      expect(fs.existsSync(path.join(clusterDir, 'PG_VERSION'))).toBe(true);
      expect(fs.existsSync(path.join(s.dataDir, 'postgres'))).toBe(false);
      expect(screen).toContain(`PG data      ${clusterDir}`);
      expect(screen).toContain(`cannot enter ${path.join(s.root, 'home')}`);
    } else {
      expect(fs.existsSync(path.join(s.dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
    }
    await withDatabase(s, async (client) => {
      await client.query('create table front_door_marker (value text not null)');
      await client.query('insert into front_door_marker values ($1)', [s.marker]);
    });

    // A second start on the same data directory: refuses at once, names the owner, and touches nothing.
    const servicePids = pidFiles(s);
    const second = launch(s);
    const refused = await waitForExit(second, 30_000);
    expect(refused.code, tail(second)).toBe(1);
    expect(second.output()).toContain(`already running on ${s.dataDir}: pid ${ownerPid(s)}`);
    expect(second.output()).toContain(`API on http://127.0.0.1:${s.ports.api}`);
    expect(second.output()).not.toMatch(READY_LINE);
    expect(pidFiles(s)).toEqual(servicePids);
    expect(await readyz(s)).toMatchObject(READY);

    await stopOnTerminal(s, first);

    // Start again (not on a terminal: JSON lines, as in CI): the same cluster, the data kept.
    const again = launch(s);
    await waitForReady(again, 120_000);
    expect(again.output()).toMatch(JSON_LOG_LINE);
    expect(await readyz(s)).toMatchObject(READY);
    const rows = await withDatabase(s, (client) => client.query('select value from front_door_marker'));
    expect(rows.rows).toEqual([{ value: s.marker }]);
    await stopCleanly(s, again);
  }, 420_000);
});

describe('npm run provision on a terminal', () => {
  it('shows one progress line per binary build, redrawn in place, then where each binary went', async () => {
    const s = await scenario();
    // A stand-in for Go: reports module downloads the way `go install` does, then writes the binary.
    const binDir = path.join(s.root, 'bin');
    const toolsDir = path.join(s.root, 'tools');
    fs.mkdirSync(binDir);
    fs.writeFileSync(
      path.join(binDir, 'go'),
      [
        '#!/bin/sh',
        'name=$(basename "${2%@*}")',
        'for i in 1 2 3 4; do echo "go: downloading example.com/module$i v1.0.$i" >&2; sleep 0.2; done',
        'printf "#!/bin/sh\\necho %s\\n" "$name" > "$GOBIN/$name"',
        'chmod +x "$GOBIN/$name"',
      ].join('\n'),
      { mode: 0o755 },
    );
    const env = {
      ...s.env,
      PATH: `${binDir}:${process.env.PATH ?? ''}`,
      MLOPS_TOOLS_DIR: toolsDir,
      MLOPS_BINARY_DOWNLOADS: 'false',
    };
    const tsx = path.join(repoRoot, 'node_modules', '.bin', 'tsx');
    const child = spawn('script', ['-qfec', `stty cols 160 rows 50; exec ${tsx} stack/provision.ts`, '/dev/null'], {
      cwd: repoRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let screen = '';
    child.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code, screen).toBe(0);
    expect(redrawsInPlace(screen)).toBe(true);
    for (const tool of ['temporal', 'minio']) {
      // Every frame of the live line, then the final one that stays.
      expect(screen).toContain(`${tool}: building from source with go install (once per machine), 1 module downloaded`);
      expect(screen).toContain(
        `${tool}: building from source with go install (once per machine), 4 modules downloaded`,
      );
      expect(screen).toMatch(new RegExp(`✔.* ${tool}: built from source in \\d+s into ${toolsDir}`));
      expect(fs.existsSync(path.join(toolsDir, tool))).toBe(true);
    }
    expect(screen).not.toMatch(JSON_LOG_LINE);
    expect(fs.readFileSync(path.join(s.dataDir, 'logs', 'provision.log'), 'utf8')).toContain(
      '"msg":"building temporal',
    );
  }, 60_000);
});
