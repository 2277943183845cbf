import type { Worker } from '@temporalio/worker';
import type { createActivities } from '../../activities/index.js';
import type { PipelineRunnerDeps } from '../../pipelines/runs.js';
import { connectTestPlatform, type TestPlatform } from './platform.js';
import { testEndpoints } from './stack.js';

/** A test platform whose main and training workers are running, and the pipeline runner that uses them. */
export interface RunningTestPlatform {
  readonly platform: TestPlatform;
  readonly runner: PipelineRunnerDeps;
  /** Shuts both workers down, waits for them to stop, then closes the platform's connections. */
  stop(): Promise<void>;
}

export interface StartTestPlatformOptions {
  /** A bucket of the file's own for the artifact store (default: the stack's). */
  readonly bucket?: string;
  /** Wraps the main worker's real activities (to gate or fault one, say). */
  readonly wrapMain?: (activities: ReturnType<typeof createActivities>) => object;
}

/**
 * The `beforeAll` of the integration files that run whole pipelines: connects to this test run's stack, starts a main
 * worker (workflows and the real activities) and a training worker on the file's own task queues, and builds the
 * runner that starts runs on them. Call `stop()` in `afterAll`, after whatever still uses the workers.
 */
export async function startTestPlatform(options: StartTestPlatformOptions = {}): Promise<RunningTestPlatform> {
  const platform = await connectTestPlatform(testEndpoints(), options.bucket);
  const workers: Worker[] = [];
  const running: Promise<void>[] = [];
  const stop = async () => {
    for (const worker of workers) worker.shutdown();
    await Promise.allSettled(running);
    await platform.close();
  };
  try {
    for (const worker of [await platform.mainWorker(options.wrapMain), await platform.trainingWorker()]) {
      workers.push(worker);
      running.push(worker.run());
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const runner: PipelineRunnerDeps = {
    client: platform.client,
    pipelines: platform.storage.pipelines,
    taskQueue: platform.taskQueue,
    trainingTaskQueue: platform.trainingTaskQueue,
  };
  return { platform, runner, stop };
}
