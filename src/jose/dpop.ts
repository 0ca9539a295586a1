import { createHash, timingSafeEqual, type KeyObject } from 'node:crypto';
import { keyFitsAlgorithm, type JwsAlgorithm } from './algorithms.ts';
import { decodeCompactJws, describe } from './compact.ts';
import { importPublicJwk, jwkThumbprint, privateMemberOf } from './jwk.ts';
import { verifyCompactSignature } from './signature.ts';
import { BoundedMap } from './bounded-map.ts';

/**
 * The rules of a DPoP proof (RFC 9449 §4.3) that need nothing but the proof and the request:
 * one home for the authorization server (src/tokens/dpop.ts) and the guard (src/guard/dpop.ts),
 * which add what differs between them — how the header arrives, the error type, the nonce
 * source and the replay store. Dependency-free: the guard imports it.
 */

/** The typ of a DPoP proof (RFC 9449 §4.2), compared exactly. */
export const dpopProofTyp = 'dpop+jwt';

/** What the proof is checked against. */
export interface DpopProofRules {
  /** Proof algorithms accepted: asymmetric only (RFC 9449 §4.3 (5)); a subset of `asymmetricJwsAlgorithms`. */
  algorithms: readonly string[];
  /** Largest proof accepted, in bytes. */
  maxBytes: number;
  /** Longest `jti` accepted (it becomes part of a replay-cache key). */
  maxJtiLength: number;
  /** The request method, as received. */
  method: string;
  /** The absolute URLs the request may have been addressed to (query and fragment ignored). */
  urls: readonly string[];
  /** The access token presented with the proof, if any: the proof must then carry its `ath` (§4.3 (12)). */
  accessToken?: string | undefined;
  /** Seconds since the epoch. */
  now: number;
  /** How far `iat` may be from `now`, in seconds (§4.3 (11)). */
  iatWindowSeconds: number;
  /** With nonces required (§4.3 (10), §8, §9): true for a current server nonce. Undefined: no nonce needed. */
  nonceIsValid?: ((nonce: string) => boolean) | undefined;
}

/** A proof whose every rule passed, its `jti` not yet used. */
export interface CheckedDpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof key. */
  jkt: string;
  jti: string;
  iat: number;
  alg: JwsAlgorithm;
}

/** A refusal: the RFC 9449 error code, a description for the client and a detail for logs. */
export interface DpopProofFailure {
  code: 'invalid_dpop_proof' | 'use_dpop_nonce';
  description: string;
  detail: string;
}

export type DpopProofResult = { ok: true; proof: CheckedDpopProof } | { ok: false; failure: DpopProofFailure };

/**
 * Checks one DPoP proof value (RFC 9449 §4.3 (2)-(12)), in the RFC's order:
 * 2. one well-formed compact JWS (`decodeCompactJws`: three canonical base64url segments, JSON objects, size cap);
 * 3.-4. typ `dpop+jwt`, compared exactly (a proof is no other kind of JWT, RFC 8725 §3.11);
 * 5. alg on the allowlist (`none` in any case, RS256 and HS* never); no `crit`;
 * 6. jwk a public key (no private member) of the type alg needs (EdDSA and Ed25519: OKP Ed25519 only);
 * 7. the signature verifies with it;
 * then jti, htm, htu and iat present; 8. htm the method; 9. htu one of the request URLs, normalised;
 * 10. a current nonce when nonces are required (`use_dpop_nonce`); 11. iat within the window;
 * 12. with an access token, ath its hash. Using the jti once (§11.1) is the caller's, after this.
 */
