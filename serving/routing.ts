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
  /** Scored on copies of requests, never answering (not scored yet: the shadow path comes with prediction logs). */
  readonly shadows: readonly RouteTarget[];
}

/** The target that answers a request: a challenger for its traffic share, else the champion. */
export function pickTarget(route: DeploymentRoute, random: () => number = Math.random): RouteTarget {
  const challengers = route.challengers;
  if (challengers.length === 0) return route.champion;
  let r = random() * 100;
  for (const target of challengers) {
    if (r < target.trafficPercent) return target;
    r -= target.trafficPercent;
  }
  return route.champion;
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
