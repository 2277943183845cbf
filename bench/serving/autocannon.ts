/** autocannon (CommonJS, untyped): the part of its API the serving benchmark uses, typed. */
import { createRequire } from 'node:module';

export interface CannonRequest {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

export interface CannonOptions {
  readonly url: string;
  readonly connections: number;
  readonly duration: number;
  readonly requests: CannonRequest[];
  readonly timeout?: number;
}

export interface CannonResult {
  readonly duration: number;
  readonly requests: { readonly total: number };
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
}

export interface CannonInstance {
  on(
    event: 'response',
    listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void,
  ): void;
  stop(): void;
}

type Autocannon = (options: CannonOptions, done: (error: Error | null, result: CannonResult) => void) => CannonInstance;

export const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
