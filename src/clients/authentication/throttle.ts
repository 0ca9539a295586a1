import { isIPv4, isIPv6 } from 'node:net';
import type { Clock } from '../../clock.ts';
import { OAuthError } from '../../oauth-error.ts';
import { BoundedMap } from '../../jose/bounded-map.ts';

/**
 * Throttling of failed client authentication (RFC 6819 §4.3.5: limit online guessing of client
 * credentials) at the token, PAR, introspection and revocation endpoints and the AuthZEN API.
 *
 * The model — slow the attacker, never lock out the victim:
 *
 * 1. **Per source** (an IPv4 address, an IPv6 /64): every failure from the source, whatever client
 *    it names or however malformed it is. Over the limit (30 per 60 s) the source gets 429 for
 *    everything. This bounds how fast one place can spray client ids or junk.
 * 2. **Per (client, source)**: every failure naming the client from the source. Over the limit
 *    (10 per 60 s) that source gets 429 for that client. An attacker who fails as a client from
 *    address A throttles only A: the client itself, calling from B, never sees it. This is the
 *    counter that wrong secrets and failed assertions naming the client land on (a `sub` that can
 *    be read, or a `client_id` beside the assertion); an assertion too malformed to name anyone
 *    (not a compact JWS, an empty signature) counts on its source alone, counter 1.
 * 3. **Per client, secret guesses only**: a wrong secret presented for a client that has one
 *    (registered for client_secret_basic/post). Nothing else counts here: an unknown client id, a
 *    method the client is not registered for, or a client assertion, whatever is wrong with it —
 *    an assertion that does not verify with the client's key is not a step towards forging one
 *    (the key is hundreds of bits), and one that verifies but is otherwise wrong (expired, replayed,
 *    wrong `aud`) was made by the key's holder. So nobody can push a private_key_jwt or mTLS
 *    client into this state. At the limit (10 wrong secrets in 60 s, from any number of
 *    addresses) the client is *being guessed*: a secret naming it is then admitted only from a
 *    source with no failure naming it in the window. The client's own callers, which do not fail,
 *    go through; a guessing address gets one guess per window.
 *
 * The bound on guessing one client's secret: from one source, 10 per 60 s (counter 2); from many,
 * at most 10 per 60 s plus one per attacking source (IPv4 address or IPv6 /64) per 60 s (counter 3).
 * Clearance's secrets are 256 random bits, so this is defence in depth; the counters matter more
 * for what they must not do, which is deny service to the client.
 *
 * **Decided once, after verification, in one atomic step.** `check` runs before any lookup or
 * cryptography and refuses what is already over a limit, so a throttled caller costs nothing.
 * `settle` runs after the credential was verified and decides on the counters as they are at that
 * moment: a failure is counted unless the counters already refuse it (then it is a 429 and not
 * counted again); a secret's success is refused with 429 on the same terms (a source over its
 * limit must not learn that a guess was right). A success with a private key (an assertion, a
 * certificate) is not settled at all: it was no guess, and `check` refused a throttled source.
 * Because no await separates the decision from the count, N parallel wrong guesses get at most
 * `limit` 401s and the rest 429 (issue 20: checking before the slow verification and counting
 * after let 49 through). This is the login throttle's
 * reserve-before-verify guarantee without its cost: a reservation would cap every address's
 * concurrent authentications of one client at the failure limit (a service with 16 requests in
 * flight would see 429s), while here correct credentials are never held back by each other.
 *
 * A success does not reset a counter: an attacker who also holds one valid credential must not be
 * able to clear an address's record.
 *
 * Known limits: sources that share an address (a NAT, a proxy whose forwarding header is not
 * trusted) share counters 1 and 2, so a guesser behind the same NAT as the client can throttle it.
 *
 * Stores: in memory for one process (`MemoryAuthFailureThrottle`), relayed to the primary for the
 * workers of one node (src/cluster/throttles.ts), and in Redis for every node when `REDIS_URL` is
 * set (src/risk/limits/redis-throttles.ts: `check` and `settle` a Lua script each, atomic).
 */
export interface AuthFailureThrottle {
  /** Before any work: the refusal when the attempt is over a limit whatever its outcome. */
  check(attempt: AuthAttempt): Promise<ThrottleRefusal | undefined>;
  /**
   * After verification, in one atomic step: refuses the attempt if the counters as they now stand
   * do; otherwise, for a failure, counts it (per source, per client and source, and a secret
   * guess against the client).
   */
  settle(attempt: AuthAttempt, outcome: AuthOutcome): Promise<ThrottleRefusal | undefined>;
}

