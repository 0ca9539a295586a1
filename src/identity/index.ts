import type { Clock } from '../clock.ts';
import { factorKeys, type FactorKeys } from './factors/keys.ts';
import { deviceCookieKey } from './device-cookie.ts';
import { MemoryLoginThrottle, type LoginThrottle } from './login-throttle.ts';
import { defaultSessionPolicy, type SessionPolicy } from './sessions.ts';
import { derivedKey } from '../keys/master-key.ts';

/** The people side's long-lived parts, held by the Context (`ctx.identity`). */
export interface Identity {
  /** Failed-login counters per account and per address (passwords and second factors alike). */
  throttle: LoginThrottle;
  policy: IdentityPolicy;
  /** What seals TOTP secrets and keys recovery-code digests (src/identity/factors). */
  factorKeys: FactorKeys;
  /**
   * HMAC key of the decoy passkeys offered for usernames without any (src/identity/passkeys/
   * options.ts): derived from the master key, so every node offers the same decoys.
   */
  passkeyDecoyKey: Buffer;
  /**
   * HMAC key of the device cookie (./device-cookie.ts): derived from the master key that seals now,
   * so every node verifies it and a master key rotation ends it (src/keys/master-key.ts
   * authenticationKey). Read at each use: it changes when a rewrap begins.
   */
  readonly deviceCookieKey: Buffer;
}

export interface IdentityPolicy {
  session: SessionPolicy;
  /** Consecutive failed logins (wrong passwords and wrong second factors) after which an account is locked (until an admin sets it active). */
  lockoutThreshold: number;
}

export const defaultIdentityPolicy: Readonly<IdentityPolicy> = { session: defaultSessionPolicy, lockoutThreshold: 10 };

/** The identity component as the server wires it: in-memory throttle, default policy, factor keys, the passkey decoy key and the device cookie key from the master key. */
export function createIdentity(clock: Clock, masterKey: Buffer, policy: Partial<IdentityPolicy> = {}): Identity {
  return {
    throttle: new MemoryLoginThrottle(clock),
    policy: { ...defaultIdentityPolicy, ...policy },
    factorKeys: factorKeys(masterKey),
    passkeyDecoyKey: passkeyDecoyKey(masterKey),
    get deviceCookieKey() {
      return deviceCookieKey(masterKey);
    },
  };
}

/** HKDF-SHA-256 of the master key with a label of its own (never the key itself). */
export function passkeyDecoyKey(masterKey: Buffer): Buffer {
  return derivedKey(masterKey, 'clearance passkey-decoys v1');
}
