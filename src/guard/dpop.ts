import { createHmac, randomBytes } from 'node:crypto';
import { checkDpopProofJwt, describe, safeEqual } from '../jose/index.ts';

/**
 * DPoP proof verification at a resource server (RFC 9449 §4.3, §7.1). The guard runs inside other
 * services, so it shares no code with the authorization server's internals; the proof's rules
 * come from src/jose (dependency-free, built with the guard), the same as the server's. The
 * replay cache and the nonces are the guard's (in memory by default; pluggable for a cluster).
 */

/**
 * Proof algorithms accepted by default: what Clearance's clients use (RFC 9449 §4.3 (5):
 * asymmetric only). `Ed25519` is EdDSA's fully-specified name (RFC 9864 §2.2), what oauth4webapi
 * and openid-client send for an Ed25519 key.
 */
export const defaultDpopAlgorithms = ['ES256', 'EdDSA', 'Ed25519', 'PS256'] as const;
/** Default window for a proof's `iat` around the guard's clock, in seconds (RFC 9449 §4.3 (11), §11.1). */
export const defaultDpopIatWindowSeconds = 60;
/** Largest proof accepted, in bytes. */
const maxProofBytes = 8 * 1024;
/** Longest `jti` accepted. */
const maxJtiLength = 256;

/** Single use of proof `jti`s (RFC 9449 §11.1). `use` resolves false when the key was already used and has not expired. */
export interface DpopReplayStore {
  use(key: string, expiresAt: number): boolean | Promise<boolean>;
}

/** Server nonces (RFC 9449 §9): when a guard has a nonce source, every proof must carry a valid nonce. */
export interface DpopNonceSource {
  /** The nonce to hand out now (the DPoP-Nonce header). */
  current(): string;
  isValid(nonce: string): boolean;
}

export interface DpopCheckOptions {
  algorithms: readonly string[];
  iatWindowSeconds: number;
  replay: DpopReplayStore;
  nonces: DpopNonceSource | undefined;
  /** Milliseconds since the epoch. */
  now(): number;
}

/** What the resource request carried. */
export interface DpopProofInput {
  /** The DPoP header value(s) as received (more than one is refused). */
  header: string | readonly string[] | undefined;
  method: string;
  /** The absolute URL the client addressed. */
  url: string;
  /** The access token presented with the proof (its hash is the proof's `ath`). */
  accessToken: string;
}

/** A proof that passed every check, its `jti` consumed. */
export interface VerifiedProof {
  /** RFC 7638 SHA-256 thumbprint of the proof key: compared with the token's `cnf.jkt`. */
  jkt: string;
  jti: string;
  iat: number;
}

/** A proof refusal, before it becomes a GuardError with a DPoP challenge. */
export class DpopProofError extends Error {
  readonly code: 'invalid_dpop_proof' | 'use_dpop_nonce';
  readonly description: string;
  readonly detail: string;
  constructor(code: 'invalid_dpop_proof' | 'use_dpop_nonce', description: string, detail: string) {
    super(detail);
    this.code = code;
    this.description = description;
    this.detail = detail;
  }
}

function invalid(detail: string, description = 'the DPoP proof is invalid'): DpopProofError {
  return new DpopProofError('invalid_dpop_proof', description, detail);
}

/**
 * Verifies the request's DPoP proof (RFC 9449 §4.3), in the order of the RFC:
 * 1. exactly one DPoP header; 2.-12. the proof's own rules (src/jose/dpop.ts, the server's too):
 * one compact JWS, header and claims JSON objects; typ `dpop+jwt`; alg on the allowlist (never
 * `none` or a MAC); jwk a public key of the type alg needs; the signature verifies with it; jti,
 * htm, htu and iat present; htm the request method; htu the request URL (normalised, query and
 * fragment ignored); the nonce, when the guard requires nonces; iat within the window; ath the
 * hash of the access token; then the `jti` is used once per key (§11.1). The caller compares the
 * proof key with the token's `cnf.jkt` afterwards (§7.1), so a replay is refused as a replay.
 */
