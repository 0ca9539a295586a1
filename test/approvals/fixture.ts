/**
 * What the approver's-side tests start from: a request kind whose eligibility the test decides (the
 * real kinds' rules — the four-eyes policy, recovery approvers, custodians — are tested with them),
 * put in place of `ciba` in the server's list of kinds for the test and restored after it.
 */
import type { TestContext } from 'node:test';
import type { ApprovalKind } from '../../src/approvals/kinds.ts';
import { approvalKinds } from '../../src/approvals/kinds/index.ts';
import { openApprovalRequest, type ApprovalRequest, type NewApprovalRequest } from '../../src/approvals/requests.ts';
import type { Context } from '../../src/context.ts';
import { acr } from '../../src/identity/acr.ts';
import { orderDetail } from '../authorization/fixture.ts';

/** A request's content as a CIBA request's would be: a binding message and an order. */
export const orderContent = { binding_message: 'Order 7781 for ACC-7781', authorization_details: [orderDetail] };

/**
 * Replaces the `ciba` kind for this test: second persons need a phishing-resistant proof, and
 * anyone whose username starts with `sup` is eligible (a supervisor); restored after the test.
 */
export function useTestKind(t: Pick<TestContext, 'after'>, overrides: Partial<ApprovalKind> = {}): ApprovalKind {
  const original = approvalKinds.ciba;
  const kind: ApprovalKind = {
    name: 'ciba',
    approverAcr: acr.phishingResistant,
    subjectAcr: acr.phishingResistant,
    async eligible(_ctx, _request, approver) {
      return approver.username.startsWith('sup') ? undefined : 'not a supervisor';
    },
    describe: (request) => ({ title: 'Large order', lines: [{ label: 'Order', value: String((request.content as { binding_message?: unknown }).binding_message ?? '') }] }),
    ...overrides,
  };
  approvalKinds.ciba = kind;
  t.after(() => {
    approvalKinds.ciba = original;
  });
  return kind;
}

/** Opens an order request of the desk application about `subject`, needing one second person. */
export function openOrderRequest(ctx: Pick<Context, 'audit' | 'clock'>, subject: string, input: Partial<NewApprovalRequest> = {}): Promise<ApprovalRequest> {
  return openApprovalRequest(ctx, {
    kind: 'ciba',
    requester: 'web-app',
    requesterType: 'client',
    subject,
    clientId: 'web-app',
    content: orderContent,
    requiredApprovals: 1,
    subjectMustApprove: false,
    ttlMs: 600_000,
    ...input,
  });
}
