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
}
