/**
 * `npm start` as a user runs it: `tsx stack/start.ts` as a child process with its own environment, data directory
 * and free ports (so it never collides with the test stack or a developer's stack). Checks how it fails (bad
 * configuration, a taken port, a missing binary), that a start and a stop leave nothing behind, that data survives a
 * restart, and that a crashed start's orphaned services do not block the next start.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BUCKET,
  READY,
  READY_LINE,
  cleanUpStarts,
  expectNothingLeft,
  httpStatus,
  isAlive,
  launch,
  minio,
  pidFiles,
  readyz,
  scenario,
  servers,
  sleep,
  stopCleanly,
  tail,
  waitForExit,
  waitForReady,
  withDatabase,
} from '../support/npm-start.js';

afterEach(cleanUpStarts);

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
      // A machine with internet would download the Temporal CLI's release: this test is about having neither.
      MLOPS_BINARY_DOWNLOADS: 'false',
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

    // The workers run in a supervised child process: one that dies is restarted, and the platform stays up.
    const workerPid = Number(/"workerPid":(\d+),[^\n]*"msg":"worker process polling"/.exec(first.output())?.[1]);
    expect(isAlive(workerPid), tail(first)).toBe(true);
    process.kill(workerPid, 'SIGKILL');
    const restartDeadline = Date.now() + 60_000;
    while (!first.output().includes('"msg":"workers restarted"') && Date.now() < restartDeadline) await sleep(100);
    expect(first.output(), tail(first)).toMatch(/"msg":"workers stopped unexpectedly; restarting in [\d.]+ s"/);
    expect(first.output(), tail(first)).toContain('"msg":"workers restarted"');
    expect(await readyz(s)).toMatchObject(READY);

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
