export interface ResourceServerTables {
  resource_servers: {
    /** The audience URI (RFC 8707 resource indicator). */
    identifier: string;
    /** The definition as applied, as JSON text. */
    definition: string;
    created_at: number;
    updated_at: number;
    /** When prune disabled it (migration 0052, src/lifecycle/prune.ts); null while in service. */
    disabled_at: number | null;
    /** The token liveness cut-off (src/tokens/liveness.ts): tokens issued at or before it are dead. */
    tokens_valid_after: number | null;
  };
}
