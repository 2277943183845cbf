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
 *
 * The pool routes and refreshes; the sessions are loaded-versions.ts's, explicit references explicit-versions.ts's
 * and shadow scoring shadow-scorer.ts's.
 */
import type { Logger } from '../core/logger.js';
import { DEPLOYMENTS_CHANNEL, STICKY_KEY_CONFIG, type DeploymentStore } from '../storage/deployment-store.js';
import { CHAMPION_ALIAS } from '../storage/registry-common.js';
import type { RegistryStore } from '../storage/registry-store.js';
import { DeploymentListener } from './deployment-listener.js';
import { ExplicitVersions, type VersionRef } from './explicit-versions.js';
import type { LoadedModel } from './loaded-model.js';
import { LoadedVersions } from './loaded-versions.js';
import type { ModelLoader } from './load-model.js';
import type { ServingMetrics } from './metrics.js';
import { errorMessage, ModelUnavailableError, ServingNotFoundError } from './pool-errors.js';
import { pickTarget, RoutingTable, type DeploymentRoute, type RouteTarget } from './routing.js';
import { ShadowScorer, type ShadowResultHandler } from './shadow-scorer.js';
import type { Instance } from './signature.js';

/** The registry reads the pool makes (for its loaded and explicitly addressed versions). */
export type PoolRegistry = Pick<RegistryStore, 'getVersion' | 'getVersionById' | 'getModel'>;

/** The deployment reads the pool makes (what each deployment serves). */
export type PoolDeployments = Pick<DeploymentStore, 'listDeployments' | 'getDeployment' | 'activeRevisions'>;

export interface ModelPoolOptions {
  readonly registry: PoolRegistry;
  readonly deployments: PoolDeployments;
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

const ACQUIRE_ATTEMPTS = 3;

export class ModelPool {
  readonly #deploymentStore: PoolDeployments;
  readonly #logger: Logger;
  readonly #pollIntervalMs: number;
  readonly #routes = new RoutingTable();
  /** Every deployment known to exist → the model it serves. */
  readonly #deployments = new Map<string, string>();
  /** Live sessions by version id, their loading and their retirement. */
  readonly #versions: LoadedVersions;
  /** Versions addressed by number or alias (or a model name: its champion), resolved and loaded on demand. */
  readonly #explicit: ExplicitVersions;
  readonly #refreshes = new Map<string, { again: boolean; done: Promise<void> }>();
  /** The last failed load per deployment (until a refresh succeeds), for the 503 message. */
  readonly #failures = new Map<string, string>();
  readonly #listener: DeploymentListener | undefined;
  readonly #onShadowResult: ShadowResultHandler | undefined;
  readonly #shadows: ShadowScorer;
  #refreshingAll: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #initialLoadDone = false;

  constructor(options: ModelPoolOptions) {
    this.#deploymentStore = options.deployments;
    this.#logger = options.logger;
    this.#pollIntervalMs = options.pollIntervalMs ?? 30_000;
    this.#versions = new LoadedVersions({
      registry: options.registry,
      loadModel: options.loadModel,
      metrics: options.metrics,
      logger: options.logger,
      explicitIdleMs: options.explicitIdleMs ?? 10 * 60_000,
      maxExplicit: options.maxExplicitModels ?? 8,
      loadRetryMs: options.loadRetryMs ?? 5_000,
    });
    this.#explicit = new ExplicitVersions({
      registry: options.registry,
      versions: this.#versions,
      aliasTtlMs: options.aliasTtlMs ?? 5_000,
    });
    this.#onShadowResult = options.onShadowResult;
    this.#shadows = new ShadowScorer({
      metrics: options.metrics,
      logger: options.logger,
      maxInFlight: options.maxShadowInFlight ?? 64,
    });
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
    this.#versions.close();
    clearInterval(this.#timer);
    await this.#listener?.close();
    await Promise.allSettled([...this.#refreshes.values()].map((r) => r.done));
    await this.#versions.retireAll();
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
    this.#shadows.score(deployment, route.shadows, instances, requestId, onResult);
  }

  /** Shadow copies being scored now. */
  get shadowInFlight(): number {
    return this.#shadows.inFlight;
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
    return this.#versions.versionIds();
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
      return this.#explicit.cached(name, { alias: CHAMPION_ALIAS });
    }
    return this.#explicit.cached(this.#deployments.get(name) ?? name, ref);
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
      const deployment = await this.#deploymentStore.getDeployment(name);
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
    return this.#explicit.resolve(modelName ?? name, explicit ? ref : { alias: CHAMPION_ALIAS }, !explicit);
  }

  // ---- refreshing -------------------------------------------------------------------------------------------------

  async #refreshAllOnce(): Promise<void> {
    const deployments = await this.#deploymentStore.listDeployments();
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
    const revisions = await this.#deploymentStore.activeRevisions(name);
    if (revisions.length === 0) {
      const deployment = await this.#deploymentStore.getDeployment(name);
      if (!deployment) this.#deployments.delete(name);
      this.#unroute(name, deployment ? 'the deployment has no active revision' : 'the deployment no longer exists');
      return;
    }
    const revisionKey = revisions.map((r) => r.id).join(',');
    const current = this.#routes.get(name);
    if (current?.revisionKey === revisionKey) return;

    // Read on every change of the revisions: the sticky key changes with them (a canary starts or ends).
    const deployment = await this.#deploymentStore.getDeployment(name);
    if (deployment === undefined) return;
    const modelName = deployment.modelName;
    this.#deployments.set(name, modelName);
    const sticky = deployment.config[STICKY_KEY_CONFIG];

    const targets: RouteTarget[] = [];
    const pinned: LoadedModel[] = [];
    try {
      for (const revision of revisions) {
        const model = await this.#versions.load(modelName, revision.versionId, undefined, false);
        this.#versions.pin(model);
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
      for (const model of pinned) this.#versions.unpin(model);
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

  /** Retires every session no route references, unless explicitly used recently (the most recent few only). */
  #collect(): void {
    this.#versions.collect(this.#routes.routedModels());
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

  #background(work: Promise<void>, what: string): void {
    work.catch((error: unknown) => this.#logger.warn({ err: error }, `serving: ${what} failed; polling retries`));
  }
}
