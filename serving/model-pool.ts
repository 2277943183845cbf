/**
 * The serving model pool: the loaded versions of every active deployment, kept in step with the registry.
 *
 * - Sessions are kept by version id; a deployment's route (champion, room for challengers and shadows) references
 *   them. The registry is re-read on every notification on the deployments channel (a dedicated LISTEN connection,
 *   reconnected with backoff) and by polling every `pollIntervalMs` as a fallback; a deployment changes when its
 *   active revision ids do.
 * - A change loads the new versions in the background while the old route keeps answering, then swaps the route in
 *   with one assignment. A version that fails to download, verify, load or warm up is never swapped in: the failure
 *   is logged and counted (`mlops_serving_model_loads_total{result="failure"}`), the old route stays, and the next
 *   notification or poll tries again.
 * - A version nothing references any more is retired: new requests cannot acquire it, and its session is released
 *   when the last request holding it (queued in its batcher included) is done, not after a grace period.
 * - Versions addressed explicitly (a version number or an alias in the request) are loaded on demand and kept while
 *   used: released after `explicitIdleMs` without a request, at most `maxExplicitModels` of them beyond the routed
 *   ones.
 * - Canaries: a challenger answers its share of a deployment's requests, drawn at random or, when the deployment has a
 *   sticky key, by a hash of that field's value in the request (see routing.ts); `acquireTarget` tells the caller
 *   which role answered. Shadows: `shadow()` scores a copy of an answered request on each shadow version off the
 *   request path and hands the answers to `onShadowResult` (the prediction log), never to the caller.
 */
import { Counter } from 'prom-client';
import type { Logger } from '../core/logger.js';
import type { ModelVersion } from '../schema/registry.js';
import {
  CHAMPION_ALIAS,
  DEPLOYMENTS_CHANNEL,
  STICKY_KEY_CONFIG,
  type RegistryStore,
} from '../storage/registry-store.js';
import { DeploymentListener } from './deployment-listener.js';
import type { LoadedModel, ModelIdentity, Prediction } from './loaded-model.js';
import type { ModelLoader } from './load-model.js';
import type { ServingMetrics } from './metrics.js';
import { pickTarget, RoutingTable, type DeploymentRoute, type RouteTarget } from './routing.js';
import { validateInstances, type Instance } from './signature.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

/** The registry reads the pool makes. */
export type PoolRegistry = Pick<
  RegistryStore,
  'listDeployments' | 'getDeployment' | 'activeRevisions' | 'getVersion' | 'getVersionById' | 'getModel'
>;

export interface ModelPoolOptions {
  readonly registry: PoolRegistry;
  readonly loadModel: ModelLoader;
  readonly metrics: ServingMetrics;
  readonly logger: Logger;
  /** Postgres connection string for the LISTEN connection; without it the pool only polls. */
  readonly databaseUrl?: string;
  /** LISTEN for deployment notifications (needs `databaseUrl`). Default true. */
  readonly listen?: boolean;
  /** The notification channel. Default {@link DEPLOYMENTS_CHANNEL}. */
  readonly channel?: string;
  /** Application name of the LISTEN connection. */
  readonly listenerApplicationName?: string;
  /** How often every deployment is re-read whatever the notifications say, in ms; 0 turns polling off. Default 30 000. */
  readonly pollIntervalMs?: number;
  /** How long an alias (other than through a deployment) is trusted before it is resolved again. Default 5 000 ms. */
  readonly aliasTtlMs?: number;
  /** Explicitly addressed versions unused for this long are released. Default 10 minutes. */
  readonly explicitIdleMs?: number;
  /** Explicitly addressed versions kept at most (besides routed ones). Default 8. */
  readonly maxExplicitModels?: number;
  /**
   * After a version failed to load, requests that address it explicitly are answered 503 without a new attempt for
   * this long (deployments are retried by notifications and polls only). Default 5 000 ms.
   */
  readonly loadRetryMs?: number;
  /** Reconnect delays of the LISTEN connection. */
  readonly listenerBackoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Receives every shadow prediction (the prediction log writer, role `shadow`); see {@link ModelPool.shadow}. */
  readonly onShadowResult?: ShadowResultHandler;
  /** Shadow scorings in flight at most; copies beyond are dropped (and counted), never queued. Default 64. */
  readonly maxShadowInFlight?: number;
}

