import { randomBytes } from 'node:crypto';
import type { Clock } from '../../clock.ts';
import {
  attemptKeys,
  refusalOf,
  throttleKeyForAddress,
  throttleLimits,
  type AuthAttempt,
  type AuthFailureThrottle,
  type AuthOutcome,
  type ThrottleLimits,
  type ThrottleOptions,
  type ThrottleRefusal,
  type ThrottleWaits,
} from '../../clients/authentication/throttle.ts';
import { defaultLoginThrottle, type LoginReservation, type LoginThrottle, type LoginThrottleOptions } from '../../identity/login-throttle.ts';
import { processNamesKey, pseudonym } from './names.ts';
import { defineScript, slidingWindowLua, type Script, type SharedStore } from './redis.ts';

/**
 * The failure throttles of client authentication and password login in Redis, so a lockout
 * reached through one node holds at every node. Each operation is one Lua script — one round
 * trip, atomic — with exactly the semantics of the in-memory stores (src/clients/authentication/
 * throttle.ts has the model; src/identity/login-throttle.ts the reservation): the same sliding
 * windows (./redis.ts `slidingWindowLua`), the same decisions, the same refusal texts.
 *
 * While Redis does not answer, each operation goes to `fallback`, the node's own throttle (memory,
 * or a worker's relay to its primary): failures then count per node, and what Redis had counted
 * is back when it answers again.
 */

/** Unique ids of the failures this process records (a member of a sorted set is unique). */
function memberIds(): () => string {
  const node = randomBytes(6).toString('base64url');
  let next = 0;
  return () => `${node}.${(next++).toString(36)}`;
}

/** What both throttles run on: Redis while it answers, else `fallback`, the node's own throttle. */
class SharedThrottle<Local> {
  readonly store: SharedStore;
  readonly clock: Clock;
  readonly member = memberIds();
  readonly #fallback: Local;

  constructor(store: SharedStore, fallback: Local, clock: Clock) {
    this.store = store;
    this.clock = clock;
    this.#fallback = fallback;
  }

  /** `redis` on Redis when it is usable; otherwise, or when it fails, `local` on the node's own throttle. */
  run<T>(redis: () => Promise<T>, local: (fallback: Local) => T | Promise<T>): Promise<T> {
    return this.store.run(redis, () => local(this.#fallback));
  }
}

/** Client authentication (KEYS: the address counter, then the client-from-address and the client's guesses counters when a client is named). */
const authPrelude = `${slidingWindowLua}
local now, secret = tonumber(ARGV[1]), ARGV[2] == '1'
local a_max, a_win, ca_max, ca_win, g_max, g_win = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local function waits()
  local address = retry_after(KEYS[1], now, a_max, a_win)
  if #KEYS == 1 then return { address, 0, 0 } end
  local guessing = 0
  if secret then
    local guessed = retry_after(KEYS[3], now, g_max, g_win)
    if guessed > 0 then guessing = math.min(guessed, until_empty(KEYS[2], now, ca_win)) end
  end
  return { address, retry_after(KEYS[2], now, ca_max, ca_win), guessing }
end
`;

/** `check`: the waits as the counters stand. */
const checkLua = `${authPrelude}
return waits()
`;

/** `settle` (ARGV[9]: the outcome, ARGV[10]: a unique id): refused as `check` would, or else a failure counted, in one step. */
const settleLua = `${authPrelude}
local w = waits()
if w[1] > 0 or w[2] > 0 or w[3] > 0 then return w end
local outcome, member = ARGV[9], ARGV[10]
if outcome ~= 'success' then
  record(KEYS[1], now, a_max, a_win, member)
  if #KEYS == 3 then
    record(KEYS[2], now, ca_max, ca_win, member)
    if outcome == 'secret_guess' then record(KEYS[3], now, g_max, g_win, member) end
  end
end
return { 0, 0, 0 }
`;

export class RedisAuthFailureThrottle implements AuthFailureThrottle {
  readonly #shared: SharedThrottle<AuthFailureThrottle>;
  readonly #limits: ThrottleLimits;
  readonly #limitArgs: number[];
  readonly #check: Script;
  readonly #settle: Script;

  constructor(store: SharedStore, fallback: AuthFailureThrottle, clock: Clock, options: ThrottleOptions = {}) {
    this.#shared = new SharedThrottle(store, fallback, clock);
    this.#limits = throttleLimits(options);
    const { perAddress, perClientAddress, secretGuesses } = this.#limits;
    this.#limitArgs = [perAddress.max, perAddress.windowMs, perClientAddress.max, perClientAddress.windowMs, secretGuesses.max, secretGuesses.windowMs];
    this.#check = defineScript(store, 'clearanceAuthCheck', checkLua);
    this.#settle = defineScript(store, 'clearanceAuthSettle', settleLua);
  }

  check(attempt: AuthAttempt): Promise<ThrottleRefusal | undefined> {
    return this.#shared.run(
      async () => {
        const keys = attemptKeys(attempt);
        return this.#refusal(keys, await this.#check(...this.#args(keys, attempt)));
      },
      (fallback) => fallback.check(attempt),
    );
  }

  settle(attempt: AuthAttempt, outcome: AuthOutcome): Promise<ThrottleRefusal | undefined> {
    return this.#shared.run(
      async () => {
        const keys = attemptKeys(attempt);
        return this.#refusal(keys, await this.#settle(...this.#args(keys, attempt), outcome, this.#shared.member()));
      },
      (fallback) => fallback.settle(attempt, outcome),
    );
  }

