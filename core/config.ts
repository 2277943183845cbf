import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_MAIN_TASK_QUEUE, DEFAULT_TRAINING_TASK_QUEUE } from './constants.js';
import { ConfigError } from './errors.js';

/**
 * Where PostgreSQL keeps its data when the stack manager runs as root and the `postgres` user cannot reach the data
 * directory (a checkout in a private home folder): persistent, unlike /tmp.
 */
export const DEFAULT_POSTGRES_FALLBACK_DIR = '/var/lib/temporal-mlops';

const port = z.coerce.number().int().min(1).max(65_535);
const positiveInt = z.coerce.number().int().min(1);
const METRICS_PORT_EXPECTED = 'expected a port from 1 to 65535, or 0 for no worker metrics';
const fraction = z
  .string()
  .trim()
  .min(1, 'expected a number from 0 to 1')
  .transform(Number)
  .pipe(
    z
      .number({ error: 'expected a number from 0 to 1' })
      .min(0, 'expected a number from 0 to 1')
      .max(1, 'expected a number from 0 to 1'),
  );
const optionalUrl = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .pipe(z.url().optional())
  .optional();
const optionalString = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();
const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'expected true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const hostPort = z
  .string()
  .trim()
  .regex(/^[^\s:/]+:\d{1,5}$/, 'expected host:port, for example temporal:7233')
  .optional()
  .or(z.literal('').transform(() => undefined));

/**
 * Every environment variable the platform reads, with its default. The README's configuration table mirrors this
 * object; `describeConfigVariables()` prints it.
 */
const environmentSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_FORMAT: z.enum(['auto', 'json', 'human']).default('auto'),
  MLOPS_DATA_DIR: z.string().min(1).default('.data'),
  MLOPS_POSTGRES_FALLBACK_DIR: z.string().min(1).default(DEFAULT_POSTGRES_FALLBACK_DIR),
  MLOPS_TOOLS_DIR: optionalString,
  MLOPS_BINARY_DOWNLOADS: flag.default(true),
  MLOPS_DEMO: flag.default(true),

  TEMPORAL_ADDRESS: hostPort,
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default(DEFAULT_MAIN_TASK_QUEUE),
  TEMPORAL_TRAINING_TASK_QUEUE: z.string().min(1).default(DEFAULT_TRAINING_TASK_QUEUE),
  TEMPORAL_PORT: port.default(7233),
  TEMPORAL_UI_PORT: port.default(8233),

  DATABASE_URL: optionalUrl.refine((v) => v === undefined || /^postgres(ql)?:\/\//.test(v), {
    message: 'expected a postgres:// or postgresql:// URL',
  }),
  POSTGRES_PORT: port.default(5433),

  S3_ENDPOINT: optionalUrl,
  S3_ACCESS_KEY: z.string().min(3).default('minioadmin'),
  S3_SECRET_KEY: z.string().min(8).default('minioadmin'),
  S3_BUCKET: z
    .string()
    .regex(
      /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
      'expected a valid S3 bucket name (3-63 lowercase letters, digits, - or .)',
    )
    .default('mlops-artifacts'),
  S3_REGION: z.string().min(1).default('us-east-1'),
  MINIO_PORT: port.default(9000),
  MINIO_CONSOLE_PORT: port.default(9001),

  API_HOST: z.string().min(1).default('127.0.0.1'),
  API_PORT: port.default(3000),
  API_BODY_LIMIT_BYTES: positiveInt.default(1_048_576),
  /** `keys`: every route but health and docs needs an API key. `open`: no keys; only behind a trusted network. */
  API_AUTH: z.enum(['keys', 'open']).default('keys'),
  /**
   * Host header values the API answers (comma-separated; `*` any). Default: the loopback names when it listens on
   * loopback (a DNS-rebinding page cannot reach it), any host otherwise.
   */
  API_ALLOWED_HOSTS: z.string().optional(),
  /** Requests per second each API key may make (a token bucket holding twice as many); 0 turns the limit off. */
  API_RATE_LIMIT_PER_SECOND: z.coerce.number().int().min(0).max(1_000_000).default(1_000),

  SERVING_MAX_INSTANCES: positiveInt.default(1_000),
  SERVING_MAX_BATCH_ROWS: positiveInt.default(256),
  SERVING_MAX_WAIT_MS: z.coerce.number().min(0).max(1_000).default(0),
  SERVING_INFERENCE_THREADS: flag.default(true),
  // Bounds on inference threads (serving/index.ts also caps both at the CPU count).
  SERVING_MAX_INFERENCE_THREADS: z.coerce
    .number()
    .int('expected an integer from 1 to 64')
    .min(1, 'expected an integer from 1 to 64')
    .max(64, 'expected an integer from 1 to 64: more inference threads than that only contend for the CPUs')
    .default(4),
  SERVING_SESSION_THREADS: z.coerce
    .number()
    .int('expected an integer from 1 to 16')
    .min(1, 'expected an integer from 1 to 16')
    .max(16, 'expected an integer from 1 to 16 (onnxruntime intra-op threads per loaded version)')
    .default(1),
  ROLLOUT_RECONCILE_EVERY_SECONDS: z.coerce
    .number()
    .int('expected an integer from 5 to 3600')
    .min(5, 'expected an integer from 5 to 3600')
    .max(3600, 'expected an integer from 5 to 3600')
    .default(60),

  PREDICTION_LOG_SAMPLE_RATE: fraction.default(1),
  PREDICTION_LOG_QUEUE_SIZE: positiveInt.default(100_000),
  PREDICTION_LOG_BATCH_SIZE: positiveInt.default(1_000),
  PREDICTION_LOG_FLUSH_MS: positiveInt.default(200),
  PREDICTION_LOG_MAX_BUSY_SHARE: z.coerce.number().min(0.01).max(1).default(0.25),
  /** Days of prediction logs kept in Postgres; older day partitions are exported to Parquet in S3, then dropped. */
  PREDICTION_LOG_RETENTION_DAYS: z.coerce
    .number()
    .int('expected an integer from 1 to 3650')
    .min(1, 'expected an integer from 1 to 3650')
    .max(3650, 'expected an integer from 1 to 3650')
    .default(30),
  /** Days after today whose prediction log partitions the daily maintenance creates ahead. */
  PREDICTION_LOG_PARTITIONS_AHEAD_DAYS: z.coerce
    .number()
    .int('expected an integer from 1 to 90')
    .min(1, 'expected an integer from 1 to 90')
    .max(90, 'expected an integer from 1 to 90')
    .default(7),

  // The data access policy (data/access-policy.ts) and the bounds on reading a source.
  /** Folders local sources may lie in, comma-separated; default `<MLOPS_DATA_DIR>/sources`. */
  DATA_ROOTS: optionalString,
  /** Buckets (`bucket`, `bucket/prefix/`, `*`) sources may read, comma-separated; default `<S3_BUCKET>/landing/`. */
  DATA_BUCKETS: optionalString,
  DATA_MAX_FILES: positiveInt.default(10_000),
  DATA_MAX_DEPTH: positiveInt.default(16),
  /** base64 of 32 bytes sealing connection passwords; default: a key file generated under the data directory. */
  CONNECTIONS_KEY: optionalString.refine((v) => v === undefined || Buffer.from(v, 'base64').length === 32, {
    message: 'expected 32 bytes in base64 (openssl rand -base64 32)',
  }),
  SOURCE_CONNECT_TIMEOUT_MS: positiveInt.default(10_000),
  SOURCE_STATEMENT_TIMEOUT_MS: positiveInt.default(300_000),
  SOURCE_PROBE_TIMEOUT_MS: positiveInt.default(10_000),

  WORKER_MAX_CONCURRENT_ACTIVITIES: positiveInt.default(8),
  WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: positiveInt.default(16),
  TRAINING_WORKER_MAX_CONCURRENT_ACTIVITIES: positiveInt.default(1),
  WORKER_SHUTDOWN_GRACE_SECONDS: positiveInt.default(30),
  /** Where each worker process serves the Temporal SDK's Prometheus metrics (`/metrics`); port 0 turns them off. */
  WORKER_METRICS_HOST: z.string().trim().min(1).default('127.0.0.1'),
  WORKER_METRICS_PORT: z.coerce
    .number({ error: METRICS_PORT_EXPECTED })
    .int(METRICS_PORT_EXPECTED)
    .min(0, METRICS_PORT_EXPECTED)
    .max(65_535, METRICS_PORT_EXPECTED)
    .default(9464),
  SERVICE_START_TIMEOUT_SECONDS: positiveInt.default(60),
});

