import { randomUUID } from 'node:crypto';
import type { KeyStore } from '../keys/keystore.ts';
import { accessTokenTyp, type AccessTokenClaims } from './claims.ts';
import { verifyOwnJwt } from './own-jwt.ts';

/** A fresh token id: 122 random bits (RFC 7519 §4.1.7 asks for a negligible collision chance). */
export function newJti(): string {
  return randomUUID();
}

/** Signs an RFC 9068 access token with the current signing key. */
export function mintAccessToken(keys: KeyStore, claims: AccessTokenClaims): Promise<string> {
  return keys.signJwt({ typ: accessTokenTyp }, claims as unknown as Record<string, unknown>);
}

export type VerifyResult = { ok: true; claims: AccessTokenClaims } | { ok: false; reason: string };

/**
 * Verifies that a string is an unexpired access token this server signed (src/tokens/own-jwt.ts):
 * compact JWS only, a published kid, that key's one algorithm, `typ` at+jwt (RFC 9068 §4), our
 * issuer, the RFC 9068 §2.2 claims, one audience. Never throws for bad input; the reason is for
 * logs, not for the caller's client.
 */
export async function verifyAccessToken(
  keys: KeyStore,
  issuer: string,
  token: string,
  nowSeconds: number,
): Promise<VerifyResult> {
  const verified = await verifyOwnJwt(keys, issuer, token, {
    typ: accessTokenTyp,
    requiredClaims: ['exp', 'iat', 'jti', 'sub', 'aud', 'client_id'],
    now: nowSeconds,
  });
  return verified.ok ? { ok: true, claims: verified.claims as unknown as AccessTokenClaims } : verified;
}
