/**
 * Token buckets (docs/risk.md "Rate limits"): a bucket holds at most `quota` tokens, starts full,
 * and refills continuously at `quota` per window; a request takes one token, and is refused when
 * the bucket has less than one. So a caller may burst `quota` requests, then goes on at
 * `quota / window` on average. A bucket that is full again is the same as no bucket, so stores
 * may forget it (Redis lets its key expire then).
 *
 * One check names several buckets (the source address and the endpoint, say) and is all or
 * nothing: either each bucket gives a token, or none does and the answer is the longest wait, so
 * a request refused by one limit does not spend another's quota.
 *
 * The same arithmetic runs in memory (`MemoryBuckets`) and in Redis (./redis-buckets.ts, its Lua
 * script); `bucketLevel` and `bucketWaitMs` are its definition.
 */
import { BoundedMap } from '../../jose/bounded-map.ts';

/** One bucket a check takes a token from. */
export interface BucketCheck {
  key: string;
  quota: number;
  windowMs: number;
}

/** The bucket (its index among the checks) that refused, and how long until it has a token. */
export interface BucketRefusal {
  index: number;
  waitMs: number;
}

/** A store of buckets: undefined when every bucket gave its token. */
export interface BucketStore {
  take(checks: readonly BucketCheck[], now: number): BucketRefusal | undefined | Promise<BucketRefusal | undefined>;
}

/** Tokens in a bucket at `now` that held `tokens` at `at` (a new bucket: full). */
export function bucketLevel(tokens: number | undefined, at: number, now: number, quota: number, windowMs: number): number {
  if (tokens === undefined) return quota;
  // A clock that went back (another node's, slightly behind) refills nothing.
  const elapsed = now > at ? now - at : 0;
  return Math.min(quota, tokens + (elapsed * quota) / windowMs);
}

/** Milliseconds until a bucket at `level` (below 1) has one token. */
export function bucketWaitMs(level: number, quota: number, windowMs: number): number {
  return Math.max(1, Math.ceil(((1 - level) * windowMs) / quota));
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Most buckets a node keeps by default; past it, the least recently used is forgotten (refilled). */
export const defaultMaxBuckets = 100_000;

/**
 * Buckets in this process's memory, at most `maxBuckets` of them (the least recently used is
 * forgotten, which refills it: lenient, but memory stays bounded whatever callers send).
 * Synchronous (no promise); an allowed request allocates nothing here but a new caller's bucket.
 */
export class MemoryBuckets implements BucketStore {
  readonly #buckets: BoundedMap<string, Bucket>;

  constructor(maxBuckets = defaultMaxBuckets) {
    this.#buckets = new BoundedMap(maxBuckets);
  }

  take(checks: readonly BucketCheck[], now: number): BucketRefusal | undefined {
    let refused = -1;
    let longest = 0;
    for (let i = 0; i < checks.length; i++) {
      const check = checks[i]!;
      const bucket = this.#buckets.get(check.key);
      const level = bucketLevel(bucket?.tokens, bucket?.at ?? now, now, check.quota, check.windowMs);
      if (level >= 1) continue;
      // A caller held back stays the most recently used: hammering a limit must not get it forgotten.
      this.#buckets.delete(check.key);
      this.#buckets.set(check.key, bucket!);
      const wait = bucketWaitMs(level, check.quota, check.windowMs);
      if (wait > longest) {
        longest = wait;
        refused = i;
      }
    }
    if (refused >= 0) return { index: refused, waitMs: longest };
    for (const check of checks) {
      const bucket = this.#buckets.get(check.key);
      const level = bucketLevel(bucket?.tokens, bucket?.at ?? now, now, check.quota, check.windowMs);
      if (bucket) {
        bucket.tokens = level - 1;
        bucket.at = now;
        // Re-inserted: the map's first key is the least recently used.
        this.#buckets.delete(check.key);
        this.#buckets.set(check.key, bucket);
      } else {
        this.#buckets.set(check.key, { tokens: level - 1, at: now });
      }
    }
    return undefined;
  }

  /** Buckets kept now (for tests of the bound). */
  get size(): number {
    return this.#buckets.size;
  }
}
