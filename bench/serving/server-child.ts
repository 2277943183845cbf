/**
 * The entry point of a server child process of the serving benchmark and the soak (forked by `startNodeServer`, its
 * `ChildSpec` in `BENCH_SERVING_CHILD`): the bare Hono app or the API (reporting its admin key's token in its ready
 * message), then its event loop's and memory's readings on request, until the parent says close or goes away.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Hono } from 'hono';
import { loadConfig } from '../../core/config.js';
import { createLogger } from '../../core/logger.js';
import { DEMO_PIPELINE } from '../../demo/flights.js';
import { startApiServer } from '../../server/serve.js';
import { startApi } from '../../server/start-api.js';
import { CHILD_ENV, type ChildMessage, type ChildSpec, type ParentMessage } from './server-process.js';

/** A one-instance prediction's shape, constant: what the bare route answers. */
const CONSTANT_BODY = {
  model: { name: DEMO_PIPELINE, version: 1, versionId: '00000000-0000-4000-8000-000000000000' },
  requestId: '00000000-0000-4000-8000-000000000001',
  classes: [false, true],
  predictions: [{ label: false, probabilities: [0.8123456789, 0.1876543211] }],
};

async function childMain(spec: ChildSpec): Promise<void> {
  let server: { url: string; close(): Promise<void> };
  let token: string | undefined;
  if (spec.kind === 'bare') {
    const app = new Hono();
    app.get('/constant', (c) => c.json(CONSTANT_BODY));
    app.post('/constant', async (c) => {
      await c.req.json();
      return c.json(CONSTANT_BODY);
    });
    const logger = createLogger({ level: 'warn', name: 'bench-bare' });
    server = await startApiServer({ app, host: '127.0.0.1', port: 0, logger });
  } else {
    // As server/main.ts: the configuration from the environment (set by the parent), the logger at its level.
    const config = loadConfig(process.env);
    const logger = createLogger({ level: config.logLevel, name: 'api' });
    const api = await startApi({ config, endpoints: spec.endpoints, logger });
    // The admin key made on the first start with this data directory (or found in its file): the parent's requests
    // carry it.
    token = api.adminKey?.token;
    if (config.api.auth === 'keys' && !token) throw new Error('the API started with keys but has no admin key token');
    server = api;
  }
  // How long timers fire late: a long synchronous task (a model load, a GC pause) shows here.
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const stop = () => void server.close().finally(() => process.exit(0));
  process.on('disconnect', stop);
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'close') stop();
    else if (message.type === 'usage') {
      const { idle, active } = performance.eventLoopUtilization();
      const maxDelayMs = delay.max / 1e6;
      delay.reset();
      process.send?.({ type: 'usage', id: message.id, loop: { idle, active, maxDelayMs } } satisfies ChildMessage);
    } else if (message.type === 'memory') {
      // `gc` exists when node runs with --expose-gc: a full, synchronous collection, so the heap is what is retained.
      const collect = (globalThis as { gc?: () => void }).gc;
      const collected = message.gc && collect !== undefined;
      if (collected) collect();
      const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
      const memory = { rss, heapUsed, heapTotal, external, arrayBuffers, gc: collected };
      process.send?.({ type: 'memory', id: message.id, memory } satisfies ChildMessage);
    }
  });
  process.send?.({ type: 'ready', url: server.url, ...(token ? { token } : {}) } satisfies ChildMessage);
}

const spec = process.env[CHILD_ENV];
if (!spec) {
  console.error(`${CHILD_ENV} is not set: this file is started by bench/serving.ts`);
  process.exit(2);
}
childMain(JSON.parse(spec) as ChildSpec).catch((error: unknown) => {
  console.error(`serving benchmark server failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
  process.exit(1);
});
