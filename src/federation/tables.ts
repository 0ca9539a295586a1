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
  };
}
