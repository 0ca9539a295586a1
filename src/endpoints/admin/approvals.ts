import type { FastifyRequest } from 'fastify';
import { authScheme, stepUp } from './step-up.ts';
import { adminOperation } from '../../admin/authorize.ts';
import { ownTokenRefusal, personCaller } from '../../admin/person-caller.ts';
import { approvalView, approverOf, decidableRequests, deciderRole, decisionView, requestIdPattern, type ApprovalView } from '../../approvals/deciders.ts';
import { approvalKindOf } from '../../approvals/kinds/index.ts';
import { decideApprovalRequest, decisionsOf, findApprovalRequest, maxReasonLength, type ApprovalDecision, type ApprovalRequest, type ApproverProof } from '../../approvals/requests.ts';
import { countPeople, recordPeopleRead } from '../../audit/reads.ts';
import type { Context } from '../../context.ts';
import { objectBody, pathParams } from '../../http/api-operation.ts';
import type { User } from '../../identity/users.ts';
import { presentedTokenKid } from '../../keys/compromise-signer.ts';
import { OAuthError } from '../../oauth-error.ts';
import type { AccessTokenClaims } from '../../tokens/claims.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/** How recent the person's authentication behind an approvals token must be: 5 minutes (RFC 9470 `max_age`). */
export const approvalsMaxAuthAgeSeconds = 300;

/**
 * The admin API for an approvals app (docs/approvals.md "The approver's side"): the same decisions
 * as the approvals page, by a PERSON holding an access token for `<issuer>/admin` with the scope
 * `approvals:decide`. The rules, in order:
 * 1. requireAdmin: a live token of ours for the admin audience, presented with its binding, with
 *    the scope (401 / 403 insufficient_scope as the rest of the admin API); then the request's
 *    shape against the operation's schema (400 invalid_request naming the member);
 * 2. a person's token: issued under a person's consent grant (`grant_id`, `auth_time`), for
 *    themselves (no `act`: a delegate never approves for someone), the person active — else 403
 *    access_denied (a client's own token decides nothing);
 * 3. deciding: the person authenticated at most 5 minutes ago (`auth_time`), else 401
 *    insufficient_user_authentication with max_age=300 (RFC 9470 §3); the token's `acr` reaches
 *    the kind's level (checked by the decision rule; else 401 insufficient_user_authentication
 *    with acr_values); then decideApprovalRequest with the proof {method: token, acr, amr,
 *    auth_time, jti, client_id} — independence, eligibility, single decision, expiry. The subject
 *    of a CIBA request only denies it here: their own approval needs their passkey (the approvals
 *    page), since the token could be one the asking client itself got by CIBA (403 access_denied).
 *
 * - GET /admin/approvals: `{ approvals: [view] }`, the pending requests the person may decide
 * - GET /admin/approvals/{id}: `{ approval: view, role?, decisions }`, for a request the person may
 *   decide, is the subject of, or decided; else 404
 * - POST /admin/approvals/{id}/decision `{ decision: "approve" | "deny", reason? }`: the request as
 *   it stands after the decision, with `settled` when it settled. Refusals: 404 not_found, 403
 *   access_denied (not independent, not eligible, a subject approving without a passkey), 409 invalid_request (no longer pending, decided
 *   already), 400 invalid_request (a denial without a reason), 401 insufficient_user_authentication.
 * Every refusal of a decision is audited (`approval.refused`).
 */
