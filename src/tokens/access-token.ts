import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, errors as joseErrors } from 'jose';
import type { KeyObject } from 'node:crypto';
import type { SigningAlg } from '../config.ts';
import type { KeyStore } from '../keys/keystore.ts';
import { accessTokenTyp, type AccessTokenClaims } from './claims.ts';

/** A fresh token id: 122 random bits (RFC 7519 §4.1.7 asks for a negligible collision chance). */
export function newJti(): string {
  return randomUUID();
}

/** Signs an RFC 9068 access token with the current signing key. */
export function mintAccessToken(keys: KeyStore, claims: AccessTokenClaims): Promise<string> {
  return keys.signJwt({ typ: accessTokenTyp }, claims as unknown as Record<string, unknown>);
}

/**
 * The published, unretired key a JWT signed by this server names by `kid`, with that key's one
 * algorithm (RFC 8725 §3.1: never the token's choice). Only compact JWS up to 16 KiB is looked at.
 */
export async function publishedKeyOf(
  keys: KeyStore,
  token: string,
): Promise<{ ok: true; key: { alg: SigningAlg; key: KeyObject } } | { ok: false; reason: string }> {
  if (token.length > maxTokenLength || !/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) {
    return { ok: false, reason: 'not a compact JWS' };
  }
  let kid: unknown;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch {
    return { ok: false, reason: 'unreadable header' };
  }
  const key = typeof kid === 'string' ? await keys.verificationKey(kid) : undefined;
  return key ? { ok: true, key } : { ok: false, reason: 'unknown kid' };
}

export type VerifyResult = { ok: true; claims: AccessTokenClaims } | { ok: false; reason: string };

/** Largest token we try to parse; anything longer is not one of ours. */
const maxTokenLength = 16 * 1024;

/**
 * Verifies that a string is an unexpired access token this server signed: compact JWS only, a
 * published kid, that key's one algorithm, `typ` at+jwt (RFC 9068 §4), our issuer.
 * Never throws for bad input; the reason is for logs, not for the caller's client.
 */
export async function verifyAccessToken(
  keys: KeyStore,
  issuer: string,
  token: string,
  nowSeconds: number,
): Promise<VerifyResult> {
  const found = await publishedKeyOf(keys, token);
  if (!found.ok) return found;
  const published = found.key;
  try {
    const { payload } = await jwtVerify(token, published.key, {
      algorithms: [published.alg],
      typ: accessTokenTyp,
      issuer,
      currentDate: new Date(nowSeconds * 1000),
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'aud', 'client_id'],
      clockTolerance: 0,
    });
    if (typeof payload.aud !== 'string') return { ok: false, reason: 'audience is not a single string' };
    return { ok: true, claims: payload as unknown as AccessTokenClaims };
  } catch (error) {
    return { ok: false, reason: error instanceof joseErrors.JOSEError ? error.code : 'verification failed' };
  }
}
