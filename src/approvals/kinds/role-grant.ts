import { acr } from '../../identity/acr.ts';
import { settleRoleGrant, type RoleGrantContent } from '../../identity/role-grants.ts';
import { roleGrantRole } from '../../identity/roles.ts';
import type { ApprovalKind } from '../kinds.ts';
import { freshHolderOf } from './fresh-holder.ts';

/**
 * The grant of a guarded role to a person (src/identity/role-grants.ts, docs/approvals.md
 * `role_grant`): approved by one person holding `admin`, active, read from their record now, at
 * the phishing-resistant level and freshly (a token proof at most five minutes after its
 * sign-in). The one rule (src/approvals/requests.ts) makes them someone other than the
 * administrator who asked and than the person receiving the role. Approving adds the role in the
 * decision's transaction, after reading the person again (`user.role_granted`).
 */
export const roleGrantKind: ApprovalKind = {
  name: 'role_grant',
  approverAcr: acr.phishingResistant,
  // Nobody approves as the subject of a grant (`subjectMustApprove` is false).
  subjectAcr: acr.phishingResistantHardware,
  eligible: freshHolderOf(roleGrantRole),
  describe(request, people) {
    const content = request.content as unknown as RoleGrantContent;
    return {
      title: `Grant of the role ${content.role}`,
      lines: [
        { label: 'Person', value: `${people?.subjectUsername ?? request.subject} (${request.subject})` },
        { label: 'Role', value: content.role },
        { label: 'Asked by', value: content.requested_by },
        { label: 'Reason', value: content.reason },
        { label: 'Approving', value: `gives the person ${content.role} at once, if they are still active and may hold it beside their other roles` },
      ],
    };
  },
  onSettled: (ctx, trx, request, outcome) => settleRoleGrant(ctx, trx, request, outcome),
};
