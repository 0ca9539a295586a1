import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Authentication } from '../../authorization/contract.ts';
import { approvalView, approverOf, decidableRequest, decidableRequests, requestIdPattern, type DeciderRole } from '../../approvals/deciders.ts';
import type { ApprovalKind } from '../../approvals/kinds.ts';
import { approvalKindOf } from '../../approvals/kinds/index.ts';
import { approveRequestWithPasskey, startRequestApproval } from '../../approvals/request-ceremony.ts';
import { decideApprovalRequest, findApprovalRequest, maxReasonLength, type ApprovalRequest, type ApproverProof } from '../../approvals/requests.ts';
import type { Context } from '../../context.ts';
import { acrRank, acrSatisfies } from '../../identity/acr.ts';
import { listPasskeys, passkeyAcr, passkeyAmr } from '../../identity/passkeys/store.ts';
import { readSession } from '../../identity/sessions.ts';
import { findUser, type User } from '../../identity/users.ts';
import { sendError } from '../../http/errors.ts';
import { sendJson } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { signedOutAccountPage } from '../../ui/account.ts';
import { approvalPage, approvalsListPage } from '../../ui/account-approvals.ts';
import { passkeyScriptSources } from '../../ui/assets.ts';
import { csrfBinding, csrfToken } from '../../ui/csrf.ts';
import { guarded, seeOther, sendErrorPage, sendPage } from '../../ui/respond.ts';
import { issuerPath } from '../endpoint.ts';
import { forbidden, signedInForm } from './forms.ts';

/**
 * The approver's side of requests a second person approves, on the account pages
 * (docs/approvals.md "The approver's side"), for every kind (CIBA, recovery, break-glass):
 *
 * GET /account/approvals
 *   1. no valid session → the signed-out account page;
 *   2. the pending requests this person may decide (src/approvals/deciders.ts): about them, with
 *      their own approval pending, or as an independent, eligible second person who has not
 *      decided yet; each in its kind's words, with who asked, for whom, until when.
 *
 * GET /account/approvals/{id}
 *   1. no valid session → the signed-out account page;
 *   2. a request that does not exist, or that this person may not decide → 404 page (the same
 *      page: an id says nothing of whose it is);
 *   3. the request in plain words and exactly (its content), Approve with a passkey, Deny with a
 *      reason.
 *
 * POST /account/approvals/{id}/options (JSON, for the page's passkey script)
 *   1. a foreign Origin, no valid session, or a missing or wrong CSRF token → 403 `access_denied`;
 *   2. a request this person may not decide → 404 `not_found`; no passkey → 400 `invalid_request`;
 *   3. startRequestApproval: the ceremony's options (challenge = request digest ‖ new nonce); no-store.
 *
 * POST /account/approvals/{id}/decision (decision = approve, credential | decision = deny, reason)
 *   1. a foreign Origin, no valid session, or a missing or wrong CSRF token → 403 page, nothing changes;
 *   2. an unknown request, or one of a kind this server does not know → 404 page;
 *   3. approve: approveRequestWithPasskey (the ceremony, the assertion, the evidence, then
 *      decideApprovalRequest with the passkey proof); deny: decideApprovalRequest with the
 *      session as proof and the reason (required, at most 500 characters). Every refusal is
 *      audited (`approval.refused`) and answered with the request's page and why (400), or, when
 *      the person may no longer decide it, a page saying so (403 / 409); never a 5xx;
 *   4. 303 to /account/approvals.
 */
