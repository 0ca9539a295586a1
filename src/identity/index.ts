import type { Clock } from '../clock.ts';
import { MemoryLoginThrottle, type LoginThrottle } from './login-throttle.ts';
import { defaultSessionPolicy, type SessionPolicy } from './sessions.ts';

/** The people side's long-lived parts, held by the Context (`ctx.identity`). */
export interface Identity {
  /** Failed-login counters per account and per address. */
  throttle: LoginThrottle;
  policy: IdentityPolicy;
}

export interface IdentityPolicy {
  session: SessionPolicy;
  /** Consecutive failed logins after which an account is locked (until an admin sets it active). */
  lockoutThreshold: number;
}

export const defaultIdentityPolicy: Readonly<IdentityPolicy> = { session: defaultSessionPolicy, lockoutThreshold: 10 };

/** The identity component as the server wires it: in-memory throttle, default policy. */
export function createIdentity(clock: Clock, policy: Partial<IdentityPolicy> = {}): Identity {
  return { throttle: new MemoryLoginThrottle(clock), policy: { ...defaultIdentityPolicy, ...policy } };
}
