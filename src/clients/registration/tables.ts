export interface RegistrationTables {
  /** Initial access tokens for dynamic registration (RFC 7591 §3), stored as SHA-256 digests. */
  initial_access_tokens: {
    token_hash: string;
    /** Space-separated scopes a client registered with this token may be allowed at most. */
    allowed_scope: string;
    /** The firm (LEI) every client registered with this token belongs to; null: no firm (RFC 7591 §5). */
    owner_lei: string | null;
    /** Space-separated grant types a client registered with this token may ask for. */
    allowed_grant_types: string;
    /** Space-separated client kinds (service, agent, app) a client registered with this token may be. */
    allowed_kinds: string;
    uses_left: number;
    expires_at: number;
    created_at: number;
    created_by: string;
  };
  /** Registration access tokens of dynamically registered clients (RFC 7592 §1), as digests. */
  client_registrations: {
    client_id: string;
    token_hash: string;
    created_at: number;
  };
}
