/**
 * The revocation of a compromised signing key through the admin API, when no break-glass activation
 * allows it at once (docs/keys.md "Token-signing keys: compromise"): an approval request of kind
 * `key_compromise` (src/approvals/kinds/key-compromise.ts) that a second person — an active person
 * holding `admin`, never the requester — approves through the approvals page or API; the approval
 * that completes it revokes the key in the decision's own transaction (./compromise.ts).
 */
import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { consumeApprovalRequest, decisionsOf, listPendingApprovalRequests, openApprovalRequest, type ApprovalRequest } from '../approvals/requests.ts';
import type { Database } from '../storage/schema.ts';
import { compromiseIn, KeyRevocationError, reasonProblem, revocableKey } from './compromise.ts';

/** The role whose holders ask for and approve a compromised key's revocation. */
export const keyCompromiseRole = 'admin';

/** How long the request waits for its approval: 30 minutes (an emergency, not a review). */
export const keyCompromiseWindowMs = 30 * 60_000;

/** What approvers see (and a passkey approval signs). */
export interface KeyCompromiseContent {
  type: 'key_compromise';
  kid: string;
  alg: string;
  /** Its state when asked: active, next, superseded or retirable. */
  state: string;
  reason: string;
  requested_by: string;
}

/** A revocation of this key already waits for approval. */
export class KeyRevocationPending extends Error {
  override name = 'KeyRevocationPending';
  readonly requestId: string;
  constructor(requestId: string) {
    super(`a revocation of this key already waits for approval (request ${requestId})`);
    this.requestId = requestId;
  }
}

/**
 * Opens the request: the reason is one the audit log takes and the key can be revoked
 * (KeyRevocationError otherwise), none waits for it
 * (KeyRevocationPending), and it needs one approval when a person asked, two when a client's own
 * token did (nobody stands behind a client). Recorded as `approval.requested` (txn = its id).
 */
export async function requestKeyRevocation(
  ctx: Context,
  input: { kid: string; reason: string; requester: string; requesterType: 'user' | 'client'; requestId?: string },
): Promise<ApprovalRequest> {
  const bad = reasonProblem(input.reason);
  if (bad) throw new KeyRevocationError('reason', bad);
  const key = await revocableKey(ctx, input.kid);
  const [pending] = await listPendingApprovalRequests(ctx, { kinds: ['key_compromise'], subject: input.kid, limit: 1 });
  if (pending) throw new KeyRevocationPending(pending.id);
  const content: KeyCompromiseContent = { type: 'key_compromise', kid: key.kid, alg: key.alg, state: key.state, reason: input.reason, requested_by: input.requester };
  return openApprovalRequest(
    ctx,
    {
      kind: 'key_compromise',
      requester: input.requester,
      requesterType: input.requesterType,
      subject: key.kid,
      content: content as unknown as Record<string, unknown>,
      requiredApprovals: input.requesterType === 'user' ? 1 : 2,
      subjectMustApprove: false,
      ttlMs: keyCompromiseWindowMs,
    },
    undefined,
    input.requestId !== undefined ? { requestId: input.requestId } : {},
  );
}

/**
 * In the transaction of the decision that settles the request: approved, the request is consumed
 * and the key revoked (its `key.compromised` event names the requester and every approver). A key
 * revoked or retired meanwhile (by the CLI, a break-glass token) is left as it is: that revocation
 * recorded its own event, and this approval changes nothing more.
 */
export async function settleKeyRevocation(ctx: Context, trx: Transaction<Database>, request: ApprovalRequest, outcome: 'approved' | 'denied'): Promise<AuditEvent[]> {
  if (outcome !== 'approved') return [];
  const content = request.content as unknown as KeyCompromiseContent;
  const approvers = (await decisionsOf(trx, request.id)).filter((d) => d.role === 'approver' && d.decision === 'approve').map((d) => d.approver);
  await consumeApprovalRequest(trx, request.id, ctx.clock.now());
  try {
    const { event } = await compromiseIn(ctx, trx, {
      kid: content.kid,
      reason: content.reason,
      authority: { via: 'approval', requester: request.requester, requesterType: request.requesterType, approvalRequestId: request.id, approvers },
    });
    return [event];
  } catch (error) {
    // Only what was refused before anything was written; an interrupted revocation rolls the decision back.
    if (error instanceof KeyRevocationError && error.code !== 'interrupted') {
      ctx.log.warn({ kid: content.kid, requestId: request.id, why: error.code }, 'an approved key revocation found the key already out of the JWKS');
      return [];
    }
    throw error;
  }
}