export const adminApprovals: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/approvals`;
    const params = pathParams({ id: "the approval request's id" });

    app.get(base, adminOperation(ctx, 'approvals:decide', { tag: 'approvals', summary: 'List the pending approval requests the person may decide' }), async (request) => {
      const { user, claims } = await personOf(ctx, request);
      const listed = await decidableRequests(ctx, approverOf(user), tokenProof(request, claims));
      const approvals = await Promise.all(listed.map(async ({ request: r, kind, role }) => ({ ...viewJson(await approvalView(ctx, r, kind)), role })));
      // Each request names people (its subject, a person who asked): the read is on the record before
      // the answer leaves (AMENDMENTS, console). An empty queue names no one, and an app polls it.
      if (listed.length > 0) {
        const people = await countPeople(ctx, { ids: listed.flatMap(({ request: r }) => peopleNamedBy(r)) });
        await recordPeopleRead(ctx, claims, request.id, { people, via: 'approvals', requests: listed.length });
      }
      return { approvals };
    });

    app.get<{ Params: { id: string } }>(`${base}/:id`, adminOperation(ctx, 'approvals:decide', {
      tag: 'approvals',
      summary: 'Read an approval request the person may decide, is the subject of, or decided, with its decisions',
      params,
    }), async (request) => {
      const { user, claims } = await personOf(ctx, request);
      const id = request.params.id;
      const stored = requestIdPattern.test(id) ? await findApprovalRequest(ctx.storage.db, id) : undefined;
      const kind = stored && approvalKindOf(stored.kind);
      if (!stored || !kind) throw notFound();
      const decisions = await decisionsOf(ctx.storage.db, stored.id);
      const decided = decisions.some((d) => d.approver === user.id);
      // As whom they may decide it now, from the request and decisions just read (deciders.ts).
      const role = await deciderRole(ctx, stored, approverOf(user), tokenProof(request, claims), decided);
      const involved = role !== undefined || stored.subject === user.id || decided;
      if (!involved) throw notFound();
      const answer = { approval: viewJson(await approvalView(ctx, stored, kind)), ...(role ? { role } : {}), decisions: decisions.map(decisionView) };
      // Its subject, who asked and who decided are people: on the record before the answer leaves,
      // under the subject's id when it is a person (not a key or an account), as a read of one person is.
      const people = await countPeople(ctx, { ids: peopleNamedBy(stored, decisions) });
      const subject = (await countPeople(ctx, { ids: [stored.subject] })) === 1 ? stored.subject : undefined;
      await recordPeopleRead(ctx, claims, request.id, { people, via: 'approvals', request: stored.id }, subject);
      return answer;
    });

    app.post<{ Params: { id: string } }>(`${base}/:id/decision`, adminOperation(ctx, 'approvals:decide', {
      tag: 'approvals',
      summary: 'Approve or deny an approval request',
      description:
        "By a person's own token, authenticated in the last 5 minutes at the level the request's kind asks (else 401 insufficient_user_authentication). " +
        'A denial needs a reason. The subject of a request only denies it here: their approval needs their passkey (the approvals page).',
      params,
      body: objectBody(
        {
          decision: { type: 'string', enum: [...decisions] },
          reason: { type: 'string', maxLength: maxReasonLength, description: 'why; required for a denial' },
        },
        ['decision'],
      ),
    }), async (request) => {
      const { user, claims } = await personOf(ctx, request);
      const body = decisionBody(request.body);
      const id = request.params.id;
      const stored = requestIdPattern.test(id) ? await findApprovalRequest(ctx.storage.db, id) : undefined;
      const kind = stored && approvalKindOf(stored.kind);
      if (!stored || !kind) throw notFound();
      const scheme = authScheme(request);
      const proof = tokenProof(request, claims);
      // Rule 3's age, by the one rule (src/admin/person-caller.ts): personOf passed the token's other faults.
      if (ownTokenRefusal(claims, undefined, { maxAgeSeconds: approvalsMaxAuthAgeSeconds, clock: ctx.clock }) === 'stale_authentication') {
        await ctx.audit.record({
          type: 'approval.refused',
          txn: stored.id,
          actor: user.id,
          subject: stored.subject,
          ...(stored.clientId !== undefined ? { client: stored.clientId } : {}),
          requestId: request.id,
          decision: { allow: false, reasons: ['stale_authentication'] },
          details: { request_id: stored.id, kind: stored.kind, decision: body.decision, method: 'token', auth_time: claims.auth_time ?? null },
        });
        throw stepUp(scheme, 'a decision needs an authentication of the last 5 minutes: sign in again', { max_age: approvalsMaxAuthAgeSeconds });
      }
      const outcome = await decideApprovalRequest(ctx, kind, {
        requestId: stored.id,
        approver: approverOf(user),
        proof,
        decision: body.decision,
        ...(body.reason !== undefined ? { reason: body.reason } : {}),
        httpRequestId: request.id,
      });
      if (outcome.ok) {
        return { approval: viewJson(await approvalView(ctx, outcome.request, kind)), ...(outcome.settled ? { settled: outcome.settled } : {}) };
      }
      const refusal = outcome.refusal;
      if (refusal === 'insufficient_authentication') {
        const level = stored.subject === user.id && stored.subjectApproval === 'pending' ? kind.subjectAcr : kind.approverAcr;
        throw stepUp(scheme, 'a decision on this request needs a stronger authentication', { acr_values: level, max_age: approvalsMaxAuthAgeSeconds });
      }
      if (refusal === 'not_found' || refusal === 'wrong_kind') throw notFound();
      if (refusal === 'not_pending' || refusal === 'expired' || refusal === 'already_decided') {
        throw new OAuthError('invalid_request', refusal === 'already_decided' ? 'you decided this request already' : 'the request is no longer pending', { status: 409 });
      }
      // The subject approves their own request only with a passkey over what they see (the approvals
      // page): a token could be the asking client's own, got from an earlier approval (issue 15 review).
      if (refusal === 'subject_passkey_required') throw new OAuthError('access_denied', 'approve your own request with your passkey on the approvals page; a token can only deny it', { detail: refusal });
      if (refusal === 'reason_required') throw new OAuthError('invalid_request', `a denial needs a reason of 1 to ${maxReasonLength} characters`);
      throw new OAuthError('access_denied', 'you may not decide this request', { detail: refusal });
    });
  },
};

/** The person behind the admin token (rule 2), with the token's claims. */
async function personOf(ctx: Context, request: FastifyRequest): Promise<{ user: User; claims: AccessTokenClaims }> {
  const claims = request.admin!;
  // A token holding approvals:decide that no person stands behind is worth seeing: each refusal is recorded.
  const refuse = async (reason: 'client_token' | 'delegated_token', description: string): Promise<never> => {
    const id = (request.params as { id?: string } | undefined)?.id;
    await ctx.audit.record({
      type: 'approval.refused',
      requestId: request.id,
      actor: claims.sub ?? claims.client_id,
      client: claims.client_id,
      ...(id !== undefined ? { txn: id } : {}),
      decision: { allow: false, reasons: [reason] },
      details: { method: 'token', operation: `${request.method} ${request.routeOptions.url ?? ''}`, ...(id !== undefined ? { request_id: id } : {}) },
    });
    throw new OAuthError('access_denied', description);
  };
  // A decision's proof names when the person signed in (tokenProof): a token without it is no one's sign-in.
  const caller = claims.auth_time === undefined ? ({ ok: false, reason: 'client_token' } as const) : await personCaller(ctx, claims, {});
  if (caller.ok) return { user: caller.user, claims };
  if (caller.reason === 'client_token') return refuse('client_token', "the approvals API needs a person's own token, not a client's");
  if (caller.reason === 'delegated_token') return refuse('delegated_token', 'a delegated token cannot decide approvals');
  throw new OAuthError('access_denied', 'the person of this token may not decide approvals');
}

/**
 * The token as the proof of a decision (src/approvals/requests.ts `token`): its facts, never the
 * token — with the key that signed it and its grant, for the kinds that ask (key_compromise).
 */
function tokenProof(request: FastifyRequest, claims: AccessTokenClaims): ApproverProof {
  const kid = presentedTokenKid(request.headers.authorization);
  return {
    method: 'token',
    acr: claims.acr ?? '',
    amr: claims.amr ?? [],
    authTime: claims.auth_time ?? 0,
    jti: claims.jti,
    clientId: claims.client_id,
    ...(kid !== undefined ? { kid } : {}),
    ...(claims.grant_id !== undefined ? { grantId: claims.grant_id } : {}),
  };
}

/** Who a request's view may name as a person: its subject (unless a key or an account), a person who asked, each approver. */
function peopleNamedBy(request: ApprovalRequest, decisions: readonly ApprovalDecision[] = []): string[] {
  return [request.subject, ...(request.requesterType === 'user' ? [request.requester] : []), ...decisions.map((d) => d.approver)];
}

/** What a person decides on a request. */
const decisions = ['approve', 'deny'] as const satisfies readonly ApprovalDecision['decision'][];

/** `{decision, reason?}`, nothing else. */
function decisionBody(body: unknown): { decision: 'approve' | 'deny'; reason?: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new OAuthError('invalid_request', 'the body must be a JSON object {decision, reason}');
  const { decision, reason, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) throw new OAuthError('invalid_request', `unknown member ${unknown[0]!.slice(0, 40)}`);
  if (typeof decision !== 'string' || !(decisions as readonly string[]).includes(decision)) throw new OAuthError('invalid_request', `decision must be ${decisions.join(' or ')}`);
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > maxReasonLength)) throw new OAuthError('invalid_request', `reason must be a string of at most ${maxReasonLength} characters`);
  return { decision: decision as ApprovalDecision['decision'], ...(reason !== undefined ? { reason } : {}) };
}

function notFound(): OAuthError {
  return new OAuthError('not_found', 'no such approval request for you');
}

/** The admin API's spelling of a view (snake_case members). */
function viewJson(view: ApprovalView): Record<string, unknown> {
  return {
    id: view.id,
    kind: view.kind,
    status: view.status,
    title: view.description.title,
    lines: view.description.lines,
    requester: view.requester,
    subject: view.subject,
    ...(view.client ? { client: view.client } : {}),
    ...(view.bindingMessage !== undefined ? { binding_message: view.bindingMessage } : {}),
    ...(view.authorizationDetails ? { authorization_details_text: view.authorizationDetails } : {}),
    content: view.content,
    digest: view.digest,
    approvals: view.approvals,
    required_approvals: view.requiredApprovals,
    subject_approval: view.subjectApproval,
    created_at: view.createdAt,
    expires_at: view.expiresAt,
  };
}
