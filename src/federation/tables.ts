export interface PartnerTables {
  partners: {
    /** The partner's id in the apply document. */
    id: string;
    /** Its issuer identifier, unique: a token's `iss` selects exactly one partner. */
    issuer: string;
    /** The profile as applied, as JSON text. */
    definition: string;
    created_at: number;
    updated_at: number;
    /** When prune disabled it (migration 0052): its tokens are refused as from an unknown issuer. */
    disabled_at: number | null;
    /** The liveness cut-off of tokens exchanged from its tokens (`origin_iss`), set when disabled. */
    tokens_valid_after: number | null;
  };
}

export interface PartnerBaselineTables {
  /** Each partner's last-known live keys and metadata (migration 0036, src/federation/drift). */
  partner_baselines: {
    partner_id: string;
    /** 'active' | 'suspended'. */
    status: string;
    /** JSON: BaselineKey[]; null before the first successful check. */
    keys: string | null;
    issuer: string | null;
    metadata_digest: string | null;
    profile_digest: string | null;
    last_success_at: number | null;
    unreachable_since: number | null;
    unreachable_reported_at: number | null;
    suspended_at: number | null;
    suspended_reason: string | null;
    next_check_at: number;
    version: number;
    updated_at: number;
  };
}
