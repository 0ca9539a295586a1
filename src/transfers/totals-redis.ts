import type { Kysely } from 'kysely';
import { defineScript, type Script, type SharedStore } from '../risk/limits/redis.ts';
import type { Database } from '../storage/schema.ts';
import { tokenIssuedFor } from './totals-database.ts';
import { holdGraceMs, requestOfHolder, totalWindowMs, TotalsUnavailable, type ReservationRequest, type ReservationResult, type TransferTotals } from './totals.ts';

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
 * Each holder also has the time it took its hold: a fourth key, a sorted set of `<id> <holder>`
 * scored by that time, written by the same script that puts the holder in its list (and emptied
 * by `release` and `keep` with it), so that a holder is never without its time. A node that dies
 * while issuing leaves its attempt's holder behind; once older than `holdGraceMs` it is settled, as
 * in the database (./totals-database.ts): by the next reservation of the account and asset, and by
 * the pruning (`prune`). Beside the lasting hold `*` it is redundant and dropped; otherwise the
 * audit log, read through the database, decides — a token event of its request (committed with the
 * token) makes it the lasting hold, none takes it back. The reservation's script finds the stale
 * holders with one range read of that set, and answers them instead of reserving: only then does a
 * reservation cost more (the audit lookups, a script that settles them, the reservation again), so
 * a reservation whose holders are young, or gone, is one script as before. A holder written by a
 * node of the release before has no time, and is kept until its window ends.
 *
 * Unlike the rate limits, a Redis that does not answer is never replaced by the node's memory:
 * every operation throws `TotalsUnavailable` (fail closed for money).
 */

// Lua shared by the scripts: a list without one holder (nil when it is not in it), a holder's
// member of the time set split into its id and holder, and the stale holders of a scope.
const holdersLua = `
local function without(list, holder)
  local from, to = string.find(list, ' ' .. holder .. ' ', 1, true)
  if not from then return nil end
  return string.sub(list, 1, from) .. string.sub(list, to + 1)
end
local function split(member)
  local space = string.find(member, ' ', 1, true)
  return string.sub(member, 1, space - 1), string.sub(member, space + 1)
end
-- The holders that took their hold at or before 'before' (at most 64 at once: the rest wait for
-- the next call, counted meanwhile). One no longer in its list (let go, or its reservation out of
-- the window) is forgotten; one beside the lasting hold is dropped from the list (the lasting hold
-- counts the reservation); the others are answered, each its member and time, for the audit log
-- to decide. Answers the count dropped here first.
local function stale(holders, held, before)
  local found = redis.call('ZRANGEBYSCORE', held, '-inf', before, 'WITHSCORES', 'LIMIT', 0, 64)
  local open = {0}
  for i = 1, #found, 2 do
    local id, holder = split(found[i])
    local list = redis.call('HGET', holders, id)
    local rest = list and without(list, holder)
    if not rest then
      redis.call('ZREM', held, found[i])
    elseif string.find(rest, ' * ', 1, true) then
      redis.call('HSET', holders, id, rest)
      redis.call('ZREM', held, found[i])
      open[1] = open[1] + 1
    else
      open[#open + 1] = found[i]
      open[#open + 1] = found[i + 1]
    end
  end
  return open
end
`;

