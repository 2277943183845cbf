/**
 * Sliding windows on the real stack: a pipeline over a local CSV with a timestamp column and `window: { trainDays,
 * evalDays }` stores the spans it resolved on the run, extracts only the rows inside them and splits at the eval
 * span; resumed after new rows landed, the run keeps its first spans; a new run measures back from the new data.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExtractDataInput } from '../../activities/index.js';
import { resumePipelineRun, startPipelineRun, type PipelineRunnerDeps } from '../../pipelines/runs.js';
import { fireTrigger } from '../../pipelines/triggers.js';
import type { ResolvedSpans } from '../../schema/index.js';
import { createApp } from '../../server/app.js';
import type { TrainingPipelineResult } from '../../workflows/index.js';
import { anyNamedKey, withKey } from '../support/auth.js';
import type { TestPlatform } from '../support/platform.js';
import { runPipelineToEnd, syntheticDefinition } from '../support/pipelines.js';
import { startTestPlatform, type RunningTestPlatform } from '../support/running-platform.js';
import { testDeps } from '../server/helpers.js';

const ROWS_PER_DAY = 20;
const DAY_MS = 86_400_000;

let platform: TestPlatform;
let runner: PipelineRunnerDeps;
let started: RunningTestPlatform | undefined;
let dir: string;
/** Fails the next extraction (before it reads anything), as a fault no retry fixes: the run fails and can resume. */
let failNextExtract = false;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sliding-window-'));
  started = await startTestPlatform({
    wrapMain: (activities) => ({
      ...activities,
      extractData: async (input: ExtractDataInput) => {
        if (failNextExtract) {
          failNextExtract = false;
          throw ApplicationFailure.create({ type: 'InjectedFault', message: 'injected', nonRetryable: true });
        }
        return activities.extractData(input);
      },
    }),
  });
  ({ platform, runner } = started);
});

