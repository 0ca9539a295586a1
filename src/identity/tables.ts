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
    /** JSON array of role names, sorted (migration 0016): each may ask a minimum authentication level. */
    roles: string;
    /** JSON object: KYC status, suitability and other facts about the person. */
    attributes: string;
    /** `active`; `locked` (by an administrator or after failed logins); `disabled` (by an administrator). */
    status: 'active' | 'locked' | 'disabled';
    /** Consecutive failed password logins since the last success (lockout counter). */
    failed_logins: number;
    /** When the account stopped being active (locked or disabled); null while active. */
    locked_at: number | null;
    /**
     * Why a locked account is locked: `failed_logins` (the automatic lockout, which stops password
     * logins only) or `admin` (an administrator's lock, which also ends the person's tokens);
     * `admin` for a disabled account; null while active (migration 0013).
     */
    lock_reason: 'failed_logins' | 'admin' | null;
    /**
     * Epoch ms: every token of the person issued at or before it is dead (a password reset, "sign
     * out everywhere", a lock or disable by an administrator); null when never set (migration 0013).
     */
    tokens_valid_after: number | null;
    last_login_at: number | null;
    /** When the latest failed sign-in counted in `failed_logins` happened (migration 0028; src/risk `recent_failures`). */
    last_failed_login_at: number | null;
    /** When the account was last locked by the automatic lockout, kept after an unlock (migration 0028; src/risk `recent_lockout`). */
    last_lockout_at: number | null;
    created_at: number;
    updated_at: number;
    /**
     * When the person was offboarded (a leaver, src/lifecycle/leaver.ts; migration 0047); null when
     * never, or when re-activated since (a deliberate joiner step). Optional: rows written
     * before it, and by writers that do not know it, have none.
     */
    offboarded_at?: number | null;
    /**
     * Who set the password (migration 0065; src/identity/users.ts `upsertUser`): the subject of the
     * admin-API token that set it (an administrator's id, or a client's own id), `scim:<client>`
     * for SCIM; null when the operator (the CLI) set it, or nobody since the migration. Optional:
     * writers that do not set a password leave it as it is.
     */
    password_set_by?: string | null;
    /** When the password was last set by an administrator, SCIM or the operator (epoch ms); null when not known. */
    password_set_at?: number | null;
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
    /** Why it ended: logout, rotated (a new login in this browser), locked, disabled, password_changed, signed_out_everywhere, deleted, and the other steps of src/identity/lifecycle.ts (roles_removed, suspended, …). */
    end_reason: string | null;
    /**
     * The risk assessment of the sign-in that started it (JSON, src/risk/assessment.ts), so what is
     * issued from the session carries its signals (migration 0028); null when none was made.
     */
    risk: string | null;
    /** The managed device the person signed in from (migration 0041), or null. */
    device_id: string | null;
    /** The upstream identity provider that signed the person in (src/federation/upstream, migration 0045), or null for a local sign-in. */
    assurance_provider: string | null;
    /** That upstream's issuer: the session's source of assurance, in its tokens and events; null for a local sign-in. */
    assurance_source: string | null;
    /** The upstream's session id (the ID token's `sid`): what its back-channel logout names (OIDC Back-Channel Logout 1.0 §2.4). */
    upstream_sid: string | null;
  };
}
