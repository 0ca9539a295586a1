/** The entity model's tables (migration 0008_policy). Times are epoch milliseconds. */
export interface EntityTables {
  /** A legal entity with its desks and accounts, as applied (JSON). */
  legal_entities: {
    /** ISO 17442 LEI. */
    lei: string;
    definition: string;
    created_at: number;
    updated_at: number;
  };
  /** The reference lists: regions, venues, instrument classes. */
  entity_references: {
    kind: 'region' | 'venue' | 'instrument_class';
    id: string;
    definition: string;
    created_at: number;
    updated_at: number;
  };
}
