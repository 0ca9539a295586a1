/** The recovery's own tables (migration 0024_recovery). Times are epoch ms. */
export interface RecoveryTables {
  recovery_links: {
    /** The approval request's id (kind `recovery`). */
    request_id: string;
    user_id: string;
    /** 'help_desk' | 'self'. */
    opened_by: string;
    /** JSON array of LostFactor. */
    lost: string;
    /** SHA-256 (base64url) of the link's token; the token itself is never stored. */
    link_digest: string;
    /** SHA-256 (base64url) of the person's password hash when the request was opened (null: no link can be used). */
    password_fingerprint: string | null;
    approved_at: number | null;
    /** Set at approval: the link works until then. */
    expires_at: number | null;
    failures: number;
    used_at: number | null;
    created_at: number;
  };
  recovery_settings: {
    name: string;
    /** JSON. */
    value: string;
    updated_at: number;
  };
}