export function checkDpopProofJwt(proof: string, rules: DpopProofRules): DpopProofResult {
  // §4.3 (2): a single well-formed JWT.
  const decoded = decodeCompactJws(proof, { maxBytes: rules.maxBytes });
  if (!decoded.ok) {
    if (decoded.problem === 'too_large') return invalid(`DPoP proof: ${decoded.reason}`, 'the DPoP proof is too large');
    if (decoded.problem === 'header' || decoded.problem === 'claims') return invalid(`DPoP proof: ${decoded.reason}`, 'the DPoP proof is malformed');
    return invalid(`DPoP header is not a compact JWS: ${decoded.reason}`, 'the DPoP proof must be a signed JWT');
  }
  const { header, claims } = decoded.jws;

  // §4.3 (3), (4): typ dpop+jwt.
  if (header.typ === undefined) return invalid('DPoP proof has no typ', 'the DPoP proof must have typ dpop+jwt');
  if (header.typ !== dpopProofTyp) return invalid(`DPoP proof typ ${describe(header.typ)}`, 'the DPoP proof must have typ dpop+jwt');
  // §4.3 (5): an asymmetric algorithm we support.
  const alg = header.alg;
  if (alg === undefined) return invalid('DPoP proof has no alg', 'the DPoP proof must have alg');
  if (typeof alg !== 'string' || !rules.algorithms.includes(alg)) {
    return invalid(`DPoP proof alg ${describe(alg)} is not allowed`, `the DPoP proof alg must be one of ${rules.algorithms.join(', ')}`);
  }
  // RFC 7515 §4.1.11: no extension is understood here.
  if (header.crit !== undefined) return invalid('DPoP proof header has crit', 'the DPoP proof must not use crit');
  // §4.3 (6): the jwk header parameter is a public key, of the type the algorithm needs.
  const jwk = header.jwk;
  if (jwk === undefined) return invalid('DPoP proof has no jwk', 'the DPoP proof must carry its public key as jwk');
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return invalid('DPoP proof jwk is not a JSON object', 'the DPoP proof jwk is malformed');
  const members = jwk as Record<string, unknown>;
  const secret = privateMemberOf(members);
  // §4.3 (6): the jwk MUST NOT contain a private key.
  if (secret !== undefined) return invalid(`DPoP proof jwk has the private member "${secret}"`, 'the DPoP proof jwk must be a public key');
  if (!keyFitsAlgorithm(alg, members)) return invalid(`DPoP proof jwk (kty ${describe(members.kty)}) does not fit alg ${alg}`, `the DPoP proof jwk is not a key for ${alg}`);
  const jkt = jwkThumbprint(members);
  if (jkt === undefined) return invalid('DPoP proof jwk lacks required members', 'the DPoP proof jwk is malformed');
  const key = proofKey(jkt, members);
  if (!key) return invalid('DPoP proof jwk cannot be imported', 'the DPoP proof jwk is not a valid public key');
  // §4.3 (7): the signature verifies with that key.
  if (!verifyCompactSignature(alg as JwsAlgorithm, key, proof)) return invalid('DPoP proof signature does not verify with its jwk', 'the DPoP proof signature is invalid');

  const { jti, htm, htu, iat, ath, nonce } = claims;
  if (jti === undefined) return invalid('DPoP proof has no jti', 'the DPoP proof must have jti');
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > rules.maxJtiLength) {
    return invalid(`DPoP proof jti is not a string of 1-${rules.maxJtiLength} characters`, 'the DPoP proof jti is malformed');
  }
  if (htm === undefined) return invalid('DPoP proof has no htm', 'the DPoP proof must have htm');
  if (htu === undefined) return invalid('DPoP proof has no htu', 'the DPoP proof must have htu');
  if (iat === undefined) return invalid('DPoP proof has no iat', 'the DPoP proof must have iat');
  // §4.3 (8): htm matches the method (methods are case-sensitive, RFC 9110 §9.1).
  if (htm !== rules.method) return invalid(`DPoP proof htm ${describe(htm)} for a ${rules.method} request`, 'the DPoP proof htm does not match the request method');
  // §4.3 (9): htu matches the request URI, ignoring query and fragment.
  const presented = typeof htu === 'string' ? normalizeHtu(htu) : undefined;
  if (presented === undefined) return invalid('DPoP proof htu is not an http(s) URL', 'the DPoP proof htu is malformed');
  if (!rules.urls.some((url) => normalizeHtu(url) === presented)) {
    return invalid(`DPoP proof htu ${describe(htu)} is not this endpoint (${rules.urls.map(describe).join(', ')})`, 'the DPoP proof htu does not match the request URL');
  }
  // §4.3 (10), §8, §9: the server's nonce, when it requires one.
  if (rules.nonceIsValid && (typeof nonce !== 'string' || !rules.nonceIsValid(nonce))) {
    return {
      ok: false,
      failure: {
        code: 'use_dpop_nonce',
        description: 'the DPoP proof must carry the nonce given in the DPoP-Nonce header',
        detail: nonce === undefined ? 'DPoP proof has no nonce' : 'DPoP proof nonce is not current',
      },
    };
  }
  // §4.3 (11): iat within an acceptable window; RFC 7519 §2: a NumericDate, which may have a fraction.
  if (typeof iat !== 'number' || !Number.isFinite(iat)) return invalid('DPoP proof iat is not a number', 'the DPoP proof iat is malformed');
  if (Math.abs(iat - rules.now) > rules.iatWindowSeconds) {
    return invalid(`DPoP proof iat is ${Math.round(iat - rules.now)} s from now (window ±${rules.iatWindowSeconds} s)`, 'the DPoP proof is too old or too far in the future');
  }
  // §4.3 (12): with an access token, ath is the base64url SHA-256 of its ASCII value.
  if (rules.accessToken !== undefined) {
    if (ath === undefined) return invalid('DPoP proof has no ath', 'the DPoP proof must have ath with an access token');
    if (typeof ath !== 'string' || !safeEqual(ath, accessTokenHash(rules.accessToken))) {
      return invalid('DPoP proof ath is not the hash of the access token presented', 'the DPoP proof ath does not match the access token');
    }
  }
  return { ok: true, proof: { jkt, jti, iat, alg: alg as JwsAlgorithm } };
}

/** Imported proof keys by thumbprint: a client sends the same key with every proof. */
const keyCache = new BoundedMap<string, KeyObject>(1000);

function proofKey(jkt: string, jwk: Record<string, unknown>): KeyObject | undefined {
  let key = keyCache.get(jkt);
  if (key) return key;
  const imported = importPublicJwk(jwk);
  if ('error' in imported) return undefined;
  key = imported.key;
  keyCache.set(jkt, key);
  return key;
}

/** RFC 9449 §4.2 `ath`: base64url of the SHA-256 of the access token's ASCII value. */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

/**
 * Normalises an htu or request URL for comparison (RFC 9449 §4.3 (9); RFC 3986 §6.2.2, §6.2.3):
 * scheme and host lower case, default port removed, dot segments resolved, percent-encoded
 * unreserved characters decoded and other escapes upper case, an empty path `/`; query and
 * fragment dropped. Undefined for anything but an http(s) URL without userinfo.
 */
export function normalizeHtu(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username !== '' || url.password !== '') return undefined;
  const path = url.pathname.replace(/%([0-9a-fA-F]{2})/g, (_match, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(char) ? char : `%${hex.toUpperCase()}`;
  });
  return `${url.protocol}//${url.host}${path || '/'}`;
}

/** Constant-time comparison of two strings (different lengths are unequal at once). */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function invalid(detail: string, description: string): DpopProofResult {
  return { ok: false, failure: { code: 'invalid_dpop_proof', description, detail } };
}
