/**
 * Versions addressed explicitly: a version number or an alias in the request, or a model name alone (its champion
 * alias). The reference is resolved through the registry and cached (a version number for good, an alias for
 * `aliasTtlMs`); the version is loaded on demand through the pool's {@link LoadedVersions}, which keeps it while used.
 */
import type { ModelVersion } from '../schema/registry.js';
import type { RegistryStore } from '../storage/registry-store.js';
import type { LoadedModel } from './loaded-model.js';
import type { LoadedVersions } from './loaded-versions.js';
import { errorMessage, ModelUnavailableError, ServingNotFoundError } from './pool-errors.js';
import type { RouteTarget } from './routing.js';

/** Which version an explicit request addresses. */
export interface VersionRef {
  readonly version?: number | undefined;
  readonly alias?: string | undefined;
}

export interface ExplicitVersionsOptions {
  readonly registry: Pick<RegistryStore, 'getVersion' | 'getModel'>;
  readonly versions: LoadedVersions;
  /** How long an alias is trusted before it is resolved again, in ms. */
  readonly aliasTtlMs: number;
}

interface CachedRef {
  readonly versionId: string;
  /** performance.now() after which the reference is resolved again; Infinity for version numbers. */
  readonly expires: number;
}

const MAX_CACHED_REFS = 10_000;

/** `model\0#3` and `model\0@alias`: the key of a cached reference. */
function refKey(modelName: string, ref: VersionRef): string {
  return ref.version !== undefined ? `${modelName}\u0000#${ref.version}` : `${modelName}\u0000@${ref.alias}`;
}

function describeRef(ref: VersionRef): string {
  return ref.version !== undefined ? `version ${ref.version}` : `alias ${ref.alias}`;
}

export class ExplicitVersions {
  readonly #registry: Pick<RegistryStore, 'getVersion' | 'getModel'>;
  readonly #versions: LoadedVersions;
  readonly #aliasTtlMs: number;
  /** Reference key → version id. */
  readonly #refs = new Map<string, CachedRef>();
  /** A RouteTarget per explicitly addressed model, built once (its role is champion; no deployment). */
  readonly #targets = new WeakMap<LoadedModel, RouteTarget>();

  constructor(options: ExplicitVersionsOptions) {
    this.#registry = options.registry;
    this.#versions = options.versions;
    this.#aliasTtlMs = options.aliasTtlMs;
  }

  /** The target of `modelName`'s version `ref` when its reference is cached and the version loaded: the hot path. */
  cached(modelName: string, ref: VersionRef): RouteTarget | undefined {
    return this.#target(this.#cachedModel(refKey(modelName, ref)));
  }

  /**
   * The target of `modelName`'s version `ref`, resolved and loaded. `viaChampion`: the request named a model, no
   * version.
   *
   * @throws ServingNotFoundError when the model or the version does not exist.
   * @throws ModelUnavailableError when the version failed to load (now, or recently).
   */
  async resolve(modelName: string, ref: VersionRef, viaChampion: boolean): Promise<RouteTarget> {
    return this.#target(await this.#load(modelName, ref, viaChampion));
  }

  #target(model: LoadedModel): RouteTarget;
  #target(model: LoadedModel | undefined): RouteTarget | undefined;
  #target(model: LoadedModel | undefined): RouteTarget | undefined {
    if (model === undefined) return undefined;
    let target = this.#targets.get(model);
    if (target === undefined) {
      target = Object.freeze({ model, revisionId: '', role: 'champion', trafficPercent: 100, deployment: undefined });
      this.#targets.set(model, target);
    }
    return target;
  }

  #cachedModel(key: string): LoadedModel | undefined {
    const cached = this.#refs.get(key);
    if (cached === undefined || cached.expires < performance.now()) return undefined;
    const model = this.#versions.get(cached.versionId);
    if (model !== undefined) model.lastExplicitUse = performance.now();
    return model;
  }

  async #load(modelName: string, ref: VersionRef, viaChampion: boolean): Promise<LoadedModel> {
    const key = refKey(modelName, ref);
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
    const failed = this.#versions.recentFailure(versionId);
    if (failed !== undefined) {
      throw new ModelUnavailableError(`model ${modelName} (${describeRef(ref)}) could not be loaded: ${failed}`);
    }
    try {
      const model = await this.#versions.load(modelName, versionId, version, true);
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
}
