import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM sealing for secrets at rest (private keys). The associated data binds a sealed value
 * to its row (e.g. the kid), so a ciphertext copied onto another row does not open.
 * Format: `v1.<iv>.<tag>.<ciphertext>`, each base64url.
 */
export function seal(masterKey: Buffer, plaintext: Buffer, associatedData: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', masterKey, iv);
  cipher.setAAD(Buffer.from(associatedData, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return ['v1', iv, cipher.getAuthTag(), ciphertext].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
}

export class SealedBoxError extends Error {
  override name = 'SealedBoxError';
}

/** Opens a value made by `seal`; throws SealedBoxError if the key, the data or the binding is wrong. */
export function open(masterKey: Buffer, sealed: string, associatedData: string): Buffer {
  const [version, iv, tag, ciphertext] = sealed.split('.');
  if (version !== 'v1' || !iv || !tag || ciphertext === undefined) throw new SealedBoxError('unknown sealed format');
  try {
    const decipher = createDecipheriv('aes-256-gcm', masterKey, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
  } catch {
    throw new SealedBoxError('sealed value does not open with this master key');
  }
}

/** A short public identifier of a master key (not a secret: a truncated hash of a 256-bit key). */
export function masterKeyId(masterKey: Buffer): string {
  return createHash('sha256').update('clearance master key id').update(masterKey).digest('hex').slice(0, 16);
}
