import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../../clock.ts';
import type { Config } from '../../config.ts';
import type { AuthFailureThrottle } from '../../clients/authentication/throttle.ts';
import type { LoginThrottle } from '../../identity/login-throttle.ts';
import type { Database } from '../../storage/schema.ts';
import { MemoryBuckets } from './buckets.ts';
import { RateLimiter } from './limiter.ts';
import { processNamesKey } from './names.ts';
import { SharedStore } from './redis.ts';
import { RedisBuckets } from './redis-buckets.ts';
import { RedisAuthFailureThrottle, RedisLoginThrottle } from './redis-throttles.ts';
import { storedRateLimits, type RateLimitSource } from './settings.ts';

export { RateLimiter, type LimitDecision, type LimitRefusal } from './limiter.ts';
export { limitKinds, type LimitKind, type Quota, type RateLimitSettings } from './settings.ts';

/** The failure throttles a node uses (src/server.ts `Throttles`). */
export interface FailureThrottles {
  clientAuthentication: AuthFailureThrottle;
  login: LoginThrottle;
}

/**
 * Rate limits and the store they share with the failure throttles (docs/risk.md "Rate limits"):
 * Redis when `REDIS_URL` is set, each node's memory otherwise (and while Redis does not answer).
 */
export interface Limits {
  limiter: RateLimiter;
  /** The Redis connection, when `REDIS_URL` is set. */
  shared: SharedStore | undefined;
  /** The throttles to use: in Redis around the node's own (`own`, the fallback), or the node's own without Redis. */
  throttles(own: FailureThrottles, clock: Clock): FailureThrottles;
  /** Connects to Redis (a server does; a CLI command does not). */
  connect(): Promise<void>;
  close(): Promise<void>;
}

export interface LimitOptions {
  config?: Pick<Config, 'redisUrl' | 'redisPrefix' | 'redisTimeoutMs'>;
  log?: Logger;
  /** The limits; default: apply's, stored in the database and cached. */
  source?: RateLimitSource;
  /** How people are named in the store (./names.ts `limitNamesKey` of the master key); default: a key of this process. */
  namesKey?: Buffer;
}

export function createLimits(db: Kysely<Database>, clock: Clock, options: LimitOptions = {}): Limits {
  const { config, log } = options;
  const shared = config?.redisUrl && log ? new SharedStore({ url: config.redisUrl, prefix: config.redisPrefix, timeoutMs: config.redisTimeoutMs, log }) : undefined;
  const memory = new MemoryBuckets();
  const namesKey = options.namesKey ?? processNamesKey();
  const limiter = new RateLimiter(options.source ?? storedRateLimits(db, clock), shared ? new RedisBuckets(shared, memory) : memory, clock, log, namesKey);
  return {
    limiter,
    shared,
    throttles: (own, throttleClock) =>
      shared
        ? { clientAuthentication: new RedisAuthFailureThrottle(shared, own.clientAuthentication, throttleClock), login: new RedisLoginThrottle(shared, own.login, throttleClock, {}, namesKey) }
        : own,
    connect: async () => shared?.connect(),
    close: async () => shared?.close(),
  };
}
