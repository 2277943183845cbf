import type { Logger } from '../core/logger.js';
import type { Principal } from './auth.js';

/** Values the middleware put on every request's context; handlers read them as `c.var.requestId`, `c.var.logger`. */
export interface AppVariables {
  /** The caller's `x-request-id` when it was valid, otherwise one generated for this request. */
  requestId: string;
  /**
   * A child of the process logger bound to this request's id, method and path, made on first call (most requests
   * log nothing but their completion line, which does not need one).
   */
  logger: () => Logger;
  /** The caller, set by the authentication middleware; undefined only on public routes of an API with keys. */
  principal: Principal | undefined;
}

/** The Hono environment shared by the app and every resource sub-app. */
export type AppEnv = { Variables: AppVariables };