/** What a request addresses: a version or alias, and its instances (whose sticky key may pick a canary's side). */
export interface RouteRequest extends VersionRef {
  readonly instances?: readonly Instance[] | undefined;
}

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

/** Which version an explicit request addresses. */
export interface VersionRef {
  readonly version?: number | undefined;
  readonly alias?: string | undefined;
}

/** Thrown when the addressed deployment, model or version does not exist (404). */
export class ServingNotFoundError extends DomainError {
  override readonly name = 'ServingNotFoundError';
  override readonly code: 'model_not_found' | 'model_version_not_found';
  constructor(code: 'model_not_found' | 'model_version_not_found', message: string) {
    super('not_found', message, { code });
    this.code = code;
  }
}

/** Thrown when the addressed model exists but cannot answer now (it failed to load); worth retrying (503). */
export class ModelUnavailableError extends DomainError {
  override readonly name = 'ModelUnavailableError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('unavailable', message, { code: 'model_unavailable', ...options });
  }
}

/** What a deployment serves right now, for status pages and tests. */
export interface DeploymentStatus {
  readonly deployment: string;
  readonly modelName: string;
  readonly revisionKey: string;
  /** The instance field a sticky canary routes by. */
  readonly stickyKey?: string;
  readonly targets: readonly {
    readonly role: string;
    readonly trafficPercent: number;
    readonly revisionId: string;
    readonly version: number;
    readonly versionId: string;
  }[];
}

interface CachedRef {
  readonly versionId: string;
  /** performance.now() after which the reference is resolved again; Infinity for version numbers. */
  readonly expires: number;
}

const MAX_CACHED_REFS = 10_000;
const ACQUIRE_ATTEMPTS = 3;

