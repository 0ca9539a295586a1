import { acr } from '../../identity/acr.ts';
import { passwordSetterOf, settleRoleGrant, type RoleGrantContent } from '../../identity/role-grants.ts';
import { roleGrantRole } from '../../identity/roles.ts';
import type { ApprovalKind } from '../kinds.ts';
import { freshHolderOf } from './fresh-holder.ts';

/**
 * The grant of a guarded role to a person (src/identity/role-grants.ts, docs/approvals.md
 * `role_grant`): approved by one person holding `admin`, active, read from their record now, at
 * the phishing-resistant level and freshly (a token proof at most five minutes after its
 * sign-in). The one rule (src/approvals/requests.ts) makes them someone other than the
 * administrator who asked and than the person receiving the role; this kind adds the
 * administrator who set the person's password (`users.password_set_by`, as the request recorded
 * it or the record says now), who could sign in as them — refused as `approval.refused`
 * (`not_eligible: set the person's password`), whatever they decide. Approving adds the role in
 * the decision's transaction, after reading the person again (`user.role_granted`).
 */
export const roleGrantKind: ApprovalKind = {
  name: 'role_grant',
  approverAcr: acr.phishingResistant,
  // Nobody approves as the subject of a grant (`subjectMustApprove` is false).
  subjectAcr: acr.phishingResistantHardware,
  async eligible(ctx, request, approver, proof, options) {
    const holder = await freshHolderOf(roleGrantRole)(ctx, request, approver, proof, options);
    if (holder !== undefined) return holder;
    const content = request.content as unknown as RoleGrantContent;
    if (content.credential_set_by === approver.userId || (await passwordSetterOf(ctx.storage.db, request.subject))?.by === approver.userId) return setPasswordRefusal;
    return undefined;
  },
  describe(request, people) {
    const content = request.content as unknown as RoleGrantContent;
    return {
      title: `Grant of the role ${content.role}`,
      lines: [
        { label: 'Person', value: `${people?.subjectUsername ?? request.subject} (${request.subject})` },
        { label: 'Role', value: content.role },
        { label: 'Asked by', value: content.requested_by },
        { label: 'Reason', value: content.reason },
        { label: 'Password set by', value: passwordSetText(content) },
        { label: 'Approving', value: `gives the person ${content.role} at once, if they are still active and may hold it beside their other roles` },
      ],
    };
  },
  onSettled: (ctx, trx, request, outcome) => settleRoleGrant(ctx, trx, request, outcome),
};

/** Why the administrator who set the person's password does not decide (after `not_eligible: `). */
const setPasswordRefusal = "set the person's password";

/** Who set the person's password when the grant was asked, and when, in words the approver reads. */
function passwordSetText(content: RoleGrantContent): string {
  if (content.credential_set_by === undefined) return 'not recorded (asked before Clearance began to record it)';
  if (content.credential_set_at === null || content.credential_set_at === undefined) return 'not recorded (not set since Clearance began to record it)';
  if (content.credential_set_by === null) return `the operator (the clearance CLI), ${content.credential_set_at}`;
  const who = content.credential_set_by.startsWith('scim:') ? `the SCIM client ${content.credential_set_by.slice(5)}` : `${content.credential_set_by} through the admin API`;
  return `${who}, ${content.credential_set_at}: whoever set a password can sign in with it`;
}
