import { X509Certificate, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { algorithmsForKeyType, importPublicJwk, jwkAlgorithms, privateMemberOf } from '../../jose/index.ts';
import { assertionAlgs } from '../metadata.ts';
import type { Client } from '../store.ts';

export type AssertionAlg = (typeof assertionAlgs)[number];

/** One public key from a client's registered `jwks`, imported once. */
export interface RegisteredKey {
  /** The JWK's `kid`, an opaque lookup key (RFC 7517 §4.5). */
  kid: string | undefined;
  /**
   * The algorithm this key may verify client assertions and request objects with (RFC 8725 §3.1:
   * the algorithm follows from the key, never from the token): one per key type, P-256 → ES256,
   * RSA → PS256, Ed25519 → EdDSA under both its names, `EdDSA` and `Ed25519` (RFC 9864 §2.2).
   * Empty when the key is not usable for signatures (`use` other than `sig`, `key_ops` without
   * `verify`, an `alg` we do not accept).
   */
  algorithms: readonly AssertionAlg[];
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
 * Reads a JWK Set fetched from a client's `jwks_uri` (RFC 7517 §5) into keys, imported once per
 * fetch. A set holding a private member is refused whole (its owner published the wrong file, or
 * leaked a key); keys of other types or not for signatures are left out, as for `jwks`.
 */
export function importKeySet(document: unknown): { keys: RegisteredKey[] } | { error: string } {
  if (typeof document !== 'object' || document === null || !Array.isArray((document as { keys?: unknown }).keys)) {
    return { error: 'is not a JWK Set (a JSON object with a "keys" array)' };
  }
  const keys: RegisteredKey[] = [];
  for (const [i, jwk] of (document as { keys: unknown[] }).keys.entries()) {
    if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) continue;
    const secret = privateMemberOf(jwk);
    if (secret) return { error: `keys[${i}] is not a public key (has private member "${secret}")` };
    const j = jwk as Record<string, unknown>;
    // RSA keys of 2048 bits or more, as metadata.ts requires of registered jwks.
    if (j.kty === 'RSA' && (typeof j.n !== 'string' || Buffer.from(j.n, 'base64url').length < 256)) continue;
    const key = importKey(j);
    if (key && key.algorithms.length > 0) keys.push(key);
  }
  return { keys };
}

/**
 * The algorithms a registered key verifies: those of its type (src/jose `jwkAlgorithms`, which
 * also applies the JWK's `alg`, `use` and `key_ops`) that client assertions accept — never RS256
 * (FAPI 2.0 SP §5.4.1 allows only PS256, ES256 and EdDSA).
 */
function importKey(jwk: Record<string, unknown>): RegisteredKey | undefined {
  // A key type none of the algorithms fits (EC P-384, Ed448, ...) is left out entirely.
  if (!algorithmsForKeyType(jwk).some(isAssertionAlg)) return undefined;
  const imported = importPublicJwk(jwk);
  if ('error' in imported) return undefined;
  const { key } = imported;
  const algorithms = jwkAlgorithms(jwk).filter(isAssertionAlg);
  let thumbprint: Promise<string> | undefined;
  return {
    kid: typeof jwk.kid === 'string' ? jwk.kid : undefined,
    algorithms,
    key,
    x5c: firstCertificate(jwk.x5c),
    thumbprint: () => (thumbprint ??= calculateJwkThumbprint(key.export({ format: 'jwk' }) as JWK, 'sha256')),
  };
}

function isAssertionAlg(alg: string): alg is AssertionAlg {
  return (assertionAlgs as readonly string[]).includes(alg);
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
