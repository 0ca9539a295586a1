import type { ApprovalKind, ApprovalKindName } from '../kinds.ts';
import { breakGlassKind } from './break-glass.ts';
import { certificateIssueKind } from './certificate-issue.ts';
import { modelApprovalKind } from './model-approval.ts';
import { cibaKind } from './ciba.ts';
import { holdReleaseKind } from './hold-release.ts';
import { recoveryKind } from './recovery.ts';
import { transferDestinationKind } from './transfer-destination.ts';
import { keyCompromiseKind } from './key-compromise.ts';
import { roleGrantKind } from './role-grant.ts';

/**
 * Every kind of request a second person approves, by name (src/approvals/kinds.ts). A request of a
 * kind not listed here cannot be decided (fail closed).
 */
export const approvalKinds: Partial<Record<ApprovalKindName, ApprovalKind>> = {
  ciba: cibaKind,
  recovery: recoveryKind,
  break_glass: breakGlassKind,
  hold_release: holdReleaseKind,
  certificate_issue: certificateIssueKind,
  model_approval: modelApprovalKind,
  transfer_destination: transferDestinationKind,
  key_compromise: keyCompromiseKind,
  role_grant: roleGrantKind,
};

/** The kind of a request, or undefined when this server does not know it. */
export function approvalKindOf(name: string): ApprovalKind | undefined {
  return Object.hasOwn(approvalKinds, name) ? approvalKinds[name as ApprovalKindName] : undefined;
}
