import { derivedKey } from '../../keys/master-key.ts';

/** The keys of people's second factors, from the master key (src/keys/master-key.ts). */
export interface FactorKeys {
  /** The master key itself: TOTP secrets are sealed with it as private keys are (src/keys/sealed-box.ts). */
  master: Buffer;
  /** The HMAC key of recovery-code digests: derived (HKDF-SHA256), never stored. */
  recoveryCodes: Buffer;
}

/** The factor keys every node derives alike from the same master key. */
export function factorKeys(masterKey: Buffer): FactorKeys {
  return { master: masterKey, recoveryCodes: derivedKey(masterKey, 'clearance recovery-code v1') };
}
