/**
 * Online serving: the model pool that keeps every active deployment's ONNX sessions loaded and in step with the
 * registry (model-pool.ts), micro-batching per model (batcher.ts), request validation against the stored signature
 * (signature.ts) and Prometheus metrics (metrics.ts). The HTTP routes are server/routes/predict.ts and metrics.ts.
 */
import os from 'node:os';
import type { Logger } from '../core/logger.js';
import type { ArtifactStore } from '../storage/artifact-store.js';
import { InferenceThreadPool } from './inference-thread-pool.js';
import { onnxModelLoader } from './load-model.js';
import { ServingMetrics } from './metrics.js';
import { ModelPool, type ModelPoolOptions, type PoolDeployments, type PoolRegistry } from './model-pool.js';
import type { PredictionLogOptions, PredictionLogWriter } from './prediction-log.js';
import { createPredictionLogWriter } from './prediction-log-postgres.js';
import { shadowLogRecord } from './prediction-log-records.js';

export { MicroBatcher, BatcherOverloadedError, type BatchSlice, type MicroBatcherOptions } from './batcher.js';
export { LoadedModel, type Prediction, type ScoringSession } from './loaded-model.js';
export { InferenceThread, InferenceThreadError, RemoteInferenceError } from './inference-thread.js';
export { InferenceThreadPool } from './inference-thread-pool.js';
export {
  createSessionInProcess,
  onnxModelLoader,
  readClasses,
  ModelLoadError,
  type CreateSession,
  type ModelLoader,
} from './load-model.js';
export { ServingMetrics, UNRESOLVED } from './metrics.js';
export {
  ModelPool,
  type DeploymentStatus,
  type ModelPoolOptions,
  type PoolDeployments,
  type PoolRegistry,
} from './model-pool.js';
export { ModelUnavailableError, ServingNotFoundError } from './pool-errors.js';
export type { VersionRef } from './explicit-versions.js';
export {
  isRejectedRowsError,
  PredictionLogWriter,
  PREDICTION_LOG_DEFAULTS,
  type PredictionLogOptions,
  type PredictionLogSink,
  type PredictionLogStats,
} from './prediction-log.js';
export { createPredictionLogWriter, postgresPredictionLogSink } from './prediction-log-postgres.js';
export { shadowLogRecord, type PredictionLogRecord, type PredictionLogRow } from './prediction-log-records.js';
export { pickTarget, RoutingTable, type DeploymentRoute, type RouteTarget } from './routing.js';
export { compileSignature, parsePredictBody, validateInstances, PredictRequestError } from './signature.js';

/** Tuning of online serving; every field has a default. */
export interface ServingOptions extends Pick<
  ModelPoolOptions,
  | 'listen'
  | 'pollIntervalMs'
  | 'aliasTtlMs'
  | 'explicitIdleMs'
  | 'maxExplicitModels'
  | 'loadRetryMs'
  | 'listenerApplicationName'
> {
  /** Most rows per session.run. Default 256. */
  readonly maxBatchRows?: number;
  /** How long a batch formed under load waits to fill, in ms. Default 0 (see MicroBatcherOptions). */
  readonly maxWaitMs?: number;
  /** Most instances per request. Default 1000. */
  readonly maxInstances?: number;
  /** onnxruntime intra-op threads per session. Default 1; at most the CPU count. */
  readonly sessionThreads?: number;
  /**
   * Most inference threads (with `inferenceThread`); beyond, loaded versions share them. Default 4; at most the CPU
   * count.
   */
  readonly maxInferenceThreads?: number;
  /**
   * Create and run each loaded version's session in a worker thread of its own instead of on the API's event loop.
   * Default true: a deploy's session creation then never stalls requests in flight, and scoring overlaps with HTTP
   * work.
   */
  readonly inferenceThread?: boolean;
  /** Collect Node's process metrics too. Default true. */
  readonly defaultMetrics?: boolean;
  /**
   * Log answered requests (and shadows' answers) to `prediction_logs` through a writer on a connection of its own
   * to `databaseUrl`; off when absent or without a `databaseUrl`.
   */
  readonly predictionLog?: PredictionLogOptions;
}

