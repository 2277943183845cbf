/**
 * The routing table: for each deployment, which loaded versions answer, in which role and with which share of the
 * traffic. A deployment's entry is immutable; a change replaces it with one `Map.set` (a single reference
 * assignment), so a request sees either the old entry or the new one, never a mix, and a request that already
 * picked its model keeps that object whatever is swapped in afterwards.
 */
import type { DeploymentRole } from '../schema/deployments.js';
import type { LoadedModel } from './loaded-model.js';

/** One active revision of a deployment, with its loaded model. */
export interface RouteTarget {
  readonly model: LoadedModel;
  readonly revisionId: string;
  readonly role: DeploymentRole;
  readonly trafficPercent: number;
  /** The deployment it serves (set by the pool); undefined for a version addressed explicitly. */
  readonly deployment?: string | undefined;
}

export interface DeploymentRoute {
  readonly deployment: string;
  /** The registered model the deployment serves. */
  readonly modelName: string;
  /** The active revisions' ids in the registry's order: a refresh swaps only when this changes. */
  readonly revisionKey: string;
  /** Answers every request not sent to a challenger. */
  readonly champion: RouteTarget;
  /** Canary revisions: each answers `trafficPercent` % of requests (the deploy workflow will set them). */
  readonly challengers: readonly RouteTarget[];
  /** Scored on copies of answered requests, off the request path; their answers are logged, never returned. */
  readonly shadows: readonly RouteTarget[];
  /**
   * The instance field that makes the canary sticky (the deployment's `stickyKey` config): a request whose first
   * instance has a value for it is routed by a hash of that value, so one key always gets the same version.
   */
  readonly stickyKey?: string | undefined;
}

/**
 * The target that answers a request: a challenger for its traffic share, else the champion. The draw is `random()`,
 * or, when the route is sticky and `instance` has a non-null value for its key, {@link stickyBucket} of that value
 * (salted with the deployment and the first challenger's version id): the same key always lands on the same version
 * during a canary, and raising the challenger's share only adds keys to it.
 */
export function pickTarget(
  route: DeploymentRoute,
  random: () => number = Math.random,
  instance?: Readonly<Record<string, unknown>>,
): RouteTarget {
  const challengers = route.challengers;
  if (challengers.length === 0) return route.champion;
  const key = route.stickyKey === undefined ? undefined : instance?.[route.stickyKey];
  let r =
    key === undefined || key === null
      ? random() * 100
      : stickyBucket(`${route.deployment}/${challengers[0]!.model.identity.versionId}`, key);
  for (const target of challengers) {
    if (r < target.trafficPercent) return target;
    r -= target.trafficPercent;
  }
  return route.champion;
}

/**
 * A deterministic point in [0, 100) for a sticky key's value: a 32-bit FNV-1a hash of `salt` and the value (strings
 * as they are, other values as JSON, so 7 and "7" differ), finished with murmur3's avalanche so nearby keys spread.
 * The pool salts it with the deployment and the (first) challenger's version: a key keeps its bucket while that
 * canary's share changes, and each new canary draws its own keys, so not always the same callers try new versions.
 */
export function stickyBucket(salt: string, value: unknown): number {
  const text = typeof value === 'string' ? `s:${value}` : `j:${JSON.stringify(value)}`;
  let h = 0x811c9dc5;
  const mix = (s: string) => {
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  };
  mix(salt);
  mix('\u0000');
  mix(text);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return ((h >>> 0) / 4294967296) * 100;
}

/** Every model a route references (champion, challengers, shadows). */
export function routeModels(route: DeploymentRoute): LoadedModel[] {
  return [route.champion, ...route.challengers, ...route.shadows].map((t) => t.model);
}

/** Deployment name → its current route. */
export class RoutingTable {
  readonly #routes = new Map<string, DeploymentRoute>();

  get(deployment: string): DeploymentRoute | undefined {
    return this.#routes.get(deployment);
  }

  /** Makes `route` current for its deployment and returns the one it replaced. */
  swap(route: DeploymentRoute): DeploymentRoute | undefined {
    const previous = this.#routes.get(route.deployment);
    this.#routes.set(route.deployment, route);
    return previous;
  }

  remove(deployment: string): DeploymentRoute | undefined {
    const previous = this.#routes.get(deployment);
    this.#routes.delete(deployment);
    return previous;
  }

  routes(): DeploymentRoute[] {
    return [...this.#routes.values()];
  }

  /** Every model some route references. */
  routedModels(): Set<LoadedModel> {
    const models = new Set<LoadedModel>();
    for (const route of this.#routes.values()) for (const model of routeModels(route)) models.add(model);
    return models;
  }
}
