/** Break-glass accounts, activations and reviews (migration 0025_break_glass). Times are epoch ms. */
export interface BreakGlassTables {
  break_glass_accounts: {
    name: string;
    /** JSON array of scopes. */
    scopes: string;
    audience: string;
    activation_seconds: number;
    /** JSON array of usernames, or null: anyone with the `break-glass-custodian` role. */
    custodians: string | null;
    created_at: number;
    updated_at: number;
  };
  break_glass_activations: {
    id: string;
    account: string;
    requester: string;
    reason: string;
    /** JSON array of scopes. */
    scopes: string;
    audience: string;
    starts_at: number;
    ends_at: number;
    /** The account's name while not ended; null once ended (unique: one in force per account). */
    in_force_account: string | null;
    ended_at: number | null;
    end_reason: string | null;
  };
  break_glass_reviews: {
    activation_id: string;
    account: string;
    opened_at: number;
    closed_at: number | null;
    closed_by: string | null;
    note: string | null;
  };
}
