import { fileURLToPath } from 'node:url';
import type { NativeConnection } from '@temporalio/worker';
import { bundleWorkflowCode, Worker, type WorkflowBundle } from '@temporalio/worker';
import type { Logger } from '../core/logger.js';

/** The workflows module; bundled by Temporal's bundler (webpack) into the deterministic sandbox. */
export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

let bundlePromise: Promise<WorkflowBundle> | undefined;

/**
 * The workflow bundle, built once per process and shared by every worker in it (bundling costs seconds). Uses the
 * silent webpack log level: bundling errors still throw.
 */
export function workflowBundle(): Promise<WorkflowBundle> {
  bundlePromise ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: silentBundlerLogger });
  return bundlePromise;
}

const noop = (): void => undefined;
const silentBundlerLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, log: noop };

export interface PlatformWorkerOptions {
  readonly connection: NativeConnection;
  readonly namespace: string;
  readonly taskQueue: string;
  /** Activity implementations (from `createActivities`); their object keys are the names shown in the Temporal UI. */
  readonly activities: object;
  /** Whether this worker also runs workflows (the main queue does; the training queue runs activities only). */
  readonly runsWorkflows: boolean;
  readonly maxConcurrentActivities: number;
  readonly maxConcurrentWorkflowTasks?: number;
  /** How long in-flight activities get to finish on shutdown before they are cancelled and handed back. */
  readonly shutdownGraceSeconds: number;
  readonly identity?: string;
  readonly logger: Logger;
}

/**
 * Creates a worker for one task queue. On `shutdown()` it stops polling, lets in-flight activities finish within
 * the grace time, then cancels the rest so that Temporal retries them on another worker.
 */
export async function createPlatformWorker(options: PlatformWorkerOptions): Promise<Worker> {
  const worker = await Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    activities: options.activities,
    ...(options.runsWorkflows
      ? {
          workflowBundle: await workflowBundle(),
          maxConcurrentWorkflowTaskExecutions: options.maxConcurrentWorkflowTasks ?? 16,
        }
      : {}),
    maxConcurrentActivityTaskExecutions: options.maxConcurrentActivities,
    shutdownGraceTime: `${options.shutdownGraceSeconds}s`,
    ...(options.identity ? { identity: options.identity } : {}),
  });
  options.logger.info(
    {
      taskQueue: options.taskQueue,
      runsWorkflows: options.runsWorkflows,
      maxConcurrentActivities: options.maxConcurrentActivities,
    },
    'worker created',
  );
  return worker;
}