function describeRef(ref: VersionRef): string {
  return ref.version !== undefined ? `version ${ref.version}` : `alias ${ref.alias}`;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class ModelPool {
  readonly #registry: PoolRegistry;
  readonly #loadModel: ModelLoader;
  readonly #metrics: ServingMetrics;
  readonly #logger: Logger;
  readonly #pollIntervalMs: number;
  readonly #aliasTtlMs: number;
  readonly #explicitIdleMs: number;
  readonly #maxExplicit: number;
  readonly #routes = new RoutingTable();
  /** Every deployment known to exist → the model it serves. */
  readonly #deployments = new Map<string, string>();
  /** Live sessions by version id. */
  readonly #loaded = new Map<string, LoadedModel>();
  /** Loads in progress by version id (concurrent askers share one load). */
  readonly #loading = new Map<string, Promise<LoadedModel>>();
  /** Models a refresh holds between loading them and swapping them in: never collected meanwhile. */
  readonly #pinned = new Map<LoadedModel, number>();
  /** `model\0#3` and `model\0@alias` → version id. */
  readonly #refs = new Map<string, CachedRef>();
  readonly #refreshes = new Map<string, { again: boolean; done: Promise<void> }>();
  /** The last failed load per deployment (until a refresh succeeds), for the 503 message. */
  readonly #failures = new Map<string, string>();
  /** Versions that failed to load: requests addressing them explicitly get a 503 without a new attempt for a while. */
  readonly #recentFailures = new Map<string, { readonly message: string; readonly until: number }>();
  readonly #loadRetryMs: number;
  readonly #listener: DeploymentListener | undefined;
  /** A RouteTarget per explicitly addressed model, built once (its role is champion; no deployment). */
  readonly #explicitTargets = new WeakMap<LoadedModel, RouteTarget>();
  readonly #onShadowResult: ShadowResultHandler | undefined;
  readonly #maxShadowInFlight: number;
  readonly #shadowResults: Counter<'model' | 'version' | 'result'>;
  #shadowInFlight = 0;
  #refreshingAll: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #initialLoadDone = false;

  constructor(options: ModelPoolOptions) {
    this.#registry = options.registry;
    this.#loadModel = options.loadModel;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#pollIntervalMs = options.pollIntervalMs ?? 30_000;
    this.#aliasTtlMs = options.aliasTtlMs ?? 5_000;
    this.#explicitIdleMs = options.explicitIdleMs ?? 10 * 60_000;
    this.#maxExplicit = options.maxExplicitModels ?? 8;
    this.#loadRetryMs = options.loadRetryMs ?? 5_000;
    this.#onShadowResult = options.onShadowResult;
    this.#maxShadowInFlight = options.maxShadowInFlight ?? 64;
    this.#shadowResults = shadowCounter(options.metrics);
    if ((options.listen ?? true) && options.databaseUrl) {
      this.#listener = new DeploymentListener({
        connectionString: options.databaseUrl,
        channel: options.channel ?? DEPLOYMENTS_CHANNEL,
        logger: options.logger,
        ...(options.listenerApplicationName ? { applicationName: options.listenerApplicationName } : {}),
        ...(options.listenerBackoff?.initialMs ? { initialBackoffMs: options.listenerBackoff.initialMs } : {}),
        ...(options.listenerBackoff?.maxMs ? { maxBackoffMs: options.listenerBackoff.maxMs } : {}),
        onNotification: (payload) => this.#onNotification(payload),
        onConnected: () => {
          // Notifications sent while the connection was down are lost: catch up.
          this.#background(this.refreshAll(), 'refresh after the listener connected');
        },
      });
    }
  }

  /**
   * Whether the deployments have been read and each one's versions loaded (or their load attempted) at least once:
   * what `/readyz` waits for, so a new API process takes traffic with its models in memory rather than loading them
   * on the first requests. A version that failed to load does not hold readiness back (it is reported by its load
   * metric and the deployment status); a registry that could not be read does.
   */
  get initialLoadDone(): boolean {
    return this.#initialLoadDone;
  }

  /** Whether the LISTEN connection is up (false when listening is off). */
  get listening(): boolean {
    return this.#listener?.connected ?? false;
  }

  /**
   * Loads every deployment's versions (failures are logged, not thrown: the API must come up while Postgres or S3
   * is still down) and starts listening and polling.
   */
  async start(): Promise<void> {
    this.#listener?.start();
    // Also the maintenance tick that releases idle explicitly addressed versions when polling is off.
    const tick = this.#pollIntervalMs > 0 ? this.#pollIntervalMs : 60_000;
    this.#timer = setInterval(() => {
      if (this.#pollIntervalMs > 0) this.#background(this.refreshAll(), 'poll');
      this.#collect();
    }, tick);
    this.#timer.unref();
    await this.refreshAll().catch((error: unknown) =>
      this.#logger.error({ err: error }, 'serving: the initial load of deployments failed; polling will retry'),
    );
  }

  /** Stops listening and polling and releases every session (after in-flight requests). */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#listener?.close();
    await Promise.allSettled([...this.#refreshes.values()].map((r) => r.done));
    const releases = [...this.#loaded.values()].map((m) => m.retire());
    this.#loaded.clear();
    this.#metrics.loadedModels.set(0);
    await Promise.allSettled(releases);
  }

  /**
   * The model that answers a request, acquired (the caller must `release()` it): synchronously when everything is
   * cached, which is the hot path, else after asking the registry (and loading the version if needed).
   *
   * `name` is a deployment name, else a model name. Without a version or alias a deployment answers with its route,
   * and a model name with its `champion` alias; with one, the version of the deployment's (or named) model.
   *
   * @throws ServingNotFoundError (404) when nothing has that name or the version does not exist.
   * @throws ModelUnavailableError (503) when the version exists but could not be loaded.
   */
  acquire(name: string, ref: RouteRequest = {}): LoadedModel | Promise<LoadedModel> {
    const target = this.#cached(name, ref);
    if (target?.model.acquire()) return target.model;
    return this.#acquireSlowly(name, ref).then((t) => t.model);
  }

  /**
   * Like {@link acquire}, with the route target that answers: its `role` (champion or challenger) and `deployment`
   * (undefined when a version, alias or model name was addressed; the role is then champion). The caller must
   * `release()` the target's model. A sticky canary routes by the value of its key in `ref.instances[0]`.
   */
  acquireTarget(name: string, ref: RouteRequest = {}): RouteTarget | Promise<RouteTarget> {
    const target = this.#cached(name, ref);
    if (target?.model.acquire()) return target;
    return this.#acquireSlowly(name, ref);
  }

  /**
   * Scores a copy of an answered request's instances on each shadow of the deployment, off the request path: the
   * work starts on a later turn of the event loop (call it once the answer is built), each shadow on its own session
   * and batcher, so it never delays nor changes the answer. Each result goes to `onResult` (default: the pool's
   * `onShadowResult`). Never throws: a shadow that cannot score (a signature that does not fit, a failed run) yields
   * a result with `error`; everything is counted in `mlops_serving_shadow_predictions_total{result}` (success,
   * error, dropped when `maxShadowInFlight` copies are already being scored).
   */
  shadow(
    deployment: string,
    instances: readonly Instance[],
    requestId: string,
    onResult: ShadowResultHandler | undefined = this.#onShadowResult,
  ): void {
    const route = this.#routes.get(deployment);
    if (route === undefined || route.shadows.length === 0 || this.#closed) return;
    for (const target of route.shadows) {
      const model = target.model;
      if (this.#shadowInFlight >= this.#maxShadowInFlight || !model.acquire()) {
        this.#countShadow(model, 'dropped');
        continue;
      }
      this.#shadowInFlight++;
      setImmediate(() => {
        void this.#scoreShadow(deployment, model, instances, requestId, onResult).finally(() => {
          this.#shadowInFlight--;
          model.release();
        });
      });
    }
  }

  /** Shadow copies being scored now. */
  get shadowInFlight(): number {
    return this.#shadowInFlight;
  }

  /** Every deployment's route, by deployment name. */
  status(): DeploymentStatus[] {
    return this.#routes
      .routes()
      .map((route) => ({
        deployment: route.deployment,
        modelName: route.modelName,
        revisionKey: route.revisionKey,
        ...(route.stickyKey !== undefined ? { stickyKey: route.stickyKey } : {}),
        targets: [route.champion, ...route.challengers, ...route.shadows].map((t) => ({
          role: t.role,
          trafficPercent: t.trafficPercent,
          revisionId: t.revisionId,
          version: t.model.identity.version,
          versionId: t.model.identity.versionId,
        })),
      }))
      .sort((a, b) => a.deployment.localeCompare(b.deployment));
  }

  /** The loaded sessions, by version id (routed and explicit). */
  loadedVersionIds(): string[] {
    return [...this.#loaded.keys()];
  }

  /** Re-reads every deployment (and forgets deleted ones). Concurrent calls share one pass. */
  refreshAll(): Promise<void> {
    this.#refreshingAll ??= this.#refreshAllOnce().finally(() => {
      this.#refreshingAll = undefined;
    });
    return this.#refreshingAll;
  }

  /**
   * Re-reads one deployment and swaps its route when its active revisions changed. Refreshes of one deployment run
   * one at a time; a call during a refresh makes it run once more afterwards (and resolves after that run), so the
   * last notification always leads to a read of the latest state. A version that fails to load is logged and
   * counted, not thrown; registry errors are thrown.
   */
  refreshDeployment(name: string): Promise<void> {
    const running = this.#refreshes.get(name);
    if (running) {
      running.again = true;
      return running.done;
    }
    const state = { again: true, done: Promise.resolve() };
    this.#refreshes.set(name, state);
    state.done = (async () => {
      try {
        while (state.again && !this.#closed) {
          state.again = false;
          await this.#refreshOnce(name);
        }
      } finally {
        this.#refreshes.delete(name);
      }
    })();
    return state.done;
  }

  // ---- resolution -------------------------------------------------------------------------------------------------

  #cached(name: string, ref: RouteRequest): RouteTarget | undefined {
    if (ref.version === undefined && ref.alias === undefined) {
      const route = this.#routes.get(name);
      if (route) return pickTarget(route, Math.random, ref.instances?.[0]);
      if (this.#deployments.has(name)) return undefined;
      return this.#explicitTarget(this.#cachedRef(`${name}\u0000@${CHAMPION_ALIAS}`));
    }
    const modelName = this.#deployments.get(name) ?? name;
    const key = ref.version !== undefined ? `${modelName}\u0000#${ref.version}` : `${modelName}\u0000@${ref.alias}`;
    return this.#explicitTarget(this.#cachedRef(key));
  }

  #explicitTarget(model: LoadedModel): RouteTarget;
  #explicitTarget(model: LoadedModel | undefined): RouteTarget | undefined;
  #explicitTarget(model: LoadedModel | undefined): RouteTarget | undefined {
    if (model === undefined) return undefined;
    let target = this.#explicitTargets.get(model);
    if (target === undefined) {
      target = Object.freeze({ model, revisionId: '', role: 'champion', trafficPercent: 100, deployment: undefined });
      this.#explicitTargets.set(model, target);
    }
    return target;
  }

  #cachedRef(key: string): LoadedModel | undefined {
    const cached = this.#refs.get(key);
    if (cached === undefined || cached.expires < performance.now()) return undefined;
    const model = this.#loaded.get(cached.versionId);
    if (model !== undefined) model.lastExplicitUse = performance.now();
    return model;
  }

  async #acquireSlowly(name: string, ref: RouteRequest): Promise<RouteTarget> {
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
      const target = await this.#resolve(name, ref);
      if (target.model.acquire()) return target;
    }
    throw new ModelUnavailableError(`the model behind ${name} is being replaced; retry`);
  }

  async #resolve(name: string, ref: RouteRequest): Promise<RouteTarget> {
    let modelName = this.#deployments.get(name);
    if (modelName === undefined) {
      const deployment = await this.#registry.getDeployment(name);
      if (deployment) {
        modelName = deployment.modelName;
        this.#deployments.set(name, modelName);
      }
    }
    const explicit = ref.version !== undefined || ref.alias !== undefined;
    if (!explicit && modelName !== undefined) {
      let route = this.#routes.get(name);
      // A deployment whose version failed to load is retried by notifications and polls, not by every request (a
      // broken model under traffic would download its artifact per request).
      if (!route && !this.#failures.has(name)) {
        await this.refreshDeployment(name);
        route = this.#routes.get(name);
      }
      if (route) return pickTarget(route, Math.random, ref.instances?.[0]);
      const failure = this.#failures.get(name);
      throw new ModelUnavailableError(
        failure
          ? `deployment ${name} has no loaded model: ${failure}`
          : `deployment ${name} has no active revision to serve`,
      );
    }
    const target = modelName ?? name;
    const model = await this.#explicit(target, explicit ? ref : { alias: CHAMPION_ALIAS }, !explicit);
    return this.#explicitTarget(model);
  }

  /** The version of `modelName` that `ref` names, loaded. `viaChampion`: the request named a model, no version. */
  async #explicit(modelName: string, ref: VersionRef, viaChampion: boolean): Promise<LoadedModel> {
    const key = ref.version !== undefined ? `${modelName}\u0000#${ref.version}` : `${modelName}\u0000@${ref.alias}`;
    const cached = this.#refs.get(key);
    let versionId: string;
    let version: ModelVersion | undefined;
    if (cached !== undefined && cached.expires >= performance.now()) {
      versionId = cached.versionId;
    } else {
      version = await this.#registry.getVersion(modelName, ref.version ?? ref.alias!);
      if (!version) {
        const model = await this.#registry.getModel(modelName);
        if (!model) throw new ServingNotFoundError('model_not_found', `no deployment or model is named ${modelName}`);
        if (viaChampion) {
          throw new ServingNotFoundError(
            'model_version_not_found',
            `model ${modelName} has no deployed version; give a version or alias`,
          );
        }
        throw new ServingNotFoundError(
          'model_version_not_found',
          ref.version !== undefined
            ? `model ${modelName} has no version ${ref.version}`
            : `model ${modelName} has no alias ${ref.alias}`,
        );
      }
      versionId = version.id;
      if (this.#refs.size >= MAX_CACHED_REFS) this.#refs.clear();
      this.#refs.set(key, {
        versionId,
        // A version number names the same version forever; an alias moves.
        expires: ref.version !== undefined ? Infinity : performance.now() + this.#aliasTtlMs,
      });
    }
    const failed = this.#recentFailures.get(versionId);
    if (failed !== undefined && failed.until > performance.now()) {
      throw new ModelUnavailableError(
        `model ${modelName} (${describeRef(ref)}) could not be loaded: ${failed.message}`,
      );
    }
    try {
      const model = await this.#loadVersion(modelName, versionId, version, true);
      model.lastExplicitUse = performance.now();
      return model;
    } catch (error) {
      if (error instanceof ServingNotFoundError) throw error;
      throw new ModelUnavailableError(
        `model ${modelName} (${describeRef(ref)}) could not be loaded: ${errorMessage(error)}`,
        { cause: error },
      );
    }
  }

  // ---- loading ----------------------------------------------------------------------------------------------------

  /** The live session of the version, loading it once however many ask at the same time. */
  #loadVersion(
    modelName: string,
    versionId: string,
    known: ModelVersion | undefined,
    explicit: boolean,
  ): Promise<LoadedModel> {
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

  // ---- refreshing -------------------------------------------------------------------------------------------------

  async #refreshAllOnce(): Promise<void> {
    const deployments = await this.#registry.listDeployments();
    const names = new Set(deployments.map((d) => d.name));
    for (const d of deployments) this.#deployments.set(d.name, d.modelName);
    for (const name of [...this.#deployments.keys()]) {
      if (!names.has(name)) {
        this.#deployments.delete(name);
        this.#unroute(name, 'the deployment no longer exists');
      }
    }
    const results = await Promise.allSettled(deployments.map((d) => this.refreshDeployment(d.name)));
    this.#initialLoadDone = true;
    for (const [i, result] of results.entries()) {
      if (result.status === 'rejected') {
        this.#logger.warn(
          { err: result.reason, deployment: deployments[i]?.name },
          'serving: could not refresh a deployment; the next poll retries',
        );
      }
    }
    this.#collect();
  }

  async #refreshOnce(name: string): Promise<void> {
    const revisions = await this.#registry.activeRevisions(name);
    if (revisions.length === 0) {
      const deployment = await this.#registry.getDeployment(name);
      if (!deployment) this.#deployments.delete(name);
      this.#unroute(name, deployment ? 'the deployment has no active revision' : 'the deployment no longer exists');
      return;
    }
    const revisionKey = revisions.map((r) => r.id).join(',');
    const current = this.#routes.get(name);
    if (current?.revisionKey === revisionKey) return;

    // Read on every change of the revisions: the sticky key changes with them (a canary starts or ends).
    const deployment = await this.#registry.getDeployment(name);
    if (deployment === undefined) return;
    const modelName = deployment.modelName;
    this.#deployments.set(name, modelName);
    const sticky = deployment.config[STICKY_KEY_CONFIG];

    const targets: RouteTarget[] = [];
    const pinned: LoadedModel[] = [];
    try {
      for (const revision of revisions) {
        const model = await this.#loadVersion(modelName, revision.versionId, undefined, false);
        this.#pin(model);
        pinned.push(model);
        targets.push({
          model,
          revisionId: revision.id,
          role: revision.role,
          trafficPercent: revision.trafficPercent,
          deployment: name,
        });
      }
      const champion = targets.find((t) => t.role === 'champion');
      if (!champion) {
        this.#logger.warn({ deployment: name }, 'serving: the deployment has no active champion; route unchanged');
        return;
      }
      if (this.#closed) return;
      const route: DeploymentRoute = {
        deployment: name,
        modelName,
        revisionKey,
        champion,
        challengers: targets.filter((t) => t.role === 'challenger'),
        shadows: targets.filter((t) => t.role === 'shadow'),
        ...(typeof sticky === 'string' && sticky !== '' ? { stickyKey: sticky } : {}),
      };
      // The swap: one assignment. Requests that already acquired the previous model keep it until they are done.
      const previous = this.#routes.swap(route);
      this.#failures.delete(name);
      this.#logger.info(
        {
          deployment: name,
          model: modelName,
          version: champion.model.identity.version,
          previousVersion: previous?.champion.model.identity.version,
        },
        'serving: deployment now serves a new revision',
      );
    } catch (error) {
      this.#failures.set(name, errorMessage(error));
      if (error instanceof ServingNotFoundError) throw error;
      this.#logger.error(
        { err: error, deployment: name, model: modelName, servingVersion: current?.champion.model.identity.version },
        current
          ? 'serving: kept serving the current revision; the new one failed to load'
          : 'serving: the deployment has no loadable revision yet',
      );
      return;
    } finally {
      for (const model of pinned) this.#unpin(model);
      // Releases what the swap replaced, or what a failed refresh loaded for nothing.
      this.#collect();
    }
  }

  #unroute(name: string, reason: string): void {
    const previous = this.#routes.remove(name);
    if (previous) {
      this.#logger.info({ deployment: name, reason }, 'serving: deployment removed from routing');
      this.#collect();
    }
  }

  #pin(model: LoadedModel): void {
    this.#pinned.set(model, (this.#pinned.get(model) ?? 0) + 1);
  }

  #unpin(model: LoadedModel): void {
    const count = (this.#pinned.get(model) ?? 1) - 1;
    if (count <= 0) this.#pinned.delete(model);
    else this.#pinned.set(model, count);
  }

  /** Retires every session no route references, unless explicitly used recently (the most recent few only). */
  #collect(): void {
    const routed = this.#routes.routedModels();
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

  #retire(versionId: string, model: LoadedModel): void {
    this.#loaded.delete(versionId);
    this.#metrics.loadedModels.set(this.#loaded.size);
    this.#logger.info(
      { model: model.identity.name, version: model.identity.version, versionId, inFlight: model.refs },
      'serving: model version retired; its session is released once in-flight requests finish',
    );
    void model.retire();
  }

  #onNotification(payload: string): void {
    let deployment: unknown;
    try {
      deployment = (JSON.parse(payload) as { deployment?: unknown }).deployment;
    } catch {
      deployment = undefined;
    }
    if (typeof deployment === 'string' && deployment !== '') {
      this.#background(this.refreshDeployment(deployment), `refresh of ${deployment} after a notification`);
    } else {
      this.#background(this.refreshAll(), 'refresh after an unreadable notification');
    }
  }

  async #scoreShadow(
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
    this.#countShadow(model, outcome);
  }

  #countShadow(model: LoadedModel, result: 'success' | 'error' | 'dropped'): void {
    this.#shadowResults.inc({ model: model.identity.name, version: String(model.identity.version), result });
  }

  #background(work: Promise<void>, what: string): void {
    work.catch((error: unknown) => this.#logger.warn({ err: error }, `serving: ${what} failed; polling retries`));
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
