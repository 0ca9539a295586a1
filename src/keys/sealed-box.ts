import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { masterKeyId, masterKeyUnavailable, MasterKeyUnavailableError, openingKeyById, openingKeysOf, sealingKeyOf } from './keyring.ts';

export { masterKeyId } from './keyring.ts';

/**
 * AES-256-GCM sealing for secrets at rest (private keys). The associated data binds a sealed value
 * to its row (e.g. the kid), so a ciphertext copied onto another row does not open.
 * Format: `v2.<master key id>.<iv>.<tag>.<ciphertext>`, the last three base64url. The key id says
 * which master key sealed it (keyring.ts masterKeyId), so a rotation (`clearance keys rewrap`)
 * knows what is left to re-seal and an opener which of its keys to use. Values sealed before ids
 * were written (`v1.<iv>.<tag>.<ciphertext>`) still open: each configured key is tried, and the
 * GCM tag tells the right one.
 *
 * `masterKey` is the configured master key: with a keyring attached (keyring.ts), values are
 * sealed with its sealing key and open with the current or the previous key.
 */
export function seal(masterKey: Buffer, plaintext: Buffer, associatedData: string): string {
  const key = sealingKeyOf(masterKey);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(associatedData, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return ['v2', masterKeyId(key), ...[iv, cipher.getAuthTag(), ciphertext].map((p) => p.toString('base64url'))].join('.');
}

export class SealedBoxError extends Error {
  override name = 'SealedBoxError';
}

/** Opens a value made by `seal`; throws SealedBoxError if the key, the data or the binding is wrong. */
export function open(masterKey: Buffer, sealed: string, associatedData: string): Buffer {
  const parts = sealed.split('.');
  if (parts[0] === 'v2' && parts.length === 5) {
    const [, id, iv, tag, ciphertext] = parts as [string, string, string, string, string];
    const key = openingKeyById(masterKey, id);
    if (!key) {
      // Re-sealed by a rewrap this node has no key for: unavailable here (503), not a bad value.
      const unavailable = masterKeyUnavailable(masterKey);
      if (unavailable) throw new MasterKeyUnavailableError(unavailable);
      throw new SealedBoxError(`sealed with master key ${id}, which is not configured here (${openingKeysOf(masterKey).map(masterKeyId).join(', ')})`);
    }
    return decrypt(key, iv, tag, ciphertext, associatedData);
  }
  if (parts[0] === 'v1' && parts.length === 4) {
    const [, iv, tag, ciphertext] = parts as [string, string, string, string];
    for (const key of openingKeysOf(masterKey)) {
      try {
        return decrypt(key, iv, tag, ciphertext, associatedData);
      } catch {
        // the next configured key, if any
      }
    }
  }
  throw parts[0] === 'v1' ? new SealedBoxError('sealed value does not open with this master key') : new SealedBoxError('unknown sealed format');
}

/** The id of the master key that sealed a value; undefined for a value sealed before ids were written (v1). */
export function sealedKeyIdOf(sealed: string): string | undefined {
  const parts = sealed.split('.');
  return parts[0] === 'v2' && parts.length === 5 ? parts[1] : undefined;
}

function decrypt(key: Buffer, iv: string, tag: string, ciphertext: string, associatedData: string): Buffer {
  try {
    // A full 16-byte tag only: GCM would otherwise accept a truncated one.
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: 16 });
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
  } catch {
    throw new SealedBoxError('sealed value does not open with this master key');
  }
}
