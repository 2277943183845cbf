import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../context.js';
import { RateLimitedError } from '../errors.js';

/**
 * A token bucket per key: `perSecond` tokens a second, holding at most `burst`. Buckets of keys idle long enough to
 * be full again are dropped, so the map stays as small as the set of active keys.
 */
export class KeyRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private sweptAt = 0;

  constructor(
    readonly perSecond: number,
    readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one token for `key`: 0 when the request may go on, otherwise the seconds until a token is there. */
  take(key: string): number {
    const now = this.now();
    this.sweep(now);
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return (1 - bucket.tokens) / this.perSecond;
  }

  private sweep(now: number): void {
    const refillMs = (this.burst / this.perSecond) * 1000;
    if (now - this.sweptAt < refillMs) return;
    this.sweptAt = now;
    for (const [key, bucket] of this.buckets) if (now - bucket.at >= refillMs) this.buckets.delete(key);
  }
}

/** Answers 429 with `Retry-After` once the caller's key has used up its requests; public routes are not limited. */
export function rateLimit(limiter: KeyRateLimiter): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = c.get('principal');
    if (!principal) return next();
    const waitSeconds = limiter.take(principal.keyId ?? principal.name);
    if (waitSeconds > 0) {
      throw new RateLimitedError(
        `the API key "${principal.name}" made more than ${limiter.perSecond} requests a second; retry later`,
        waitSeconds,
        { details: { limitPerSecond: limiter.perSecond } },
      );
    }
    return next();
  };
}
