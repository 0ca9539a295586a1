import { decodeCompactJws, mediaType, verifyCompactSignature } from '../jose/index.ts';
import type { KeyStore } from '../keys/keystore.ts';
import { verifiedSignatures } from './verified-signatures.ts';

/**
 * Verification of the JWTs this server signed and gets back (access tokens at introspection,
 * revocation, userinfo and our APIs; ID tokens as `id_token_hint`): one path for all of them, on
 * src/jose's decoder and node:crypto signature check, with the rules of each kind as parameters.
 */

/** Largest token we try to parse; anything longer is not one of ours. */
export const maxOwnJwtBytes = 16 * 1024;

/** What a JWT of one kind must be. */
export interface OwnJwtRules {
  /** The `typ` it was signed with, compared as RFC 7515 §4.1.9 says (case, `application/`): at+jwt, JWT. */
  typ: string;
  /** Claims that must be present (RFC 7519 §4.1; RFC 9068 §2.2; OIDC Core §2). */
  requiredClaims: readonly string[];
  /**
   * Now, in seconds since the epoch: `exp` must be after it and `nbf` not after it (no skew: we
   * signed it with our own clock). Undefined: times are not checked (a logout hint may have expired).
   */
  now: number | undefined;
}

export type OwnJwtResult = { ok: true; claims: Record<string, unknown> } | { ok: false; reason: string };

/**
 * Verifies that `token` is a JWT this server signed, of one kind. The rules, in order:
 * 1. one compact JWS of at most 16 KiB (src/jose: no JSON serialization, no JWE, canonical base64url, JSON objects);
 * 2. its `kid` names a published, unretired signing key of ours (RFC 8725 §3.10: a lookup key only;
 *    embedded `jwk`, `jku`, `x5u`, `x5c` are never looked at);
 * 3. its `alg` is exactly that key's one algorithm (RFC 8725 §3.1: never the token's choice, so
 *    `none` in any case and any swapped algorithm fail); no `crit` (RFC 7515 §4.1.11);
 * 4. the signature verifies with that key (once per token and key object: verified-signatures.ts);
 * 5. `typ` is the kind's (RFC 8725 §3.11: an ID token is never taken for an access token);
 * 6. `iss` is our issuer; the required claims are present; `exp`, `nbf`, `iat` are numbers when
 *    present, and with `now`, `exp` is after it and `nbf` is not (RFC 7519 §4.1.4, §4.1.5);
 * 7. `aud` is a single string (DESIGN §4: one audience per token).
 * Never throws for bad input; the reason is for logs, not for the caller's client.
 */
export async function verifyOwnJwt(keys: KeyStore, issuer: string, token: string, rules: OwnJwtRules): Promise<OwnJwtResult> {
  const decoded = decodeCompactJws(token, { maxBytes: maxOwnJwtBytes });
  if (!decoded.ok) return { ok: false, reason: `not a compact JWS: ${decoded.reason}` };
  const { header, claims } = decoded.jws;
  const published = typeof header.kid === 'string' ? await keys.verificationKey(header.kid) : undefined;
  if (!published) return { ok: false, reason: 'unknown kid' };
  if (header.alg !== published.alg) return { ok: false, reason: `alg ${JSON.stringify(header.alg)} is not the key's ${published.alg}` };
  if (header.crit !== undefined) return { ok: false, reason: 'crit is not supported' };
  if (!verifiedSignatures.has(token, published.key)) {
    if (!verifyCompactSignature(published.alg, published.key, token)) return { ok: false, reason: 'signature verification failed' };
    verifiedSignatures.add(token, published.key);
  }
  if (mediaType(header.typ) !== mediaType(rules.typ)) return { ok: false, reason: `typ ${JSON.stringify(header.typ)} is not ${rules.typ}` };
  if (claims.iss !== issuer) return { ok: false, reason: 'iss is not this issuer' };
  const missing = rules.requiredClaims.find((name) => !(name in claims));
  if (missing !== undefined) return { ok: false, reason: `${missing} is missing` };
  for (const name of ['exp', 'nbf', 'iat'] as const) {
    if (claims[name] !== undefined && (typeof claims[name] !== 'number' || !Number.isFinite(claims[name]))) return { ok: false, reason: `${name} is not a number` };
  }
  if (rules.now !== undefined) {
    if (typeof claims.exp === 'number' && claims.exp <= rules.now) return { ok: false, reason: 'expired' };
    if (typeof claims.nbf === 'number' && claims.nbf > rules.now) return { ok: false, reason: 'not yet valid (nbf)' };
  }
  if (typeof claims.aud !== 'string') return { ok: false, reason: 'audience is not a single string' };
  return { ok: true, claims };
}
