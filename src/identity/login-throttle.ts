import type { Clock } from '../clock.ts';
import { MemoryAuthFailureThrottle, type ThrottleLimit } from '../clients/authentication/throttle.ts';
import { OAuthError } from '../oauth-error.ts';

/**
 * Limits failed password logins per account and per source address, as client authentication
 * does for clients (src/clients/authentication/throttle.ts, RFC 6819 §4.3.5 in spirit): an
 * attacker guessing one account's password, or spraying many accounts from one place, is slowed
 * to a few tries per window. Unknown usernames are counted like known ones, so the throttle does
 * not say which exist. Asynchronous, so a shared (Redis) implementation can replace the memory one.
 */
export interface LoginThrottle {
  /** Milliseconds until this account or address may try again; 0 when it may now. */
  retryAfterMs(username: string, address: string): Promise<number>;
  recordFailure(username: string, address: string): Promise<void>;
}

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
  readonly #windows: MemoryAuthFailureThrottle;

  constructor(clock: Clock, options: LoginThrottleOptions = {}) {
    this.#windows = new MemoryAuthFailureThrottle(clock, {
      perClient: options.perAccount ?? defaultLoginThrottle.perAccount,
      perAddress: options.perAddress ?? defaultLoginThrottle.perAddress,
      maxTracked: options.maxTracked ?? defaultLoginThrottle.maxTracked,
    });
  }

  async retryAfterMs(username: string, address: string): Promise<number> {
    try {
      await this.#windows.checkAddress(address);
      await this.#windows.checkClient(username);
      return 0;
    } catch (error) {
      if (!(error instanceof OAuthError) || error.status !== 429) throw error;
      return Number(error.headers['retry-after'] ?? '1') * 1000;
    }
  }

  async recordFailure(username: string, address: string): Promise<void> {
    await this.#windows.recordFailure(username || undefined, address);
  }
}
