export interface ClientTables {
  clients: {
    client_id: string;
    /** RFC 7591 metadata plus Clearance fields, as JSON text (never a secret). */
    metadata: string;
    /** SHA-256 of the client secret (hex), for client_secret_* methods. */
    secret_hash: string | null;
    created_at: number;
    updated_at: number;
  };
}
