import { createHash, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';

/**
 * JSON Web Keys (RFC 7517) as Clearance reads them from others: registered client keys, partner
 * key sets, DPoP proof keys, evidence bundles. Dependency-free: the guard imports it too.
 */

/**
 * Members only a private or symmetric JWK has: RSA `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth` (RFC
 * 7518 §6.3.2), EC and OKP `d` (RFC 7518 §6.2.2, RFC 8037 §2), `k` of a symmetric key (RFC 7518
 * §6.4), and `priv` of an AKP (ML-DSA) key (draft-ietf-cose-dilithium). A key with any of them is
 * never a public key: whoever sent it leaked a secret or sent the wrong file.
 */
export const privateJwkMembers: readonly string[] = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

/** The first private member `jwk` has, or undefined for a public key. */
export function privateMemberOf(jwk: object): string | undefined {
  return privateJwkMembers.find((member) => member in jwk);
}

/**
 * Only the members that define a public key (`kty`, `crv`, `x`, `y`, `n`, `e`): what reaches a key
 * import, so `x5c`, `x5u` or anything else in a JWK is never looked at.
 */
export function publicKeyMembers(jwk: Record<string, unknown>): Record<string, unknown> {
  const { kty, crv, x, y, n, e } = jwk;
  return Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined));
}

/** A public JWK as a KeyObject (its public members only), or why it cannot be one. */
export function importPublicJwk(jwk: Record<string, unknown>): { key: KeyObject } | { error: string } {
  const secret = privateMemberOf(jwk);
  if (secret !== undefined) return { error: `is not a public key (has private member "${secret}")` };
  try {
    return { key: createPublicKey({ key: publicKeyMembers(jwk) as JsonWebKey, format: 'jwk' }) };
  } catch (error) {
    return { error: `cannot be imported (${(error as Error).message})` };
  }
}

/**
 * RFC 7638 §3: the SHA-256 thumbprint of a public JWK, over its required members in
 * lexicographic order, as base64url. Undefined for a key type other than EC, OKP and RSA, or
 * when a required member is not a string.
 */
export function jwkThumbprint(jwk: Record<string, unknown>): string | undefined {
  let members: Record<string, unknown>;
  if (jwk.kty === 'EC') members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  else if (jwk.kty === 'OKP') members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  else if (jwk.kty === 'RSA') members = { e: jwk.e, kty: jwk.kty, n: jwk.n };
  else return undefined;
  if (Object.values(members).some((v) => typeof v !== 'string')) return undefined;
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

/** A JWK thumbprint looks like this: base64url of 32 bytes (RFC 7638 with SHA-256). */
export const jktPattern = /^[A-Za-z0-9_-]{43}$/;
