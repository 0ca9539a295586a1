export interface ClientTables {
  clients: {
    client_id: string;
    /** RFC 7591 metadata plus Clearance fields, as JSON text (never a secret). */
    metadata: string;
    /** SHA-256 of the client secret (hex), for client_secret_* methods. */
    secret_hash: string | null;
    created_at: number;
    updated_at: number;
    /** When prune disabled it (migration 0052, src/lifecycle/prune.ts); null while in service. */
    disabled_at: number | null;
    /** The token liveness cut-off (src/tokens/liveness.ts): tokens issued at or before it are dead. */
    tokens_valid_after: number | null;
    /** When the current secret was made (epoch ms); null without a secret. */
    secret_created_at?: number | null;
    /** When the current secret expires (epoch ms); null: never (RFC 7591 §3.2.1 `client_secret_expires_at` 0). */
    secret_expires_at?: number | null;
    /** During a rotation's rollover window: the digest of the secret it replaced, still accepted. */
    previous_secret_hash?: string | null;
    /** The end of that window (epoch ms); the previous secret is refused from then on. */
    previous_secret_valid_until?: number | null;
  };
  /** Expiry warnings given (src/clients/expiry.ts): one per credential and threshold, across all nodes. */
  client_credential_warnings: {
    client_id: string;
    /** `secret:<created_at>` or `certificate:<sha256 hex>`. */
    credential: string;
    threshold_days: number;
    warned_at: number;
  };
}