afterAll(async () => {
  await started?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** `ts,x,kind,y` rows: ROWS_PER_DAY a day at 00:00, 01:00, ... (naive, UTC), for `days` days from `first`. */
function rows(first: string, days: number): string[] {
  const out: string[] = [];
  for (let d = 0; d < days; d++) {
    for (let h = 0; h < ROWS_PER_DAY; h++) {
      const ts = new Date(Date.parse(`${first}T00:00:00Z`) + d * DAY_MS + h * 3_600_000);
      const x = (d * ROWS_PER_DAY + h) % 37;
      out.push(`${ts.toISOString().slice(0, 19).replace('T', ' ')},${x},k${x % 3},${x > 18 ? 1 : 0}`);
    }
  }
  return out;
}

async function stored(runId: string) {
  const run = await platform.storage.pipelines.getRun(runId);
  const outputs = (stage: string) => run?.stages.find((s) => s.stage === stage)?.outputs as Record<string, unknown>;
  return { run: run!, extract: outputs('extract'), prepare: outputs('prepare') };
}

describe('a pipeline with a sliding window', () => {
  const name = `window-${randomUUID().slice(0, 8)}`;
  const csv = () => path.join(dir, 'events.csv');

  it('resolves and stores its spans, extracts only them, and keeps them when resumed after new data', async () => {
    // 60 days: 2024-01-01 .. 2024-02-29, the newest row at 2024-02-29 19:00.
    fs.writeFileSync(csv(), ['ts,x,kind,y', ...rows('2024-01-01', 60)].join('\n') + '\n');
    const definition = syntheticDefinition(name, csv(), {
      split: undefined,
      window: { column: 'ts', trainDays: 10, evalDays: 5 },
    });
    await platform.storage.pipelines.saveDefinition(definition, 'test');

    const expected: ResolvedSpans = {
      column: 'ts',
      // The window ends 1 ms after the newest row: eval is 5 whole days (02-25 .. 02-29), train the 10 before.
      train: { from: '2024-02-14T19:00:00.001Z', to: '2024-02-24T19:00:00.001Z' },
      eval: { from: '2024-02-24T19:00:00.001Z', to: '2024-02-29T19:00:00.001Z' },
      anchor: { kind: 'data', at: '2024-02-29T19:00:00.000Z' },
    };

    failNextExtract = true;
    const { run } = await startPipelineRun(runner, { pipeline: name, trigger: 'manual', triggeredBy: 'test' });
    const failed = await runner.client.workflow
      .getHandle(run.workflowId)
      .result()
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(failed).toBeInstanceOf(WorkflowFailedError);
    const afterFailure = await stored(run.id);
    expect(afterFailure.run.status).toBe('failed');
    expect(afterFailure.run.resolvedSpans).toEqual(expected);

    // Ten newer days land; the resumed run still trains and evaluates on the spans it first resolved.
    fs.appendFileSync(csv(), rows('2024-03-01', 10).join('\n') + '\n');
    await resumePipelineRun(runner, run.id);
    const result = (await runner.client.workflow.getHandle(run.workflowId).result()) as TrainingPipelineResult;
    expect(result.outcome).toBe('deployed');

    const resumed = await stored(run.id);
    expect(resumed.run.status).toBe('succeeded');
    expect(resumed.run.resolvedSpans).toEqual(expected);
    // Train: 02-15 .. 02-24 whole days (02-14 19:00 is before the 1 ms offset); eval: 02-25 .. 02-29.
    expect(resumed.extract.rowCount).toBe(15 * ROWS_PER_DAY);
    expect(resumed.prepare).toMatchObject({ trainRows: 10 * ROWS_PER_DAY, evalRows: 5 * ROWS_PER_DAY });

    // The run API shows them.
    const app = createApp(testDeps({ runner, auth: anyNamedKey }));
    const res = await app.request(`/v1/runs/${run.id}`, withKey());
    expect(res.status).toBe(200);
    expect(((await res.json()) as { resolvedSpans: unknown }).resolvedSpans).toEqual(expected);
  });

  it('measures a new run back from the newest data', async () => {
    const next = await runPipelineToEnd(runner, name, { trigger: 'schedule' });
    expect(next.result.outcome).not.toBeUndefined();
    const { run, extract, prepare } = await stored(next.runId);
    expect(run.resolvedSpans).toEqual({
      column: 'ts',
      train: { from: '2024-02-24T19:00:00.001Z', to: '2024-03-05T19:00:00.001Z' },
      eval: { from: '2024-03-05T19:00:00.001Z', to: '2024-03-10T19:00:00.001Z' },
      anchor: { kind: 'data', at: '2024-03-10T19:00:00.000Z' },
    });
    expect(extract.rowCount).toBe(15 * ROWS_PER_DAY);
    expect(prepare).toMatchObject({ trainRows: 10 * ROWS_PER_DAY, evalRows: 5 * ROWS_PER_DAY });
  });

  it("measures a triggered run back from the trigger's nominal time (a backfilled action's), not from its start", async () => {
    const triggered = `${name}-trigger`;
    const definition = syntheticDefinition(triggered, csv(), {
      split: undefined,
      window: { column: 'ts', trainDays: 10, evalDays: 5, relativeTo: 'trigger' },
    });
    await platform.storage.pipelines.saveDefinition(definition, 'test');
    // As a schedule's action for 2024-02-20 00:00 taken by a backfill today.
    const outcome = await fireTrigger(
      { triggers: platform.storage.triggers, runner },
      {
        pipeline: triggered,
        kind: 'schedule',
        source: 'backfill-test',
        dedupeKey: `test:${randomUUID()}`,
        triggeredAt: '2024-02-20T00:00:00.000Z',
      },
    );
    expect(outcome).toMatchObject({ status: 'started', created: true });
    const [event] = await platform.storage.triggers.list(triggered);
    expect(event?.details).toEqual({ triggeredAt: '2024-02-20T00:00:00.000Z' });

    const { run: started } = await stored(outcome.runId!);
    await runner.client.workflow.getHandle(started.workflowId).result();
    const { run, extract, prepare } = await stored(outcome.runId!);
    expect(run.resolvedSpans).toEqual({
      column: 'ts',
      // The window ends at the trigger time itself (rows at or after it are left out).
      train: { from: '2024-02-05T00:00:00.000Z', to: '2024-02-15T00:00:00.000Z' },
      eval: { from: '2024-02-15T00:00:00.000Z', to: '2024-02-20T00:00:00.000Z' },
      anchor: { kind: 'trigger', at: '2024-02-20T00:00:00.000Z' },
    });
    expect(extract.rowCount).toBe(15 * ROWS_PER_DAY);
    expect(prepare).toMatchObject({ trainRows: 10 * ROWS_PER_DAY, evalRows: 5 * ROWS_PER_DAY });
  });
});
