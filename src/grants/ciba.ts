import { approvalsClaim } from '../approvals/claims.ts';
import { approvalKindOf } from '../approvals/kinds/index.ts';
import { consumeApprovalRequestIn, decisionsOf, effectiveStatus, findApprovalRequest, withdrawApprovedRequest, type ApprovalDecision } from '../approvals/requests.ts';
import { lapsedApprovals } from '../approvals/standing.ts';
import { isGrantActive } from '../authorization/consent.ts';
import { consumeCibaRequestIn, findCibaRequest, recordPoll } from '../ciba/store.ts';
import { cibaGrantType } from '../clients/metadata.ts';
import { acrSatisfies, isKnownAcr, strongestAcr } from '../identity/acr.ts';
import { isPersonTokenLive } from '../identity/lifecycle.ts';
import { approvalDigest, entriesToApprove } from '../jose/approval-digest.ts';
import { safeEqual } from '../jose/index.ts';
import { OAuthError } from '../oauth-error.ts';
import { chooseAccessTarget, type TokenBasis } from '../tokens/user-tokens.ts';
import { defineGrant } from './grant.ts';
import { issuePersonTokens } from './person-tokens.ts';

/**
 * The CIBA grant (OpenID CIBA Core 1.0 §10.1, §11; docs/approvals.md "CIBA"): the client redeems
 * an auth_req_id. The rules, in order:
 * 1. `auth_req_id` is present (invalid_request) and one of ours (invalid_grant);
 * 2. it was issued to this client (§10.1: "the OP MUST ... verify that the auth_req_id was issued
 *    to the authenticated Client", else invalid_grant) and not redeemed before (invalid_grant);
 * 3. it has not expired (§11 expired_token);
 * 4. while its approval request is pending: the polling interval (§7.3) — a poll sooner than
 *    `interval` seconds after the previous one is `slow_down`, and the interval grows by 5 s for
 *    this and every later poll (§11); otherwise `authorization_pending` (§11);
 * 5. denied (or withdrawn): `access_denied` (§11, HTTP 400);
 * 6. approved: the subject's own approval reaches the request's acr_values (else access_denied);
 *    the person may still hold tokens, on an approval given after their last cut-off (the token's
 *    auth_time); the consent grant the approval extended is still active;
 *    the second persons' approvals (only when the request asked for any) still stand
 *    (src/approvals/standing.ts: each approver still an active person, still eligible) — when
 *    fewer stand than the request needs, the request is withdrawn (`approval.completed`, outcome
 *    cancelled) and the answer is access_denied, for good:
 *    a settled request takes no more approvals, so authorization_pending would only have the client
 *    poll until expired_token (§11 access_denied; the client makes a new request);
 * 7. the tokens through the one issuance path for the subject (src/grants/person-tokens.ts): the
 *    access token with `approvals` (the second persons whose approvals stand, src/approvals/claims.ts), `txn` = the
 *    approval request id, acr/amr/auth_time from the subject's own decision (a passkey's, made at
 *    that moment — a decision by any other proof issues nothing),
 *    `authorization_details_digest` when the approved content holds order entries, `act` from a
 *    login_hint_token; an ID token (openid); a refresh token when the client is registered for
 *    refresh_token. `token.issued` names the approval request and each approval's evidence digest;
 * 8. ONE transaction: the approval request approved → consumed and the CIBA row consumed, each by
 *    one conditional update — of two redemptions at once exactly one wins, the other is invalid_grant
 *    and nothing of it is written.
 */
