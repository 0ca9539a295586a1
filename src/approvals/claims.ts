import type { ApprovalDecision } from './requests.ts';

/**
 * The `approvals` claim (docs/approvals.md "The approvals claim"): a token issued after second
 * persons approved its request names each of them — who (`sub`), at what level (`acr`), when
 * (`time`, epoch seconds), and the SHA-256 of the evidence they gave (`evidence_digest`), which is
 * the `evidence_digest` of their `approval.given` event in the request's transaction (`txn`), so a
 * token links to the evidence an auditor verifies offline. The subject's own approval is not an
 * entry: it is the token's `sub`, `acr` and `auth_time`.
 */
export interface ApprovalsClaimEntry {
  sub: string;
  acr: string;
  time: number;
  evidence_digest: string;
}

/** The claim's entries: the second persons' approvals, in the order they were given. */
export function approvalsClaim(decisions: readonly ApprovalDecision[]): ApprovalsClaimEntry[] {
  return decisions
    .filter((d) => d.role === 'approver' && d.decision === 'approve')
    .map((d) => ({ sub: d.approver, acr: d.acr, time: Math.floor(d.at / 1000), evidence_digest: d.evidenceDigest }));
}