/** What the API needs to serve predictions (ApiDeps.serving). */
export interface Serving {
  readonly pool: ModelPool;
  readonly metrics: ServingMetrics;
  readonly maxInstances?: number;
  /** The prediction log writer, when logging is on: close it (bounded) on shutdown, after the server. */
  readonly predictionLog?: PredictionLogWriter;
  /** Ends the inference threads still running: on shutdown, after the pool is closed. */
  readonly closeInference: () => Promise<void>;
}

/**
 * Builds the pool (not started: call `pool.start()`) and its metrics over the platform's registry, deployments and
 * artifact store. `databaseUrl` is the LISTEN connection's.
 */
export function createServing(deps: {
  registry: PoolRegistry;
  deployments: PoolDeployments;
  artifacts: Pick<ArtifactStore, 'get'>;
  databaseUrl?: string;
  logger: Logger;
  options?: ServingOptions;
}): Serving {
  const options = deps.options ?? {};
  const metrics = new ServingMetrics({ defaultMetrics: options.defaultMetrics ?? true });
  const logger = deps.logger.child({ component: 'serving' });
  const predictionLog =
    options.predictionLog && deps.databaseUrl
      ? createPredictionLogWriter({ ...options.predictionLog, databaseUrl: deps.databaseUrl, metrics, logger })
      : undefined;
  const bounds = inferenceBounds(options);
  const threads = new InferenceThreadPool({ maxThreads: bounds.maxThreads });
  const pool = new ModelPool({
    registry: deps.registry,
    deployments: deps.deployments,
    metrics,
    logger,
    ...(deps.databaseUrl ? { databaseUrl: deps.databaseUrl } : {}),
    ...(predictionLog ? { onShadowResult: (result) => predictionLog.enqueue(shadowLogRecord(result)) } : {}),
    ...pick(options, [
      'listen',
      'pollIntervalMs',
      'aliasTtlMs',
      'explicitIdleMs',
      'maxExplicitModels',
      'loadRetryMs',
      'listenerApplicationName',
    ]),
    loadModel: onnxModelLoader({
      artifacts: deps.artifacts,
      metrics,
      sessionThreads: bounds.sessionThreads,
      ...(options.inferenceThread === false
        ? {}
        : { createSession: (bytes, sessionOptions) => threads.createSession(bytes, sessionOptions) }),
      modelOptions: {
        ...pick(options, ['maxBatchRows', 'maxWaitMs']),
        onReleaseError: (model, error) =>
          logger.warn({ err: error, model: model.identity.name, version: model.identity.version }, 'release failed'),
      },
    }),
  });
  return {
    pool,
    metrics,
    ...(options.maxInstances ? { maxInstances: options.maxInstances } : {}),
    ...(predictionLog ? { predictionLog } : {}),
    closeInference: () => threads.close(),
  };
}

/** Default of {@link ServingOptions.maxInferenceThreads}. */
const DEFAULT_MAX_INFERENCE_THREADS = 4;

/**
 * The inference thread bounds serving uses: the configured values (or defaults), each at least 1 and at most the
 * CPU count (`cpus`, default `os.availableParallelism()`), so that neither the thread count nor onnxruntime's intra-op
 * threads can oversubscribe the machine whatever is configured.
 */
export function inferenceBounds(
  options: Pick<ServingOptions, 'maxInferenceThreads' | 'sessionThreads'>,
  cpus: number = os.availableParallelism(),
): { maxThreads: number; sessionThreads: number } {
  const bound = (value: number | undefined, fallback: number) =>
    Math.max(1, Math.min(Math.floor(value ?? fallback), Math.max(1, cpus)));
  return {
    maxThreads: bound(options.maxInferenceThreads, DEFAULT_MAX_INFERENCE_THREADS),
    sessionThreads: bound(options.sessionThreads, 1),
  };
}

/** The fields of `object` among `keys` that are defined (exactOptionalPropertyTypes-friendly spreading). */
function pick<T extends object, K extends keyof T>(object: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const key of keys) if (object[key] !== undefined) out[key] = object[key];
  return out;
}
