import { defineScript, type Script, type SharedStore } from '../risk/limits/redis.ts';
import { totalWindowMs, TotalsUnavailable, type ReservationRequest, type ReservationResult, type TransferTotals } from './totals.ts';

/**
 * The rolling totals in Redis (./totals.ts): per account and asset a sorted set of reservation ids
 * scored by their time, and a hash of their amounts (micro-units), both under one hash tag so they
 * live on one node of a cluster. One Lua script per reservation: Redis runs it atomically, so
 * nodes reserving at once never both pass the limit.
 *
 * The script drops what left the window, answers an id already reserved as reserved but not
 * created by this call (counted once; the total it answers is then the others'; the caller must
 * not release it, ./enforce.ts),
 * sums the amounts, and adds this one only when the sum stays within the limit. Amounts and limits
 * are integers below 2⁵³ (./amounts.ts `maxLimit`), so Lua's doubles add them exactly. Keys expire
 * a window after their newest reservation.
 *
 * Each reservation's holders (./totals.ts) are a third key, a hash of id → ` h1 h2 … ` (the
 * holders, space-separated): a call finding the id counted adds its holder; `release` removes
 * the holder's, and takes the reservation back when none is left. `*` in a list is the lasting
 * hold, one that never lets go: the issued tokens' (`keep` puts it in place of the holder whose
 * token was issued, so a list holds `*` and the attempts still deciding, however often the token
 * is refreshed or exchanged), and that of a reservation made before holders were recorded (a
 * holder joining it is added after `*`): such a reservation is kept until its window ends (fail
 * closed).
 *
 * Unlike the rate limits, a Redis that does not answer is never replaced by the node's memory:
 * every operation throws `TotalsUnavailable` (fail closed for money).
 */
const reserveLua = `
local times, amounts, holders = KEYS[1], KEYS[2], KEYS[3]
local now, window, amount, limit, id, holder = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local old = redis.call('ZRANGEBYSCORE', times, '-inf', now - window)
for i = 1, #old, 500 do
  redis.call('HDEL', amounts, unpack(old, i, math.min(i + 499, #old)))
  redis.call('HDEL', holders, unpack(old, i, math.min(i + 499, #old)))
end
redis.call('ZREMRANGEBYSCORE', times, '-inf', now - window)
local total = 0
for _, value in ipairs(redis.call('HVALS', amounts)) do total = total + tonumber(value) end
if redis.call('ZSCORE', times, id) then
  local list = redis.call('HGET', holders, id) or ' * '
  if not string.find(list, ' ' .. holder .. ' ', 1, true) then redis.call('HSET', holders, id, list .. holder .. ' ') end
  local ttl = redis.call('PTTL', times)
  if ttl > 0 then redis.call('PEXPIRE', holders, ttl) end
  return {1, string.format('%.0f', total - tonumber(redis.call('HGET', amounts, id) or '0')), 0}
end
if total + amount > limit then return {0, string.format('%.0f', total), 0} end
redis.call('ZADD', times, now, id)
redis.call('HSET', amounts, id, ARGV[3])
redis.call('HSET', holders, id, ' ' .. holder .. ' ')
redis.call('PEXPIRE', times, window)
redis.call('PEXPIRE', amounts, window)
redis.call('PEXPIRE', holders, window)
return {1, string.format('%.0f', total), 1}
`;

const releaseLua = `
local list = redis.call('HGET', KEYS[3], ARGV[1])
if not list then return 0 end
local from, to = string.find(list, ' ' .. ARGV[2] .. ' ', 1, true)
if not from then return 0 end
list = string.sub(list, 1, from) .. string.sub(list, to + 1)
if list ~= ' ' then
  redis.call('HSET', KEYS[3], ARGV[1], list)
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
`;

const keepLua = `
local list = redis.call('HGET', KEYS[3], ARGV[1])
if not list then return 0 end
local from, to = string.find(list, ' ' .. ARGV[2] .. ' ', 1, true)
if not from then return 0 end
list = string.sub(list, 1, from) .. string.sub(list, to + 1)
if not string.find(list, ' * ', 1, true) then list = ' *' .. list end
redis.call('HSET', KEYS[3], ARGV[1], list)
return 1
`;

const totalLua = `
local times, amounts = KEYS[1], KEYS[2]
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', times, '(' .. (now - window), '+inf')) do
  total = total + tonumber(redis.call('HGET', amounts, id) or '0')
end
return string.format('%.0f', total)
`;

/** A holder as the holders' list spells it: no space (the list's separator), never `*` (the unknown maker's mark). */
const holderName = (holder: string) => (holder === '*' ? '_*' : holder.replace(/\s/g, '_'));

export class RedisTotals implements TransferTotals {
  readonly kind = 'redis' as const;
  readonly #store: SharedStore;
  readonly #reserve: Script;
  readonly #release: Script;
  readonly #keep: Script;
  readonly #total: Script;

  constructor(store: SharedStore) {
    this.#store = store;
    this.#reserve = defineScript(store, 'clearanceTransferReserve', reserveLua);
    this.#release = defineScript(store, 'clearanceTransferRelease', releaseLua);
    this.#keep = defineScript(store, 'clearanceTransferKeep', keepLua);
    this.#total = defineScript(store, 'clearanceTransferTotal', totalLua);
  }

  #keys(scope: string): [string, string, string] {
    // One hash tag per scope: all three keys on one cluster node, as a script needs.
    const base = `${this.#store.prefix}transfer-total:{${scope}}`;
    return [`${base}:times`, `${base}:amounts`, `${base}:holders`];
  }

  async reserve(request: ReservationRequest): Promise<ReservationResult> {
    const answer = (await this.#run(() =>
      this.#reserve(3, ...this.#keys(request.scope), request.now, totalWindowMs, request.amount.toString(), request.limit.toString(), request.id, holderName(request.holder)),
    )) as [number, string, number];
    return { reserved: Number(answer[0]) === 1, created: Number(answer[2]) === 1, total: BigInt(answer[1]) };
  }

  async release(scope: string, id: string, holder: string): Promise<void> {
    await this.#run(() => this.#release(3, ...this.#keys(scope), id, holderName(holder)));
  }

  async keep(scope: string, id: string, holder: string): Promise<void> {
    await this.#run(() => this.#keep(3, ...this.#keys(scope), id, holderName(holder)));
  }

  async total(scope: string, now: number): Promise<bigint> {
    return BigInt((await this.#run(() => this.#total(3, ...this.#keys(scope), now, totalWindowMs))) as string);
  }

  /** Runs on Redis, or throws `TotalsUnavailable` — never a per-node fallback. */
  async #run<T>(operation: () => Promise<T>): Promise<T> {
    if (!this.#store.usable) throw new TotalsUnavailable('Redis does not answer');
    try {
      return await operation();
    } catch (error) {
      // The connection's own handling: warn once, probe, recover (src/risk/limits/redis.ts).
      this.#store.failed(error as Error);
      throw new TotalsUnavailable((error as Error).message);
    }
  }
}
