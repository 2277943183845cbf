import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.js';
import { findFreePorts } from '../../stack/ports.js';
import { startStack, type Stack } from '../../stack/stack.js';
import { ingestArtifact } from '../../workflows/index.js';
import { connectTestPlatform, testLogger } from '../support/platform.js';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-restart-'));
fs.chmodSync(dataDir, 0o755);
const stacks: Stack[] = [];

afterAll(async () => {
  await Promise.allSettled(stacks.map((s) => s.stop()));
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** A second, private stack (not the run's shared one): this test stops and restarts it. */
async function start(): Promise<Stack> {
  const config = loadConfig({ NODE_ENV: 'test', MLOPS_DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
  const stack = await startStack(config, { logger: testLogger, ports: 'random' });
  stacks.push(stack);
  return stack;
}

function runningPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dataDir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('local stack restart', () => {
  it('keeps database rows, objects and workflow histories across a stop and start', async () => {
    const first = await start();
    expect(first.managed).toEqual(expect.arrayContaining(['Temporal', 'PostgreSQL', 'MinIO']));
    const content = randomBytes(8 * 1024);
    const source = path.join(dataDir, 'source.bin');
    fs.writeFileSync(source, content);
    const workflowId = `restart-${randomUUID()}`;

    const before = await connectTestPlatform(first.endpoints);
    const worker = await before.mainWorker();
    const result = await worker.runUntil(
      before.client.workflow.execute(ingestArtifact, {
        taskQueue: before.taskQueue,
        workflowId,
        args: [{ source, artifactType: 'Dataset' }],
      }),
    );
    await before.close();
    await first.stop();
    expect(runningPids()).toEqual([]);

    const second = await start();
    // Fresh random ports: only the data directory carries state over.
    expect(second.endpoints.temporal.address).not.toBe(first.endpoints.temporal.address);
    const after = await connectTestPlatform(second.endpoints);
    try {
      expect(await after.artifacts.get(result.artifact)).toEqual(content);
      expect((await after.storage.metadata.getArtifactByUri(result.artifact.uri))?.id).toBe(result.artifactId);
      const description = await after.client.workflow.getHandle(workflowId).describe();
      expect(description.status.name).toBe('COMPLETED');
      expect(await after.client.workflow.getHandle(workflowId).result()).toEqual(result);
    } finally {
      await after.close();
    }
    await second.stop();
    expect(runningPids()).toEqual([]);
  });

  it('refuses a port that is taken, and leaves nothing running', async () => {
    const net = await import('node:net');
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      // Every other port free, so the error can only be about the one we took (even beside a running dev stack).
      const [temporal, ui, postgres, consolePort] = await findFreePorts(4);
      const config = loadConfig({
        NODE_ENV: 'test',
        MLOPS_DATA_DIR: dataDir,
        TEMPORAL_PORT: String(temporal),
        TEMPORAL_UI_PORT: String(ui),
        POSTGRES_PORT: String(postgres),
        MINIO_PORT: String(port),
        MINIO_CONSOLE_PORT: String(consolePort),
      });
      await expect(startStack(config, { logger: testLogger, ports: 'configured' })).rejects.toThrow(
        new RegExp(`port ${port} .*MINIO_PORT`),
      );
      expect(runningPids()).toEqual([]);
    } finally {
      blocker.close();
    }
  });
});