export function accountApprovalRoutes(app: FastifyInstance, ctx: Context): void {
  const base = issuerPath(ctx.config.issuer);
  const listPath = `${base}/account/approvals`;
  const listUrl = `${ctx.config.issuer}/account/approvals`;

  /** The person of a valid session, with their passkeys. */
  async function signedIn(request: FastifyRequest): Promise<{ session: Authentication; user: User } | undefined> {
    const session = await readSession(ctx, request.headers.cookie);
    const user = session && (await findUser(ctx, session.userId));
    return session && user ? { session, user } : undefined;
  }

  /**
   * The proof this person would give on this page, for deciding what they are shown: their
   * strongest passkey's level, else their session's. The decision is taken with the real one.
   */
  async function pageProof(session: Authentication, userId: string): Promise<ApproverProof> {
    const passkeys = await listPasskeys(ctx, userId);
    const strongest = passkeys.sort((a, b) => acrRank(passkeyAcr(b, ctx.config.passkeyAttestation)) - acrRank(passkeyAcr(a, ctx.config.passkeyAttestation)))[0];
    return strongest
      ? { method: 'passkey', acr: passkeyAcr(strongest, ctx.config.passkeyAttestation), amr: passkeyAmr(strongest), evidence: {} }
      : sessionProof(session);
  }

  const notFound = (request: FastifyRequest, reply: FastifyReply) =>
    sendErrorPage(ctx, request, reply, {
      status: 404,
      title: 'No such request',
      message: 'This request does not exist, is no longer waiting, or is not one you may decide. Nothing was changed.',
    });

  /** A request's page for this person. */
  async function showRequest(
    request: FastifyRequest,
    reply: FastifyReply,
    person: { session: Authentication; user: User },
    found: { request: ApprovalRequest; kind: ApprovalKind; role: DeciderRole },
    view: { status: number; error?: string },
  ): Promise<FastifyReply> {
    const passkeys = await listPasskeys(ctx, person.user.id);
    const level = found.role === 'subject' ? found.kind.subjectAcr : found.kind.approverAcr;
    const csrf = csrfBinding(ctx.config.issuer, request.headers.cookie);
    const path = `${listPath}/${encodeURIComponent(found.request.id)}`;
    const canApprove = passkeys.length > 0;
    return sendPage(reply, {
      status: view.status,
      csp: 'ownForm',
      ...(canApprove ? { scripts: passkeyScriptSources(ctx.config.issuer) } : {}),
      page: approvalPage({
        base,
        signedInAs: person.user.name ?? person.user.username,
        csrfToken: csrfToken(csrf.secret, person.session.sessionId, 'account'),
        item: { view: await approvalView(ctx, found.request, found.kind), role: found.role },
        action: `${path}/decision`,
        optionsUrl: `${path}/options`,
        canApprove,
        ...(acrSatisfies(person.session.acr, level) ? {} : { denyLocked: 'Your sign-in is not strong enough to deny this request. Sign in again with a passkey, then deny it here, or approve it with your passkey.' }),
        ...(view.error ? { error: view.error } : {}),
      }),
      ...(csrf.setCookie ? { setCookie: [csrf.setCookie] } : {}),
    });
  }

  app.get(listPath, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const person = await signedIn(request);
      if (!person) return sendPage(reply, { status: 200, csp: 'static', page: signedOutAccountPage(base) });
      const listed = await decidableRequests(ctx, approverOf(person.user), await pageProof(person.session, person.user.id));
      const items = await Promise.all(listed.map(async ({ request: r, kind, role }) => ({ view: await approvalView(ctx, r, kind), role })));
      return sendPage(reply, { status: 200, csp: 'static', page: approvalsListPage({ base, signedInAs: person.user.name ?? person.user.username, items }) });
    }),
  );

  app.get<{ Params: { id: string } }>(`${listPath}/:id`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const person = await signedIn(request);
      if (!person) return sendPage(reply, { status: 200, csp: 'static', page: signedOutAccountPage(base) });
      const found = await decidableRequest(ctx, request.params.id, approverOf(person.user), await pageProof(person.session, person.user.id));
      if (!found) return notFound(request, reply);
      return showRequest(request, reply, person, found, { status: 200 });
    }),
  );

  app.post<{ Params: { id: string } }>(`${listPath}/:id/options`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const checked = await signedInForm(ctx, request);
      if (!checked) return sendError(reply, new OAuthError('access_denied', 'the form could not be checked; reload the page'));
      const found = await decidableRequest(ctx, request.params.id, approverOf(checked.user), await pageProof(checked.session, checked.user.id));
      if (!found) return sendError(reply, new OAuthError('not_found', 'no such request waiting for your decision'));
      const options = await startRequestApproval(ctx, found.request, checked.user.id);
      if (!options) return sendError(reply, new OAuthError('invalid_request', 'you have no passkey to approve with'));
      return sendJson(reply, options);
    }),
  );

  app.post<{ Params: { id: string } }>(`${listPath}/:id/decision`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const checked = await signedInForm(ctx, request);
      if (!checked) return forbidden(ctx, request, reply);
      const { session, user, form } = checked;
      const id = request.params.id;
      const stored = requestIdPattern.test(id) ? await findApprovalRequest(ctx.storage.db, id) : undefined;
      const kind = stored && approvalKindOf(stored.kind);
      if (!stored || !kind) return notFound(request, reply);
      const approver = approverOf(user);
      const decision = form.get('decision');
      let outcome: { ok: true } | { ok: false; refusal: string };
      if (decision === 'approve') {
        outcome = await approveRequestWithPasskey(ctx, kind, stored, approver, form.get('credential') ?? '', request.id);
      } else if (decision === 'deny') {
        const reason = form.get('reason') ?? '';
        outcome = await decideApprovalRequest(ctx, kind, { requestId: stored.id, approver, proof: sessionProof(session), decision: 'deny', reason: reason.slice(0, maxReasonLength + 1), httpRequestId: request.id });
      } else {
        return sendErrorPage(ctx, request, reply, { status: 400, title: 'Approve or deny', message: 'The form said neither approve nor deny. Nothing was changed.' });
      }
      if (outcome.ok) return seeOther(reply, listUrl);
      // The person may still decide it (a bad answer, a missing reason): their page again, with why.
      const found = await decidableRequest(ctx, stored.id, approver, await pageProof(session, user.id));
      const message = refusalMessage(outcome.refusal, found !== undefined);
      if (found && message.retry) return showRequest(request, reply, checked, found, { status: 400, error: message.text });
      return sendErrorPage(ctx, request, reply, { status: message.status, title: 'Not decided', message: message.text });
    }),
  );
}

