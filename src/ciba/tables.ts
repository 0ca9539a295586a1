/** CIBA authentication requests (migration 0022_ciba_requests). Times are epoch ms. */
export interface CibaTables {
  ciba_requests: {
    /** SHA-256 (base64url) of the auth_req_id; the value itself is never stored. */
    id_hash: string;
    /** The approval request (src/approvals/requests.ts). */
    request_id: string;
    client_id: string;
    /** 'poll' | 'ping'. */
    mode: string;
    notification_endpoint: string | null;
    /** The client_notification_token, sealed (src/keys/sealed-box.ts). */
    notification_token: string | null;
    /** Ping mode: the auth_req_id, sealed (the ping names it, CIBA §10.2). */
    sealed_auth_req_id: string | null;
    /** Seconds between polls. */
    interval_seconds: number;
    last_polled_at: number | null;
    /** JSON: CibaPayload. */
    payload: string;
    grant_id: string | null;
    created_at: number;
    expires_at: number;
    consumed_at: number | null;
  };
}
