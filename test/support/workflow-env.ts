/**
 * Workflow-logic tests: the real workflow code, on this test run's real Temporal dev server (started by
 * test/global-setup.ts), with every activity replaced by a plain in-memory function typed against the real one.
 *
 * The SDK's time-skipping test server (`TestWorkflowEnvironment.createTimeSkipping`) is a binary the SDK downloads at
 * run time from temporal.download; this machine has no route there, so these tests keep their timers short (seconds)
 * instead of skipping time.
 */
import { randomUUID } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import type { MainActivities, TrainingActivities } from '../../activities/index.js';
import { createLogger } from '../../core/logger.js';
import { createPlatformWorker } from '../../workers/create-worker.js';
import { installTemporalRuntime } from '../../workers/runtime.js';
import { testEndpoints } from './stack.js';

/** Every activity a workflow may call, by name, with its real signature. */
export type PlatformActivities = MainActivities & TrainingActivities;
export type ActivityName = keyof PlatformActivities;

/**
 * The activities one test provides: any subset of the real ones, with their signatures (a changed signature fails to
 * compile here). A workflow that calls an activity the test did not provide fails at once, and so does the test.
 */
export type MockActivities = Partial<PlatformActivities>;

/**
 * Per-test timeout of workflow-logic tests: each takes seconds, so a branch that waits where it should not (for an
 * approval, a canary) fails in 20 s rather than at the integration suite's 60 s.
 */
export const WORKFLOW_TEST_TIMEOUT_MS = 20_000;

/** The failure type of a call to an activity the test did not provide. */
export const UNEXPECTED_ACTIVITY = 'UnexpectedActivity';

export interface ActivityCall {
  readonly name: string;
  /** The activity's first argument (every platform activity takes one input object, or none). */
  readonly input: unknown;
  /** 1 for the first try, more for retries. */
  readonly attempt: number;
  readonly workflowId: string;
}

/** One test's activities on the shared worker, and what they saw. */
export interface MockedActivities {
  /** The worker's task queue: start workflows here, and pass it as the training task queue too. */
  readonly taskQueue: string;
  /** A new workflow id whose activity calls this test's activities answer; start every workflow with one. */
  workflowId(prefix: string): string;
  /** Activity calls in the order they started, retries included. */
  readonly calls: readonly ActivityCall[];
  /** The names of the activities called, in order. */
  names(): string[];
  /** The inputs of one activity's calls, in order, typed as the real activity takes them. */
  inputsOf<K extends ActivityName>(name: K): Parameters<PlatformActivities[K]>[0][];
}

export interface WorkflowTestEnv {
  readonly client: Client;
  /**
   * Runs `test` with `activities` answering the workflows it starts (with ids from `workflowId`). Tests may run
   * concurrently: each sees only its own workflows' calls. Rejects when a workflow called an activity the test did
   * not provide, even if `test` passed.
   */
  withActivities<T>(activities: MockActivities, test: (mocked: MockedActivities) => Promise<T>): Promise<T>;
  teardown(): Promise<void>;
}

type AnyActivity = (...args: unknown[]) => Promise<unknown>;

interface Route {
  readonly activities: Readonly<Record<string, AnyActivity | undefined>>;
  readonly calls: ActivityCall[];
}

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent', name: 'workflow-test' });

/**
 * Connects a `TestWorkflowEnvironment` to the test stack's Temporal server and starts one worker on a task queue of
 * its own, serving the real workflows. Bundling the workflows costs seconds, so a test file creates one environment
 * (in `beforeAll`) and every test shares its worker; each test's activities are found by the calling workflow's id.
 */
export async function createWorkflowTestEnv(): Promise<WorkflowTestEnv> {
  // Before the environment touches the SDK runtime: the SDK's own logs go through the (silent) test logger.
  installTemporalRuntime(logger, process.env.LOG_LEVEL ?? 'warn');
  const { address, namespace } = testEndpoints().temporal;
  const env = await TestWorkflowEnvironment.createFromExistingServer({ address, namespace });
  const taskQueue = `workflow-logic-${randomUUID().slice(0, 8)}`;
  const routes = new Map<string, Route>();

  const unexpected = (message: string) =>
    ApplicationFailure.create({ type: UNEXPECTED_ACTIVITY, message, nonRetryable: true });

  /** The only activity the worker registers: the SDK's fallback for every activity type, routed to the test. */
  const dispatch: AnyActivity = async (...args) => {
    const { info } = Context.current();
    const workflowId = info.workflowExecution?.workflowId ?? '';
    const route = routes.get(workflowId);
    if (!route) throw unexpected(`no test started workflow ${workflowId}`);
    route.calls.push({ name: info.activityType, input: args[0], attempt: info.attempt, workflowId });
    const activity = route.activities[info.activityType];
    if (!activity) throw unexpected(`the test provides no ${info.activityType} activity`);
    return activity(...args);
  };

  let worker: Worker | undefined;
  let running: Promise<void> | undefined;
  try {
    worker = await createPlatformWorker({
      connection: env.nativeConnection,
      namespace,
      taskQueue,
      activities: { default: dispatch },
      runsWorkflows: true,
      maxConcurrentActivities: 32,
      shutdownGraceSeconds: 1,
      logger,
    });
    running = worker.run();
  } catch (error) {
    await env.teardown();
    throw error;
  }

  async function withActivities<T>(
    activities: MockActivities,
    test: (mocked: MockedActivities) => Promise<T>,
  ): Promise<T> {
    const route: Route = { activities: activities as Route['activities'], calls: [] };
    const owned: string[] = [];
    const { calls } = route;
    const mocked: MockedActivities = {
      taskQueue,
      workflowId: (prefix) => {
        const id = `${prefix}-${randomUUID()}`;
        routes.set(id, route);
        owned.push(id);
        return id;
      },
      calls,
      names: () => calls.map((c) => c.name),
      inputsOf: <K extends ActivityName>(name: K) =>
        calls.filter((c) => c.name === name).map((c) => c.input as Parameters<PlatformActivities[K]>[0]),
    };
    try {
      const result = await test(mocked);
      const strays = calls.filter((c) => !route.activities[c.name]).map((c) => c.name);
      if (strays.length > 0) throw new Error(`activities the test did not provide were called: ${strays.join(', ')}`);
      return result;
    } finally {
      for (const id of owned) routes.delete(id);
    }
  }

  return {
    client: env.client,
    withActivities,
    teardown: async () => {
      worker?.shutdown();
      await running;
      await env.teardown();
    },
  };
}

/**
 * What the workflow failed with (the failure under `WorkflowFailedError`). Rejects when the workflow succeeded or
 * ended in some other way.
 */
export async function workflowFailure(result: Promise<unknown>): Promise<unknown> {
  const error = await result.then(
    () => new Error('the workflow succeeded'),
    (e: unknown) => e,
  );
  if (!(error instanceof WorkflowFailedError)) throw error;
  return error.cause;
}
