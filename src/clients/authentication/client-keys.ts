import { X509Certificate, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { assertionAlgs } from '../metadata.ts';
import type { Client } from '../store.ts';

export type AssertionAlg = (typeof assertionAlgs)[number];

/** One public key from a client's registered `jwks`, imported once. */
export interface RegisteredKey {
  /** The JWK's `kid`, an opaque lookup key (RFC 7517 §4.5). */
  kid: string | undefined;
  /**
   * The one algorithm this key may verify client assertions with (RFC 8725 §3.1: the algorithm
   * follows from the key, never from the token), or undefined when the key is not usable for
   * signatures (`use` other than `sig`, `key_ops` without `verify`, an `alg` we do not accept).
   */
  alg: AssertionAlg | undefined;
  key: KeyObject;
  /** DER of the first `x5c` certificate, when the JWK carries one. */
  x5c: Buffer | undefined;
  /** RFC 7638 SHA-256 thumbprint of the public key. */
  thumbprint(): Promise<string>;
}

const cache = new WeakMap<Client, RegisteredKey[]>();

/**
 * The client's registered public keys. Cached per Client object: the client store replaces the
 * object whenever the client changes, so a cached import never outlives the registration.
 * A JWK that cannot be imported is left out (the registry validated it; this is defence in depth).
 */
export function registeredKeys(client: Client): RegisteredKey[] {
  let keys = cache.get(client);
  if (!keys) {
    keys = (client.metadata.jwks?.keys ?? []).flatMap((jwk) => {
      const key = importKey(jwk);
      return key ? [key] : [];
    });
    cache.set(client, keys);
  }
  return keys;
}

/**
 * The algorithm a key type allows, one per key: P-256 → ES256, Ed25519 → EdDSA, RSA → PS256
 * (never RS256: FAPI 2.0 SP §5.4.1 allows only PS256, ES256 and EdDSA).
 */
export function algorithmForJwk(jwk: Record<string, unknown>): AssertionAlg | undefined {
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'RSA') return 'PS256';
  return undefined;
}

function importKey(jwk: Record<string, unknown>): RegisteredKey | undefined {
  const typeAlg = algorithmForJwk(jwk);
  if (!typeAlg) return undefined;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: publicMembers(jwk) as JsonWebKey, format: 'jwk' });
  } catch {
    return undefined;
  }
  // RFC 7517 §4.2-4.4: a key restricted to another use, operation or algorithm does not verify assertions.
  const forSignatures =
    (jwk.use === undefined || jwk.use === 'sig') &&
    (jwk.key_ops === undefined || (Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) &&
    (jwk.alg === undefined || jwk.alg === typeAlg);
  let thumbprint: Promise<string> | undefined;
  return {
    kid: typeof jwk.kid === 'string' ? jwk.kid : undefined,
    alg: forSignatures ? typeAlg : undefined,
    key,
    x5c: firstCertificate(jwk.x5c),
    thumbprint: () => (thumbprint ??= calculateJwkThumbprint(key.export({ format: 'jwk' }) as JWK, 'sha256')),
  };
}

/** Only the members that define the public key; anything private was refused at registration. */
function publicMembers(jwk: Record<string, unknown>): Record<string, unknown> {
  const { kty, crv, x, y, n, e } = jwk;
  return Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined));
}

function firstCertificate(x5c: unknown): Buffer | undefined {
  if (!Array.isArray(x5c) || typeof x5c[0] !== 'string') return undefined;
  try {
    // RFC 7517 §4.7: standard base64 (not base64url) DER. Parsing checks it is a certificate.
    return Buffer.from(new X509Certificate(Buffer.from(x5c[0], 'base64')).raw);
  } catch {
    return undefined;
  }
}
