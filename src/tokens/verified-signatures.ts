import type { KeyObject } from 'node:crypto';
import { BoundedMap } from '../jose/bounded-map.ts';

/**
 * The signatures of our own tokens this process has already verified, each remembered with the
 * key object that verified it. A token is presented again and again — the same order token
 * exchanged for each of the hops it travels, introspected by every resource it reaches — and its
 * ES256 verification is a fifth of an exchange's CPU (issue 13).
 *
 * Only the signature check is remembered, and only as what it is: "these exact bytes verify under
 * this key object". Everything else about the token (its kid still published and unretired, the
 * algorithm, typ, issuer, claims, expiry, revocation) is checked on every use as before. A key that
 * is retired or revoked is no longer returned by the key store, so its tokens fail before the
 * cache is consulted; a key store reload creates new key objects, which no entry matches. Only
 * tokens whose signature verified are added, so a caller cannot fill the cache with tokens we did
 * not sign; the oldest entry makes room when it is full.
 */
export class VerifiedSignatures {
  readonly #byToken: BoundedMap<string, KeyObject>;
  readonly capacity: number;

  constructor(capacity = 8192) {
    this.capacity = capacity;
    this.#byToken = new BoundedMap(capacity);
  }

  /** Whether `token` verified under exactly this key object before. */
  has(token: string, key: KeyObject): boolean {
    return this.#byToken.get(token) === key;
  }

  /** Remembers a signature that has just verified. */
  add(token: string, key: KeyObject): void {
    this.#byToken.set(token, key);
  }

  get size(): number {
    return this.#byToken.size;
  }
}

/** The process's cache (key objects are per key store, so key stores never share an entry). */
export const verifiedSignatures = new VerifiedSignatures();
