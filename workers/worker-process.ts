import path from 'node:path';
import { createCliOutput } from '../core/cli-output.js';
import { loadConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { exitOnSignal, exitWithError } from '../core/shutdown.js';
import { resolveEndpoints } from '../stack/endpoints.js';
import { startWorkers, type QueueRole } from './run-workers.js';

/** The IPC message a worker process sends its supervisor once every queue is polled. */
export const WORKERS_READY = 'workers-ready';

/**
 * A worker process on its own (a container, a GPU host): connects to the configured services, serves its queues
 * until SIGINT/SIGTERM, then shuts down gracefully (in-flight activities finish within WORKER_SHUTDOWN_GRACE_SECONDS,
 * the rest are handed back to Temporal for another worker).
 */
export async function runWorkerProcess(roles: readonly QueueRole[], name: string): Promise<void> {
  const bootLogger = createLogger({ level: 'info', name });
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    exitWithError(bootLogger, error);
  }
  const output = createCliOutput({
    name,
    level: config.logLevel,
    format: config.logFormat,
    logDir: path.join(config.dataDir, 'logs'),
    logFileName: `${name}.log`,
  });
  const { logger } = output;
  const say = (text: string) => {
    if (output.mode === 'human') output.print(text);
  };
  try {
    const endpoints = resolveEndpoints(config);
    const running = await startWorkers({ config, endpoints, logger, roles });
    exitOnSignal(logger, async () => {
      say('Stopping: in-flight activities finish or go back to Temporal (Ctrl-C again to stop at once)');
      await running.shutdown();
      say('Stopped.');
    });
    if (process.send) {
      // A child of `npm start`'s supervisor (workers/worker-child.ts): say when the queues are polled, and stop
      // gracefully when the supervisor goes away (killed, crashed), so a worker is never left without its owner.
      process.once('disconnect', () => {
        logger.warn('the supervising process is gone: stopping');
        process.kill(process.pid, 'SIGTERM');
      });
      process.send({ type: WORKERS_READY });
    }
    const queues = roles.map((role) =>
      role === 'main' ? config.temporal.taskQueue : config.temporal.trainingTaskQueue,
    );
    logger.info({ roles }, 'worker running');
    say(
      `${name} polling ${queues.join(' and ')} on Temporal ${endpoints.temporal.address} ` +
        `(JSON logs in ${output.logFile}). Ctrl-C stops it.`,
    );
    await running.finished;
  } catch (error) {
    exitWithError(logger, error);
  }
}