export const ciba = defineGrant({
  grantType: cibaGrantType,
  parameters: ['auth_req_id'],

  async handle({ params, client: authenticated, requestId, dpop, address }, ctx) {
    const clientId = authenticated.client.metadata.client_id;
    const authReqId = params.get('auth_req_id');
    if (authReqId === undefined) throw new OAuthError('invalid_request', 'auth_req_id is required');
    const row = await findCibaRequest(ctx.storage.db, authReqId);
    if (!row) throw invalidGrant('unknown auth_req_id');
    if (!safeEqual(row.clientId, clientId)) throw invalidGrant(`auth_req_id of ${row.clientId} presented by ${clientId}`);
    if (row.consumedAt !== undefined) throw invalidGrant('auth_req_id was already redeemed');
    const now = ctx.clock.now();
    const request = await findApprovalRequest(ctx.storage.db, row.requestId);
    if (!request) throw invalidGrant('the approval request is gone');
    const status = effectiveStatus(request, now);
    if (status === 'consumed') throw invalidGrant('auth_req_id was already redeemed');
    // §11 expired_token: "The auth_req_id has expired. The Client will need to make a new Authentication Request."
    if (now >= row.expiresAt || status === 'expired') throw new OAuthError('expired_token', 'the auth_req_id has expired; make a new authentication request');
    if (status === 'pending') {
      const poll = await recordPoll(ctx.storage.db, row.idHash, now);
      // §11 slow_down: polled sooner than the interval; "the interval MUST be increased by at least 5 seconds".
      if (!poll.ok) throw new OAuthError('slow_down', `poll no more often than every ${poll.interval} seconds`);
      throw new OAuthError('authorization_pending', 'the person has not answered yet');
    }
    // §11 access_denied: "The end-user denied the authorization request" — with HTTP 400 (§11).
    if (status !== 'approved') throw new OAuthError('access_denied', 'the request was denied', { status: 400 });

    const decisions = await decisionsOf(ctx.storage.db, request.id);
    const own = decisions.find((d) => d.role === 'subject' && d.decision === 'approve');
    if (!own) throw invalidGrant('the subject has not approved');
    // The token's auth_time is the subject's proof's: a passkey over the request, at the decision.
    // Never a token's decision (it could be the asking client's own token; src/approvals/kinds/ciba.ts).
    if (own.method !== 'passkey') throw invalidGrant('the subject did not approve with a passkey');
    const wanted = strongestAcr(row.payload.acrValues.filter(isKnownAcr));
    if (wanted !== undefined && !acrSatisfies(own.acr, wanted)) throw new OAuthError('access_denied', 'the approval did not reach the requested acr_values', { status: 400 });
    // The person rule (src/identity/lifecycle.ts) at the subject's own approval, the authentication
    // the token stands on (its auth_time): a cut-off after it (sign out everywhere, a recovery, roles
    // taken away) ends it, even when a second person settled the request after the cut-off.
    if (!(await isPersonTokenLive(ctx.storage.db, request.subject, own.at))) throw invalidGrant('the person may no longer hold tokens, or not on an approval given before their cut-off');
    if (row.grantId === undefined || !(await isGrantActive(ctx.storage.db, row.grantId))) throw invalidGrant('the consent grant of the approval is no longer active');
    const kind = approvalKindOf(request.kind);
    if (!kind) throw invalidGrant('the approval request is of an unknown kind');
    // A request that asked no second person has no second persons' approvals to carry: one recorded
    // anyway (the decision rule refuses them; src/approvals/requests.ts) neither names itself in the
    // token nor withholds its refresh token (src/grants/person-tokens.ts).
    const asked = request.requiredApprovals > 0 ? decisions : decisions.filter((d) => d.role === 'subject');
    const lapsed = await lapsedApprovals(ctx, kind, request, asked);
    const standing = asked.filter((d) => !lapsed.some((l) => l.approver === d.approver));
    if (lapsed.length > 0 && standing.filter((d) => d.role === 'approver' && d.decision === 'approve').length < request.requiredApprovals) {
      // A check that failed (a database or lookup fault) proves nothing against the approval: no
      // token now, and the request is kept for the next poll — only a known lapse ends it.
      if (lapsed.some((l) => l.undecided)) throw new OAuthError('authorization_pending', 'whether the approvals still stand could not be checked just now; poll again');
      await withdrawApprovedRequest(ctx, request, lapsed, { requestId });
      // §11 access_denied, HTTP 400: the approvals the request settled with no longer stand, and a settled request takes no more.
      const denied = new OAuthError('access_denied', 'a second person’s approval no longer stands; make a new authentication request', { status: 400, detail: 'approval_no_longer_stands' });
      denied.about = { txn: request.id, subject: request.subject };
      throw denied;
    }

    const p = row.payload;
    const entries = entriesToApprove(p.authorizationDetails);
    const basis: TokenBasis = {
      userId: request.subject,
      clientId,
      grantId: row.grantId,
      ...(p.resource !== undefined ? { resource: p.resource } : {}),
      scopes: p.scopes,
      oidcScopes: p.oidcScopes,
      authorizationDetails: p.authorizationDetails,
      authTime: Math.floor(own.at / 1000),
      acr: own.acr,
      amr: own.amr,
      // The order entries were approved with the request's content: the token names their digest.
      ...(entries.length > 0 ? { approval: { id: request.id, digest: approvalDigest(entries) } } : {}),
      ciba: { txn: request.id, approvals: approvalsClaim(standing), ...(p.act ? { act: p.act } : {}) },
    };
    const target = await chooseAccessTarget(ctx, basis, [], undefined);
    const issued = await issuePersonTokens(ctx, authenticated, basis, target, {
      keys: { dpop, certificateThumbprint: authenticated.certificateThumbprint },
      grantType: cibaGrantType,
      requestId,
      ...(address !== undefined ? { address } : {}),
      details: { approval_request_id: request.id, evidence_digests: evidenceDigests(standing) },
      // DESIGN §7: single use is one conditional update per table; losing the race writes nothing.
      write: (flight) => {
        consumeApprovalRequestIn(flight, ctx.storage.db, request.id, now, 'ciba_not_redeemable');
        consumeCibaRequestIn(flight, ctx.storage.db, row.idHash, now, 'ciba_not_redeemable');
        return { events: [], lostIf: 'ciba_not_redeemable' };
      },
    });
    if (!issued) throw invalidGrant('auth_req_id was already redeemed');
    return issued;
  },
});

/** Every approving decision's evidence digest, the subject's first (what `audit export --txn` links to). */
function evidenceDigests(decisions: readonly ApprovalDecision[]): { sub: string; role: string; evidence_digest: string }[] {
  return decisions
    .filter((d) => d.decision === 'approve')
    .sort((a, b) => (a.role === b.role ? 0 : a.role === 'subject' ? -1 : 1))
    .map((d) => ({ sub: d.approver, role: d.role, evidence_digest: d.evidenceDigest }));
}

function invalidGrant(detail: string): OAuthError {
  // §11 invalid_grant: "The auth_req_id is invalid, expired or was issued to another client".
  return new OAuthError('invalid_grant', 'the auth_req_id is invalid, was already used, or was issued to another client', { detail });
}
