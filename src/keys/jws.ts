import { sign, constants, type KeyObject } from 'node:crypto';
import type { SigningAlg } from '../config.ts';

/**
 * Compact JWS signing (RFC 7515 §7.1) on node:crypto with a KeyObject. jose verifies what this
 * produces in the tests; signing here instead of through jose avoids WebCrypto's threadpool hop
 * and the slow `dsaEncoding` option path on the token hot path (DESIGN §9).
 */
export function signCompact(
  alg: SigningAlg,
  key: KeyObject,
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
): string {
  const signingInput = `${b64u(JSON.stringify({ ...header, alg }))}.${b64u(JSON.stringify(payload))}`;
  const data = Buffer.from(signingInput, 'ascii');
  let signature: Buffer;
  switch (alg) {
    case 'ES256':
      // RFC 7518 §3.4: the signature is R ‖ S, each 32 bytes, not DER.
      signature = derToRaw(sign('sha256', data, key), 32);
      break;
    case 'EdDSA':
      signature = sign(null, data, key);
      break;
    case 'PS256':
      // RFC 7518 §3.5: RSASSA-PSS with SHA-256 and a salt as long as the hash.
      signature = sign('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
      break;
  }
  return `${signingInput}.${signature.toString('base64url')}`;
}

function b64u(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

/** Converts an ECDSA DER signature (SEQUENCE of two INTEGERs) to fixed-width R ‖ S. */
export function derToRaw(der: Buffer, size: number): Buffer {
  let offset = 2;
  if (der[0] !== 0x30) throw new Error('not a DER sequence');
  if (der[1]! & 0x80) offset += der[1]! & 0x7f; // long-form length (never for P-256, kept for safety)
  const out = Buffer.alloc(size * 2);
  for (let i = 0; i < 2; i++) {
    if (der[offset] !== 0x02) throw new Error('not a DER integer');
    const length = der[offset + 1]!;
    let start = offset + 2;
    let len = length;
    while (len > size && der[start] === 0) {
      start++;
      len--;
    }
    if (len > size) throw new Error('DER integer too long');
    der.copy(out, i * size + (size - len), start, start + len);
    offset += 2 + length;
  }
  return out;
}

/**
 * The `kid` of a compact JWS this server signed, read from its header without verifying it
 * (undefined for anything else: a reference token's handle, a malformed value). For bookkeeping
 * only — which key signed what we just issued — never for trusting a token.
 */
export function kidOfCompact(jws: string): string | undefined {
  const dot = jws.indexOf('.');
  if (dot <= 0 || dot > 1024) return undefined;
  try {
    const header = JSON.parse(Buffer.from(jws.slice(0, dot), 'base64url').toString('utf8')) as unknown;
    const kid = typeof header === 'object' && header !== null ? (header as { kid?: unknown }).kid : undefined;
    return typeof kid === 'string' ? kid : undefined;
  } catch {
    return undefined;
  }
}
