import { afterModelApproval, modelRiskRole, settleModelApproval } from '../../agents/models.ts';
import { acr } from '../../identity/acr.ts';
import type { ApprovalKind } from '../kinds.ts';
import { freshHolderOf } from './fresh-holder.ts';

/**
 * A model version bound to an agent (src/agents/models.ts, docs/agents.md): approved by one person
 * holding `model-risk`, active, phishing-resistantly and freshly; the one rule of
 * src/approvals/requests.ts makes them someone other than the person who validated the model.
 * Approving gives the version trading authority in the decision's transaction.
 */
export const modelApprovalKind: ApprovalKind = {
  name: 'model_approval',
  approverAcr: acr.phishingResistant,
  subjectAcr: acr.phishingResistantHardware,
  eligible: freshHolderOf(modelRiskRole),
  describe(request) {
    const c = request.content;
    return {
      title: `Model ${String(c.version)} for agent ${String(c.agent)}`,
      lines: [
        { label: 'Agent', value: `${String(c.agent)} (${String(c.strategy)}, ${String(c.environment)})` },
        { label: 'Version', value: String(c.version) },
        { label: 'Model digest', value: String(c.model_digest) },
        { label: 'Image digest', value: String(c.image_digest) },
        { label: 'Validated by', value: String(c.validated_by) },
        { label: 'Approving', value: c.retire_previous ? 'gives this version trading authority and takes it from every earlier version (their certificates are revoked)' : 'gives this version trading authority; earlier approved versions keep theirs' },
      ],
    };
  },
  onSettled: (ctx, trx, request, outcome) => settleModelApproval(ctx, trx, request, outcome),
  afterSettled: (ctx, request, outcome) => afterModelApproval(ctx, request, outcome),
};
