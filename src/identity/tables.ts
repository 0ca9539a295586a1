/** The people side's tables (migration 0006_people). Times are epoch milliseconds. */
export interface IdentityTables {
  users: {
    /** UUID; the `sub` of tokens and ID tokens. Never changes. */
    id: string;
    /** Lowercase login name, unique. */
    username: string;
    /** Argon2id PHC string; null for an account that cannot log in with a password. */
    password_hash: string | null;
    name: string | null;
    email: string | null;
    /** JSON array of desk identifiers. */
    desks: string;
    /** JSON object: KYC status, suitability and other facts about the person. */
    attributes: string;
    status: 'active' | 'locked';
    /** Consecutive failed password logins since the last success (lockout counter). */
    failed_logins: number;
    locked_at: number | null;
    last_login_at: number | null;
    created_at: number;
    updated_at: number;
  };
  sessions: {
    /** SHA-256 (base64url) of the cookie value; the cookie value itself is never stored. */
    id: string;
    user_id: string;
    created_at: number;
    /** Last request that used the session; the idle timeout counts from here. */
    last_seen_at: number;
    /** Absolute expiry, whatever the activity. */
    expires_at: number;
    /** Idle timeout in milliseconds, as it was when the session started. */
    idle_timeout_ms: number;
    /** OIDC auth_time: when the person authenticated, epoch seconds. */
    auth_time: number;
    acr: string;
    /** JSON array of RFC 8176 method references. */
    amr: string;
    ended_at: number | null;
    /** Why it ended: logout, rotated (a new login in this browser), locked. */
    end_reason: string | null;
  };
}
