export interface ResourceServerTables {
  resource_servers: {
    /** The audience URI (RFC 8707 resource indicator). */
    identifier: string;
    /** The definition as applied, as JSON text. */
    definition: string;
    created_at: number;
    updated_at: number;
  };
}
