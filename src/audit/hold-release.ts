import type { Transaction } from 'kysely';
import type { ApprovalRequest } from '../approvals/requests.ts';
import { openApprovalRequest } from '../approvals/requests.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import type { AuditEvent } from './events.ts';
import { holdDetails, holdFromRow, HoldError, type Hold } from './holds.ts';

/**
 * The two-person release of a legal hold (issue 17 item 5; docs/audit.md "Legal hold"). Placing
 * a hold only keeps more, so one person (or the CLI) places it; releasing it lets evidence go, so
 * it takes two people holding `compliance`:
 * - a compliance person asks (the admin API, with their own token): one more compliance person
 *   approves — the one rule of src/approvals/requests.ts makes sure it is someone else;
 * - a client or the CLI asks (nobody signed in stands behind it): two compliance people approve.
 * The approval request (kind `hold_release`, src/approvals/kinds/hold-release.ts) is decided on
 * the approvals page or through the admin approvals API like every other; approving releases the
 * hold in the decision's transaction (`audit.hold_released`), a denial or expiry leaves it in
 * force. One release request waits per hold at a time.
 */
export const holdReleaseRole = 'compliance';

/** How long a release request waits for its approvals: a day, the approvals rule's longest. */
export const holdReleaseTtlMs = 24 * 3600_000;

export interface HoldReleaseContent {
  hold: Record<string, unknown>;
  reason: string;
  requested_by: string;
}

export class HoldReleaseConflict extends HoldError {
  override name = 'HoldReleaseConflict';
}

const reasonPattern = /^[^\p{Cc}]{1,500}$/u;

/**
 * Opens the release of an active hold. `requester`: a compliance person (`user`, checked by the
 * caller) or a client / the CLI operator (`client`); refuses a hold that is unknown or released
 * (HoldError), or whose release already waits (HoldReleaseConflict).
 */
export async function requestHoldRelease(
  ctx: Pick<Context, 'audit' | 'clock' | 'storage'>,
  input: { holdId: string; reason: string | undefined; requester: string; requesterType: 'user' | 'client'; requestId?: string },
): Promise<{ hold: Hold; request: ApprovalRequest }> {
  const reason = input.reason?.trim();
  if (!reason || !reasonPattern.test(reason)) throw new HoldError('a release needs its reason: 1 to 500 printable characters');
  const row = await ctx.storage.db.selectFrom('audit_holds').selectAll().where('id', '=', input.holdId).executeTakeFirst();
  if (!row) throw new HoldError(`no legal hold ${input.holdId}`);
  const hold = holdFromRow(row);
  if (hold.releasedAt !== undefined) throw new HoldError(`legal hold ${hold.id} was released already`);
  if (row.release_request !== null) {
    const waiting = await ctx.storage.db.selectFrom('approval_requests').select(['status', 'expires_at']).where('id', '=', row.release_request).executeTakeFirst();
    if (waiting?.status === 'pending' && Number(waiting.expires_at) > ctx.clock.now()) {
      throw new HoldReleaseConflict(`the release of legal hold ${hold.id} already waits for approval (request ${row.release_request})`);
    }
  }
  const content: HoldReleaseContent = { hold: holdDetails(hold), reason, requested_by: input.requester };
  const request = await openApprovalRequest(
    ctx,
    {
      kind: 'hold_release',
      requester: input.requester,
      requesterType: input.requesterType,
      // Whom the hold is about: a person it holds never approves letting their own evidence go.
      subject: hold.kind === 'subject' ? hold.value! : hold.id,
      content: content as unknown as Record<string, unknown>,
      requiredApprovals: input.requesterType === 'user' ? 1 : 2,
      subjectMustApprove: false,
      ttlMs: holdReleaseTtlMs,
    },
    async (trx, opened) => {
      // Conditional: of two requests at once, one names itself; the other's transaction fails.
      const claimed = await trx
        .updateTable('audit_holds')
        .set({ release_request: opened.id })
        .where('id', '=', hold.id)
        .where('released_at', 'is', null)
        .where((eb) => (row.release_request === null ? eb('release_request', 'is', null) : eb('release_request', '=', row.release_request)))
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1) throw new HoldReleaseConflict(`the release of legal hold ${hold.id} changed meanwhile; look again`);
      return [];
    },
    input.requestId !== undefined ? { requestId: input.requestId } : {},
  );
  return { hold, request };
}

/** In the decision's transaction: an approved release ends the hold and names who asked and approved. */
export async function settleHoldRelease(trx: Transaction<Database>, request: ApprovalRequest, outcome: 'approved' | 'denied', now: number): Promise<AuditEvent[]> {
  const content = request.content as unknown as HoldReleaseContent;
  const holdId = String(content.hold.hold_id);
  if (outcome === 'denied') return [];
  const approvers = await trx.selectFrom('approval_decisions').select('approver').where('request_id', '=', request.id).where('decision', '=', 'approve').orderBy('at').execute();
  const releasedBy = [request.requester, ...approvers.map((a) => a.approver)];
  const released = await trx
    .updateTable('audit_holds')
    .set({ released_at: now, released_by: JSON.stringify(releasedBy) })
    .where('id', '=', holdId)
    .where('release_request', '=', request.id)
    .where('released_at', 'is', null)
    .executeTakeFirst();
  if (Number(released.numUpdatedRows) !== 1) return [];
  return [
    {
      type: 'audit.hold_released',
      txn: request.id,
      actor: approvers.at(-1)?.approver ?? request.requester,
      details: { ...content.hold, release_request: request.id, reason: content.reason, released_by: releasedBy, released_at: now },
    },
  ];
}
