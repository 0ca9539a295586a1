/**
 * The address book of transfer destinations (migration 0053_transfer_destinations, docs/transfers.md
 * "Destination control"). Times are epoch milliseconds; JSON columns are text.
 */
export interface TransferDestinationTables {
  /**
   * One destination of one account of one legal entity, by its key (src/transfers/detail.ts
   * `destinationKey`): the key is the destination's identity and never changes; what changes
   * (label, BIC, beneficiary name) is a new version. Unique per (lei, account, destination_key).
   */
  transfer_destinations: {
    /** `dst_` and 128 random bits, base64url. */
    id: string;
    lei: string;
    account: string;
    destination_key: string;
    /** `internal`, `iban` or `blockchain`. */
    kind: string;
    created_at: number;
  };
  /**
   * Every version of a destination, the history of its change control. `status`: `pending` (waits
   * for approval), `held_for_review` (asked from a new device: waits for compliance too),
   * `approved` (usable from `usable_from`, after the cool-down), `rejected` (denied), `removed`
   * (taken out of the book: at once, no approval). A pending version whose request expired
   * (`request_expires_at` passed) is read as expired.
   */
  transfer_destination_versions: {
    destination_id: string;
    version: number;
    /** The destination as asked (JSON: kind and its fields, a beneficiary name included — never in an audit event). */
    destination: string;
    label: string | null;
    status: string;
    requested_by: string;
    /** `user` (a person with their own token) or `client` (a client, apply). */
    requester_type: string;
    requested_at: number;
    /** `admin-api` or `apply`. */
    via: string;
    /** The approval request (kind `transfer_destination`): the txn of every event of this change; null until opened (apply). */
    approval_request: string | null;
    request_expires_at: number | null;
    /** Why the change was held for review (`new_device`, `sign_in_unknown`); null when it was not. */
    review_reason: string | null;
    /** JSON array of the people who approved, in order. */
    approved_by: string | null;
    approved_at: number | null;
    /** approved_at + cooldown_ms: before this the destination is cooling down. */
    usable_from: number | null;
    cooldown_ms: number | null;
    /** When it was rejected or removed. */
    decided_at: number | null;
    removed_by: string | null;
  };
  /** Per legal entity settings of destination control (apply's `transfer_destinations.cooldowns`). */
  transfer_destination_settings: {
    lei: string;
    cooldown_ms: number;
    updated_at: number;
  };
}
