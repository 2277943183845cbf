import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordLineageInput, StoreArtifactInput } from '../../activities/index.js';
import { FailureType } from '../../core/constants.js';
import { artifacts, events, executions } from '../../schema/index.js';
import { ingestArtifact } from '../../workflows/index.js';
import { connectTestPlatform, type TestPlatform } from '../support/platform.js';
import { testEndpoints } from '../support/stack.js';

let platform: TestPlatform;
let workDir: string;

beforeAll(async () => {
  platform = await connectTestPlatform(testEndpoints(), `ingest-${randomUUID().slice(0, 8)}`);
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ingest-test-'));
});

afterAll(async () => {
  await platform?.close();
  fs.rmSync(workDir, { recursive: true, force: true });
});

function sourceFile(content: Buffer): string {
  const file = path.join(workDir, `${randomUUID()}.bin`);
  fs.writeFileSync(file, content);
  return file;
}

async function objectCount(): Promise<number> {
  let count = 0;
  for await (const _ of platform.artifacts.client.listObjectsV2(platform.artifacts.bucket, '', true)) count += 1;
  return count;
}

async function rowsFor(uri: string, workflowId: string) {
  const { db } = platform.storage.database;
  const artifactRows = await db.select().from(artifacts).where(eq(artifacts.uri, uri));
  const executionRows = await db.select().from(executions).where(eq(executions.workflowId, workflowId));
  const eventRows =
    executionRows.length === 1
      ? await db.select().from(events).where(eq(events.executionId, executionRows[0]!.id))
      : [];
  return { artifactRows, executionRows, eventRows };
}

describe('ingestArtifact workflow', () => {
  it('stores the file in S3 and records execution, artifact and event in Postgres', async () => {
    const content = randomBytes(64 * 1024);
    const workflowId = `ingest-${randomUUID()}`;
    const worker = await platform.mainWorker();
    const result = await worker.runUntil(
      platform.client.workflow.execute(ingestArtifact, {
        taskQueue: platform.taskQueue,
        workflowId,
        args: [
          { source: sourceFile(content), artifactType: 'Dataset', context: { type: 'experiment', name: workflowId } },
        ],
      }),
    );
    expect(result.artifact.bytes).toBe(content.length);
    expect(await platform.artifacts.get(result.artifact)).toEqual(content);

    const { artifactRows, executionRows, eventRows } = await rowsFor(result.artifact.uri, workflowId);
    expect(artifactRows).toHaveLength(1);
    expect(artifactRows[0]).toMatchObject({ id: result.artifactId, type: 'Dataset', sha256: result.artifact.sha256 });
    expect(executionRows).toHaveLength(1);
    expect(executionRows[0]).toMatchObject({ id: result.executionId, state: 'complete', stage: 'ingest' });
    expect(eventRows).toEqual([expect.objectContaining({ artifactId: result.artifactId, type: 'output' })]);

    const lineage = await platform.storage.metadata.lineage(result.artifactId);
    expect(lineage?.executions.map((e) => e.id)).toEqual([result.executionId]);
  });

  it('retries after a crash in each activity without duplicating rows or objects', async () => {
    const before = await objectCount();
    const content = randomBytes(32 * 1024);
    const workflowId = `ingest-retry-${randomUUID()}`;
    let storeCalls = 0;
    let lineageCalls = 0;
    // The crash happens after the side effect completed: the retry must find the work done and not redo it twice.
    const worker = await platform.mainWorker((real) => ({
      ...real,
      async storeArtifact(input: StoreArtifactInput) {
        storeCalls += 1;
        const ref = await real.storeArtifact(input);
        if (storeCalls === 1) throw new Error('worker lost after the upload');
        return ref;
      },
      async recordArtifactLineage(input: RecordLineageInput) {
        lineageCalls += 1;
        const recorded = await real.recordArtifactLineage(input);
        if (lineageCalls === 1) throw new Error('worker lost after writing lineage');
        return recorded;
      },
    }));
    const result = await worker.runUntil(
      platform.client.workflow.execute(ingestArtifact, {
        taskQueue: platform.taskQueue,
        workflowId,
        args: [{ source: sourceFile(content), artifactType: 'Dataset' }],
      }),
    );
    expect(storeCalls).toBe(2);
    expect(lineageCalls).toBe(2);
    expect(await objectCount()).toBe(before + 1);
    const { artifactRows, executionRows, eventRows } = await rowsFor(result.artifact.uri, workflowId);
    expect(artifactRows).toHaveLength(1);
    expect(executionRows).toHaveLength(1);
    expect(executionRows[0]?.state).toBe('complete');
    expect(eventRows).toHaveLength(1);
  });

  it('ingesting the same bytes again reuses the artifact and its object', async () => {
    const content = randomBytes(16 * 1024);
    const file = sourceFile(content);
    const worker = await platform.mainWorker();
    const run = (workflowId: string) =>
      platform.client.workflow.execute(ingestArtifact, {
        taskQueue: platform.taskQueue,
        workflowId,
        args: [{ source: file, artifactType: 'Dataset' }],
      });
    const { first, second, objectsAfterFirst } = await worker.runUntil(async () => {
      const firstResult = await run(`ingest-a-${randomUUID()}`);
      const objects = await objectCount();
      return { first: firstResult, second: await run(`ingest-b-${randomUUID()}`), objectsAfterFirst: objects };
    });
    expect(second.artifact).toEqual(first.artifact);
    expect(second.artifactId).toBe(first.artifactId);
    expect(second.executionId).not.toBe(first.executionId);
    expect(await objectCount()).toBe(objectsAfterFirst);
  });

  it.each([
    ['a missing file', { source: '/nonexistent/data.csv', artifactType: 'Dataset' }, FailureType.NotFound],
    ['a relative path', { source: 'data.csv', artifactType: 'Dataset' }, FailureType.InvalidInput],
  ])('fails without retrying on %s, with a typed reason', async (_name, input, failureType) => {
    let storeCalls = 0;
    const worker = await platform.mainWorker((real) => ({
      ...real,
      async storeArtifact(activityInput: StoreArtifactInput) {
        storeCalls += 1;
        return real.storeArtifact(activityInput);
      },
    }));
    const error = await worker
      .runUntil(
        platform.client.workflow.execute(ingestArtifact, {
          taskQueue: platform.taskQueue,
          workflowId: `ingest-bad-${randomUUID()}`,
          args: [input],
        }),
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const activityFailure = (error as WorkflowFailedError).cause;
    expect(activityFailure).toBeInstanceOf(ActivityFailure);
    const cause = (activityFailure as ActivityFailure).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect((cause as ApplicationFailure).type).toBe(failureType);
    expect(storeCalls).toBe(1);
  });
});
