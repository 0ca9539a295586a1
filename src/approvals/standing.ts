import type { Context } from '../context.ts';
import { findUser } from '../identity/users.ts';
import type { ApprovalKind } from './kinds.ts';
import type { ApprovalDecision, ApprovalRequest } from './requests.ts';

/**
 * When a second person's approval stops counting (docs/approvals.md "When an approval stops
 * counting"). An approval is checked when it is given (decideApprovalRequest); the request may
 * settle, and its result be used (the CIBA token), later. Meanwhile the approver may have been
 * disabled, locked or offboarded, or lost what made them eligible (a role, a supervised desk, an
 * approval limit): an approval counts only while its approver still could give it. Checked when
 * the request settles (src/approvals/requests.ts) and when it is used (src/grants/ciba.ts).
 */

/** A second person's approval that no longer stands, and why. */
export interface LapsedApproval {
  approver: string;
  reason: string;
  /**
   * The check itself failed (a database or entity lookup): the approval does not count now (fail
   * closed), but nothing is known against it — a caller must not end a request for it.
   */
  undecided?: true;
}

/**
 * The second persons' approvals among `decisions` that no longer stand, in order: the approver is
 * no longer an active person (unknown, disabled, locked), or the kind's `stillStands` says no
 * (CIBA: the four-eyes approve decision, about the approver as they are now). Fail closed: a check
 * that throws is a lapse. The subject's own decision and denials are not looked at.
 */
export async function lapsedApprovals(ctx: Context, kind: ApprovalKind, request: ApprovalRequest, decisions: readonly ApprovalDecision[]): Promise<LapsedApproval[]> {
  const lapsed: LapsedApproval[] = [];
  for (const decision of decisions) {
    if (decision.role !== 'approver' || decision.decision !== 'approve') continue;
    const lapse = await whyNotStanding(ctx, kind, request, decision);
    if (lapse !== undefined) lapsed.push({ approver: decision.approver, ...lapse });
  }
  return lapsed;
}

async function whyNotStanding(ctx: Context, kind: ApprovalKind, request: ApprovalRequest, decision: ApprovalDecision): Promise<Omit<LapsedApproval, 'approver'> | undefined> {
  try {
    const person = await findUser(ctx, decision.approver);
    // Every kind: a person who may no longer act (locked, disabled, offboarded, deleted) approves nothing.
    if (!person || person.status !== 'active') return { reason: 'the approver is no longer an active person' };
    const reason = kind.stillStands ? await kind.stillStands(ctx, request, decision) : undefined;
    return reason === undefined ? undefined : { reason };
  } catch (error) {
    ctx.log.error({ err: error, txn: request.id }, 'whether an approval still stands could not be decided: it does not count');
    return { reason: 'whether the approval still stands could not be decided (fail closed)', undecided: true };
  }
}
