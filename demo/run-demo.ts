/**
 * `npm run demo`: runs the flight-delay demo again against a running platform (the one `npm start` runs, or any
 * deployment the configuration points at), through its workers. With unchanged data and settings the new run trains
 * the same model, which is not better than the champion, so nothing is deployed.
 */
import path from 'node:path';
import proto from '@temporalio/proto';
import { createCliOutput, resolveOutputMode } from '../core/cli-output.js';
import { loadConfig, type AppConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { exitWithError } from '../core/shutdown.js';
import { resolveEndpoints } from '../stack/endpoints.js';
import { formatDemoFailure, formatDemoReport, runFlightsDemo } from './flights.js';
import { openDemoSession, type DemoSession } from './session.js';

const { TaskQueueType } = proto.temporal.api.enums.v1;

/** The API's URL as a client on this host reaches it. */
function apiUrlOf(config: AppConfig): string {
  const host = config.api.host === '0.0.0.0' || config.api.host === '::' ? '127.0.0.1' : config.api.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.api.port}`;
}

/** Fails with a clear message when no worker polls a queue the demo needs: its run would wait forever. */
async function requireWorkers(session: DemoSession, namespace: string): Promise<void> {
  const { client, taskQueue, trainingTaskQueue } = session.deps;
  const queues = [
    { name: taskQueue, type: TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, what: 'workflows' },
    { name: trainingTaskQueue, type: TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, what: 'training' },
  ];
  for (const queue of queues) {
    const described = await client.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: queue.name },
      taskQueueType: queue.type,
    });
    if ((described.pollers ?? []).length === 0) {
      throw new Error(
        `no worker polls the task queue ${queue.name} (${queue.what}): start the platform with \`npm start\` ` +
          '(it runs the workers), or start `npm run worker` and `npm run worker:training`',
      );
    }
  }
}

async function main(): Promise<void> {
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (error) {
    exitWithError(createLogger({ level: 'info', name: 'demo' }), error);
  }
  // On a terminal the JSON logs go to <data dir>/logs/demo.log; as JSON on stdout, only warnings and worse, so
  // the report stays readable.
  const quietJson = resolveOutputMode(config.logFormat) === 'json' && config.logLevel === 'info';
  const output = createCliOutput({
    name: 'demo',
    level: quietJson ? 'warn' : config.logLevel,
    format: config.logFormat,
    logDir: path.join(config.dataDir, 'logs'),
    logFileName: 'demo.log',
  });
  const { logger } = output;
  const endpoints = resolveEndpoints(config);
  const controller = new AbortController();
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('stopping the demo: cancelling its run\n');
    controller.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let session: DemoSession;
  try {
    session = await openDemoSession({ config, endpoints, apiUrl: apiUrlOf(config), logger });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(
      `temporal-mlops demo: cannot reach Temporal at ${endpoints.temporal.address} (${message}); ` +
        'is the platform running (`npm start`)?\n',
    );
    process.exit(1);
  }
  try {
    await requireWorkers(session, endpoints.temporal.namespace);
    output.print('Running the demo: the flight-delay pipeline on January–March 2001');
    const report = await runFlightsDemo(session.deps, {
      trigger: 'cli',
      triggeredBy: 'npm run demo',
      signal: controller.signal,
      onProgress: (line) => output.print(line),
    });
    output.print(`\n${formatDemoReport(report)}`);
  } catch (error) {
    process.stderr.write(`${formatDemoFailure(error)}\n`);
    process.exitCode = 1;
  } finally {
    await session.close();
  }
}

void main();
