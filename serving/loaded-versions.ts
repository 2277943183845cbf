/**
 * The model pool's live sessions, by version id: each version is loaded once however many ask at the same time, a
 * failed load is remembered for a while (requests addressing it explicitly get a 503 without a new attempt), and
 * {@link LoadedVersions.collect} retires what no route references any more. A retired session is released when the
 * last request holding it is done. Routing and resolution are the pool's (model-pool.ts).
 */
import type { Logger } from '../core/logger.js';
import type { ModelVersion } from '../schema/registry.js';
import type { RegistryStore } from '../storage/registry-store.js';
import type { LoadedModel } from './loaded-model.js';
import type { ModelLoader } from './load-model.js';
import type { ServingMetrics } from './metrics.js';
import { errorMessage, ModelUnavailableError, ServingNotFoundError } from './pool-errors.js';

export interface LoadedVersionsOptions {
  readonly registry: Pick<RegistryStore, 'getVersionById'>;
  readonly loadModel: ModelLoader;
  readonly metrics: ServingMetrics;
  readonly logger: Logger;
  /** Explicitly addressed versions unused for this long are released, in ms. */
  readonly explicitIdleMs: number;
  /** Explicitly addressed versions kept at most (besides routed ones). */
  readonly maxExplicit: number;
  /** How long a failed load is answered from memory for explicit requests, in ms. */
  readonly loadRetryMs: number;
}

export class LoadedVersions {
  readonly #registry: Pick<RegistryStore, 'getVersionById'>;
  readonly #loadModel: ModelLoader;
  readonly #metrics: ServingMetrics;
  readonly #logger: Logger;
  readonly #explicitIdleMs: number;
  readonly #maxExplicit: number;
  readonly #loadRetryMs: number;
  /** Live sessions by version id. */
  readonly #loaded = new Map<string, LoadedModel>();
  /** Loads in progress by version id (concurrent askers share one load). */
  readonly #loading = new Map<string, Promise<LoadedModel>>();
  /** Models a refresh holds between loading them and swapping them in: never collected meanwhile. */
  readonly #pinned = new Map<LoadedModel, number>();
  /** Versions that failed to load: requests addressing them explicitly get a 503 without a new attempt for a while. */
  readonly #recentFailures = new Map<string, { readonly message: string; readonly until: number }>();
  #closed = false;

  constructor(options: LoadedVersionsOptions) {
    this.#registry = options.registry;
    this.#loadModel = options.loadModel;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#explicitIdleMs = options.explicitIdleMs;
    this.#maxExplicit = options.maxExplicit;
    this.#loadRetryMs = options.loadRetryMs;
  }

  /** The live session of a version, if loaded (retired ones are gone from here). */
  get(versionId: string): LoadedModel | undefined {
    return this.#loaded.get(versionId);
  }

  /** The loaded sessions' version ids (routed and explicit). */
  versionIds(): string[] {
    return [...this.#loaded.keys()];
  }

  /** Why the version failed to load, while that failure is recent enough to answer without a new attempt. */
  recentFailure(versionId: string): string | undefined {
    const failed = this.#recentFailures.get(versionId);
    return failed !== undefined && failed.until > performance.now() ? failed.message : undefined;
  }

  /** The live session of the version, loading it once however many ask at the same time. */
  load(modelName: string, versionId: string, known: ModelVersion | undefined, explicit: boolean): Promise<LoadedModel> {
    const loaded = this.#loaded.get(versionId);
    if (loaded !== undefined && !loaded.retired) {
      if (explicit) loaded.lastExplicitUse = performance.now();
      return Promise.resolve(loaded);
    }
    let loading = this.#loading.get(versionId);
    if (loading === undefined) {
      loading = this.#load(modelName, versionId, known).finally(() => this.#loading.delete(versionId));
      this.#loading.set(versionId, loading);
    }
    if (!explicit) return loading;
    return loading.then((model) => {
      model.lastExplicitUse = performance.now();
      return model;
    });
  }

  /** Keeps `model` from being collected until as many {@link unpin} calls. */
  pin(model: LoadedModel): void {
    this.#pinned.set(model, (this.#pinned.get(model) ?? 0) + 1);
  }

  unpin(model: LoadedModel): void {
    const count = (this.#pinned.get(model) ?? 1) - 1;
    if (count <= 0) this.#pinned.delete(model);
    else this.#pinned.set(model, count);
  }

  /** Retires every session `routed` does not hold, unless explicitly used recently (the most recent few only). */
  collect(routed: ReadonlySet<LoadedModel>): void {
    const now = performance.now();
    const explicit: [string, LoadedModel][] = [];
    for (const [versionId, model] of this.#loaded) {
      if (routed.has(model) || this.#pinned.has(model)) continue;
      if (model.lastExplicitUse > 0 && now - model.lastExplicitUse < this.#explicitIdleMs) {
        explicit.push([versionId, model]);
        continue;
      }
      this.#retire(versionId, model);
    }
    if (explicit.length > this.#maxExplicit) {
      explicit.sort((a, b) => b[1].lastExplicitUse - a[1].lastExplicitUse);
      for (const [versionId, model] of explicit.slice(this.#maxExplicit)) this.#retire(versionId, model);
    }
  }

  /** From now on, a load that finishes is released at once and rejected: the pool is closing. */
  close(): void {
    this.#closed = true;
  }

  /** Retires every session (each released after its in-flight requests). */
  async retireAll(): Promise<void> {
    const releases = [...this.#loaded.values()].map((m) => m.retire());
    this.#loaded.clear();
    this.#metrics.loadedModels.set(0);
    await Promise.allSettled(releases);
  }

  async #load(modelName: string, versionId: string, known: ModelVersion | undefined): Promise<LoadedModel> {
    const version = known ?? (await this.#registry.getVersionById(versionId));
    if (!version)
      throw new ServingNotFoundError('model_version_not_found', `model version ${versionId} does not exist`);
    const labels = { model: modelName, version: String(version.version) };
    const started = performance.now();
    let model: LoadedModel;
    try {
      model = await this.#loadModel(modelName, version);
    } catch (error) {
      this.#recentFailures.set(versionId, {
        message: errorMessage(error),
        until: performance.now() + this.#loadRetryMs,
      });
      this.#metrics.modelLoads.inc({ ...labels, result: 'failure' });
      this.#logger.error(
        { err: error, model: modelName, version: version.version, versionId, onnxUri: version.onnxUri },
        'serving: a model version failed to load; it is not served (retried on the next notification or poll)',
      );
      throw error;
    }
    this.#recentFailures.delete(versionId);
    this.#metrics.modelLoads.inc({ ...labels, result: 'success' });
    if (this.#closed) {
      await model.retire();
      throw new ModelUnavailableError('the model pool is closed');
    }
    this.#loaded.set(versionId, model);
    this.#metrics.loadedModels.set(this.#loaded.size);
    this.#logger.info(
      { model: modelName, version: version.version, versionId, loadMs: Math.round(performance.now() - started) },
      'serving: model version loaded',
    );
    return model;
  }

  #retire(versionId: string, model: LoadedModel): void {
    this.#loaded.delete(versionId);
    this.#metrics.loadedModels.set(this.#loaded.size);
    this.#logger.info(
      { model: model.identity.name, version: model.identity.version, versionId, inFlight: model.refs },
      'serving: model version retired; its session is released once in-flight requests finish',
    );
    void model.retire();
  }
}
