import type { KeyStore } from '../keys/keystore.ts';
import { newJti } from './access-token.ts';
import { verifyOwnJwt } from './own-jwt.ts';

/** ID token lifetime, in seconds (OIDC Core §2 exp; short: it proves a login, it grants nothing). */
export const idTokenTtlSeconds = 300;

/** OIDC Core §2: the ID token's claims as Clearance issues them. */
export interface IdTokenClaims {
  iss: string;
  sub: string;
  /** OIDC Core §2: the client_id of the relying party (one audience, so no azp). */
  aud: string;
  exp: number;
  iat: number;
  jti: string;
  /** Always present: when the person authenticated (required with max_age, OIDC Core §3.1.2.1). */
  auth_time: number;
  /** OIDC Core §3.1.3.6: the nonce of the authentication request, when it had one. */
  nonce?: string;
  acr: string;
  amr: string[];
  /** The issuer of the upstream identity provider that signed the person in (src/federation/upstream): the source of assurance of acr and amr. */
  assurance_source?: string;
}

/**
 * Signs an ID token (OIDC Core §2, §3.1.3.6) with the server's current signing key. `typ` is JWT:
 * what relying parties expect of an ID token, and distinct from at+jwt, so an ID token is never
 * taken for an access token (RFC 8725 §3.11).
 */
export function mintIdToken(
  keys: KeyStore,
  input: { issuer: string; subject: string; clientId: string; now: number; authTime: number; nonce?: string; acr: string; amr: string[]; assuranceSource?: string },
): Promise<string> {
  const claims: IdTokenClaims = {
    iss: input.issuer,
    sub: input.subject,
    aud: input.clientId,
    exp: input.now + idTokenTtlSeconds,
    iat: input.now,
    jti: newJti(),
    auth_time: input.authTime,
    ...(input.nonce !== undefined ? { nonce: input.nonce } : {}),
    acr: input.acr,
    amr: input.amr,
    ...(input.assuranceSource !== undefined ? { assurance_source: input.assuranceSource } : {}),
  };
  return keys.signJwt({ typ: 'JWT' }, claims as unknown as Record<string, unknown>);
}

export type IdTokenHintResult = { ok: true; claims: IdTokenClaims } | { ok: false; reason: string };

/**
 * Verifies an id_token_hint (OIDC RP-Initiated Logout 1.0 §2): an ID token this server signed
 * (src/tokens/own-jwt.ts), with a published key and that key's one algorithm (so `alg: none` or a
 * swapped algorithm fails, RFC 8725 §3.1), `typ` JWT, our issuer, a single string `aud`. An expired
 * hint is still accepted: the RP shows which session it means, and logging out is not a privilege.
 * Never throws.
 */
export async function verifyIdTokenHint(keys: KeyStore, issuer: string, token: string): Promise<IdTokenHintResult> {
  // Expiry is not a reason to refuse a logout hint.
  const verified = await verifyOwnJwt(keys, issuer, token, { typ: 'JWT', requiredClaims: ['sub', 'aud', 'iat', 'auth_time'], now: undefined });
  if (!verified.ok) return verified;
  if (typeof verified.claims.sub !== 'string') return { ok: false, reason: 'no subject' };
  return { ok: true, claims: verified.claims as unknown as IdTokenClaims };
}
