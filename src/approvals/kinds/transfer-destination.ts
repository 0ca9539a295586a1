import { acr } from '../../identity/acr.ts';
import { describeDestinationChange, destinationApproverProblem, settleDestinationChange } from '../../transfers/approval.ts';
import type { ApprovalKind } from '../kinds.ts';

/**
 * A change of a transfer address book (src/transfers/change-control.ts, docs/transfers.md
 * "Destination control"): approved by a person of the same legal entity holding `approver`,
 * phishing-resistantly and freshly — never the person who asked (the one rule of
 * src/approvals/requests.ts); a change asked from a new device also by a `compliance` person; one
 * asked by apply by two approvers. Approving starts the destination's cool-down in the decision's
 * transaction (`transfer_destination.approved`); a denial rejects it.
 */
export const transferDestinationKind: ApprovalKind = {
  name: 'transfer_destination',
  approverAcr: acr.phishingResistant,
  // Nobody approves as the subject of a change (the subject is the destination, not a person).
  subjectAcr: acr.phishingResistantHardware,
  eligible: (ctx, request, approver, proof) => destinationApproverProblem(ctx, request, approver, proof),
  describe: (request) => describeDestinationChange(request),
  onSettled: (ctx, trx, request, outcome) => settleDestinationChange(ctx, trx, request, outcome),
};
