import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A new client secret: 256 random bits, base64url. Shown once, never stored. */
export function generateClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Digest stored in place of a secret. A fast hash is right here: the secret is 256 random bits,
 * so there is nothing for a slow hash to protect against that brute force could find.
 */
export function hashClientSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time check of a presented secret against the stored digest. */
export function clientSecretMatches(presented: string, storedHash: string): boolean {
  const presentedHash = Buffer.from(hashClientSecret(presented), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return stored.length === presentedHash.length && timingSafeEqual(presentedHash, stored);
}
