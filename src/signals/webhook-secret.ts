import { safeEqual } from '../jose/dpop.ts';
import { open, seal } from '../keys/sealed-box.ts';
import { join, type Validator } from '../validation.ts';

/**
 * An HMAC webhook secret (Standard Webhooks), as both alert webhooks (./webhooks.ts) and KYC
 * providers (src/risk/kyc/providers.ts) take it: at least 32 characters, a `whsec_` prefix means
 * the rest is base64; write-only, stored only sealed with the master key and bound to its row
 * (`binding`, e.g. `alert_webhooks:<id>`), so a sealed value copied onto another row does not open.
 */
export const minSecretLength = 32;

/** Reads an entry's optional `secret`: a string of 32 to 256 characters, for hmac signing only. */
export function readHmacSecret(v: Validator, path: string, value: unknown, signing: 'hmac' | 'jws' | undefined): string | undefined {
  if (value === undefined) return undefined;
  // The message never quotes the value: a secret must not end up in an error, a log or a terminal.
  if (typeof value !== 'string' || value.length < minSecretLength || value.length > 256) return v.fail(join(path, 'secret'), `must be a string of ${minSecretLength} to 256 characters`);
  if (signing === 'jws') return v.fail(join(path, 'secret'), 'is for hmac signing only');
  return value;
}

/**
 * The sealed value to store for `secret`: the stored one when it already seals the same secret (so
 * re-applying a document is `unchanged`), else a new sealing.
 */
export function sealSecret(masterKey: Buffer, stored: string | null, secret: string, binding: string): string {
  const same = stored !== null && safeEqual(open(masterKey, stored, binding).toString('utf8'), secret);
  return same ? stored : seal(masterKey, Buffer.from(secret, 'utf8'), binding);
}

/** The HMAC key a sealed secret stands for (opened with the master key). */
export function openSecretKey(masterKey: Buffer, sealed: string, binding: string): Buffer {
  return secretKeyBytes(open(masterKey, sealed, binding).toString('utf8'));
}

/** The HMAC key a webhook secret stands for: base64-decoded after a `whsec_` prefix (Standard Webhooks), else its UTF-8 bytes. */
export function secretKeyBytes(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'utf8');
}
