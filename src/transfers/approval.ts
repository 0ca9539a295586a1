import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { ApprovalDescription } from '../approvals/kinds.ts';
import type { Approver } from '../approvals/independence.ts';
import { decisionsOf, type ApprovalRequest, type ApproverProof } from '../approvals/requests.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { findUser } from '../identity/users.ts';
import type { Database } from '../storage/schema.ts';
import { cooldownMsOf, versionOfRequest } from './address-book.ts';
import { changeMaxAuthAgeSeconds, destinationApproverRole, destinationReviewRole, type DestinationChangeContent } from './change-control.ts';
import { leisOfDesks } from '../audit/scope.ts';

/**
 * The second person's side of an address-book change (approval kind `transfer_destination`,
 * src/approvals/kinds/transfer-destination.ts; docs/transfers.md "Destination control"). The one
 * decision rule (src/approvals/requests.ts) already makes each approver someone other than the
 * person who asked and checks the phishing-resistant level; here:
 * - the approver is an active person of the legal entity whose book it is (a desk of it), who
 *   signed in within the last five minutes (a token proof);
 * - an ordinary change: a holder of `approver`;
 * - a change held for review (asked from a new device): one holder of `approver` and one of
 *   `compliance`, two different people — each approval must fill a role the other does not;
 * - apply's change (nobody stepped up behind it): two holders of `approver`.
 */
export async function destinationApproverProblem(ctx: Context, request: ApprovalRequest, approver: Approver, proof: ApproverProof): Promise<string | undefined> {
  const content = request.content as unknown as DestinationChangeContent;
  const person = await findUser(ctx, approver.userId);
  if (!person || person.status !== 'active') return 'not an active person';
  if (proof.method === 'token' && epochSeconds(ctx.clock) - proof.authTime > changeMaxAuthAgeSeconds) return 'authentication not fresh (more than 5 minutes old)';
  if (!(await leisOfDesks(ctx, person.desks)).has(content.lei)) return `not a person of legal entity ${content.lei}`;
  if (content.review_reason === undefined) {
    return person.roles.includes(destinationApproverRole) ? undefined : `not a holder of ${destinationApproverRole}`;
  }
  const earlier = (await decisionsOf(ctx.storage.db, request.id)).filter((d) => d.decision === 'approve' && d.approver !== person.id);
  const roles = await Promise.all(earlier.map(async (d) => (await findUser(ctx, d.approver))?.roles ?? []));
  return reviewComposition([...roles, person.roles]) ? undefined : `a change held for review needs one holder of ${destinationApproverRole} and one of ${destinationReviewRole}, different people`;
}

/**
 * Whether the approvers' roles (one list per person, in order) can still make, or make, one
 * `approver` and one `compliance`: with one person, they hold either; with two, one holds each.
 */
export function reviewComposition(people: readonly (readonly string[])[]): boolean {
  const a = (roles: readonly string[]) => roles.includes(destinationApproverRole);
  const c = (roles: readonly string[]) => roles.includes(destinationReviewRole);
  if (people.length === 1) return a(people[0]!) || c(people[0]!);
  if (people.length === 2) return (a(people[0]!) && c(people[1]!)) || (c(people[0]!) && a(people[1]!));
  return false;
}

/**
 * In the decision's transaction, when the request settles: approved — the version becomes
 * `approved`, usable after the legal entity's cool-down from now (`transfer_destination.approved`
 * with the approvers, the cool-down and `usable_from`); denied — `rejected`
 * (`transfer_destination.rejected`). A version removed meanwhile stays removed (no event). A held
 * change whose approvers do not make one approver and one compliance person (two decided at the
 * same moment) is rejected, not approved: fail closed.
 */
export async function settleDestinationChange(ctx: Context, trx: Transaction<Database>, request: ApprovalRequest, outcome: 'approved' | 'denied'): Promise<AuditEvent[]> {
  const version = await versionOfRequest(trx, request.id);
  if (!version || (version.status !== 'pending' && version.status !== 'held_for_review')) return [];
  const content = request.content as unknown as DestinationChangeContent;
  const now = ctx.clock.now();
  const approvers = (await decisionsOf(trx, request.id)).filter((d) => d.decision === 'approve').map((d) => d.approver);
  const base = { txn: request.id, subject: version.destinationId, details: { destination_id: version.destinationId, version: version.version, lei: content.lei, account: content.account, destination_key: content.destination_key, requested_by: version.requestedBy, approval_request: request.id } };
  const where = (q: ReturnType<typeof update>) => q.where('destination_id', '=', version.destinationId).where('version', '=', version.version).where('status', 'in', ['pending', 'held_for_review']);
  const update = () => trx.updateTable('transfer_destination_versions');
  let reason: string | undefined = outcome === 'denied' ? 'denied' : undefined;
  if (!reason && content.review_reason !== undefined) {
    const inTrx = { storage: { ...ctx.storage, db: trx } } as unknown as Pick<Context, 'storage'>;
    const roles = await Promise.all(approvers.map(async (id) => (await findUser(inTrx, id))?.roles ?? []));
    if (!reviewComposition(roles)) reason = 'review_incomplete';
  }
  if (reason) {
    await where(update().set({ status: 'rejected', decided_at: now, approved_by: JSON.stringify(approvers) })).execute();
    return [{ ...base, type: 'transfer_destination.rejected', actor: approvers.at(-1) ?? request.requester, decision: { allow: false, reasons: [reason] }, details: { ...base.details, reason, approved_by: approvers } }];
  }
  const cooldownMs = await cooldownMsOf(trx, ctx.config, content.lei);
  const usableFrom = now + cooldownMs;
  await where(update().set({ status: 'approved', approved_by: JSON.stringify(approvers), approved_at: now, usable_from: usableFrom, cooldown_ms: cooldownMs })).execute();
  return [
    {
      ...base,
      type: 'transfer_destination.approved',
      actor: approvers.at(-1) ?? request.requester,
      decision: { allow: true, reasons: [content.review_reason !== undefined ? 'approved after review' : 'approved'] },
      details: { ...base.details, approved_by: approvers, ...(content.review_reason !== undefined ? { review_reason: content.review_reason } : {}), cooldown_ms: cooldownMs, usable_from: usableFrom },
    },
  ];
}

/** A change in plain language: what the approver makes possible. */
export function describeDestinationChange(request: ApprovalRequest): ApprovalDescription {
  const c = request.content as unknown as DestinationChangeContent;
  const d = c.destination;
  const where =
    d.kind === 'iban'
      ? `IBAN ${String(d.iban)}${d.bic !== undefined ? ` (BIC ${String(d.bic)})` : ''}${d.name_hmac !== undefined ? ', beneficiary named (see the address book)' : ''}`
      : d.kind === 'blockchain'
        ? `blockchain account ${String(d.account)}`
        : `internal account ${String(d.account)}`;
  return {
    title: `${c.change === 'add' ? 'New' : 'Changed'} transfer destination for account ${c.account}`,
    lines: [
      { label: 'Legal entity', value: c.lei },
      { label: 'Account', value: c.account },
      { label: 'Destination', value: where },
      ...(c.label !== undefined ? [{ label: 'Label', value: c.label }] : []),
      { label: 'Version', value: String(c.version) },
      { label: 'Asked by', value: `${c.requested_by} (${c.via})` },
      ...(c.review_reason !== undefined ? [{ label: 'Held for review', value: `${c.review_reason}: a ${destinationApproverRole} and a ${destinationReviewRole} person approve` }] : []),
      { label: 'Approving', value: 'lets money be moved from this account to this destination once its cool-down has passed' },
    ],
  };
}