const reserveLua = `${holdersLua}
local times, amounts, holders, held = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, window, amount, limit, id, holder = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local grace, settled = tonumber(ARGV[7]), ARGV[8]
local old = redis.call('ZRANGEBYSCORE', times, '-inf', now - window)
for i = 1, #old, 500 do
  redis.call('HDEL', amounts, unpack(old, i, math.min(i + 499, #old)))
  redis.call('HDEL', holders, unpack(old, i, math.min(i + 499, #old)))
end
redis.call('ZREMRANGEBYSCORE', times, '-inf', now - window)
-- A holder is never older than its reservation: those of the reservations dropped go with them.
redis.call('ZREMRANGEBYSCORE', held, '-inf', now - window)
-- Holders left by a node that died while issuing are settled before they are counted: answered
-- to the caller, who asks the audit log and calls again with 'settled'.
if settled ~= '1' then
  local open = stale(holders, held, now - grace)
  if #open > 1 then return {2, '0', 0, unpack(open, 2)} end
end
local total = 0
for _, value in ipairs(redis.call('HVALS', amounts)) do total = total + tonumber(value) end
if redis.call('ZSCORE', times, id) then
  local list = redis.call('HGET', holders, id) or ' * '
  if not string.find(list, ' ' .. holder .. ' ', 1, true) then
    redis.call('HSET', holders, id, list .. holder .. ' ')
    redis.call('ZADD', held, now, id .. ' ' .. holder)
  end
  local ttl = redis.call('PTTL', times)
  if ttl > 0 then
    redis.call('PEXPIRE', holders, ttl)
    redis.call('PEXPIRE', held, ttl)
  end
  return {1, string.format('%.0f', total - tonumber(redis.call('HGET', amounts, id) or '0')), 0}
end
if total + amount > limit then return {0, string.format('%.0f', total), 0} end
redis.call('ZADD', times, now, id)
redis.call('HSET', amounts, id, ARGV[3])
redis.call('HSET', holders, id, ' ' .. holder .. ' ')
redis.call('ZADD', held, now, id .. ' ' .. holder)
redis.call('PEXPIRE', times, window)
redis.call('PEXPIRE', amounts, window)
redis.call('PEXPIRE', holders, window)
redis.call('PEXPIRE', held, window)
return {1, string.format('%.0f', total), 1}
`;

const releaseLua = `
redis.call('ZREM', KEYS[4], ARGV[1] .. ' ' .. ARGV[2])
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
redis.call('ZREM', KEYS[4], ARGV[1] .. ' ' .. ARGV[2])
local list = redis.call('HGET', KEYS[3], ARGV[1])
if not list then return 0 end
local from, to = string.find(list, ' ' .. ARGV[2] .. ' ', 1, true)
if not from then return 0 end
list = string.sub(list, 1, from) .. string.sub(list, to + 1)
if not string.find(list, ' * ', 1, true) then list = ' *' .. list end
redis.call('HSET', KEYS[3], ARGV[1], list)
return 1
`;

/** The stale holders of a scope (the pruning's): `stale` alone. */
const staleLua = `${holdersLua}
return stale(KEYS[3], KEYS[4], tonumber(ARGV[1]))
`;

/**
 * Settles stale holders, each `<id> <holder>` with '1' (its request's token was issued: it becomes
 * the lasting hold) or '0' (taken back, and the reservation with it when no other holder is left).
 * One no longer in the set was let go, kept or settled meanwhile: left alone. Answers how many.
 */
