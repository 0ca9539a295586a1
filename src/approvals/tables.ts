/** Requests a second person approves (migration 0021_approval_requests). Times are epoch ms. */
export interface ApprovalTables {
  approval_requests: {
    id: string;
    kind: string;
    status: string;
    requester: string;
    requester_type: string;
    subject: string;
    client_id: string | null;
    /** JSON array of strings. */
    actors: string;
    /** JSON: what the approvers are shown and sign. */
    content: string;
    digest: string;
    required_approvals: number;
    approvals: number;
    /** 'none' | 'pending' | 'given'. */
    subject_approval: string;
    created_at: number;
    expires_at: number;
    decided_at: number | null;
    consumed_at: number | null;
  };
  approval_decisions: {
    request_id: string;
    approver: string;
    /** 'subject' | 'approver'. */
    role: string;
    decision: string;
    reason: string | null;
    method: string;
    acr: string;
    /** JSON array of strings. */
    amr: string;
    evidence_digest: string;
    at: number;
  };
  /** Passkey ceremonies of the approvals page (migration 0023_approval_challenges). */
  approval_challenges: {
    request_id: string;
    user_id: string;
    /** The request's digest when the ceremony started. */
    digest: string;
    /** 16 random bytes, base64url. */
    nonce: string;
    expires_at: number;
  };
}
