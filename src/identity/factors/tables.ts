/** People's second factors (migration 0017_totp_factors). Times are epoch milliseconds. */
export interface FactorTables {
  totp_factors: {
    /** UUID: the credential id audit events name. */
    id: string;
    /** One authenticator per person (unique). */
    user_id: string;
    /**
     * The RFC 6238 shared secret (base32), sealed with the master key (src/keys/sealed-box.ts),
     * bound to `totp_factors:<id>:<user_id>`.
     */
    secret: string;
    /** Which master key sealed it (src/keys/sealed-box.ts masterKeyId). */
    master_key_id: string;
    created_at: number;
    /** When the person confirmed it with a first code; null while pending (not usable to sign in). */
    confirmed_at: number | null;
    /**
     * The last RFC 6238 time step whose code was accepted: a code of this step or an earlier one is
     * refused (RFC 6238 §5.2), written only by a conditional update, so two nodes cannot both accept it.
     */
    last_used_step: number | null;
    last_used_at: number | null;
  };
  recovery_codes: {
    user_id: string;
    /** HMAC-SHA256 (base64url) of the code under a key derived from the master key; never the code. */
    digest: string;
    created_at: number;
    /** When it was used; a used code never works again (conditional update). */
    used_at: number | null;
  };
  account_notices: {
    id: string;
    user_id: string;
    /** `recovery_code_used`. */
    kind: string;
    /** JSON: what the page says (when, from which address, how many codes are left). */
    details: string;
    created_at: number;
    /** When the person saw it on /account; null until then. */
    seen_at: number | null;
  };
  pending_sign_ins: {
    /** SHA-256 (base64url) of the browser's cookie value; the value itself is never stored. */
    id: string;
    /** The person whose password was verified. */
    user_id: string;
    /** The authorization request it belongs to. */
    interaction_id: string;
    created_at: number;
    expires_at: number;
    /** Wrong second factors entered in this state. */
    failures: number;
    /** When it was used up (signed in), abandoned (too many failures) or ended (a lock); null while open. */
    ended_at: number | null;
    /** The risk assessment made when the password was verified (JSON, src/risk/assessment.ts; migration 0028), completed by the second step. */
    risk: string | null;
  };
}
