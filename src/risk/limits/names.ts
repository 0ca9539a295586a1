import { createHmac, randomBytes } from 'node:crypto';
import { derivedKey } from '../../keys/master-key.ts';

/**
 * How the shared store (Redis) and the limiter name a person: an HMAC of the normalized username
 * under a key derived from the master key, never the name, and not a plain digest either — a
 * username is guessable, so SHA-256(username) could be reversed with a list of likely names by
 * anyone who reads the store. Every node derives the same key from the same master key, so they
 * name one person alike.
 */
export function limitNamesKey(masterKey: Buffer): Buffer {
  return derivedKey(masterKey, 'clearance limit-names v1');
}

/** A key of this process alone, where no master key is given (a test's store, never shared by nodes). */
export function processNamesKey(): Buffer {
  return randomBytes(32);
}

/** The name of `username` in keys and buckets: 32 characters of base64url HMAC-SHA256. */
export function pseudonym(key: Buffer, username: string): string {
  return createHmac('sha256', key).update(username).digest('base64url').slice(0, 32);
}