/** The session as the proof of a denial (src/approvals/requests.ts `session`). */
function sessionProof(session: Authentication): ApproverProof {
  return { method: 'session', acr: session.acr, amr: session.amr, authTime: session.authTime };
}

/**
 * What a person is told of a refusal (the audit event has the exact reason): their request's page
 * again with why (`retry`) while they may still decide it, else a page saying they may not (403)
 * or that it no longer waits (409).
 */
function refusalMessage(refusal: string, mayStillDecide: boolean): { text: string; status: number; retry: boolean } {
  const nothing = 'Nothing was changed.';
  if (refusal.startsWith('approver_') || refusal.startsWith('not_eligible') || refusal === 'not_found' || refusal === 'wrong_kind') {
    return { text: `You may not decide this request. ${nothing}`, status: 403, retry: false };
  }
  if (!mayStillDecide) return { text: `This request is no longer waiting for your decision. ${nothing}`, status: 409, retry: false };
  switch (refusal) {
    case 'reason_required':
      return { text: `Give a reason for denying it, of at most ${maxReasonLength} characters. ${nothing}`, status: 400, retry: true };
    case 'insufficient_authentication':
      return { text: `Your sign-in or passkey is not strong enough for this request. ${nothing}`, status: 400, retry: true };
    case 'subject_passkey_required':
      return { text: `Approve your own request with your passkey. ${nothing}`, status: 400, retry: true };
    case 'no_ceremony':
    case 'expired':
    case 'changed':
    case 'proof_used':
      return { text: `The passkey request was answered already, expired, or was for other content. Approve again. ${nothing}`, status: 400, retry: true };
    default:
      return { text: `Your passkey could not be verified for this request. Try again. ${nothing}`, status: 400, retry: true };
  }
}
