/** The master key's own tables (migration 0059_master_key, docs/keys.md "The master key"). Times are epoch ms. */
export interface MasterKeyTables {
  /**
   * One row (`id` = 'root'): the root purpose keys are derived from (master-key.ts derivedKey),
   * sealed with the master key like any secret (associated data `master_key_root`). Whichever key
   * sealed it is the one that seals new values (keyring.ts `sealing`); `clearance keys rewrap`
   * re-seals it first, which is how every node learns the rotation has begun.
   */
  master_key_root: {
    id: string;
    sealed_root: string;
    /** The master key that sealed `sealed_root` (keyring.ts masterKeyId). */
    master_key_id: string;
    /** `master-key`: the deployment's master key's bytes at the time (so nothing derived changed); `random`: made for a new database. */
    origin: string;
    created_at: number;
  };
  /** One row per rotation (`clearance keys rewrap`): where it stands, so a rerun resumes it. */
  master_key_rewraps: {
    id: string;
    from_key_id: string;
    to_key_id: string;
    started_at: number;
    updated_at: number;
    /** Null until every sealed value opens with `to_key_id`. */
    completed_at: number | null;
    /** JSON: values re-sealed so far, by `<table>.<column>`. */
    progress: string;
    /** Who ran it (`cli`). */
    actor: string;
  };
  /**
   * Master keys held as data keys wrapped by an AES key of a PKCS#11 token
   * (CLEARANCE_MASTER_KEY_PKCS11_LABEL, master-key-pkcs11.ts): the 32 random bytes encrypted by the
   * token's key `label`, never in the clear here.
   */
  master_key_wraps: {
    token: string;
    label: string;
    /** base64: the token's AES-CBC encryption (IV first) of the data key. */
    wrapped: string;
    /** keyring.ts masterKeyId of the data key: what is unwrapped is checked against it. */
    key_id: string;
    created_at: number;
  };
}
