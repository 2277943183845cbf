/**
 * The platform under the benchmark: its own stack (random ports, the benchmark's data directory), storage, and the
 * main and training workers in this process for as long as the demo pipeline produces the models.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import type { AppConfig, ServiceEndpoints } from '../../core/config.js';
import type { Logger } from '../../core/logger.js';
import { startStack, type Stack } from '../../stack/stack.js';
import { openStorage, type PlatformStorage } from '../../storage/open-storage.js';
import { startWorkers, type RunningWorkers } from '../../workers/run-workers.js';
import { check, formatMs } from '../harness.js';
import { produceModels, type Models } from './models.js';
import type { ServerName } from './scenarios.js';
import type { Server } from './server-process.js';

/** What the benchmark holds open, filled in as it starts; `releaseHeld` closes whatever is there. */
export interface Held {
  stack?: Stack;
  connection?: Connection;
  storage?: PlatformStorage;
  workers?: RunningWorkers;
  readonly servers: Map<ServerName, Server>;
}

/** Closes the servers, workers, storage, Temporal connection and stack in `held`; never throws. */
export async function releaseHeld(held: Held): Promise<void> {
  await Promise.allSettled([...held.servers.values()].map((s) => s.close()));
  await held.workers?.shutdown().catch(() => undefined);
  await held.storage?.close().catch(() => undefined);
  await held.connection?.close().catch(() => undefined);
  await held.stack?.stop().catch((error: unknown) => console.error('the stack did not stop cleanly', error));
}

/**
 * Starts the stack, storage and workers (recorded in `held` as they start), produces the models with the demo
 * pipeline and stops the workers again. Throws when the two models' inputs differ (they share the request bodies).
 */
export async function startPlatform(
  held: Held,
  config: AppConfig,
  logger: Logger,
  dataDir: string,
): Promise<{ endpoints: ServiceEndpoints; storage: PlatformStorage; models: Models }> {
  const began = performance.now();
  held.stack = await startStack(config, { logger, ports: 'random' });
  const endpoints = held.stack.endpoints;
  console.log(`stack ready in ${formatMs(performance.now() - began)}`);
  const connection = (held.connection = await Connection.connect({ address: endpoints.temporal.address }));
  const storage = (held.storage = openStorage(endpoints, { logger, applicationName: 'bench-serving', poolSize: 4 }));
  await storage.artifacts.ensureBucket();
  const workers = (held.workers = await startWorkers({
    config: { ...config, dataDir: path.join(dataDir, 'worker') },
    endpoints,
    logger,
    roles: ['main', 'training'],
  }));
  console.log('producing the models with the demo pipeline:');
  const models = await produceModels(
    {
      client: new Client({ connection, namespace: endpoints.temporal.namespace }),
      storage,
      taskQueue: config.temporal.taskQueue,
      trainingTaskQueue: config.temporal.trainingTaskQueue,
      links: { namespace: endpoints.temporal.namespace },
    },
    storage.registry,
  );
  await workers.shutdown();
  held.workers = undefined;
  const lrNames = models.lr.signature.inputs.map((i) => `${i.name}:${i.type}`).join(',');
  const gbtNames = models.gbt[0].signature.inputs.map((i) => `${i.name}:${i.type}`).join(',');
  check(lrNames === gbtNames, `the models' inputs differ: ${lrNames} vs ${gbtNames}`);
  return { endpoints, storage, models };
}
