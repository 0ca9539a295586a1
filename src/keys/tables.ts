import type { Generated } from 'kysely';

export interface KeyTables {
  signing_keys: {
    kid: string;
    alg: string;
    /** Public JWK as JSON text. */
    public_jwk: string;
    /** PKCS#8 private key sealed with the master key (see keys/sealed-box.ts). */
    private_key: string;
    /** Identifies the master key that sealed `private_key`, so a wrong key is named, not guessed. */
    master_key_id: string;
    created_at: number;
    /** When the key starts signing (ms); until then it is only published. */
    activates_at: number;
    /** When the key was removed from JWKS (ms), or null while published. */
    retired_at: number | null;
    /**
     * When the key was revoked as compromised (ms; migration 0057, src/keys/compromise.ts), with
     * `retired_at` the same instant; null otherwise. Never cleared.
     */
    compromised_at: Generated<number | null>;
  };
}