  #args(keys: ReturnType<typeof attemptKeys>, attempt: AuthAttempt): [number, ...(string | number)[]] {
    const prefix = `${this.#shared.store.prefix}auth:`;
    const head = [this.#shared.clock.now(), attempt.secret ? '1' : '0', ...this.#limitArgs];
    return keys.client === undefined
      ? [1, `${prefix}a:${keys.address}`, ...head]
      : [3, `${prefix}a:${keys.address}`, `${prefix}ca:${keys.clientAddress}`, `${prefix}g:${keys.client}`, ...head];
  }

  #refusal(keys: ReturnType<typeof attemptKeys>, reply: unknown): ThrottleRefusal | undefined {
    const [address, clientAddress, guessing] = reply as [number, number, number];
    const waits: ThrottleWaits = { address, clientAddress, guessing };
    return refusalOf(waits, keys, this.#limits);
  }
}

/** `reserve` (KEYS: the address counter, then the account's when one is named; ARGV: now, the two limits, a unique id): 0 when counted, else the wait. */
const reserveLua = `${slidingWindowLua}
local now = tonumber(ARGV[1])
local a_max, a_win, k_max, k_win, member = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local wait = retry_after(KEYS[1], now, a_max, a_win)
if #KEYS == 2 then wait = math.max(wait, retry_after(KEYS[2], now, k_max, k_win)) end
if wait > 0 then return wait end
record(KEYS[1], now, a_max, a_win, member)
if #KEYS == 2 then record(KEYS[2], now, k_max, k_win, member) end
return 0
`;

/** `refund`: takes back exactly the reservation `ARGV[1]` (if still kept). */
const refundLua = `
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 0
`;

export class RedisLoginThrottle implements LoginThrottle {
  readonly #shared: SharedThrottle<LoginThrottle>;
  readonly #limitArgs: number[];
  readonly #reserve: Script;
  readonly #refund: Script;

  readonly #namesKey: Buffer;

  /** `namesKey`: how accounts are named in Redis (./names.ts); every node must use the same. */
  constructor(store: SharedStore, fallback: LoginThrottle, clock: Clock, options: LoginThrottleOptions = {}, namesKey: Buffer = processNamesKey()) {
    this.#namesKey = namesKey;
    this.#shared = new SharedThrottle(store, fallback, clock);
    const perAccount = options.perAccount ?? defaultLoginThrottle.perAccount;
    const perAddress = options.perAddress ?? defaultLoginThrottle.perAddress;
    this.#limitArgs = [perAddress.max, perAddress.windowMs, perAccount.max, perAccount.windowMs];
    this.#reserve = defineScript(store, 'clearanceLoginReserve', reserveLua);
    this.#refund = defineScript(store, 'clearanceLoginRefund', refundLua);
  }

  reserve(username: string, address: string): Promise<LoginReservation> {
    return this.#shared.run(
      async () => {
        const prefix = `${this.#shared.store.prefix}login:`;
        // The account by a keyed digest of its normalized username: Redis holds no one's name.
        const keys = [`${prefix}a:${throttleKeyForAddress(address)}`, ...(username ? [`${prefix}u:${pseudonym(this.#namesKey, username)}`] : [])];
        const member = this.#shared.member();
        const wait = Number(await this.#reserve(keys.length, ...keys, this.#shared.clock.now(), ...this.#limitArgs, member));
        if (wait > 0) return { granted: false, retryAfterMs: wait };
        let refunded = false;
        return {
          granted: true,
          refund: async () => {
            if (refunded) return;
            refunded = true;
            // Lost if Redis is gone meanwhile: the attempt then stays counted, which errs on the safe side.
            await this.#shared.store.run(
              () => this.#refund(keys.length, ...keys, member),
              () => undefined,
            );
          },
        };
      },
      (fallback) => fallback.reserve(username, address),
    );
  }
}
