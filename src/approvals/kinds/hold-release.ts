import { holdReleaseRole, settleHoldRelease, type HoldReleaseContent } from '../../audit/hold-release.ts';
import { acr } from '../../identity/acr.ts';
import type { ApprovalKind } from '../kinds.ts';
import { freshHolderOf } from './fresh-holder.ts';

/**
 * The release of a legal hold (src/audit/hold-release.ts, docs/audit.md "Legal hold"): approved
 * by people holding `compliance`, active, read from their record now, at the phishing-resistant
 * level and freshly (a token proof at most five minutes after its sign-in). The one rule
 * (src/approvals/requests.ts) makes each a different person from whoever asked and from a person
 * the hold is about; one approval after a compliance person asked, two after a client or the CLI.
 * Approving releases the hold in the decision's transaction (`audit.hold_released`).
 */
export const holdReleaseKind: ApprovalKind = {
  name: 'hold_release',
  approverAcr: acr.phishingResistant,
  // Nobody approves as the subject of a release (`subjectMustApprove` is false).
  subjectAcr: acr.phishingResistantHardware,
  eligible: freshHolderOf(holdReleaseRole),
  describe(request) {
    const content = request.content as unknown as HoldReleaseContent;
    const hold = content.hold;
    const scope = hold.kind === 'range' ? `${new Date(Number(hold.from)).toISOString()} to ${new Date(Number(hold.to)).toISOString()}` : `${String(hold.kind)} ${String(hold.value)}`;
    return {
      title: `Release of legal hold ${String(hold.hold_id)}`,
      lines: [
        { label: 'Matter', value: String(hold.matter_ref) },
        { label: 'Holds', value: scope },
        { label: 'Placed by', value: `${String(hold.placed_by)} at ${new Date(Number(hold.placed_at)).toISOString()}` },
        { label: 'Asked by', value: content.requested_by },
        { label: 'Reason', value: content.reason },
        { label: 'Approving', value: 'lets audit pruning remove the events this hold kept, once the retention policy allows' },
      ],
    };
  },
  onSettled: (ctx, trx, request, outcome) => settleHoldRelease(trx, request, outcome, ctx.clock.now()),
};