export type Environment = z.input<typeof environmentSchema>;

/** Every variable the platform reads; the README's configuration table lists each (a unit test checks). */
export const CONFIG_VARIABLES = Object.keys(environmentSchema.shape) as (keyof Environment)[];

/** Where an external service is reached; `managed` means the local stack manager starts it when it is absent. */
export interface AppConfig {
  readonly nodeEnv: 'development' | 'production' | 'test';
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** `auto`: human lines on a terminal (JSON logs in `<dataDir>/logs`), JSON lines on stdout otherwise. */
  readonly logFormat: 'auto' | 'json' | 'human';
  /** Absolute path; holds the local services' data, logs and scratch files. */
  readonly dataDir: string;
  /**
   * Absolute path; as root, the embedded PostgreSQL's data goes under it when the `postgres` user cannot reach
   * `dataDir` (stack/postgres-location.ts).
   */
  readonly postgresFallbackDir: string;
  /** Absolute path of the per-user folder where built service binaries are cached. */
  readonly toolsDir: string;
  /** Whether a missing binary may be downloaded (pinned official release, sha256 checked) before building it. */
  readonly binaryDownloads: boolean;
  /** Whether `npm start` runs the flight-delay demo once the platform is ready. */
  readonly demo: boolean;
  readonly temporal: {
    /** host:port of an external Temporal frontend; undefined: the stack manager runs a dev server. */
    readonly address: string | undefined;
    readonly namespace: string;
    readonly taskQueue: string;
    readonly trainingTaskQueue: string;
    readonly port: number;
    readonly uiPort: number;
  };
  readonly database: {
    /** undefined: the stack manager runs an embedded PostgreSQL. */
    readonly url: string | undefined;
    readonly port: number;
  };
  readonly s3: {
    /** undefined: the stack manager runs a local MinIO. */
    readonly endpoint: string | undefined;
    readonly accessKey: string;
    readonly secretKey: string;
    readonly bucket: string;
    readonly region: string;
    readonly port: number;
    readonly consolePort: number;
  };
  readonly api: {
    readonly host: string;
    readonly port: number;
    readonly bodyLimitBytes: number;
    readonly auth: 'keys' | 'open';
    /** Host header values accepted; undefined: any. */
    readonly allowedHosts: readonly string[] | undefined;
    /** Per-key requests per second; 0: no limit. */
    readonly rateLimitPerSecond: number;
  };
  /** Online serving (serving/index.ts). */
  readonly serving: {
    /** Most instances in one predict request. */
    readonly maxInstances: number;
    /** Most rows in one session run (micro-batching). */
    readonly maxBatchRows: number;
    /** How long a batch formed under load waits to fill, in ms. */
    readonly maxWaitMs: number;
    /** Each loaded version's session in a worker thread of its own, off the event loop. */
    readonly inferenceThreads: boolean;
    /** Most inference threads (versions share them beyond); at most the CPU count at run time. */
    readonly maxInferenceThreads: number;
    /** onnxruntime intra-op threads per session; at most the CPU count at run time. */
    readonly sessionThreads: number;
  };
  /** The API's prediction logs (serving/prediction-log.ts). */
  readonly predictionLog: {
    /** Share of predict requests logged, 0 to 1. */
    readonly sampleRate: number;
    /** Most rows waiting to be written; more are dropped and counted. */
    readonly queueSize: number;
    /** Rows per COPY. */
    readonly batchSize: number;
    /** Longest a row waits for its batch to fill, in ms. */
    readonly flushMs: number;
    /** Most of the time the writer spends writing, 0.01 to 1 (it rests between batches for the remainder). */
    readonly maxBusyShare: number;
    /** Days kept in Postgres (storage/prediction-log-export.ts exports and drops older day partitions). */
    readonly retentionDays: number;
    /** Days after today whose partitions are created ahead (storage/prediction-log-partitions.ts). */
    readonly partitionsAheadDays: number;
  };
  /** What pipeline sources may read, and the bounds on reading them (data/access-policy.ts). */
  readonly dataAccess: {
    /** Absolute folders local sources must lie in. */
    readonly roots: readonly string[];
    /** `bucket`, `bucket/prefix/` or `*` entries. */
    readonly buckets: readonly string[];
    /** Most files or objects resolving one source may visit. */
    readonly maxFiles: number;
    /** Deepest folder a glob or folder walk descends into. */
    readonly maxDepth: number;
    /** base64 key sealing connection passwords; undefined: `<dataDir>/secrets/connections.key`. */
    readonly connectionsKey: string | undefined;
    /** Bound on connecting to a source database, in ms. */
    readonly connectTimeoutMs: number;
    /** Bound on each statement of a source query during extraction, in ms. */
    readonly statementTimeoutMs: number;
    /** Bound on the query that checks a definition's Postgres source on the request path, in ms. */
    readonly probeTimeoutMs: number;
  };
  readonly worker: {
    readonly maxConcurrentActivities: number;
    readonly maxConcurrentWorkflowTasks: number;
    readonly trainingMaxConcurrentActivities: number;
    readonly shutdownGraceSeconds: number;
    /** How often the main worker's schedule reconciles canaries with their rollout workflows, in seconds. */
    readonly rolloutReconcileEverySeconds: number;
    /**
     * `host:port` where each worker process serves the Temporal SDK's metrics in the Prometheus format (`/metrics`);
     * undefined: not served (WORKER_METRICS_PORT=0).
     */
    readonly metricsBindAddress: string | undefined;
  };
  readonly serviceStartTimeoutSeconds: number;
}