/** One authentication attempt, as the throttle sees it. */
export interface AuthAttempt {
  /** The source address (counted by `throttleKeyForAddress`). */
  address: string;
  /** The client_id the credentials claim, when one could be read (unverified). */
  clientId?: string;
  /** The credential is a client secret (client_secret_basic or client_secret_post). */
  secret: boolean;
}

/**
 * How an attempt ended: `secret_guess` is a wrong secret for a client that has a secret and is
 * registered for the method used; any other refusal is `failure`.
 */
export type AuthOutcome = 'success' | 'failure' | 'secret_guess';

export interface ThrottleRefusal {
  /** Milliseconds until the refusing limits clear. */
  retryAfterMs: number;
  /** Which limit refused, naming the client and the address (for the log and audit). */
  reason: string;
}

export interface ThrottleLimit {
  /** Failures allowed within the window; the next attempt is refused until one ages out. */
  max: number;
  windowMs: number;
}

export interface ThrottleOptions {
  /** Counter 1: failures per source address. */
  perAddress?: ThrottleLimit;
  /** Counter 2: failures naming one client from one source address. */
  perClientAddress?: ThrottleLimit;
  /** Counter 3: wrong secrets per client, from anywhere; at the limit only clean sources may try a secret. */
  secretGuesses?: ThrottleLimit;
  /** Most keys tracked at once in each counter; the least recently failing is evicted. */
  maxTracked?: number;
}

export const defaultThrottleOptions = {
  perAddress: { max: 30, windowMs: 60_000 },
  perClientAddress: { max: 10, windowMs: 60_000 },
  secretGuesses: { max: 10, windowMs: 60_000 },
  maxTracked: 10_000,
} as const satisfies Required<ThrottleOptions>;

/** Longest client_id tracked (metadata.ts allows 128); longer ones cannot exist. */
const maxClientIdLength = 128;

/**
 * The model above with sliding windows in memory, for one node. Each key keeps the times of at
 * most `max` recent failures, and each counter at most `maxTracked` keys, so memory stays bounded
 * whatever callers send. Methods are synchronous inside (the async signature is the interface's),
 * so `settle`'s decision and count are one step.
 */
export class MemoryAuthFailureThrottle implements AuthFailureThrottle {
  readonly #clock: Clock;
  readonly #limits: ThrottleLimits;
  readonly #addresses: SlidingWindows;
  readonly #clientAddresses: SlidingWindows;
  readonly #guesses: SlidingWindows;

  constructor(clock: Clock, options: ThrottleOptions = {}) {
    this.#clock = clock;
    this.#limits = throttleLimits(options);
    const maxTracked = options.maxTracked ?? defaultThrottleOptions.maxTracked;
    this.#addresses = new SlidingWindows(this.#limits.perAddress, maxTracked);
    this.#clientAddresses = new SlidingWindows(this.#limits.perClientAddress, maxTracked);
    this.#guesses = new SlidingWindows(this.#limits.secretGuesses, maxTracked);
  }

