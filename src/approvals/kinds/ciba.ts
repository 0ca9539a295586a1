import type { AuditEvent } from '../../audit/events.ts';
import { describeAuthorizationDetails, tokenAuthorizationDetails, type AuthorizationDetail } from '../../authorization/authorization-details.ts';
import { tokenFormKeys } from '../../transfers/destination-input.ts';
import { approveRequestIn } from '../../authorization/consent.ts';
import { notifyClient } from '../../ciba/notify.ts';
import { cibaRequestOf, setCibaGrant } from '../../ciba/store.ts';
import { acr } from '../../identity/acr.ts';
import { fourEyesEligible, fourEyesStillEligible } from '../four-eyes.ts';
import type { ApprovalDescription, ApprovalKind, DescribedPeople } from '../kinds.ts';
import type { ApprovalRequest } from '../requests.ts';

/**
 * A CIBA authentication request (OpenID CIBA Core 1.0, src/endpoints/backchannel): the person the
 * token is for approves on their own device, and, when policy asks, second persons too.
 * - `describe`: which application asks, for whom, what (scopes, orders), the binding message;
 * - `onSettled` (approved), in the decision's transaction: the subject's approval is their consent
 *   — their grant to the client is extended with the request's scopes and authorization_details
 *   (src/authorization/consent.ts, `consent.granted`) and the CIBA row names it, so the tokens die
 *   with the grant or the person;
 * - `afterSettled`: in ping mode, the client is told (src/ciba/notify.ts, §10.2).
 */
export const cibaKind: ApprovalKind = {
  name: 'ciba',
  approverAcr: acr.phishingResistant,
  subjectAcr: acr.phishingResistant,
  // The subject signs what they see: a token proof could be the asking client's own (issue 15 review).
  subjectProof: 'passkey',
  eligible: fourEyesEligible,
  // An approval counts at settlement and at redemption only while the approver is still eligible.
  stillStands: fourEyesStillEligible,
  describe: describeCiba,

  async onSettled(ctx, trx, request, outcome) {
    if (outcome !== 'approved') return [];
    const ciba = await cibaRequestOf(trx, request.id);
    if (!ciba) return [];
    const p = ciba.payload;
    const grant = await approveRequestIn(trx, ctx.clock.now(), request.subject, {
      clientId: ciba.clientId,
      ...(p.resource !== undefined ? { resource: p.resource } : {}),
      scopes: p.scopes,
      oidcScopes: p.oidcScopes,
      authorizationDetails: p.authorizationDetails,
    });
    await setCibaGrant(trx, request.id, grant.id);
    const event: AuditEvent = {
      type: 'consent.granted',
      txn: request.id,
      actor: request.subject,
      subject: request.subject,
      client: ciba.clientId,
      ...(p.resource !== undefined ? { audience: p.resource } : {}),
      scopes: [...p.oidcScopes, ...p.scopes],
      decision: { allow: true, reasons: ['approved by the person (CIBA)'] },
      details: { request_id: request.id, grant_id: grant.id, authorization_details: tokenAuthorizationDetails(p.authorizationDetails, tokenFormKeys(ctx.config)), via: 'ciba' },
    };
    return [event];
  },

  afterSettled(ctx, request, outcome) {
    void (async () => {
      const ciba = await cibaRequestOf(ctx.storage.db, request.id);
      if (ciba?.mode === 'ping') await notifyClient(ctx, ciba, outcome);
    })().catch((error: unknown) => ctx.log.error({ err: error, txn: request.id }, 'CIBA ping failed'));
  },
};

/**
 * A CIBA request in plain language, from its content (what every approver sees and signs) and the
 * subject's username, read when it is shown: the content names the subject by id only, so the
 * username is never in `approval.requested` or an approval's evidence (docs/privacy.md). A request
 * stored before carries `username` in its content: shown as it is.
 */
export function describeCiba(request: ApprovalRequest, people: DescribedPeople = {}): ApprovalDescription {
  const c = request.content as {
    client_id?: string;
    client_name?: string;
    scope?: string;
    audience?: string;
    authorization_details?: AuthorizationDetail[];
    binding_message?: string;
    username?: string;
    acr_values?: string[];
  };
  const application = c.client_name !== undefined ? `${c.client_name} (${c.client_id})` : String(c.client_id);
  const username = people.subjectUsername ?? c.username ?? request.subject;
  const lines: ApprovalDescription['lines'] = [
    { label: 'Application', value: application },
    { label: 'For', value: username },
    { label: 'Access', value: `${c.scope ?? ''} at ${c.audience ?? ''}`.trim() },
  ];
  for (const line of describeAuthorizationDetails(c.authorization_details ?? [])) lines.push({ label: 'Order', value: line });
  if (c.binding_message !== undefined) lines.push({ label: 'Binding message', value: c.binding_message });
  if (c.acr_values?.length) lines.push({ label: 'Requested sign-in level', value: c.acr_values.join(', ') });
  if (request.actors.length > 0) lines.push({ label: 'On behalf of, through', value: request.actors.join(' ← ') });
  return { title: `${application} asks to sign in ${username}`, lines };
}
