import type { Clock } from '../clock.ts';
import { MemoryFailureReservations, type ThrottleLimit } from '../clients/authentication/throttle.ts';

/**
 * Limits failed password logins per account and per source address, as client authentication
 * does for clients (src/clients/authentication/throttle.ts, RFC 6819 §4.3.5 in spirit): an
 * attacker guessing one account's password, or spraying many accounts from one place, is slowed
 * to a few tries per window. Unknown usernames are counted like known ones, so the throttle does
 * not say which exist. Asynchronous, so a shared (Redis) implementation can replace the memory one.
 *
 * An attempt is counted when it starts, not when its password turns out wrong: checking first and
 * counting after the (slow) password verification would let any number of parallel guesses pass
 * the check before the first is counted. A login that succeeds refunds its own count.
 */
export interface LoginThrottle {
  /**
   * Counts one attempt against the account and the address if both are under their limits, in
   * one step no concurrent attempt can slip into; otherwise counts nothing and says how long to wait.
   */
  reserve(username: string, address: string): Promise<LoginReservation>;
}

export type LoginReservation =
  | { granted: false; /** Milliseconds until this account or address may try again. */ retryAfterMs: number }
  | { granted: true; /** Takes back this attempt's count (only its own): the login succeeded. */ refund(): Promise<void> };

export interface LoginThrottleOptions {
  perAccount?: ThrottleLimit;
  perAddress?: ThrottleLimit;
  maxTracked?: number;
}

export const defaultLoginThrottle = {
  perAccount: { max: 5, windowMs: 5 * 60_000 },
  perAddress: { max: 20, windowMs: 5 * 60_000 },
  maxTracked: 10_000,
} as const satisfies Required<LoginThrottleOptions>;

/**
 * The in-memory sliding windows of the client throttle (bounded memory, IPv6 counted per /64),
 * keyed by normalized username instead of client_id.
 */
export class MemoryLoginThrottle implements LoginThrottle {
  readonly #windows: MemoryFailureReservations;

  constructor(clock: Clock, options: LoginThrottleOptions = {}) {
    this.#windows = new MemoryFailureReservations(clock, {
      perKey: options.perAccount ?? defaultLoginThrottle.perAccount,
      perAddress: options.perAddress ?? defaultLoginThrottle.perAddress,
      maxTracked: options.maxTracked ?? defaultLoginThrottle.maxTracked,
    });
  }

  async reserve(username: string, address: string): Promise<LoginReservation> {
    const reserved = this.#windows.reserve(username || undefined, address);
    if ('retryAfterMs' in reserved) return { granted: false, retryAfterMs: reserved.retryAfterMs };
    return { granted: true, refund: async () => reserved.refund() };
  }
}