  async check(attempt: AuthAttempt): Promise<ThrottleRefusal | undefined> {
    const keys = attemptKeys(attempt);
    return refusalOf(this.#waits(keys, attempt.secret, this.#clock.now()), keys, this.#limits);
  }

  async settle(attempt: AuthAttempt, outcome: AuthOutcome): Promise<ThrottleRefusal | undefined> {
    const now = this.#clock.now();
    const keys = attemptKeys(attempt);
    const refusal = refusalOf(this.#waits(keys, attempt.secret, now), keys, this.#limits);
    if (refusal || outcome === 'success') return refusal;
    this.#addresses.record(keys.address, now);
    if (keys.client !== undefined) {
      this.#clientAddresses.record(keys.clientAddress!, now);
      if (outcome === 'secret_guess') this.#guesses.record(keys.client, now);
    }
    return undefined;
  }

  /** What each counter refuses at `now`. */
  #waits(keys: AttemptKeys, secret: boolean, now: number): ThrottleWaits {
    if (keys.client === undefined) return { address: this.#addresses.retryAfterMs(keys.address, now), clientAddress: 0, guessing: 0 };
    const clientAddress = keys.clientAddress!;
    // Counter 3 only holds back a secret, and only from a source that has failed as this client.
    const guessed = secret ? this.#guesses.retryAfterMs(keys.client, now) : 0;
    const failedHere = guessed > 0 ? this.#clientAddresses.untilEmptyMs(clientAddress, now) : 0;
    return {
      address: this.#addresses.retryAfterMs(keys.address, now),
      clientAddress: this.#clientAddresses.retryAfterMs(clientAddress, now),
      guessing: Math.min(guessed, failedHere),
    };
  }
}

/** The three limits of the model, defaults filled in. */
export type ThrottleLimits = Required<Omit<ThrottleOptions, 'maxTracked'>>;

export function throttleLimits(options: ThrottleOptions = {}): ThrottleLimits {
  return {
    perAddress: options.perAddress ?? defaultThrottleOptions.perAddress,
    perClientAddress: options.perClientAddress ?? defaultThrottleOptions.perClientAddress,
    secretGuesses: options.secretGuesses ?? defaultThrottleOptions.secretGuesses,
  };
}

/**
 * How long each counter refuses an attempt, in ms (0: it does not): the source over its limit;
 * the client from the source over its limit; the client being guessed, for a secret from a
 * source that has failed as it (the shorter of the two waits: either clearing admits it).
 */
export interface ThrottleWaits {
  address: number;
  clientAddress: number;
  guessing: number;
}

/**
 * The refusal the waits make, waiting for every limit that refuses and naming each (for the log
 * and audit); undefined when none does. Shared by every store, so they refuse in the same words.
 */
export function refusalOf(waits: ThrottleWaits, keys: AttemptKeys, limits: ThrottleLimits): ThrottleRefusal | undefined {
  const reasons: string[] = [];
  let wait = 0;
  const refuse = (ms: number, reason: () => string) => {
    if (ms <= 0) return;
    wait = Math.max(wait, ms);
    reasons.push(reason());
  };
  refuse(waits.address, () => `address ${keys.address} exceeded ${describeLimit(limits.perAddress)}`);
  refuse(waits.clientAddress, () => `client ${keys.client} from address ${keys.address} exceeded ${describeLimit(limits.perClientAddress)}`);
  refuse(waits.guessing, () => `client ${keys.client} is being guessed (${describeLimit(limits.secretGuesses, 'wrong secrets')}) and address ${keys.address} has failed as it`);
  return reasons.length > 0 ? { retryAfterMs: wait, reason: reasons.join('; ') } : undefined;
}

function describeLimit(limit: ThrottleLimit, what = 'failures'): string {
  return `${limit.max} ${what} in ${limit.windowMs / 1000} s`;
}

/** The counters' keys of an attempt: its address key, and the client (and the pair) when one is named. */
export interface AttemptKeys {
  address: string;
  client?: string;
  clientAddress?: string;
}

export function attemptKeys(attempt: AuthAttempt): AttemptKeys {
  const address = throttleKeyForAddress(attempt.address);
  const client = attempt.clientId && attempt.clientId.length <= maxClientIdLength ? attempt.clientId : undefined;
  return client === undefined ? { address } : { address, client, clientAddress: JSON.stringify([client, address]) };
}

/**
 * The 429 for a refused attempt. RFC 6749 has no code for it: the body keeps `invalid_client` and
 * the status says why (RFC 6585 §4), with `Retry-After` in whole seconds (RFC 9110 §10.2.3).
 */
export function throttledError(refusal: ThrottleRefusal): OAuthError {
  const seconds = Math.max(1, Math.ceil(refusal.retryAfterMs / 1000));
  return new OAuthError('invalid_client', 'too many failed authentications; retry later', {
    status: 429,
    headers: { 'retry-after': String(seconds) },
    detail: `throttled: ${refusal.reason}`,
  });
}

/**
 * The key an address is counted under: an IPv4 address as is (also when IPv4-mapped), an IPv6
 * address by its /64 prefix, since one host usually holds a whole /64.
 */
export function throttleKeyForAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address)) return address;
  if (isIPv6(address)) return `${expandIPv6(address).slice(0, 4).join(':')}::/64`;
  return address.slice(0, 64);
}

