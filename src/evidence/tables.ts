/** Signing evidence (migration 0043_signing_evidence, docs/transaction-signing.md). Times are epoch ms. */
export interface EvidenceTables {
  signing_evidence: {
    id: string;
    txn: string;
    /** The record as RFC 8785 canonical JSON: what its audit event's `record_sha256` digests. */
    record: string;
    record_sha256: string;
    /** The RFC 3161 TimeStampToken over the record's digest (DER, base64), when a TSA is configured. */
    timestamp_token: string | null;
    timestamp_time: number | null;
    created_at: number;
  };
  /**
   * External evidence (migration 0055_external_evidence, docs/evidence.md): one row per event a
   * producer appended, unique by (producer, event_id). Never the payload: its SHA-256 only.
   */
  external_evidence: {
    /** The recorded id (UUID), named by the `evidence.appended` event's `evidence_id`. */
    id: string;
    /** The producer's client_id. */
    producer: string;
    event_id: string;
    txn: string;
    type: string;
    /** 64 lowercase hex digits. */
    payload_sha256: string;
    /** RFC 3339, as the producer sent it. */
    occurred_at: string | null;
    /** SHA-256 (hex) of what makes a retry the same event: the signed statement, and whether it was signed. */
    fingerprint: string;
    /** The producer's detached JWS (RFC 7515 Appendix F), `header..signature`, when it sent one. */
    jws: string | null;
    /** The public JWK (RFC 8785 canonical JSON, public members and kid) that verified the JWS. */
    jws_key: string | null;
    created_at: number;
  };
}
