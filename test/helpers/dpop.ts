/**
 * DPoP proofs for tests (RFC 9449 §4.2), made with node:crypto so that any header or claim can be
 * wrong on purpose:
 *
 *   const key = dpopKey();                                   // ES256 (or 'EdDSA', 'Ed25519', 'PS256')
 *   const proof = dpopProof(key, { htm: 'POST', htu: `${issuer}/token` });
 *   const bad = dpopProof(key, { htm: 'POST', htu, iat: now - 3600 }, { omit: ['jti'], header: { typ: 'JWT' } });
 */
import { createHash, createHmac, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { signCompact } from '../../src/keys/jws.ts';
import { jwkThumbprint } from '../../src/jose/index.ts';

/** `Ed25519` is EdDSA's fully-specified name (RFC 9864 §2.2): the same key, the other `alg`. */
export type DpopTestAlg = 'ES256' | 'EdDSA' | 'Ed25519' | 'PS256';

export interface DpopKey {
  alg: DpopTestAlg;
  privateKey: KeyObject;
  /** The public JWK that goes into the proof's header. */
  jwk: Record<string, unknown>;
  /** RFC 7638 thumbprint: the `cnf.jkt` of what the key binds. */
  jkt: string;
}

export function dpopKey(alg: DpopTestAlg = 'ES256'): DpopKey {
  const pair =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'EdDSA' || alg === 'Ed25519'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = pair.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
  return { alg, privateKey: pair.privateKey, jwk, jkt: jwkThumbprint(jwk)! };
}

export interface ProofClaims {
  htm: string;
  htu: string;
  /** Default: now (the real clock; pass the fixture clock's seconds when it was moved). */
  iat?: number;
  jti?: string;
  ath?: string;
  nonce?: string;
  [claim: string]: unknown;
}

export interface ProofOptions {
  /** Header parameters to set or override (`undefined` removes one). */
  header?: Record<string, unknown>;
  /** Claims to leave out. */
  omit?: string[];
  /** Sign with this key instead (the header keeps `key`'s jwk): a bad signature. */
  signWith?: KeyObject;
}

/** A DPoP proof JWT signed with `key`. */
export function dpopProof(key: DpopKey, claims: ProofClaims, options: ProofOptions = {}): string {
  const header: Record<string, unknown> = { typ: 'dpop+jwt', jwk: key.jwk, ...options.header };
  const payload: Record<string, unknown> = { jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims };
  for (const name of options.omit ?? []) delete payload[name];
  for (const [name, value] of Object.entries(header)) if (value === undefined) delete header[name];
  const alg = 'alg' in (options.header ?? {}) ? (options.header!.alg as string | undefined) : key.alg;
  if (alg === 'ES256' || alg === 'EdDSA' || alg === 'PS256') {
    return signCompact(alg, options.signWith ?? key.privateKey, header, payload);
  }
  if (alg === 'Ed25519') {
    const input = `${b64u({ ...header, alg })}.${b64u(payload)}`;
    return `${input}.${sign(null, Buffer.from(input), options.signWith ?? key.privateKey).toString('base64url')}`;
  }
  // Algorithms Clearance refuses (none, RS256, HS256) or no alg at all, signed by hand.
  if (alg === 'RS256') {
    // A real RS256 signature with its own RSA jwk: the only thing wrong is the algorithm.
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const input = `${b64u({ ...header, alg, jwk: rsa.publicKey.export({ format: 'jwk' }) })}.${b64u(payload)}`;
    return `${input}.${sign('sha256', Buffer.from(input), rsa.privateKey).toString('base64url')}`;
  }
  const input = `${b64u({ ...header, ...(alg !== undefined ? { alg } : {}) })}.${b64u(payload)}`;
  if (alg === 'HS256') return `${input}.${createHmac('sha256', 'secret').update(input).digest('base64url')}`;
  // none (any case) or no alg: a signature that means nothing.
  return `${input}.${createHash('sha256').update(input).digest('base64url')}`;
}

/** RFC 9449 §4.2 ath. */
export function ath(accessToken: string): string {
  return createHash('sha256').update(accessToken).digest('base64url');
}

function b64u(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}