/** The per-user binary cache, shared by every clone on the machine (the way Playwright keeps its browsers). */
export function defaultToolsDir(): string {
  const cacheHome = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cacheHome, 'temporal-mlops', 'bin');
}

/**
 * Parses the environment once into a typed configuration.
 *
 * @throws ConfigError naming each malformed variable, with what was expected.
 * @example const config = loadConfig(process.env);
 */
const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

function isLoopbackAddress(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The Host names the API accepts: as configured (`*`: any), else the loopback names when it listens on loopback. */
export function allowedHostsOf(setting: string | undefined, apiHost: string): readonly string[] | undefined {
  if (setting !== undefined && setting.trim() !== '') {
    const hosts = setting
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== '');
    return hosts.includes('*') ? undefined : hosts;
  }
  if (!isLoopbackAddress(apiHost)) return undefined;
  return [...new Set([...LOOPBACK_HOSTS, apiHost.includes(':') ? `[${apiHost}]` : apiHost])];
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): AppConfig {
  const known = Object.fromEntries(Object.keys(environmentSchema.shape).map((k) => [k, env[k]]));
  const parsed = environmentSchema.safeParse(known);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => ({
      variable: String(issue.path[0] ?? '(environment)'),
      problem: issue.message,
    }));
    const lines = issues.map((i) => `  ${i.variable}=${JSON.stringify(env[i.variable] ?? '')}: ${i.problem}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`, issues);
  }
  const e = parsed.data;
  return {
    nodeEnv: e.NODE_ENV,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    dataDir: path.resolve(cwd, e.MLOPS_DATA_DIR),
    postgresFallbackDir: path.resolve(cwd, e.MLOPS_POSTGRES_FALLBACK_DIR),
    toolsDir: e.MLOPS_TOOLS_DIR ? path.resolve(cwd, e.MLOPS_TOOLS_DIR) : defaultToolsDir(),
    binaryDownloads: e.MLOPS_BINARY_DOWNLOADS,
    demo: e.MLOPS_DEMO,
    temporal: {
      address: e.TEMPORAL_ADDRESS,
      namespace: e.TEMPORAL_NAMESPACE,
      taskQueue: e.TEMPORAL_TASK_QUEUE,
      trainingTaskQueue: e.TEMPORAL_TRAINING_TASK_QUEUE,
      port: e.TEMPORAL_PORT,
      uiPort: e.TEMPORAL_UI_PORT,
    },
    database: { url: e.DATABASE_URL, port: e.POSTGRES_PORT },
    s3: {
      endpoint: e.S3_ENDPOINT,
      accessKey: e.S3_ACCESS_KEY,
      secretKey: e.S3_SECRET_KEY,
      bucket: e.S3_BUCKET,
      region: e.S3_REGION,
      port: e.MINIO_PORT,
      consolePort: e.MINIO_CONSOLE_PORT,
    },
    api: {
      host: e.API_HOST,
      port: e.API_PORT,
      bodyLimitBytes: e.API_BODY_LIMIT_BYTES,
      auth: e.API_AUTH,
      allowedHosts: allowedHostsOf(e.API_ALLOWED_HOSTS, e.API_HOST),
      rateLimitPerSecond: e.API_RATE_LIMIT_PER_SECOND,
    },
    serving: {
      maxInstances: e.SERVING_MAX_INSTANCES,
      maxBatchRows: e.SERVING_MAX_BATCH_ROWS,
      maxWaitMs: e.SERVING_MAX_WAIT_MS,
      inferenceThreads: e.SERVING_INFERENCE_THREADS,
      maxInferenceThreads: e.SERVING_MAX_INFERENCE_THREADS,
      sessionThreads: e.SERVING_SESSION_THREADS,
    },
    predictionLog: {
      sampleRate: e.PREDICTION_LOG_SAMPLE_RATE,
      queueSize: e.PREDICTION_LOG_QUEUE_SIZE,
      batchSize: e.PREDICTION_LOG_BATCH_SIZE,
      flushMs: e.PREDICTION_LOG_FLUSH_MS,
      maxBusyShare: e.PREDICTION_LOG_MAX_BUSY_SHARE,
      retentionDays: e.PREDICTION_LOG_RETENTION_DAYS,
      partitionsAheadDays: e.PREDICTION_LOG_PARTITIONS_AHEAD_DAYS,
    },
    dataAccess: {
      roots:
        e.DATA_ROOTS === undefined
          ? [path.join(path.resolve(cwd, e.MLOPS_DATA_DIR), 'sources')]
          : listSetting(e.DATA_ROOTS).map((r) => path.resolve(cwd, r)),
      buckets: e.DATA_BUCKETS === undefined ? [`${e.S3_BUCKET}/landing/`] : listSetting(e.DATA_BUCKETS),
      maxFiles: e.DATA_MAX_FILES,
      maxDepth: e.DATA_MAX_DEPTH,
      connectionsKey: e.CONNECTIONS_KEY,
      connectTimeoutMs: e.SOURCE_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: e.SOURCE_STATEMENT_TIMEOUT_MS,
      probeTimeoutMs: e.SOURCE_PROBE_TIMEOUT_MS,
    },
    worker: {
      maxConcurrentActivities: e.WORKER_MAX_CONCURRENT_ACTIVITIES,
      maxConcurrentWorkflowTasks: e.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS,
      trainingMaxConcurrentActivities: e.TRAINING_WORKER_MAX_CONCURRENT_ACTIVITIES,
      shutdownGraceSeconds: e.WORKER_SHUTDOWN_GRACE_SECONDS,
      rolloutReconcileEverySeconds: e.ROLLOUT_RECONCILE_EVERY_SECONDS,
      metricsBindAddress: bindAddressOf(e.WORKER_METRICS_HOST, e.WORKER_METRICS_PORT),
    },
    serviceStartTimeoutSeconds: e.SERVICE_START_TIMEOUT_SECONDS,
  };
}

/** `host:port` to bind (an IPv6 host in brackets); undefined for port 0, which turns the listener off. */
export function bindAddressOf(host: string, port: number): string | undefined {
  if (port === 0) return undefined;
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  return bare.includes(':') ? `[${bare}]:${port}` : `${bare}:${port}`;
}

/** The entries of a comma-separated setting, trimmed, empty ones left out. */
function listSetting(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

/** The resolved endpoints of the three services, whether external or started locally. */
export interface ServiceEndpoints {
  readonly temporal: { readonly address: string; readonly namespace: string; readonly uiUrl: string | undefined };
  readonly databaseUrl: string;
  readonly s3: {
    readonly endpoint: string;
    readonly accessKey: string;
    readonly secretKey: string;
    readonly bucket: string;
    readonly region: string;
  };
}
