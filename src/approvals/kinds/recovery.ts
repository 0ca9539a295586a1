import { acr } from '../../identity/acr.ts';
import { passwordSetterRefusal, settleRecovery } from '../../identity/recovery/approval.ts';
import { helpDeskRole, recoveryApproverRole, type RecoveryContent } from '../../identity/recovery/requests.ts';
import { recoverySettings } from '../../identity/recovery/settings.ts';
import type { ApprovalKind } from '../kinds.ts';
import type { ApprovalRequest } from '../requests.ts';

/**
 * A recovery of a lost authenticator (src/identity/recovery, docs/recovery.md "Who approves").
 * Decided by the one rule (src/approvals/requests.ts `decideApprovalRequest`: never the requester
 * nor the person recovering, a phishing-resistant proof, one decision each); this kind adds:
 * - the approver holds `recovery-approver` and is active, read from their record now (not from
 *   what the caller says of them);
 * - the help desk never approves: a holder of `help-desk` is never eligible, whatever else they
 *   hold (AMENDMENTS "Approvals and recovery");
 * - a request the help desk opened needs an approver outside the help desk: besides the role,
 *   someone who shares no desk with the help-desk requester;
 * - never whoever set the person's password (they know the link's other half);
 * - when apply says `recovery.distinct_desks: true`, someone who shares no desk with the person
 *   (nor the requester) either — through the independence rule's `distinctDesks`, and again here
 *   from the stored desks;
 * - approval (one is enough) wakes the enrolment link, ends all the person's access and removes
 *   the lost credentials, in the decision's transaction (src/identity/recovery/approval.ts).
 */
export const recoveryKind: ApprovalKind = {
  name: 'recovery',
  approverAcr: acr.phishingResistant,
  // The person never approves their own recovery (`subjectMustApprove` is false).
  subjectAcr: acr.phishingResistantHardware,

  async independence(ctx, request) {
    const desks = await partyDesks(ctx, request);
    return desks.length > 0 ? { distinctDesks: true, partyDesks: desks } : {};
  },

  async eligible(ctx, request, approver) {
    const row = await ctx.storage.db.selectFrom('users').select(['status', 'roles', 'desks']).where('id', '=', approver.userId).executeTakeFirst();
    if (!row || row.status !== 'active') return 'the approver is not an active person';
    const roles = JSON.parse(row.roles) as string[];
    if (roles.includes(helpDeskRole)) return 'the help desk never approves a recovery';
    if (!roles.includes(recoveryApproverRole)) return `the approver does not hold ${recoveryApproverRole}`;
    const setter = await passwordSetterRefusal(ctx.storage.db, request.subject, approver.userId);
    if (setter) return setter;
    const desks = JSON.parse(row.desks) as string[];
    const shared = (await partyDesks(ctx, request)).filter((desk) => desks.includes(desk));
    if (shared.length > 0) return 'the approver shares a desk with the person or the help desk that asked';
    return undefined;
  },

  describe(request) {
    const content = request.content as unknown as RecoveryContent;
    const lost = (content.lost ?? []).map((f) => (f === 'passkeys' ? 'all their passkeys' : 'their authenticator app and its recovery codes')).join(' and ');
    return {
      title: 'Recovery of a lost authenticator',
      lines: [
        { label: 'Person', value: `${content.person?.username ?? request.subject} (${request.subject})` },
        { label: 'Opened by', value: content.opened_by === 'help_desk' ? `the help desk: ${content.requester?.username ?? request.requester}` : 'the person themselves, signed in with the factors they still hold' },
        { label: 'Identity checked by', value: String(content.verification_method) },
        { label: 'Evidence', value: String(content.evidence_ref) },
        { label: 'Approving removes', value: lost },
        { label: 'Approving also', value: 'signs the person out everywhere and ends every token they hold; a single-use link then lets them enrol a new passkey' },
        // A leaver coming back holds no password: the link alone enrols (src/lifecycle/credential-hold.ts).
        ...(content.credentials_held ? [{ label: 'No password', value: 'this person left and came back: they hold no password, so the link alone enrols their passkey — the identity check above is all that stands behind it' }] : []),
      ],
    };
  },

  onSettled: (ctx, trx, request, outcome) => settleRecovery(ctx, trx, request, outcome),
};

/**
 * The desks an approver must not share: the help-desk requester's, when the help desk opened the
 * request; and the person's and the requester's when apply sets `recovery.distinct_desks`.
 */
async function partyDesks(ctx: Parameters<NonNullable<ApprovalKind['independence']>>[0], request: ApprovalRequest): Promise<string[]> {
  const content = request.content as unknown as RecoveryContent;
  const settings = await recoverySettings(ctx.storage.db);
  const ids = settings.distinctDesks ? [request.subject, request.requester] : content.opened_by === 'help_desk' ? [request.requester] : [];
  if (ids.length === 0) return [];
  const rows = await ctx.storage.db.selectFrom('users').select('desks').where('id', 'in', ids).execute();
  return [...new Set(rows.flatMap((row) => JSON.parse(row.desks) as string[]))];
}
