import type { Generated } from 'kysely';

/**
 * The authorization component's tables (migration 0007_authorization). Codes, refresh tokens and
 * request_uris are stored as SHA-256 digests, never as issued (DESIGN §7 "store digests").
 * Times are epoch milliseconds; JSON columns are text.
 */
export interface AuthorizationTables {
  /** RFC 9126 pushed authorization requests, by the digest of their request_uri. */
  pushed_requests: {
    uri_hash: string;
    /** A public id for audit events and interactions (never the request_uri itself). */
    id: string;
    client_id: string;
    /** The validated AuthorizationRequest, as JSON. */
    request: string;
    created_at: number;
    expires_at: number;
    /** Set once an authorization made from it completed (code issued or error returned): single use after that. */
    consumed_at: number | null;
  };
  /** A pending authorization request waiting for a person (src/authorization/contract.ts). */
  interactions: {
    id: string;
    client_id: string;
    /** The validated AuthorizationRequest, as JSON. */
    request: string;
    /** SHA-256 of the browser-binding cookie value: only the browser that started it may resume it. */
    browser_hash: string;
    /** The Authentication recorded during this interaction (JSON), if any. */
    authentication: string | null;
    /** 'approved' or 'denied' once the person decided. */
    consent: string | null;
    /** The consent grant an approval recorded or extended. */
    grant_id: string | null;
    created_at: number;
    expires_at: number;
    completed_at: number | null;
    /**
     * The step-up this request waits for (JSON: src/authorization/step-up.ts), from when the person
     * was sent to sign in at a higher level until the outcome is audited (migration 0019).
     */
    step_up: string | null;
    /** The approval ceremony the consent page started (JSON: digest, nonce, expires_at), until answered (migration 0020). */
    approval_challenge: string | null;
    /** The person's verified approval of the request's order entries (JSON: id, digest, credential_id, at) (migration 0020). */
    approval: string | null;
  };
  /** The consent store: what a person allowed a client, per resource (one active row per user and client). */
  grants: {
    id: string;
    user_id: string;
    client_id: string;
    /** JSON object: resource identifier → granted scopes. */
    resources: string;
    /** JSON array of granted OpenID Connect scopes (openid, offline_access). */
    oidc_scopes: string;
    /** JSON array of granted RFC 9396 authorization_details. */
    authorization_details: string;
    /**
     * JSON array of the mandate ids the person consented to let the client act under (migration
     * 0014); `[]` when an insert leaves it out.
     */
    mandates: Generated<string>;
    created_at: number;
    updated_at: number;
    revoked_at: number | null;
    revoked_by: string | null;
    revoke_reason: string | null;
  };
  /** Authorization codes (RFC 6749 §4.1.2) by digest. */
  authorization_codes: {
    code_hash: string;
    /** A public id for audit events. */
    id: string;
    client_id: string;
    grant_id: string;
    user_id: string;
    redirect_uri: string;
    code_challenge: string;
    /** What the code stands for (scopes, resource, details, nonce, auth_time, acr, amr), as JSON. */
    payload: string;
    created_at: number;
    expires_at: number;
    redeemed_at: number | null;
  };
  /** Refresh tokens (RFC 6749 §6) by digest; rotated tokens are kept to detect reuse. */
  refresh_tokens: {
    token_hash: string;
    /** A public id for audit events and rotation links. */
    id: string;
    /** The id of the first token of this rotation chain (one per code redemption). */
    family_id: string;
    /** The token this one replaced, if any. */
    parent_id: string | null;
    grant_id: string;
    client_id: string;
    user_id: string;
    /** What the token stands for (scopes, resource, details, auth_time, acr, amr), as JSON. */
    payload: string;
    /**
     * 'active' | 'rotated' (used, replaced by a child) | 'revoked' | 'superseded' (replaced unused
     * by a retry: only children without a `retry_seal`, rotated before migration 0012).
     */
    state: string;
    created_at: number;
    expires_at: number;
    used_at: number | null;
    /**
     * This token's value sealed under its parent's token value, for retries with the parent, while
     * it is unused; null for the first of a family and once it was used (rotated).
     */
    retry_seal: string | null;
    /**
     * The kid of the key that signed the tokens issued with this one (the access token, else the ID
     * token; '' when none was signed), so a compromised key's families are found (migration 0057,
     * src/keys/compromise.ts); null on rows older than the column.
     */
    access_kid: Generated<string | null>;
  };
}
