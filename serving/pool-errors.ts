/**
 * The errors the model pool answers a request with (model-pool.ts and loaded-versions.ts throw them): nothing by that
 * name (404), or a model that exists but cannot answer now (503).
 */
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

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

/** An error's message, for log lines and the messages of the errors above. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
