/**
 * The demo on a running platform: a session with what it needs (a Temporal client and the stores) for `npm run demo`,
 * and the demo as `npm start` runs it in the background once the platform is ready.
 */
import { Client, Connection } from '@temporalio/client';
import type { AppConfig, ServiceEndpoints } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { openStorage } from '../storage/open-storage.js';
import { DemoError, formatDemoFailure, formatDemoReport, runFlightsDemo, type DemoDeps } from './flights.js';

export interface DemoSession {
  readonly deps: DemoDeps;
  close(): Promise<void>;
}

/** Opens what the demo needs on the platform's endpoints: a Temporal client and the stores. */
export async function openDemoSession(options: {
  config: AppConfig;
  endpoints: ServiceEndpoints;
  apiUrl?: string;
  logger: Logger;
}): Promise<DemoSession> {
  const { config, endpoints, logger } = options;
  const connection = await Connection.connect({ address: endpoints.temporal.address });
  const storage = openStorage(endpoints, { logger, applicationName: 'mlops-demo', poolSize: 2 });
  return {
    deps: {
      client: new Client({ connection, namespace: endpoints.temporal.namespace }),
      storage,
      taskQueue: config.temporal.taskQueue,
      trainingTaskQueue: config.temporal.trainingTaskQueue,
      links: {
        ...(options.apiUrl ? { apiUrl: options.apiUrl } : {}),
        ...(endpoints.temporal.uiUrl ? { temporalUiUrl: endpoints.temporal.uiUrl } : {}),
        namespace: endpoints.temporal.namespace,
      },
    },
    close: async () => {
      await Promise.allSettled([connection.close(), storage.close()]);
    },
  };
}

export interface RunningDemo {
  /** Resolves when the demo has finished, failed or been stopped (it never rejects). */
  readonly done: Promise<void>;
  /** Stops the demo: stops waiting, cancels its run if one is in flight. */
  stop(): Promise<void>;
}

/**
 * Runs the demo in the background of `npm start`, once the platform is ready: prints its progress and summary, and
 * never takes the platform down. A failure prints a clear message and leaves everything running.
 */
export function startDemo(options: {
  config: AppConfig;
  endpoints: ServiceEndpoints;
  apiUrl: string;
  logger: Logger;
  write?: (text: string) => void;
}): RunningDemo {
  const write = options.write ?? ((text: string) => void process.stdout.write(text));
  const controller = new AbortController();
  const done = (async () => {
    let session: DemoSession | undefined;
    try {
      write(
        `Running the demo: the flight-delay pipeline on January–March 2001 (MLOPS_DEMO=false skips it; ` +
          `npm run demo runs it again)\n`,
      );
      session = await openDemoSession(options);
      const report = await runFlightsDemo(session.deps, {
        signal: controller.signal,
        onProgress: (line) => write(`${line}\n`),
      });
      write(`\n${formatDemoReport(report)}\n\n`);
    } catch (error) {
      if (controller.signal.aborted) {
        write(`Demo stopped${error instanceof DemoError ? `: ${error.message}` : ''}.\n`);
        return;
      }
      write(`\n${formatDemoFailure(error)}\nThe platform keeps running.\n\n`);
      options.logger.warn({ err: error }, 'the demo failed');
    } finally {
      await session?.close();
    }
  })();
  return {
    done,
    stop: async () => {
      if (controller.signal.aborted) return done;
      controller.abort(new Error('the platform is stopping'));
      // Cancelling the run is a request to Temporal; waiting longer than this holds up the stop for nothing.
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 3000).unref())]);
    },
  };
}
