import { createHash, randomBytes } from 'node:crypto';

/**
 * A new secret handle: `bytes` random bytes, base64url. Codes and request_uris get 32 bytes (256
 * bits; FAPI 2.0 SP §5.4.1-4 and RFC 9126 §7.1 ask for at least 128), refresh tokens 32 as well.
 */
export function randomHandle(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/**
 * How handles are stored: SHA-256, hex. The handles are 256-bit random values, so a fast hash is
 * enough (no dictionary to attack); a copy of the database cannot be replayed (DESIGN §7).
 */
export function handleDigest(handle: string): string {
  return createHash('sha256').update(handle, 'utf8').digest('hex');
}