const settleLua = `${holdersLua}
local times, amounts, holders, held = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local settled = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZREM', held, ARGV[i]) == 1 then
    settled = settled + 1
    local id, holder = split(ARGV[i])
    local list = redis.call('HGET', holders, id)
    local rest = list and without(list, holder)
    if rest then
      if ARGV[i + 1] == '1' and not string.find(rest, ' * ', 1, true) then rest = ' *' .. rest end
      if rest ~= ' ' then
        redis.call('HSET', holders, id, rest)
      else
        redis.call('ZREM', times, id)
        redis.call('HDEL', amounts, id)
        redis.call('HDEL', holders, id)
      end
    end
  end
end
return settled
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
  /** Where the audit log is, which tells a stale holder's issued token from none. */
  readonly #db: Kysely<Database>;
  readonly #reserve: Script;
  readonly #release: Script;
  readonly #keep: Script;
  readonly #total: Script;
  readonly #stale: Script;
  readonly #settle: Script;

  constructor(store: SharedStore, db: Kysely<Database>) {
    this.#store = store;
    this.#db = db;
    this.#reserve = defineScript(store, 'clearanceTransferReserve', reserveLua);
    this.#release = defineScript(store, 'clearanceTransferRelease', releaseLua);
    this.#keep = defineScript(store, 'clearanceTransferKeep', keepLua);
    this.#total = defineScript(store, 'clearanceTransferTotal', totalLua);
    this.#stale = defineScript(store, 'clearanceTransferStale', staleLua);
    this.#settle = defineScript(store, 'clearanceTransferSettle', settleLua);
  }

  #keys(scope: string): [string, string, string, string] {
    // One hash tag per scope: all four keys on one cluster node, as a script needs.
    const base = `${this.#store.prefix}transfer-total:{${scope}}`;
    return [`${base}:times`, `${base}:amounts`, `${base}:holders`, `${base}:held`];
  }

  async reserve(request: ReservationRequest): Promise<ReservationResult> {
    const reserve = (settled: boolean) =>
      this.#run(() =>
        this.#reserve(4, ...this.#keys(request.scope), request.now, totalWindowMs, request.amount.toString(), request.limit.toString(), request.id, holderName(request.holder), holdGraceMs, settled ? '1' : '0'),
      ) as Promise<(number | string)[]>;
    let answer = await reserve(false);
    // Rare (a node died while issuing): stale holders to settle first, then the reservation again.
    if (Number(answer[0]) === 2) {
      await this.#settleStale(request.scope, answer.slice(3) as string[]);
      answer = await reserve(true);
    }
    return { reserved: Number(answer[0]) === 1, created: Number(answer[2]) === 1, total: BigInt(answer[1]!) };
  }

  async release(scope: string, id: string, holder: string): Promise<void> {
    await this.#run(() => this.#release(4, ...this.#keys(scope), id, holderName(holder)));
  }

  async keep(scope: string, id: string, holder: string): Promise<void> {
    await this.#run(() => this.#keep(4, ...this.#keys(scope), id, holderName(holder)));
  }

  async total(scope: string, now: number): Promise<bigint> {
    return BigInt((await this.#run(() => this.#total(4, ...this.#keys(scope), now, totalWindowMs))) as string);
  }

  /**
   * The pruning's part (src/authorization/pruning.ts, through ./totals.ts `pruneTransferTotals`):
   * settles the holders older than the grace in every account and asset that has a holder with
   * its time, found by SCAN (off the request's path, every 10 minutes per process); returns how
   * many were settled.
   */
  async prune(now: number): Promise<number> {
    const from = `${this.#store.prefix}transfer-total:{`;
    const pattern = `${from.replace(/[*?[\]\\]/g, '\\$&')}*}:held`;
    let settled = 0;
    let cursor = '0';
    do {
      const [next, keys] = await this.#run(() => this.#store.client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000));
      for (const key of keys) {
        const scope = key.slice(from.length, -'}:held'.length);
        const [dropped, ...open] = (await this.#run(() => this.#stale(4, ...this.#keys(scope), now - holdGraceMs))) as [number, ...string[]];
        settled += Number(dropped) + (open.length > 0 ? await this.#settleStale(scope, open) : 0);
      }
      cursor = next;
    } while (cursor !== '0');
    return settled;
  }

  /**
   * Settles a scope's stale holders (`open`: each `<id> <holder>` and its time) by the audit log:
   * the holder whose request's token event is recorded becomes the lasting hold, any other is
   * taken back. Returns how many were settled (one let go meanwhile is not).
   */
  async #settleStale(scope: string, open: readonly string[]): Promise<number> {
    const decisions: string[] = [];
    for (let i = 0; i < open.length; i += 2) {
      const member = open[i]!;
      const holder = member.slice(member.indexOf(' ') + 1);
      decisions.push(member, (await tokenIssuedFor(this.#db, requestOfHolder(holder), Number(open[i + 1]))) ? '1' : '0');
    }
    return Number(await this.#run(() => this.#settle(4, ...this.#keys(scope), ...decisions)));
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
