/**
 * The servers under load, as the benchmark's process sees them: node servers run in child processes of their own
 * (`server-child.ts`), so that autocannon (in the benchmark's process) and the server do not share one event loop.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServiceEndpoints } from '../../core/config.js';

/** What a child process serves: the bare Hono app, or the API as `npm run api` builds it. */
export type ChildSpec = { readonly kind: 'bare' } | { readonly kind: 'api'; readonly endpoints: ServiceEndpoints };

/** The environment variable that hands a child its `ChildSpec` (JSON). */
export const CHILD_ENV = 'BENCH_SERVING_CHILD';

/** `token`: the API's admin key (the API creates it on its first start with this data directory); none for `bare`. */
export type ChildMessage =
  | { readonly type: 'ready'; readonly url: string; readonly token?: string }
  | { readonly type: 'usage'; readonly id: number; readonly loop: EventLoopReading }
  | { readonly type: 'memory'; readonly id: number; readonly memory: MemoryReading };

/** The server's event loop: busy and idle time so far (ms), and the longest delay since the previous reading. */
export interface EventLoopReading {
  readonly idle: number;
  readonly active: number;
  readonly maxDelayMs: number;
}

/** The server process's memory (bytes), as `process.memoryUsage()` reports it; `gc`: whether it collected first. */
export interface MemoryReading {
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
  readonly gc: boolean;
}

/** `memory` with `gc`: a full collection first, when the child runs with `--expose-gc` (else just the reading). */
export type ParentMessage =
  | { readonly type: 'usage'; readonly id: number }
  | { readonly type: 'memory'; readonly id: number; readonly gc: boolean }
  | { readonly type: 'close' };

/** A server child process, as the parent sees it. */
export interface Server {
  readonly name: string;
  readonly url: string;
  readonly pid: number;
  readonly log: string;
  /** The API's admin key, which every request to it carries (`Authorization: Bearer`); undefined for other servers. */
  readonly token: string | undefined;
  /** The event loop's busy and idle time so far, and its longest delay since the last call (node servers only). */
  eventLoop(): Promise<EventLoopReading | undefined>;
  /** The process's memory now, after a full collection when `gc` (node servers only; undefined once it is gone). */
  memory(gc?: boolean): Promise<MemoryReading | undefined>;
  close(): Promise<void>;
}

/** The predict route of a deployment, on the API and on the FastAPI peer alike. */
export const predictPath = (deployment: string): string => `/v1/models/${deployment}/predict`;

/** The headers of every predict request. */
export const JSON_HEADERS: Record<string, string> = { 'content-type': 'application/json' };

/** The headers of a request carrying `token` (an API key), or none for a server without keys. */
export function authHeaders(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** The headers of a predict request to `server`: JSON, and its key when it has one. */
export function predictHeaders(server: Pick<Server, 'token'>): Record<string, string> {
  return { ...JSON_HEADERS, ...authHeaders(server.token) };
}

/**
 * POSTs `body` to `deployment`'s predict route at `url` (with `token` as its API key, when given); resolves the HTTP
 * status, 0 when nothing answers.
 */
export function predictStatus(url: string, deployment: string, body: string, token?: string): Promise<number> {
  const headers = { ...JSON_HEADERS, ...authHeaders(token) };
  return fetch(`${url}${predictPath(deployment)}`, { method: 'POST', headers, body }).then(
    (r) => r.status,
    () => 0,
  );
}

const CHILD_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'server-child.ts');

/** Resolves once `child` has exited, killing it with SIGKILL after `ms`. */
export function waitForExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The last `lines` lines of a log file, for an error message ('' when it cannot be read). */
export function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * Forks a node server (`spec`) with `env`, its output appended to `<logDir>/<name>.log`, and resolves once it listens
 * (at most 60 s). `nodeOptions` go to node itself (`--cpu-prof`, for example).
 */
export async function startNodeServer(
  name: string,
  spec: ChildSpec,
  env: NodeJS.ProcessEnv,
  logDir: string,
  nodeOptions: readonly string[] = [],
): Promise<Server> {
  const log = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(log, 'a');
  const child = fork(CHILD_FILE, [], {
    execArgv: ['--import', 'tsx', ...nodeOptions],
    env: { ...env, [CHILD_ENV]: JSON.stringify(spec) },
    stdio: ['ignore', fd, fd, 'ipc'],
  });
  fs.closeSync(fd);
  const pending = new Map<number, (reading: EventLoopReading) => void>();
  const pendingMemory = new Map<number, (reading: MemoryReading) => void>();
  let nextId = 0;
  const { url, token } = await new Promise<{ url: string; token: string | undefined }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready after 60 s\n${tail(log)}`)), 60_000);
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve({ url: message.url, token: message.token });
      } else if (message.type === 'usage') {
        pending.get(message.id)?.(message.loop);
        pending.delete(message.id);
      } else if (message.type === 'memory') {
        pendingMemory.get(message.id)?.(message.memory);
        pendingMemory.delete(message.id);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name}: exited with ${code} before it was ready\n${tail(log)}`));
    });
  });
  return {
    name,
    url,
    pid: child.pid!,
    log,
    token,
    eventLoop: () =>
      new Promise((resolve) => {
        if (!child.connected) return resolve(undefined);
        const id = nextId++;
        pending.set(id, resolve);
        child.send({ type: 'usage', id } satisfies ParentMessage);
      }),
    memory: (gc = false) =>
      new Promise((resolve) => {
        if (!child.connected) return resolve(undefined);
        const id = nextId++;
        pendingMemory.set(id, resolve);
        child.send({ type: 'memory', id, gc } satisfies ParentMessage);
      }),
    close: async () => {
      if (child.connected) child.send({ type: 'close' } satisfies ParentMessage);
      await waitForExit(child, 15_000);
    },
  };
}
