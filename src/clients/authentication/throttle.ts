import { isIPv4, isIPv6 } from 'node:net';
import type { Clock } from '../../clock.ts';
import { OAuthError } from '../../oauth-error.ts';

/**
 * Limits failed client authentications (RFC 6819 §4.3.5: throttle online guessing of client
 * credentials), per claimed client_id and per source address. One node keeps the counters in
 * memory; a cluster needs a shared implementation (Redis, DESIGN §6) behind this same interface,
 * which is why both methods are asynchronous.
 */
export interface AuthFailureThrottle {
  /** Throws a 429 OAuthError when the source address has failed too often recently. */
  checkAddress(address: string): Promise<void>;
  /** Throws a 429 OAuthError when authentications as this client have failed too often recently. */
  checkClient(clientId: string): Promise<void>;
  /** Counts one failed authentication against the client (when known) and the address. */
  recordFailure(clientId: string | undefined, address: string): Promise<void>;
}

export interface ThrottleLimit {
  /** Failures allowed within the window; the next attempt is refused until one ages out. */
  max: number;
  windowMs: number;
}

export interface ThrottleOptions {
  perClient?: ThrottleLimit;
  perAddress?: ThrottleLimit;
  /** Most clients and most addresses tracked at once (each); the least recently failing is evicted. */
  maxTracked?: number;
}

export const defaultThrottleOptions = {
  perClient: { max: 10, windowMs: 60_000 },
  perAddress: { max: 30, windowMs: 60_000 },
  maxTracked: 10_000,
} as const satisfies Required<ThrottleOptions>;

/** Longest client_id tracked per client (metadata.ts allows 128); longer ones cannot exist. */
const maxClientIdLength = 128;

/**
 * Sliding-window failure counters in memory. Each key keeps the times of at most `max` recent
 * failures, and each map at most `maxTracked` keys, so memory stays bounded whatever the caller
 * sends. A success does not reset a counter: an attacker who also holds one valid credential
 * must not be able to clear an address's record.
 */
export class MemoryAuthFailureThrottle implements AuthFailureThrottle {
  readonly #clock: Clock;
  readonly #clients: SlidingWindows;
  readonly #addresses: SlidingWindows;

  constructor(clock: Clock, options: ThrottleOptions = {}) {
    this.#clock = clock;
    const maxTracked = options.maxTracked ?? defaultThrottleOptions.maxTracked;
    this.#clients = new SlidingWindows(options.perClient ?? defaultThrottleOptions.perClient, maxTracked);
    this.#addresses = new SlidingWindows(options.perAddress ?? defaultThrottleOptions.perAddress, maxTracked);
  }

  async checkAddress(address: string): Promise<void> {
    const key = throttleKeyForAddress(address);
    const wait = this.#addresses.retryAfterMs(key, this.#clock.now());
    if (wait > 0) throw throttled(wait, `address ${key} exceeded ${this.#addresses.describe()}`);
  }

  async checkClient(clientId: string): Promise<void> {
    const key = clientKeyFor(clientId);
    if (key === undefined) return;
    const wait = this.#clients.retryAfterMs(key, this.#clock.now());
    if (wait > 0) throw throttled(wait, `client ${key} exceeded ${this.#clients.describe()}`);
  }

  async recordFailure(clientId: string | undefined, address: string): Promise<void> {
    const now = this.#clock.now();
    this.#addresses.record(throttleKeyForAddress(address), now);
    const clientKey = clientKeyFor(clientId);
    if (clientKey !== undefined) this.#clients.record(clientKey, now);
  }

  /**
   * Checks both limits and, when neither is reached, counts one failure against each in the same
   * synchronous step, so concurrent callers cannot all pass the check before any of them is
   * counted: for a caller that counts an attempt before its slow verification. Returns the
   * milliseconds to wait (nothing counted), or `refund`, which takes back exactly this attempt's
   * count (never an earlier failure's) once the attempt turns out not to be one.
   */
  reserve(clientId: string | undefined, address: string): { retryAfterMs: number } | { refund(): void } {
    const now = this.#clock.now();
    const addressKey = throttleKeyForAddress(address);
    const clientKey = clientKeyFor(clientId);
    const wait = Math.max(this.#addresses.retryAfterMs(addressKey, now), clientKey === undefined ? 0 : this.#clients.retryAfterMs(clientKey, now));
    if (wait > 0) return { retryAfterMs: wait };
    this.#addresses.record(addressKey, now);
    if (clientKey !== undefined) this.#clients.record(clientKey, now);
    let refunded = false;
    return {
      refund: () => {
        if (refunded) return;
        refunded = true;
        this.#addresses.unrecord(addressKey, now);
        if (clientKey !== undefined) this.#clients.unrecord(clientKey, now);
      },
    };
  }
}

function throttled(retryAfterMs: number, detail: string): OAuthError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  // RFC 6749 has no code for this; the body keeps invalid_client and the status says why (RFC 6585 §4).
  return new OAuthError('invalid_client', 'too many failed authentications; retry later', {
    status: 429,
    headers: { 'retry-after': String(seconds) },
    detail: `throttled: ${detail}`,
  });
}

function clientKeyFor(clientId: string | undefined): string | undefined {
  return clientId && clientId.length <= maxClientIdLength ? clientId : undefined;
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
function expandIPv6(address: string): string[] {
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

/** Failure times per key, oldest first, at most `limit.max` per key and `maxTracked` keys. */
class SlidingWindows {
  readonly #limit: ThrottleLimit;
  readonly #maxTracked: number;
  readonly #times = new Map<string, number[]>();

  constructor(limit: ThrottleLimit, maxTracked: number) {
    this.#limit = limit;
    this.#maxTracked = maxTracked;
  }

  describe(): string {
    return `${this.#limit.max} failures in ${this.#limit.windowMs / 1000} s`;
  }

  /** Milliseconds until the key may try again; 0 when it may now. */
  retryAfterMs(key: string, now: number): number {
    const times = this.#live(key, now);
    if (!times || times.length < this.#limit.max) return 0;
    // The oldest kept failure is the one whose ageing-out brings the count below the limit.
    return times[0]! + this.#limit.windowMs - now;
  }

  record(key: string, now: number): void {
    const times = this.#live(key, now) ?? [];
    times.push(now);
    if (times.length > this.#limit.max) times.splice(0, times.length - this.#limit.max);
    // Re-inserting moves the key to the end, so the map's first key is the least recently failing.
    this.#times.delete(key);
    this.#times.set(key, times);
    while (this.#times.size > this.#maxTracked) {
      this.#times.delete(this.#times.keys().next().value!);
    }
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
