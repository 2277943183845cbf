/**
 * Shadow scoring for the model pool: a copy of an answered request is scored on each shadow version of its
 * deployment, off the request path, and the answers go to a handler (the prediction log), never to the caller.
 * Copies beyond `maxInFlight` are dropped, never queued; every copy is counted in
 * `mlops_serving_shadow_predictions_total{result}`.
 */
import { Counter } from 'prom-client';
import type { Logger } from '../core/logger.js';
import type { LoadedModel, ModelIdentity, Prediction } from './loaded-model.js';
import type { ServingMetrics } from './metrics.js';
import { errorMessage } from './pool-errors.js';
import type { RouteTarget } from './routing.js';
import { validateInstances, type Instance } from './signature.js';

/** One shadow version's answer to a copy of a request: logged, never returned. */
export interface ShadowResult {
  readonly deployment: string;
  /** The id of the request whose instances were copied. */
  readonly requestId: string;
  readonly model: Pick<ModelIdentity, 'name' | 'version' | 'versionId'>;
  readonly instances: readonly Instance[];
  /** One per instance, when the shadow scored them. */
  readonly predictions?: readonly Prediction[];
  /** Why the shadow could not score them (the instances do not fit its signature, the run failed, ...). */
  readonly error?: string;
  /** When scoring the copy began. */
  readonly startedAt: Date;
  /** From scoring's start to its end, in ms. */
  readonly latencyMs: number;
}

/** Called with each shadow result; what it throws is swallowed (and counted). */
export type ShadowResultHandler = (result: ShadowResult) => void;

export interface ShadowScorerOptions {
  readonly metrics: ServingMetrics;
  readonly logger: Logger;
  /** Shadow scorings in flight at most; copies beyond are dropped (and counted). */
  readonly maxInFlight: number;
}

/** Scores copies of requests on shadow versions; the pool decides which shadows a request has. */
export class ShadowScorer {
  readonly #logger: Logger;
  readonly #maxInFlight: number;
  readonly #results: Counter<'model' | 'version' | 'result'>;
  #inFlight = 0;

  constructor(options: ShadowScorerOptions) {
    this.#logger = options.logger;
    this.#maxInFlight = options.maxInFlight;
    this.#results = shadowCounter(options.metrics);
  }

  /** Shadow copies being scored now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Scores a copy of `instances` on each of `shadows`, starting on a later turn of the event loop, each on its own
   * session and batcher. Never throws: a shadow that cannot score yields a result with `error`; a copy is dropped
   * (and counted) when `maxInFlight` copies are already being scored or the shadow's model is retired.
   */
  score(
    deployment: string,
    shadows: readonly RouteTarget[],
    instances: readonly Instance[],
    requestId: string,
    onResult: ShadowResultHandler | undefined,
  ): void {
    for (const target of shadows) {
      const model = target.model;
      if (this.#inFlight >= this.#maxInFlight || !model.acquire()) {
        this.#count(model, 'dropped');
        continue;
      }
      this.#inFlight++;
      setImmediate(() => {
        void this.#scoreOne(deployment, model, instances, requestId, onResult).finally(() => {
          this.#inFlight--;
          model.release();
        });
      });
    }
  }

  async #scoreOne(
    deployment: string,
    model: LoadedModel,
    instances: readonly Instance[],
    requestId: string,
    onResult: ShadowResultHandler | undefined,
  ): Promise<void> {
    const startedAt = new Date();
    const started = performance.now();
    let predictions: Prediction[] | undefined;
    let error: string | undefined;
    try {
      validateInstances(model.signature, { instances, single: false });
      predictions = model.predictions(await model.score(instances));
    } catch (e) {
      error = errorMessage(e);
    }
    const result: ShadowResult = {
      deployment,
      requestId,
      model: model.summary,
      instances,
      ...(predictions ? { predictions } : {}),
      ...(error !== undefined ? { error } : {}),
      startedAt,
      latencyMs: performance.now() - started,
    };
    let outcome: 'success' | 'error' = error === undefined ? 'success' : 'error';
    try {
      onResult?.(result);
    } catch (e) {
      outcome = 'error';
      this.#logger.debug({ err: e, deployment }, 'serving: the shadow result handler failed');
    }
    this.#count(model, outcome);
  }

  #count(model: LoadedModel, result: 'success' | 'error' | 'dropped'): void {
    this.#results.inc({ model: model.identity.name, version: String(model.identity.version), result });
  }
}

const SHADOW_METRIC = 'mlops_serving_shadow_predictions_total';

/** The shadow counter on the serving registry, created once per registry (pools may share one). */
function shadowCounter(metrics: ServingMetrics): Counter<'model' | 'version' | 'result'> {
  const existing = metrics.registry.getSingleMetric(SHADOW_METRIC);
  if (existing) return existing as Counter<'model' | 'version' | 'result'>;
  return new Counter({
    name: SHADOW_METRIC,
    help: 'Copies of requests scored by shadow versions, by model, version and result: success, error or dropped.',
    labelNames: ['model', 'version', 'result'],
    registers: [metrics.registry],
  });
}
