/**
 * The mandate store's tables (migration 0009_mandates). Times are epoch milliseconds; JSON
 * columns are text.
 *
 * A mandate is a head row (`mandates`: which version is current) and its versions
 * (`mandate_versions`, one row per version, never deleted). A version's terms never change after
 * it is written; its lifecycle columns are each written once, by a conditional update that moves
 * the status forward only (proposed → active → superseded | revoked | expired).
 */
export interface MandateTables {
  mandates: {
    /** The stable id the operator gives (apply file, admin API); tokens carry it as `mandate.id`. */
    id: string;
    /** The version in force or proposed now; older versions are superseded. */
    current_version: number;
    created_at: number;
    updated_at: number;
  };
  mandate_versions: {
    mandate_id: string;
    /** 1, 2, ...: tokens carry it as `mandate.v`. */
    version: number;
    /** `lei` or `account`. */
    grantor_kind: string;
    grantor_id: string;
    /** `lei`, `client` or `user` (a user's id, never the username). */
    grantee_kind: string;
    grantee_id: string;
    /** JSON array of business-verb scopes, sorted. */
    scopes: string;
    /** JSON object: instrument_classes, venues, max_notional, regions, time_window (normalized). */
    constraints: string;
    legal_basis_reference: string;
    legal_basis_text: string | null;
    effective_from: number;
    /** Null: open-ended. */
    effective_to: number | null;
    /** 'proposed' | 'active' | 'superseded' | 'revoked' | 'expired'. */
    status: string;
    created_at: number;
    /** Who recorded this version (admin client, `cli:<user>`). */
    created_by: string;
    /** Who accepted on the grantee side, and when (both set together). */
    accepted_by: string | null;
    accepted_at: number | null;
    superseded_at: number | null;
    revoked_at: number | null;
    revoked_by: string | null;
    revoke_reason: string | null;
    /** When the expiry (effective_to passed) was first observed. */
    expired_at: number | null;
    /** The person (user id) who signed the mandate for the grantor, when it names one (migration 0047). */
    granted_by?: string | null;
    /**
     * Epoch ms: set when the person who granted it left (src/lifecycle/leaver.ts); the version is
     * in force only until then (a reassignment is an amendment by a new signatory). Null: no deadline.
     */
    reassign_by?: number | null;
  };
  /**
   * Mandate versions whose lapse (revoked, superseded, expired) was looked at for transactions in
   * flight (migration 0033, src/mandates/lapses.ts): one row per version, written by the node that
   * raises its `mandate.lapsed_in_flight` events, in the same transaction, so a lapse is raised once.
   */
  mandate_lapses: {
    mandate_id: string;
    version: number;
    /** 'revoked' | 'superseded' | 'expired'. */
    lapse: string;
    lapsed_at: number;
    /** How many txns were in flight (events raised). */
    txns: number;
    raised_at: number;
  };
}
