import { createHmac } from 'node:crypto';
import { epochSeconds, type Clock } from '../clock.ts';
import { checkDpopProofJwt, describe, ed25519Algorithms, safeEqual, type JwsAlgorithm } from '../jose/index.ts';
import { OAuthError } from '../oauth-error.ts';
import type { ReplayCache } from './replay-cache.ts';
import { hasControlCharacter } from '../parameters.ts';
import { authenticationKey } from '../keys/master-key.ts';

/**
 * DPoP, Demonstrating Proof of Possession (RFC 9449) at the authorization server and its own
 * resources: proof validation (§4.3) and stateless server nonces (§8, §9). The proof rules
 * themselves live in src/jose/dpop.ts, shared with the guard library; this module adds how the
 * server receives proofs, its errors, nonces and the database's replay cache. No HTTP: the caller
 * passes the request's DPoP header values, method and URLs, and maps the errors to its endpoint
 * (JSON at the authorization server, a WWW-Authenticate challenge at a resource server).
 */

/**
 * Proof algorithms accepted (RFC 9449 §4.3 (5): asymmetric, supported), advertised as
 * `dpop_signing_alg_values_supported` and in the DPoP challenge's `algs`. `Ed25519` is the
 * fully-specified name of EdDSA over Ed25519 (RFC 9864 §2.2), which oauth4webapi and
 * openid-client send. Never `none`, RS256 or HS*.
 */
export const dpopAlgs = ['ES256', ...ed25519Algorithms, 'PS256'] as const satisfies readonly JwsAlgorithm[];
export type DpopAlg = (typeof dpopAlgs)[number];

/** `iat` may be this many seconds before or after the server's clock (RFC 9449 §4.3 (11), §11.1). */
export const dpopIatWindowSeconds = 60;
/** Largest proof accepted, in bytes; larger is refused before parsing (a 400, never a 5xx). */
export const maxDpopProofBytes = 8 * 1024;
/** Longest `jti` accepted (it becomes part of a database key). */
export const maxDpopJtiLength = 256;

/** A proof that passed every check of RFC 9449 §4.3, its `jti` consumed. */
export interface VerifiedDpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's public key: the `cnf.jkt` of what it binds. */
  jkt: string;
  jti: string;
  iat: number;
  alg: DpopAlg;
}

/** What the HTTP layer hands over about one request. */
export interface DpopRequest {
  /** Every value of every DPoP header field of the request (more than one is refused, §4.3 (1)). */
  proofs: readonly string[];
  /** The request method, as received. */
  method: string;
  /**
   * The absolute URLs the request may have been addressed to (query and fragment ignored): the
   * issuer's origin and the mTLS alias origin, each with the request's path.
   */
  urls: readonly string[];
  /** The access token presented with the proof, at a resource: the proof must carry its `ath` (§4.3 (12)). */
  accessToken?: string;
}

/** What proof validation needs from the server. */
export interface DpopDeps {
  /** Single use of proof `jti`s across nodes (the database; DESIGN §6). */
  replay: ReplayCache;
  clock: Clock;
  /** Server nonces (RFC 9449 §8, §9). */
  nonces: DpopNonces;
  /** Whether every proof must carry a current server nonce (CLEARANCE_DPOP_NONCE=required). */
  requireNonce: boolean;
}

/**
 * Verifies the DPoP proof of a request (RFC 9449 §4.3) and consumes its `jti`. Resolves undefined
 * when the request carries no DPoP header at all (the caller decides whether one was required).
 * The checks, in the order of §4.3:
 * 1. exactly one DPoP header field;
 * 2.-12. the proof's own rules (src/jose/dpop.ts, shared with the guard): one well-formed compact
 *    JWS; typ `dpop+jwt`; alg ES256, EdDSA, Ed25519 or PS256; jwk a public key of the type alg
 *    needs; the signature; htm the method; htu the request URL, normalised (RFC 3986 §6: scheme
 *    and host case-insensitive, default port removed, query and fragment ignored); a current
 *    nonce when nonces are required (else `use_dpop_nonce` with a fresh one); iat within ±60 s;
 *    ath the hash of the access token presented;
 * then the `jti` is used once per key (§11.1), through the database, before any binding check.
 * Failures are OAuthError `invalid_dpop_proof` (400) or `use_dpop_nonce` (400, DPoP-Nonce header).
 */
export async function verifyDpopProof(request: DpopRequest, deps: DpopDeps): Promise<VerifiedDpopProof | undefined> {
  const proof = checkDpopProof(request, deps);
  if (proof) await useDpopProof(proof, deps);
  return proof;
}

/**
 * Every rule of `verifyDpopProof` except the single use of the `jti`: no database, no write. The
 * token and PAR endpoints check the proof before client authentication (so a nonce retry does not
 * cost the client its assertion) and use it after (so an unauthenticated caller writes nothing).
 */
