/** KYC records, KYC providers and sanctions/PEP screening (migration 0031_kyc). Times are epoch ms. */
export interface KycTables {
  kyc_records: {
    /** 'User' | 'LegalEntity'. */
    principal_type: string;
    /** A user id, or an LEI. */
    principal_id: string;
    /** src/risk/kyc/record.ts KycStatus, as stored (a `verified` past its review date reads `expired`). */
    status: string;
    /** The status a freeze keeps, restored when compliance clears the match; null otherwise. */
    previous_status: string | null;
    level: string | null;
    provider: string | null;
    review_due: number | null;
    evidence_ref: string | null;
    /** JSON: the `kyc` declaration apply last wrote; null when apply never declared one. */
    declared: string | null;
    version: number;
    updated_at: number;
    /** `apply:<actor>`, `admin:<actor>`, `provider:<id>`, `screening`, `compliance:<actor>`, `clearance`. */
    updated_by: string;
    /**
     * Who froze it besides screening (migration 0064_kyc_freeze_holder): the `updated_by` of that
     * change; null when only screening holds the freeze, or it is not frozen.
     */
    frozen_by: string | null;
  };
  kyc_providers: {
    id: string;
    /** 'hmac' | 'jws'. */
    signing: string;
    /** The HMAC secret sealed with the master key (src/keys/sealed-box.ts), bound to `kyc_providers:<id>`. */
    secret_sealed: string | null;
    /** JSON: the provider's JWK Set (jws). */
    jwks: string | null;
    created_at: number;
    updated_at: number;
  };
  kyc_webhook_ids: {
    provider: string;
    webhook_id: string;
    received_at: number;
  };
  screening_matches: {
    id: string;
    principal_type: string;
    principal_id: string;
    entry_id: string;
    entry_digest: string;
    list_digest: string;
    list_name: string;
    programme: string | null;
    /** JSON array of what matched: name, alias, lei, date_of_birth. */
    matched_on: string;
    /** 'open' | 'confirmed' | 'cleared'. */
    status: string;
    created_at: number;
    decided_at: number | null;
    decided_by: string | null;
    reason: string | null;
  };
  screening_lists: {
    /** SHA-256 (hex) of a list file's bytes. */
    digest: string;
    /** When everyone was screened against this version; null while a node is at it. */
    screened_at: number | null;
    /** Held by the node screening everyone (epoch ms). */
    lease_until: number | null;
  };
}
