/** The risk engine's tables (migration 0027_risk). Times are epoch ms. */
export interface RiskTables {
  risk_sightings: {
    /** 'User' | 'Client' | 'Admin'. */
    principal_type: string;
    principal_id: string;
    /** src/risk/sightings.ts SightingKind. */
    kind: string;
    value: string;
    first_seen: number;
    last_seen: number;
  };
  risk_settings: {
    name: string;
    /** JSON. */
    value: string;
    updated_at: number;
  };
}