export function checkDpopProof(request: DpopRequest, deps: Omit<DpopDeps, 'replay'>): VerifiedDpopProof | undefined {
  if (request.proofs.length === 0) return undefined;
  // RFC 9449 §4.3 (1): not more than one DPoP HTTP request header field.
  if (request.proofs.length > 1) throw invalidProof('more than one DPoP header field', 'send exactly one DPoP header');
  const checked = checkDpopProofJwt(request.proofs[0]!, {
    algorithms: dpopAlgs,
    maxBytes: maxDpopProofBytes,
    maxJtiLength: maxDpopJtiLength,
    method: request.method,
    urls: request.urls,
    accessToken: request.accessToken,
    now: epochSeconds(deps.clock),
    iatWindowSeconds: dpopIatWindowSeconds,
    nonceIsValid: deps.requireNonce ? (nonce) => deps.nonces.isValid(nonce) : undefined,
  });
  if (!checked.ok) {
    const { code, description, detail } = checked.failure;
    throw code === 'use_dpop_nonce' ? useDpopNonce(deps.nonces.current(), detail) : invalidProof(detail, description);
  }
  // A control character could not be a database key (issue 20 item 4: NUL was a 500 on PostgreSQL).
  if (hasControlCharacter(checked.proof.jti)) throw invalidProof('DPoP proof jti contains a control character', 'the DPoP proof jti is malformed');
  return { ...checked.proof, alg: checked.proof.alg as DpopAlg };
}

/**
 * RFC 9449 §11.1: a proof's jti is accepted once per key while its iat is in the window; the
 * database's primary key makes it hold across nodes. The last of the proof's rules, and always
 * before any binding check (a replayed proof is a replay, whatever key it is of).
 */
export async function useDpopProof(proof: VerifiedDpopProof, deps: Pick<DpopDeps, 'replay'>): Promise<void> {
  const fresh = await deps.replay.use(`dpop:${proof.jkt}:${proof.jti}`, Math.ceil(proof.iat + dpopIatWindowSeconds + 1) * 1000);
  if (!fresh) throw invalidProof(`DPoP proof jti ${describe(proof.jti)} was already used`, 'the DPoP proof was already used');
}

// One normalisation, one `ath` and one thumbprint for the server and the guard library.
export { accessTokenHash, jktPattern, jwkThumbprint, normalizeHtu } from '../jose/index.ts';

/** RFC 9449 §7.1 error code for an invalid proof; 400 at the authorization server (§5). */
export function invalidProof(detail: string, description = 'the DPoP proof is invalid'): OAuthError {
  return new OAuthError('invalid_dpop_proof', description, { status: 400, detail });
}

/** RFC 9449 §8: the client must retry with the server's nonce, given in the DPoP-Nonce header. */
export function useDpopNonce(nonce: string, detail: string): OAuthError {
  return new OAuthError('use_dpop_nonce', 'the DPoP proof must carry the nonce given in the DPoP-Nonce header', {
    status: 400,
    detail,
    headers: { 'dpop-nonce': nonce },
  });
}

/**
 * Server nonces for DPoP proofs (RFC 9449 §8, §9), stateless so that every node accepts every
 * node's nonce: a nonce is the truncated HMAC-SHA-256, under a secret derived from the master key,
 * of a time window's number. The current and the previous window are accepted (and the next, for
 * clock differences between nodes), so a nonce lives one to two periods; no storage, no
 * coordination.
 */
export class DpopNonces {
  readonly #secret: () => Buffer;
  readonly #clock: Clock;
  readonly #periodMs: number;
  #cached: { window: number; secret: Buffer; nonce: string } | undefined;

  /** `secret`: the key, or how to read it at each use (it changes when a master key rewrap begins). */
  constructor(secret: Buffer | (() => Buffer), clock: Clock, periodSeconds = 120) {
    this.#secret = typeof secret === 'function' ? secret : () => secret;
    this.#clock = clock;
    this.#periodMs = periodSeconds * 1000;
  }

  /** The nonce of the current window (what the DPoP-Nonce header carries). */
  current(): string {
    const window = Math.floor(this.#clock.now() / this.#periodMs);
    const secret = this.#secret();
    if (this.#cached?.window !== window || this.#cached.secret !== secret) this.#cached = { window, secret, nonce: this.#nonceOf(secret, window) };
    return this.#cached.nonce;
  }

  /** True for the nonce of the current, previous or next window. */
  isValid(nonce: string): boolean {
    if (nonce.length !== 24) return false;
    const window = Math.floor(this.#clock.now() / this.#periodMs);
    const secret = this.#secret();
    return [window, window - 1, window + 1].some((w) => safeEqual(nonce, this.#nonceOf(secret, w)));
  }

  #nonceOf(secret: Buffer, window: number): string {
    return createHmac('sha256', secret).update(`dpop-nonce:${window}`).digest().subarray(0, 18).toString('base64url');
  }
}

/**
 * The nonce secret: HKDF-SHA-256 of the master key that seals now, with a label of its own (never
 * the key itself). It authenticates, so it rotates with the master key (src/keys/master-key.ts
 * authenticationKey): a nonce issued before a rewrap began is answered with a fresh one (RFC 9449 §8).
 */
export function dpopNonceSecret(masterKey: Buffer): Buffer {
  return authenticationKey(masterKey, 'clearance dpop-nonce v1');
}