/** The eight 16-bit groups of an IPv6 address, as lowercase hex without leading zeros. */
export function expandIPv6(address: string): string[] {
  const [head = '', tail] = address.split('%')[0]!.split('::');
  const parse = (part: string) => (part ? part.split(':') : []);
  let left = parse(head);
  let right = tail === undefined ? [] : parse(tail);
  // An embedded IPv4 tail (::ffff:1.2.3.4 and the like) counts as two groups.
  const toGroups = (groups: string[]) =>
    groups.flatMap((g) => {
      if (!g.includes('.')) return [g];
      const b = g.split('.').map(Number);
      return [((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16)];
    });
  left = toGroups(left);
  right = toGroups(right);
  const zeros = tail === undefined ? [] : new Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16));
}

/**
 * Failure counts per key and per source address for the password login (src/identity/login-throttle.ts),
 * where an attempt is reserved before its slow verification: `reserve` checks both limits and,
 * when neither is reached, counts one failure against each in the same synchronous step, so
 * concurrent callers cannot all pass the check before any of them is counted. It returns the
 * milliseconds to wait (nothing counted), or `refund`, which takes back exactly this attempt's
 * count (never an earlier failure's) once the attempt turns out not to be one. (Client
 * authentication decides after verification instead; see `AuthFailureThrottle`.)
 */
export class MemoryFailureReservations {
  readonly #clock: Clock;
  readonly #keys: SlidingWindows;
  readonly #addresses: SlidingWindows;

  constructor(clock: Clock, options: { perKey: ThrottleLimit; perAddress: ThrottleLimit; maxTracked: number }) {
    this.#clock = clock;
    this.#keys = new SlidingWindows(options.perKey, options.maxTracked);
    this.#addresses = new SlidingWindows(options.perAddress, options.maxTracked);
  }

  reserve(key: string | undefined, address: string): { retryAfterMs: number } | { refund(): void } {
    const now = this.#clock.now();
    const addressKey = throttleKeyForAddress(address);
    const wait = Math.max(this.#addresses.retryAfterMs(addressKey, now), key === undefined ? 0 : this.#keys.retryAfterMs(key, now));
    if (wait > 0) return { retryAfterMs: wait };
    this.#addresses.record(addressKey, now);
    if (key !== undefined) this.#keys.record(key, now);
    let refunded = false;
    return {
      refund: () => {
        if (refunded) return;
        refunded = true;
        this.#addresses.unrecord(addressKey, now);
        if (key !== undefined) this.#keys.unrecord(key, now);
      },
    };
  }
}

/** Failure times per key, oldest first, at most `limit.max` per key and `maxTracked` keys. */
class SlidingWindows {
  readonly #limit: ThrottleLimit;
  readonly #times: BoundedMap<string, number[]>;

  constructor(limit: ThrottleLimit, maxTracked: number) {
    this.#limit = limit;
    this.#times = new BoundedMap(maxTracked);
  }

  /** Milliseconds until the key may try again; 0 when it may now. */
  retryAfterMs(key: string, now: number): number {
    const times = this.#live(key, now);
    if (!times || times.length < this.#limit.max) return 0;
    // The oldest kept failure is the one whose ageing-out brings the count below the limit.
    return times[0]! + this.#limit.windowMs - now;
  }

  /** Milliseconds until the key has no failure in the window; 0 when it has none now. */
  untilEmptyMs(key: string, now: number): number {
    const times = this.#live(key, now);
    return times ? times.at(-1)! + this.#limit.windowMs - now : 0;
  }

  record(key: string, now: number): void {
    const times = this.#live(key, now) ?? [];
    times.push(now);
    if (times.length > this.#limit.max) times.splice(0, times.length - this.#limit.max);
    // Re-inserting moves the key to the end, so the map's first key is the least recently failing.
    this.#times.delete(key);
    this.#times.set(key, times);
  }

  /** Takes back one failure recorded at `time`, if it is still kept. */
  unrecord(key: string, time: number): void {
    const times = this.#times.get(key);
    const index = times?.lastIndexOf(time) ?? -1;
    if (!times || index < 0) return;
    times.splice(index, 1);
    if (times.length === 0) this.#times.delete(key);
  }

  #live(key: string, now: number): number[] | undefined {
    const times = this.#times.get(key);
    if (!times) return undefined;
    const cutoff = now - this.#limit.windowMs;
    let expired = 0;
    while (expired < times.length && times[expired]! <= cutoff) expired++;
    if (expired === times.length) {
      this.#times.delete(key);
      return undefined;
    }
    if (expired > 0) times.splice(0, expired);
    return times;
  }
}