export async function verifyDpopProof(input: DpopProofInput, options: DpopCheckOptions): Promise<VerifiedProof> {
  const values = input.header === undefined ? [] : typeof input.header === 'string' ? [input.header] : [...input.header];
  if (values.length === 0) throw invalid('no DPoP header', 'the DPoP scheme needs a DPoP proof');
  // RFC 9449 §4.3 (1): not more than one DPoP header field (node joins repeated ones with ", ").
  if (values.length > 1 || values[0]!.includes(',')) throw invalid('more than one DPoP header field', 'send exactly one DPoP header');
  const checked = checkDpopProofJwt(values[0]!.trim(), {
    algorithms: options.algorithms,
    maxBytes: maxProofBytes,
    maxJtiLength,
    method: input.method,
    urls: [input.url],
    // §4.3 (12), §7.1: at a resource, a proof always comes with its access token.
    accessToken: input.accessToken,
    now: options.now() / 1000,
    iatWindowSeconds: options.iatWindowSeconds,
    nonceIsValid: options.nonces ? (nonce) => options.nonces!.isValid(nonce) : undefined,
  });
  if (!checked.ok) throw new DpopProofError(checked.failure.code, checked.failure.description, checked.failure.detail);
  const { jkt, jti, iat } = checked.proof;
  // §11.1: the jti once per key while the iat is in the window; last, before any binding check.
  const fresh = await options.replay.use(`${jkt}:${jti}`, Math.ceil((iat + options.iatWindowSeconds + 1) * 1000));
  if (!fresh) throw invalid(`DPoP proof jti ${describe(jti)} was already used`, 'the DPoP proof was already used');
  return { jkt, jti, iat };
}

// One `ath` and one htu normalisation for the guard and the server (part of the guard's API).
export { accessTokenHash, normalizeHtu } from '../jose/index.ts';

/**
 * The guard's default replay cache: in memory, bounded, each entry kept until its proof's `iat`
 * leaves the window. Expired entries are swept every few seconds and whenever the cache is full;
 * a cache full of live entries refuses new proofs (it never forgets a live `jti`: that would let a
 * replay through). One process only: several instances of a resource server behind a load
 * balancer share a store of their own (a database unique key, Redis SET NX) through
 * `DpopReplayStore`, or route a client to one instance.
 */
export class MemoryDpopReplayStore implements DpopReplayStore {
  readonly #entries = new Map<string, number>();
  readonly #maxEntries: number;
  readonly #now: () => number;
  #lastSweep = 0;

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  use(key: string, expiresAt: number): boolean {
    const now = this.#now();
    if (now - this.#lastSweep > 5_000 || this.#entries.size >= this.#maxEntries) this.#sweep(now);
    const seen = this.#entries.get(key);
    if (seen !== undefined && seen >= now) return false;
    if (this.#entries.size >= this.#maxEntries) throw new Error('the DPoP replay cache is full');
    this.#entries.set(key, expiresAt);
    return true;
  }

  /** Entries held (for monitoring and tests). */
  get size(): number {
    return this.#entries.size;
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [key, expiresAt] of this.#entries) if (expiresAt < now) this.#entries.delete(key);
  }
}

/**
 * Stateless server nonces (RFC 9449 §9) for a guard that wants them: the truncated HMAC of a time
 * window's number under a secret (random per process unless given; give every instance the same
 * secret so each accepts the others' nonces). The current, previous and next windows are valid.
 */
export function createDpopNonces(options: { secret?: Uint8Array; periodSeconds?: number; now?: () => number } = {}): DpopNonceSource {
  const secret = options.secret ?? randomBytes(32);
  const periodMs = (options.periodSeconds ?? 120) * 1000;
  const now = options.now ?? Date.now;
  const nonceOf = (window: number) => createHmac('sha256', secret).update(`dpop-nonce:${window}`).digest().subarray(0, 18).toString('base64url');
  return {
    current: () => nonceOf(Math.floor(now() / periodMs)),
    isValid(nonce) {
      const window = Math.floor(now() / periodMs);
      return nonce.length === 24 && [window, window - 1, window + 1].some((w) => safeEqual(nonce, nonceOf(w)));
    },
  };
}

// Constant-time comparison and value rendering, shared with guard.ts and token.ts.
export { describe, safeEqual } from '../jose/index.ts';
