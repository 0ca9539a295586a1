import { epochSeconds } from '../../clock.ts';
import { acr } from '../../identity/acr.ts';
import { findUser } from '../../identity/users.ts';
import { settleCertificateIssue } from '../../pki/approval.ts';
import { defaultApproverRole } from '../../pki/profiles.ts';
import type { ApprovalKind } from '../kinds.ts';
import { maxProofAgeSeconds } from './break-glass.ts';

/**
 * The issuance of a certificate whose profile says `approval: required` (src/pki/issuance.ts,
 * docs/pki.md): approved by one person holding the profile's approver role (default
 * `pki-approver`), active, at the phishing-resistant level and freshly. The one rule of
 * src/approvals/requests.ts makes the approver someone other than whoever asked and than the
 * holder. Approving signs the certificate in the decision's transaction.
 */
export const certificateIssueKind: ApprovalKind = {
  name: 'certificate_issue',
  approverAcr: acr.phishingResistant,
  subjectAcr: acr.phishingResistantHardware,
  async eligible(ctx, request, approver, proof) {
    const role = typeof request.content.approver_role === 'string' ? request.content.approver_role : defaultApproverRole;
    const person = await findUser(ctx, approver.userId);
    if (!person || person.status !== 'active') return 'not an active person';
    if (!person.roles.includes(role)) return `not a holder of ${role}`;
    if (proof.method === 'token' && epochSeconds(ctx.clock) - proof.authTime > maxProofAgeSeconds) return 'authentication not fresh (more than 5 minutes old)';
    return undefined;
  },
  describe(request) {
    const c = request.content;
    return {
      title: `Certificate for ${String(c.holder)} (profile ${String(c.profile)})`,
      lines: [
        { label: 'Profile', value: String(c.profile) },
        { label: 'Holder', value: String(c.holder) },
        { label: 'Key', value: `${String(c.key_type)}, SHA-256 ${String(c.spki_sha256)}` },
        { label: 'Lifetime', value: `${Number(c.lifetime_seconds) / 3600} h` },
        { label: 'Asked by', value: String(c.requested_by) },
        { label: 'Approving', value: 'issues the certificate at once; its holder can then authenticate and sign with that key' },
      ],
    };
  },
  onSettled: (ctx, trx, request, outcome) => settleCertificateIssue(ctx, trx, request, outcome),
};
