import type { FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import { ownTokenRefusal } from '../../admin/person-caller.ts';
import { objectBody, pathParams, queryParams } from '../../http/api-operation.ts';
import { listBreakGlassAccounts, findBreakGlassAccount } from '../../approvals/break-glass/accounts.ts';
import { activationInForce, findActivation, listActivations, requestActivation, standDown, type Activation } from '../../approvals/break-glass/activations.ts';
import { closeReview, listReviews, reviewView } from '../../approvals/break-glass/reviews.ts';
import { custodianProblem } from '../../approvals/kinds/break-glass.ts';
import { countPeople, recordPeopleRead } from '../../audit/reads.ts';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The admin API of break-glass (docs/recovery.md "Break-glass"), authorized like the rest of the
 * admin API (admin:read to read, admin:write to act). Acting needs a person's token (one issued
 * under a person's consent grant: its `sub` is the person), never a client's own:
 * - GET /admin/break-glass: the emergency accounts, each with its activation in force (if any);
 * - POST /admin/break-glass/{account}/activations `{reason}` (admin:write, a person): opens the
 *   approval request two custodians must approve (201 with its id; 409 while an activation is in
 *   force or a request pending). The custodians decide on their approvals page or through the
 *   generic approvals admin API (the `break_glass` kind, src/approvals/kinds/break-glass.ts);
 * - POST /admin/break-glass/activations/{id}/end (admin:write, its requester or a custodian):
 *   stands it down before its time; anyone else is refused, recorded as `break_glass.refused`
 *   (`not_requester_or_custodian`);
 * - GET /admin/break-glass/activations, GET /admin/break-glass/reviews[?open=true] (admin:read);
 *   these three reads name people (custodians, who asked, who closed a review): each that answers
 *   anything is recorded as `people.reviewed` before the answer leaves, and a read that cannot be
 *   recorded is not answered (AMENDMENTS, console);
 * - POST /admin/break-glass/reviews/{id}/close `{note}` (admin:write, a person with the
 *   `compliance` role whose token is phishing-resistant: acr urn:clearance:acr:phr or above, who
 *   neither requested nor approved the activation).
 * A delegated token (one carrying `act`) acts for no one here, as in the approvals and recovery
 * APIs: break-glass is a person's own act.
 */
export const adminBreakGlass: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/break-glass`;
    const activation = pathParams({ id: "the activation's id (its approval request's id)" });

    app.get(base, adminOperation(ctx, 'admin:read', { tag: 'break-glass', summary: 'List the emergency accounts, each with its activation in force (each read is audited)' }), async (request) => {
      const now = ctx.clock.now();
      const accounts = await listBreakGlassAccounts(ctx.storage.db);
      const listed = await Promise.all(accounts.map(async (a) => ({ account: a, active: await activationInForce(ctx.storage.db, a.name, now) })));
      const answer = {
        accounts: listed.map(({ account: a, active }) => ({ name: a.name, scopes: a.scopes, audience: a.audience, activation_seconds: a.activationSeconds, custodians: a.custodians ?? null, activation: active ? activationView(active) : null })),
      };
      if (accounts.length > 0) {
        const people = await countPeople(ctx, { usernames: accounts.flatMap((a) => a.custodians ?? []), ids: listed.flatMap(({ active }) => (active ? [active.requester] : [])) });
        await recordPeopleRead(ctx, request.admin!, request.id, { people, via: 'break-glass', accounts: accounts.length });
      }
      return answer;
    });

    app.post<{ Params: { account: string } }>(`${base}/:account/activations`, adminOperation(ctx, 'admin:write', {
      tag: 'break-glass',
      summary: 'Ask for an activation of an emergency account (a person)',
      description: 'Opens the approval request two custodians must approve (the `break_glass` kind of the approvals API). 409 while an activation is in force or a request pending.',
      params: pathParams({ account: "the emergency account's name" }),
      body: objectBody({ reason: { type: 'string', description: 'why, 1 to 500 characters' } }, ['reason']),
      success: { status: 201, description: 'The approval request: its id, status, required approvals and expiry' },
    }), async (request, reply) => {
      const person = await personOf(ctx, request, 'request');
      const reason = (request.body as { reason?: unknown } | undefined)?.reason;
      if (typeof reason !== 'string') throw new OAuthError('invalid_request', 'reason is required');
      const outcome = await requestActivation(ctx, { account: request.params.account, requester: person, reason, httpRequestId: request.id });
      if (!outcome.ok) {
        switch (outcome.refusal) {
          case 'unknown_account':
            throw new OAuthError('not_found', 'no such emergency account');
          case 'reason_required':
            throw new OAuthError('invalid_request', 'a reason of 1 to 500 characters is required');
          case 'reason_unrecordable':
            throw new OAuthError('invalid_request', outcome.detail);
          case 'requester_not_active':
            throw new OAuthError('access_denied', 'the requester is not an active person');
          default:
            throw new OAuthError('invalid_request', outcome.refusal === 'already_in_force' ? 'an activation of this account is in force' : 'an activation of this account is already waiting for approval', { status: 409 });
        }
      }
      return reply.code(201).send({ request_id: outcome.request.id, status: outcome.request.status, required_approvals: outcome.request.requiredApprovals, expires_at: outcome.request.expiresAt });
    });

    app.get(`${base}/activations`, adminOperation(ctx, 'admin:read', { tag: 'break-glass', summary: 'List the activations (each read is audited)' }), async (request) => {
      const activations = await listActivations(ctx.storage.db);
      const answer = { activations: activations.map(activationView) };
      if (activations.length > 0) {
        const people = await countPeople(ctx, { ids: activations.map((a) => a.requester) });
        await recordPeopleRead(ctx, request.admin!, request.id, { people, via: 'break-glass', activations: activations.length });
      }
      return answer;
    });

    app.post<{ Params: { id: string } }>(`${base}/activations/:id/end`, adminOperation(ctx, 'admin:write', {
      tag: 'break-glass',
      summary: 'End an activation before its time (its requester or a custodian)',
      params: activation,
      success: { status: 204, description: 'Ended' },
    }), async (request, reply) => {
      const person = await personOf(ctx, request, 'end');
      const activation = await findActivation(ctx.storage.db, request.params.id);
      if (!activation) throw new OAuthError('not_found', 'no such activation');
      if (!(await mayStandDown(ctx, person, activation))) {
        // An attempt to end someone's emergency access is worth seeing, as a token's refusal is.
        await ctx.audit.record({
          type: 'break_glass.refused',
          txn: activation.id,
          requestId: request.id,
          actor: person,
          subject: activation.account,
          client: request.admin!.client_id,
          decision: { allow: false, reasons: ['not_requester_or_custodian'] },
          details: { operation: 'end', target: activation.id, account: activation.account, break_glass: true },
        });
        throw new OAuthError('access_denied', 'only the requester or a custodian of the account may end an activation');
      }
      if (!(await standDown(ctx, activation.id, person, request.id))) throw new OAuthError('invalid_request', 'the activation has already ended', { status: 409 });
      return reply.code(204).send();
    });

    app.get<{ Querystring: { open?: unknown } }>(`${base}/reviews`, adminOperation(ctx, 'admin:read', {
      tag: 'break-glass',
      summary: 'List the reviews of activations (each read is audited)',
      querystring: queryParams({ open: 'true for the open reviews only, false for the closed ones' }),
    }), async (request) => {
      const given = request.query.open;
      // Once, as `true` or `false`: a repeated or other value is refused, never read as "all".
      if (given !== undefined && given !== 'true' && given !== 'false') throw new OAuthError('invalid_request', 'open must be given once, as true or false');
      const open = given === 'true' ? true : given === 'false' ? false : undefined;
      const reviews = await listReviews(ctx.storage.db, open === undefined ? {} : { open });
      const answer = { reviews: reviews.map(reviewView) };
      // An open review names no one yet, but its activation leads to who asked, and a note is free text.
      if (reviews.length > 0) {
        const people = await countPeople(ctx, { ids: reviews.flatMap((r) => (r.closedBy !== undefined ? [r.closedBy] : [])) });
        await recordPeopleRead(ctx, request.admin!, request.id, { people, via: 'break-glass', reviews: reviews.length });
      }
      return answer;
    });

    app.post<{ Params: { id: string } }>(`${base}/reviews/:id/close`, adminOperation(ctx, 'reviews:close', {
      tag: 'break-glass',
      summary: "Close an activation's review (a compliance person, phishing-resistant, independent of the activation)",
      params: activation,
      body: objectBody({ note: { type: 'string', description: 'what was reviewed, 1 to 2000 characters' } }, ['note']),
    }), async (request) => {
      const person = await personOf(ctx, request, 'close_review');
      const note = (request.body as { note?: unknown } | undefined)?.note;
      if (typeof note !== 'string') throw new OAuthError('invalid_request', 'note is required');
      const outcome = await closeReview(ctx, { activationId: request.params.id, closer: person, acr: request.admin!.acr, note, requestId: request.id });
      if (!outcome.ok) {
        switch (outcome.refusal) {
          case 'not_found':
            throw new OAuthError('not_found', 'no such review');
          case 'not_compliance':
            throw new OAuthError('access_denied', 'only a person with the compliance role may close a review');
          case 'not_independent':
            throw new OAuthError('access_denied', 'the requester or an approver of an activation may not close its review');
          case 'insufficient_authentication':
            throw new OAuthError('access_denied', 'closing a review needs phishing-resistant authentication');
          case 'note_required':
            throw new OAuthError('invalid_request', 'a note of 1 to 2000 characters is required');
          case 'note_unrecordable':
            throw new OAuthError('invalid_request', outcome.detail);
          case 'already_closed':
            throw new OAuthError('invalid_request', 'the review is already closed', { status: 409 });
        }
      }
      return reviewView(outcome.review);
    });
  },
};

/**
 * The person acting: the `sub` of a token issued under a person's consent grant; a client's own
 * token is refused, and so is a delegated one (`act`, RFC 8693 §4.1): a delegate never requests,
 * ends or reviews an emergency access for someone.
 */
async function personOf(ctx: Context, request: FastifyRequest, operation: 'request' | 'end' | 'close_review'): Promise<string> {
  const claims = request.admin!;
  // Each refusal is on the record (`break_glass.refused`): a token that tries emergency access is worth seeing.
  const refuse = async (reason: 'client_token' | 'delegated_token', description: string): Promise<never> => {
    await ctx.audit.record({
      type: 'break_glass.refused',
      requestId: request.id,
      actor: claims.sub ?? claims.client_id,
      client: claims.client_id,
      decision: { allow: false, reasons: [reason] },
      details: { operation, target: (request.params as Record<string, string>).account ?? (request.params as Record<string, string>).id, break_glass: true },
    });
    throw new OAuthError('access_denied', description);
  };
  const refusal = ownTokenRefusal(claims);
  if (refusal === 'client_token') return refuse('client_token', "this needs a person's token, not a client's");
  if (refusal === 'delegated_token') return refuse('delegated_token', 'a delegated token cannot act on break-glass');
  return claims.sub!;
}

async function mayStandDown(ctx: Context, person: string, activation: Activation): Promise<boolean> {
  if (person === activation.requester) return true;
  return (await custodianProblem(ctx, person, await findBreakGlassAccount(ctx.storage.db, activation.account))) === undefined;
}

function activationView(a: Activation) {
  return {
    id: a.id,
    account: a.account,
    requester: a.requester,
    reason: a.reason,
    scopes: a.scopes,
    audience: a.audience,
    starts_at: a.startsAt,
    ends_at: a.endsAt,
    ended_at: a.endedAt ?? null,
    end_reason: a.endReason ?? null,
  };
}
