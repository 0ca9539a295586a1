import { verifyApprovalEvidence, type AnyApprovalEvidence } from '../approvals/evidence.ts';
import { canonicalDigest } from '../jose/approval-digest.ts';
import type { StoredAuditEvent } from './events.ts';

/**
 * What an evidence bundle says about approvals, checked offline (verify-bundle; docs/audit.md
 * "Evidence bundles"):
 * - every `approval.given` with passkey evidence — an order approved on the consent page
 *   (`clearance-approval/1`) or a request approved on the approvals page
 *   (`clearance-approval-request/1`) — verifies: the person's authenticator signed exactly that
 *   content (src/approvals/evidence.ts);
 * - an approval of a request (CIBA, recovery, break-glass) names the SHA-256 of its evidence
 *   (`evidence_digest`, RFC 8785 JSON): it must be that of the evidence the event carries; a
 *   request-approval evidence names the event's request and its digest; an approval with a fresh
 *   token (the admin API) carries the token's facts, which have no signature to check;
 * - a `token.issued` whose details list `evidence_digests` ({sub, role, evidence_digest}, what the
 *   CIBA grant writes: the subject's approval and every second person's) is backed, entry by
 *   entry, by an `approval.given` in the bundle of the token's transaction (its request), by that
 *   person, in that role, with that evidence digest.
 */

/** One approval in a bundle: who approved what, and how it was proven. */
export interface BundledApproval {
  /** The event's leaf index. */
  leafIndex: number;
  txn?: string;
  approver?: string;
  /** `subject` or `approver` for a request's approval; absent for an order on the consent page. */
  role?: string;
  requestId?: string;
  kind?: string;
  /** `passkey` (signature verified offline), `token` or `session`. */
  method: string;
  acr?: string;
  time: number;
  /** The digest of what was approved (the entries' or the request's content's). */
  digest?: string;
  evidenceDigest?: string;
  /** The passkey's signature over exactly that content was verified offline. */
  signatureVerified: boolean;
}

/** The problems found, and the approvals read. */
export function checkBundledApprovals(events: { leafIndex: number; event: StoredAuditEvent }[]): { problems: string[]; approvals: BundledApproval[] } {
  const problems: string[] = [];
  const approvals: BundledApproval[] = [];
  for (const { leafIndex, event } of events) {
    if (event.type !== 'approval.given') continue;
    const where = `event (leaf ${leafIndex})`;
    const details = (event.details ?? {}) as Record<string, unknown>;
    const evidence = details.evidence as Record<string, unknown> | undefined;
    const isRequest = typeof details.request_id === 'string';
    const passkey = typeof evidence === 'object' && evidence !== null && typeof evidence.format === 'string';
    const summary: BundledApproval = {
      leafIndex,
      ...(event.txn !== undefined ? { txn: event.txn } : {}),
      ...(event.actor !== undefined ? { approver: event.actor } : {}),
      ...(typeof details.role === 'string' ? { role: details.role } : {}),
      ...(isRequest ? { requestId: details.request_id as string } : {}),
      ...(typeof details.kind === 'string' ? { kind: details.kind } : {}),
      method: passkey ? 'passkey' : typeof details.method === 'string' ? details.method : 'unknown',
      ...(typeof details.acr === 'string' ? { acr: details.acr } : {}),
      time: event.time,
      ...(typeof (details.digest ?? evidence?.digest) === 'string' ? { digest: String(details.digest ?? evidence?.digest) } : {}),
      ...(typeof details.evidence_digest === 'string' ? { evidenceDigest: details.evidence_digest } : {}),
      signatureVerified: false,
    };
    if (!isRequest || passkey) {
      // An order's approval always has passkey evidence; a request's has it when made on the page.
      const found = verifyApprovalEvidence(evidence as unknown as AnyApprovalEvidence);
      for (const problem of found) problems.push(`${where}: approval evidence: ${problem}`);
      summary.signatureVerified = found.length === 0;
    }
    if (isRequest) {
      if (typeof details.evidence_digest !== 'string' || typeof evidence !== 'object' || evidence === null || digestOf(evidence) !== details.evidence_digest) {
        problems.push(`${where}: approval evidence: the evidence digest is not that of the evidence in the event`);
      }
      if (event.txn !== details.request_id) problems.push(`${where}: approval of request ${String(details.request_id)} is recorded in another transaction`);
      if (passkey && evidence.format === 'clearance-approval-request/1') {
        if (evidence.request_id !== details.request_id) problems.push(`${where}: approval evidence: it names another request`);
        if (evidence.digest !== details.digest) problems.push(`${where}: approval evidence: it signs another content than the request's`);
        if (evidence.kind !== details.kind) problems.push(`${where}: approval evidence: it names another kind of request`);
      }
    }
    approvals.push(summary);
  }
  for (const { leafIndex, event } of events) {
    if (event.type !== 'token.issued' || event.details?.evidence_digests === undefined) continue;
    const where = `event (leaf ${leafIndex})`;
    const listed = event.details.evidence_digests;
    // What the CIBA grant writes (src/grants/ciba.ts): the request's id, and every approval it was issued on.
    const txn = event.txn ?? event.details.approval_request_id;
    if (!Array.isArray(listed) || typeof txn !== 'string') {
      problems.push(`${where}: token.issued evidence_digests is not a list of approvals of one request`);
      continue;
    }
    for (const [i, entry] of (listed as unknown[]).entries()) {
      const e = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
      const backed = approvals.some(
        (a) =>
          a.evidenceDigest !== undefined &&
          a.evidenceDigest === e.evidence_digest &&
          a.approver === e.sub &&
          a.role === e.role &&
          a.txn === txn &&
          a.requestId === txn,
      );
      if (!backed) problems.push(`${where}: token.issued evidence_digests[${i}] (${String(e.sub)}) has no matching approval.given in the bundle`);
    }
  }
  return { problems, approvals };
}

/** SHA-256 (base64url) of the RFC 8785 JSON of an evidence object, as src/approvals/requests.ts evidenceDigest. */
function digestOf(evidence: unknown): string | undefined {
  try {
    return canonicalDigest(evidence);
  } catch {
    return undefined;
  }
}
