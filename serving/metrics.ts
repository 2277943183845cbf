/**
 * Prometheus metrics of online serving, on a registry of their own (never prom-client's global one, so tests and
 * several apps in one process do not collide). Label children are created once per model version and status and
 * kept, so the hot path does no label hashing.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Request durations in seconds: fine-grained below 5 ms, where a healthy in-process model answers. */
export const REQUEST_DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
  0.25, 0.5, 1, 2.5,
] as const;

/** Prediction log flushes in seconds: one INSERT of up to a batch, a few ms when Postgres is healthy. */
export const LOG_FLUSH_DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;

/** Rows per session.run. */
export const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] as const;

/** Label value of `model` and `version` for requests that never resolved a model (unknown name, malformed body). */
export const UNRESOLVED = '';

export interface ServingMetricsOptions {
  /** Also collect Node's process metrics (event-loop lag, heap, GC) into this registry. Default true. */
  readonly defaultMetrics?: boolean;
}

type Inc = { inc(value?: number): void };
type Observe = { observe(value: number): void };

/** The children of one model version: what a request touches. */
export interface ModelMetrics {
  readonly batchSize: Observe;
  /** Counts the request with its HTTP status and observes its duration in seconds. */
  observe(status: number, seconds: number): void;
}

export class ServingMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'model' | 'version' | 'status'>;
  readonly requestDuration: Histogram<'model' | 'version'>;
  readonly batchSize: Histogram<'model' | 'version'>;
  readonly modelLoads: Counter<'model' | 'version' | 'result'>;
  readonly loadedModels: Gauge;
  /** Prediction log rows waiting to be written to Postgres (read from the writer when scraped). */
  readonly logQueueDepth: Gauge;
  /** Prediction log rows dropped: the queue was full, or they were still unwritten at shutdown. */
  readonly droppedLogs: Counter;
  /** Prediction log rows written to Postgres. */
  readonly writtenLogs: Counter;
  /** Prediction log rows Postgres refused for their content (data or constraint errors). */
  readonly rejectedLogs: Counter;
  /** Failed prediction log writes (each retry counts). */
  readonly logWriteErrors: Counter;
  /** Duration of each prediction log flush (its INSERTs), in seconds. */
  readonly logFlushDuration: Histogram;
  readonly #models = new Map<string, ModelMetrics>();
  #logQueueDepth: () => number = () => 0;

  constructor(options: ServingMetricsOptions = {}) {
    const registry = new Registry();
    this.registry = registry;
    this.requests = new Counter({
      name: 'mlops_serving_requests_total',
      help: 'Prediction requests, by model, version and HTTP status.',
      labelNames: ['model', 'version', 'status'],
      registers: [registry],
    });
    this.requestDuration = new Histogram({
      name: 'mlops_serving_request_duration_seconds',
      help: 'Time from the predict handler receiving a request to its response, by model and version.',
      labelNames: ['model', 'version'],
      buckets: [...REQUEST_DURATION_BUCKETS],
      registers: [registry],
    });
    this.batchSize = new Histogram({
      name: 'mlops_serving_batch_size',
      help: 'Rows per session.run (micro-batches of concurrent requests).',
      labelNames: ['model', 'version'],
      buckets: [...BATCH_SIZE_BUCKETS],
      registers: [registry],
    });
    this.modelLoads = new Counter({
      name: 'mlops_serving_model_loads_total',
      help: 'Attempts to load a model version (download, sha256 check, session, warm-up), by result: success or failure.',
      labelNames: ['model', 'version', 'result'],
      registers: [registry],
    });
    this.loadedModels = new Gauge({
      name: 'mlops_serving_loaded_models',
      help: 'Model versions with a live onnxruntime session.',
      registers: [registry],
    });
    const depth = () => this.#logQueueDepth();
    this.logQueueDepth = new Gauge({
      name: 'mlops_serving_prediction_log_queue_depth',
      help: 'Prediction log rows waiting to be written.',
      registers: [registry],
      collect() {
        this.set(depth());
      },
    });
    this.droppedLogs = new Counter({
      name: 'mlops_serving_prediction_logs_dropped_total',
      help: 'Prediction log rows dropped: the log queue was full, or they were still unwritten at shutdown.',
      registers: [registry],
    });
    this.writtenLogs = new Counter({
      name: 'mlops_serving_prediction_logs_written_total',
      help: 'Prediction log rows written to Postgres.',
      registers: [registry],
    });
    this.rejectedLogs = new Counter({
      name: 'mlops_serving_prediction_logs_rejected_total',
      help: 'Prediction log rows Postgres refused for their content (data or constraint errors); not retried.',
      registers: [registry],
    });
    this.logWriteErrors = new Counter({
      name: 'mlops_serving_prediction_log_write_errors_total',
      help: 'Failed prediction log writes (Postgres down, slow or refusing rows); each retry counts.',
      registers: [registry],
    });
    this.logFlushDuration = new Histogram({
      name: 'mlops_serving_prediction_log_flush_duration_seconds',
      help: 'Duration of each successful prediction log flush (its INSERTs), in seconds.',
      buckets: [...LOG_FLUSH_DURATION_BUCKETS],
      registers: [registry],
    });
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  }

  /** The (cached) children for one model version; `UNRESOLVED` for both when no model was resolved. */
  forModel(model: string, version: string): ModelMetrics {
    const key = `${model}\u0000${version}`;
    let children = this.#models.get(key);
    if (children === undefined) {
      const labels = { model, version };
      const duration = this.requestDuration.labels(labels);
      const byStatus = new Map<number, Inc>();
      const requests = this.requests;
      children = {
        batchSize: this.batchSize.labels(labels),
        observe(status: number, seconds: number): void {
          let counter = byStatus.get(status);
          if (counter === undefined) {
            counter = requests.labels({ model, version, status: String(status) });
            byStatus.set(status, counter);
          }
          counter.inc();
          duration.observe(seconds);
        },
      };
      this.#models.set(key, children);
    }
    return children;
  }

  /** Where the queue depth gauge reads its value (the prediction log writer). */
  setLogQueueDepthSource(source: () => number): void {
    this.#logQueueDepth = source;
  }

  /** The exposition text and its content type, for `GET /metrics`. */
  async render(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
