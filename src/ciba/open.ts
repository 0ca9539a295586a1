import { randomUUID } from 'node:crypto';
import { fourEyesRequirement } from '../approvals/four-eyes.ts';
import { openApprovalRequest } from '../approvals/requests.ts';
import { tokenAuthorizationDetails } from '../authorization/authorization-details.ts';
import { cibaGrantType } from '../clients/metadata.ts';
import { asRequestError, refuseBeforeAsking } from '../authorization/kyc.ts';
import { OAuthError } from '../oauth-error.ts';
import { tokenFormKeys } from '../transfers/destination-input.ts';
import { userinfoAudience } from '../authorization/scopes.ts';
import type { Client } from '../clients/store.ts';
import type { Context } from '../context.ts';
import { actChainDelegation } from './act-chain.ts';
import type { CibaAuthenticationRequest } from './authentication-request.ts';
import { promptRefusal, promptRefusalError, recordPromptRefusal } from './prompts.ts';
import { authReqIdHash, defaultIntervalSeconds, insertCibaRequest, newAuthReqId, sealAuthReqId, sealNotificationToken, type CibaMode } from './store.ts';

/** CIBA §7.3: what the client is answered. */
export interface OpenedCibaRequest {
  /** The bearer credential the client polls with; returned once, stored as a hash. */
  authReqId: string;
  expiresIn: number;
  interval: number;
  /** The approval request id (the `txn`). */
  requestId: string;
}

/**
 * Opens a checked backchannel authentication request (docs/approvals.md "CIBA"):
 * 0. what the token endpoint would refuse whoever approves is refused now, the same check as
 *    before a consent page (src/authorization/kyc.ts `refuseBeforeAsking`: src/risk/kyc/enforce.ts
 *    `refuseFrozenOrSanctioned`, a nameless IBAN transfer screened by its address book's name),
 *    and nothing is opened — no one is asked to approve what would be refused: a frozen subject,
 *    or a frozen firm owning the client or a client of the login_hint_token's act chain
 *    (src/ciba/act-chain.ts), is access_denied (§13; the token endpoint's invalid_grant
 *    is no error of this request), audited `policy.denied` (kyc-frozen); every counterparty its
 *    authorization_details name is screened (AMENDMENTS: "counterparties named in
 *    authorization_details are screened too"): a listed one, or a frozen one, is
 *    invalid_authorization_details (RFC 9396 §5), audited `policy.denied` and alerted
 *    `screening.matched`;
 * 1. the four-eyes requirement of the token it would issue (src/approvals/four-eyes.ts: how many
 *    second persons must approve besides the subject);
 * 2. in ONE transaction, the approval request (kind `ciba`: requester = the client, subject = the
 *    person, actors = the act chain's subjects, the subject must approve, `content` = everything the
 *    approvers see, the person named by id) with `approval.requested`, the start of its trade (`transactions`: the request's
 *    id is the txn of its events and its token) and the CIBA row: the auth_req_id's hash, the
 *    delivery mode, the sealed client_notification_token, the interval, what the token carries —
 *    unless the client may not prompt the person now (src/ciba/prompts.ts: too many of its requests
 *    already wait for them, or they just denied several of its requests): access_denied (§13),
 *    nothing opened, recorded as `token.refused`.
 */
export async function openCibaRequest(ctx: Context, client: Client, mode: CibaMode, request: CibaAuthenticationRequest, meta: { requestId: string }): Promise<OpenedCibaRequest> {
  const clientId = client.metadata.client_id;
  const { payload, hint } = request;
  const audience = payload.resource ?? userinfoAudience(ctx.config.issuer);
  const scopes = payload.resource !== undefined ? payload.scopes : ['openid'];
  await refuseBeforeAsking(ctx, {
    subject: { type: 'User', id: hint.subject.id },
    clientId,
    audience,
    scopes,
    authorizationDetails: payload.authorizationDetails,
    requestId: meta.requestId,
    grantType: cibaGrantType,
    // A login_hint_token's act chain goes into the token: a frozen firm owning a client of it is refused too.
    ...(payload.act ? { delegation: actChainDelegation(hint.subject.id, payload.act) } : {}),
  }).catch((error: unknown) => {
    throw error instanceof OAuthError ? asRequestError(error) : error;
  });
  const requirement = await fourEyesRequirement(ctx, {
    userId: hint.subject.id,
    clientId,
    audience,
    scopes,
    authorizationDetails: payload.authorizationDetails,
    requestId: meta.requestId,
  });
  const authReqId = newAuthReqId();
  const id = randomUUID();
  const now = ctx.clock.now();
  const expiresAt = now + request.expiresIn * 1000;
  const content: Record<string, unknown> = {
    type: 'ciba',
    client_id: clientId,
    ...(client.metadata.client_name !== undefined ? { client_name: client.metadata.client_name } : {}),
    scope: [...payload.oidcScopes, ...payload.scopes].join(' '),
    audience,
    // The content is recorded in `approval.requested`: personal data (travel rule) as its digest.
    authorization_details: tokenAuthorizationDetails(payload.authorizationDetails, tokenFormKeys(ctx.config)),
    ...(request.bindingMessage !== undefined ? { binding_message: request.bindingMessage } : {}),
    // The person by id, not username: the content is recorded in `approval.requested` and in every
    // passkey approval's evidence, where only top-level details members are sealed (docs/privacy.md).
    // The approvals pages show the username, read from the users table (src/approvals/kinds/ciba.ts).
    subject: hint.subject.id,
    ...(payload.acrValues.length > 0 ? { acr_values: payload.acrValues } : {}),
  };
  const masterKey = ctx.identity.factorKeys.master;
  const prompt = { clientId, subject: hint.subject.id, requestId: id, now };
  await openApprovalRequest(
    ctx,
    {
      id,
      kind: 'ciba',
      requester: clientId,
      requesterType: 'client',
      subject: hint.subject.id,
      clientId,
      actors: hint.actors,
      content,
      requiredApprovals: requirement.approvals,
      subjectMustApprove: true,
      ttlMs: request.expiresIn * 1000,
    },
    async (trx) => {
      // Prompt bombing: refused here, in the transaction that would open it (rolled back with it).
      const refusal = await promptRefusal(trx, prompt, ctx.config.cibaMaxOpenRequests);
      if (refusal) throw promptRefusalError(refusal);
      // The request starts its trade: its id is the txn (src/transactions/txn.ts), never another client's to start.
      await trx.insertInto('transactions').values({ txn: id, client_id: clientId, started_at: now }).execute();
      await insertCibaRequest(trx, {
        idHash: authReqIdHash(authReqId),
        requestId: id,
        clientId,
        mode,
        ...(mode === 'ping' ? { notificationEndpoint: client.metadata.backchannel_client_notification_endpoint! } : {}),
        ...(request.clientNotificationToken !== undefined ? { sealedNotificationToken: sealNotificationToken(masterKey, request.clientNotificationToken, id) } : {}),
        ...(mode === 'ping' ? { sealedAuthReqId: sealAuthReqId(masterKey, authReqId, id) } : {}),
        interval: defaultIntervalSeconds,
        payload,
        createdAt: now,
        expiresAt,
      });
      return [];
    },
    { requestId: meta.requestId },
  ).catch(async (error: unknown) => {
    await recordPromptRefusal(ctx, error, prompt, meta.requestId);
    throw error;
  });
  return { authReqId, expiresIn: request.expiresIn, interval: defaultIntervalSeconds, requestId: id };
}
