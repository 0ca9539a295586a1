import type { BucketCheck, BucketRefusal, BucketStore } from './buckets.ts';
import { defineScript, type Script, type SharedStore } from './redis.ts';

/**
 * Token buckets in Redis: one script, one round trip per check, atomic (Redis runs a script alone),
 * with the arithmetic of ./buckets.ts `bucketLevel` and `bucketWaitMs`. Each bucket is a hash
 * (`t` tokens, `ts` when) that expires when it would be full again, so idle callers cost nothing.
 * The time is the node's (`now`), not Redis's: the same clock as the memory store and the tests';
 * nodes keep their clocks in step (NTP), and a node slightly behind refills nothing rather than
 * taking time back.
 *
 * KEYS: the buckets. ARGV: now, then each bucket's quota and window in ms.
 * Returns { 0, 0 } when every bucket gave a token; else { index of the refusing bucket (from 1),
 * milliseconds until it has one } — the longest wait among those that refuse — and takes nothing.
 */
const takeLua = `
local now = tonumber(ARGV[1])
local levels = {}
local refused, longest = 0, 0
for i = 1, #KEYS do
  local quota, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 't', 'ts')
  local level = quota
  if state[1] then
    local elapsed = now - tonumber(state[2])
    if elapsed < 0 then elapsed = 0 end
    level = math.min(quota, tonumber(state[1]) + elapsed * quota / window)
  end
  levels[i] = level
  if level < 1 then
    local wait = math.max(1, math.ceil((1 - level) * window / quota))
    if wait > longest then refused, longest = i, wait end
  end
end
if refused > 0 then return { refused, longest } end
for i = 1, #KEYS do
  local quota, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tokens = levels[i] - 1
  redis.call('HSET', KEYS[i], 't', tostring(tokens), 'ts', ARGV[1])
  -- Full again after this long: then the key is the same as no key.
  redis.call('PEXPIRE', KEYS[i], math.max(1, math.ceil((quota - tokens) * window / quota)))
end
return { 0, 0 }
`;

/** Buckets in Redis, falling back to `fallback` (this node's memory) while Redis does not answer. */
export class RedisBuckets implements BucketStore {
  readonly #store: SharedStore;
  readonly #fallback: BucketStore;
  readonly #take: Script;
  readonly #prefix: string;

  constructor(store: SharedStore, fallback: BucketStore) {
    this.#store = store;
    this.#fallback = fallback;
    this.#take = defineScript(store, 'clearanceTakeTokens', takeLua);
    this.#prefix = `${store.prefix}rl:`;
  }

  take(checks: readonly BucketCheck[], now: number): BucketRefusal | undefined | Promise<BucketRefusal | undefined> {
    if (!this.#store.usable) return this.#fallback.take(checks, now);
    return this.#store.run(() => this.#redis(checks, now), () => this.#fallback.take(checks, now));
  }

  async #redis(checks: readonly BucketCheck[], now: number): Promise<BucketRefusal | undefined> {
    const args: (string | number)[] = [];
    for (const check of checks) args.push(this.#prefix + check.key);
    args.push(now);
    for (const check of checks) args.push(check.quota, check.windowMs);
    const [index, waitMs] = (await this.#take(checks.length, ...args)) as [number, number];
    return index === 0 ? undefined : { index: index - 1, waitMs };
  }
}
