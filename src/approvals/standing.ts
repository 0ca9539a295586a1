import type { Context } from '../context.ts';
import { liveUnder, type PersonStanding } from '../identity/lifecycle.ts';
import type { ApprovalKind } from './kinds.ts';
import type { ApprovalDecision, ApprovalRequest } from './requests.ts';

/**
 * When a second person's approval stops counting (docs/approvals.md "When an approval stops
 * counting"). An approval is checked when it is given (decideApprovalRequest); the request may
 * settle, and its result be used (the CIBA token), later. Meanwhile the approver may have been
 * disabled, locked or offboarded, or lost what made them eligible (a role, a supervised desk, an
 * approval limit): an approval counts only while its approver still could give it. Or their tokens
 * were cut off after they approved (sign out everywhere on a stolen phone, a recovery, roles taken
 * away: src/identity/lifecycle.ts): the authentication they approved on has since been declared
 * untrustworthy, and the approval with it — it stands only if given after the approver's current
 * cut-off, the person rule of token liveness asked at the decision's time. Checked when the
 * request settles (src/approvals/requests.ts) and when it is used (src/grants/ciba.ts).
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
 * no longer an active person (unknown, disabled, locked), the kind's `stillStands` says no (CIBA:
 * the four-eyes approve decision, about the approver as they are now), or their tokens were cut off
 * at or after the decision (`approvedBeforeCutOff`). Fail closed: a check that throws is a lapse.
 * The subject's own decision and denials are not looked at.
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
    const person = await standingOf(ctx, decision.approver);
    // Every kind: a person who may no longer act (locked, disabled, offboarded, deleted) approves nothing.
    if (!person || person.status !== 'active') return { reason: 'the approver is no longer an active person' };
    const reason = kind.stillStands ? await kind.stillStands(ctx, request, decision) : undefined;
    if (reason !== undefined) return { reason };
    // Asked after the kind: taking a role away both cuts the tokens off and may end eligibility,
    // and the kind's reason says more. Either way the approval does not stand.
    if (approvedBeforeCutOff(person, decision)) return { reason: approvedBeforeCutOffReason };
    return undefined;
  } catch (error) {
    ctx.log.error({ err: error, txn: request.id }, 'whether an approval still stands could not be decided: it does not count');
    return { reason: 'whether the approval still stands could not be decided (fail closed)', undecided: true };
  }
}

/** Why an approval given before its approver's cut-off no longer stands (the `not_counted` reason). */
export const approvedBeforeCutOffReason = 'the approver’s tokens were cut off (sign out everywhere, a recovery, roles taken away) after the approval';

/**
 * Whether the approver's tokens were cut off at or after their decision: the person rule of token
 * liveness (src/identity/lifecycle.ts `liveUnder`) asked of the decision as of a token issued at its
 * time — an approval, like a token, was given on an authentication the cut-off declared untrustworthy.
 */
export function approvedBeforeCutOff(person: PersonStanding, decision: Pick<ApprovalDecision, 'at'>): boolean {
  return !liveUnder(person, decision.at);
}

/** What the rules read of an approver: one read by primary key; undefined for no such person. */
async function standingOf(ctx: Context, userId: string): Promise<PersonStanding | undefined> {
  if (userId.length > 64) return undefined;
  return ctx.storage.db.selectFrom('users').select(['status', 'lock_reason', 'tokens_valid_after']).where('id', '=', userId).executeTakeFirst();
}
