/**
 * Replays the recorded histories of completed `trainingPipeline`, `batchScore` and `deploymentRollout` runs
 * (test/fixtures/histories, written by
 * `npm run fixtures:histories`) against the current workflow code. A change that would break workflows already
 * running in production (a stage added, removed or reordered, a different activity, a timer no longer awaited)
 * makes a replay fail here with a DeterminismViolationError. Replay needs no server.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DefaultLogger,
  makeTelemetryFilterString,
  Runtime,
  Worker,
  type ReplayResult,
  type ReplayWorkerOptions,
} from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';
import { workflowBundle } from '../../../workers/create-worker.js';
import { historyFromJSON, type History } from '../../support/history-json.js';

const FIXTURES_DIR = fileURLToPath(new URL('../../fixtures/histories/', import.meta.url));

/** What the recorder writes; every one must be present (a fixture lost is a path no longer guarded). */
const EXPECTED_SCENARIOS = [
  'success-automatic',
  'not-blessed',
  'data-validation-failure',
  'approval-approved',
  'approval-rejected',
  'resumed-failed',
  'resumed',
  'batch-score',
  'rollout-rolled-back',
  'rollout-cancelled',
];

/** The workflow each fixture records, by its name's prefix; the rest are trainingPipeline runs. */
function workflowTypeOf(scenario: string): string {
  if (scenario.startsWith('batch-score')) return 'batchScore';
  if (scenario.startsWith('rollout-')) return 'deploymentRollout';
  return 'trainingPipeline';
}

const scenarios = fs
  .readdirSync(FIXTURES_DIR)
  .filter((file) => file.endsWith('.json'))
  .map((file) => path.basename(file, '.json'))
  .sort();

function loadHistory(scenario: string): History {
  return historyFromJSON(JSON.parse(fs.readFileSync(path.join(FIXTURES_DIR, `${scenario}.json`), 'utf8')));
}

/**
 * A copy of a history in which the workflow's first activity is another one: what a change of the code that
 * reorders the stages (statistics before extract) looks like to replay.
 */
function withFirstActivityRenamed(history: History, activityType: string): History {
  const events = (history.events ?? []).map((event) => ({ ...event }));
  const index = events.findIndex((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'extractData');
  const event = events[index];
  if (!event) throw new Error('the history schedules no extractData activity');
  event.activityTaskScheduledEventAttributes = {
    ...event.activityTaskScheduledEventAttributes,
    activityType: { name: activityType },
  };
  return { events };
}

const MUTATED = 'mutated:success-automatic';
const results = new Map<string, ReplayResult>();

beforeAll(async () => {
  // The SDK's logs, native ones included (the mutated history's failed workflow task is a warning), stay out of
  // the test output; a replay error is reported through its result.
  Runtime.install({
    logger: new DefaultLogger('ERROR'),
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'ERROR' }), forward: {} } },
  });
  const options: ReplayWorkerOptions = { workflowBundle: await workflowBundle() };
  const histories = [
    ...scenarios.map((scenario) => ({ workflowId: scenario, history: loadHistory(scenario) })),
    { workflowId: MUTATED, history: withFirstActivityRenamed(loadHistory('success-automatic'), 'computeStatistics') },
  ];
  for await (const result of Worker.runReplayHistories(options, histories)) results.set(result.workflowId, result);
}, 180_000);

describe('workflow replay', () => {
  it('has a recorded history for every scenario', () => {
    expect(scenarios).toEqual(expect.arrayContaining(EXPECTED_SCENARIOS));
  });

  it.each(scenarios)('%s: each fixture is a closed execution of its workflow', (scenario) => {
    const events = loadHistory(scenario).events ?? [];
    const started = events[0]?.workflowExecutionStartedEventAttributes;
    expect(started?.workflowType?.name).toBe(workflowTypeOf(scenario));
    const last = events.at(-1);
    expect(
      Boolean(
        last?.workflowExecutionCompletedEventAttributes ??
        last?.workflowExecutionFailedEventAttributes ??
        last?.workflowExecutionCanceledEventAttributes,
      ),
    ).toBe(true);
  });

  it.each(scenarios)('%s replays on the current workflow code without a determinism violation', (scenario) => {
    const result = results.get(scenario);
    expect(result, 'no replay result').toBeDefined();
    expect(result?.error, result?.error?.message).toBeUndefined();
  });

  it('detects a breaking change: a history whose stages ran in another order fails to replay', () => {
    const result = results.get(MUTATED);
    expect(result?.error?.name).toBe('DeterminismViolationError');
    expect(result?.error?.message).toMatch(/computeStatistics|extractData/);
  });
});
