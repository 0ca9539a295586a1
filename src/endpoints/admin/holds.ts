import type { FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import { holdReleaseRole, HoldReleaseConflict, requestHoldRelease } from '../../audit/hold-release.ts';
import { findHold, HoldError, listHolds, placeHold, type Hold, type HoldRequest } from '../../audit/holds.ts';
import { AuditQueryError, readTime } from '../../audit/query.ts';
import type { Context } from '../../context.ts';
import { objectBody as bodySchema, pathParams } from '../../http/api-operation.ts';
import { jsonObjectBody } from '../../http/json.ts';
import { sendJson } from '../../http/json.ts';
import { findUser } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * Legal holds through the admin API (docs/audit.md "Legal hold"), tokens for `<issuer>/admin`:
 *
 * - GET  /admin/audit/holds (`audit:read`): `{ holds: [view] }`, every hold, oldest first, each
 *   `active`, `release_pending` (with its approval request) or `released` (when, by whom);
 * - POST /admin/audit/holds (`audit:hold`) `{ matter_ref, txn | subject | client | since + until }`:
 *   places a hold (`audit.hold_placed`, the placer is the token's person or client), 201 with it.
 *   Placing only keeps more, so anyone with the scope may; 400 invalid_request naming the problem;
 * - POST /admin/audit/holds/{id}/release (`audit:hold`) `{ reason }`: asks for the two-person
 *   release (src/audit/hold-release.ts) — 202 with the approval request, decided on the approvals
 *   page or POST /admin/approvals/{id}/decision by people holding `compliance`. A person's token
 *   (not a delegate's) must be a compliance person's, else 403, and one more approves; a client's
 *   own token needs two. 404 for an unknown hold, 400 for a released one, 409 while a release waits.
 */
export const adminHolds: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/audit/holds`;

    app.get(base, adminOperation(ctx, 'audit:read', { tag: 'audit', summary: 'List the legal holds, oldest first, each with its status' }), async (_request, reply) => {
      const holds = await listHolds(ctx.storage.db);
      return sendJson(reply, { holds: await Promise.all(holds.map((hold) => holdView(ctx, hold))) });
    });

    app.post(base, adminOperation(ctx, 'audit:hold', {
      tag: 'audit',
      summary: 'Place a legal hold',
      description: 'A matter reference and what the hold keeps: one of txn, subject, client, or a time range (since and until).',
      body: placementBody,
      success: { status: 201, description: 'The hold placed' },
    }), async (request, reply) => {
      const claims = request.admin!;
      const hold = await asOAuth(() => placeHold(ctx, readPlacement(request.body), claims.sub ?? claims.client_id));
      return sendJson(reply, { hold: await holdView(ctx, hold) }, { status: 201 });
    });

    app.post<{ Params: { id: string } }>(`${base}/:id/release`, adminOperation(ctx, 'audit:hold', {
      tag: 'audit',
      summary: 'Ask for the two-person release of a legal hold',
      description: "Decided by people holding compliance (the approvals API or page); a person's token must be a compliance person's, and one more approves; a client's own token needs two.",
      params: pathParams({ id: "the hold's id" }),
      body: bodySchema({ reason: { type: 'string', description: 'why the hold may end' } }, ['reason']),
      success: { status: 202, description: 'The release request, waiting for approval' },
    }), async (request, reply) => {
      const requester = await requesterOf(ctx, request);
      if (!(await findHold(ctx.storage.db, request.params.id))) throw new OAuthError('not_found', 'no such legal hold');
      const reason = readReason(request.body);
      const { hold, request: opened } = await asOAuth(() => requestHoldRelease(ctx, { holdId: request.params.id, reason, ...requester, requestId: request.id }));
      return sendJson(
        reply,
        {
          hold_id: hold.id,
          release_request: opened.id,
          status: opened.status,
          required_approvals: opened.requiredApprovals,
          expires_at: new Date(opened.expiresAt).toISOString(),
        },
        { status: 202 },
      );
    });
  },
};

/** Who asks for a release: a compliance person with their own token, or a client on its own. */
async function requesterOf(ctx: Context, request: FastifyRequest): Promise<{ requester: string; requesterType: 'user' | 'client' }> {
  const claims = request.admin!;
  if (claims.grant_id === undefined) return { requester: claims.client_id, requesterType: 'client' };
  if (claims.act !== undefined) throw new OAuthError('access_denied', 'a delegate never asks to release a legal hold for someone');
  const person = await findUser(ctx, claims.sub!);
  if (!person || person.status !== 'active' || !person.roles.includes(holdReleaseRole)) {
    throw new OAuthError('access_denied', `only a person holding ${holdReleaseRole} asks to release a legal hold`);
  }
  return { requester: person.id, requesterType: 'user' };
}

const placementMembers = ['matter_ref', 'txn', 'subject', 'client', 'since', 'until'];

const time = { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'string' }], description: 'epoch milliseconds or an ISO 8601 time' };
/** A placement: the matter, and one of a txn, subject, client or time range (placeHold checks which). */
const placementBody = bodySchema({
  matter_ref: { type: 'string', description: 'the matter the hold is for' },
  txn: { type: 'string', description: 'keep the events of this transaction' },
  subject: { type: 'string', description: 'keep the events of this subject' },
  client: { type: 'string', description: 'keep the events of this client' },
  since: time,
  until: time,
});

function readPlacement(body: unknown): HoldRequest {
  const o = jsonObjectBody(body);
  const unknown = Object.keys(o).filter((k) => !placementMembers.includes(k));
  if (unknown.length > 0) throw new OAuthError('invalid_request', `unknown member ${unknown[0]}`);
  for (const member of placementMembers) {
    if (o[member] !== undefined && typeof o[member] !== 'string' && !(member === 'since' || member === 'until')) throw new OAuthError('invalid_request', `${member} is a string`);
  }
  const time = (name: 'since' | 'until'): number | undefined => {
    const value = o[name];
    if (value === undefined) return undefined;
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
    if (typeof value !== 'string') throw new OAuthError('invalid_request', `${name} is epoch milliseconds or an ISO 8601 time`);
    try {
      return readTime(name, value);
    } catch (error) {
      throw new OAuthError('invalid_request', (error as AuditQueryError).message);
    }
  };
  return {
    matterRef: o.matter_ref as string | undefined,
    txn: o.txn as string | undefined,
    subject: o.subject as string | undefined,
    client: o.client as string | undefined,
    from: time('since'),
    to: time('until'),
  };
}

function readReason(body: unknown): string {
  const o = jsonObjectBody(body);
  const unknown = Object.keys(o).filter((k) => k !== 'reason');
  if (unknown.length > 0) throw new OAuthError('invalid_request', `unknown member ${unknown[0]}`);
  if (typeof o.reason !== 'string') throw new OAuthError('invalid_request', 'reason is required: why the hold may end');
  return o.reason;
}

/** A hold module's refusal as the API's: 409 for a release already waiting, else 400. */
async function asOAuth<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof HoldReleaseConflict) throw new OAuthError('invalid_request', error.message, { status: 409 });
    if (error instanceof HoldError) throw new OAuthError('invalid_request', error.message);
    throw error;
  }
}

/** What the API says of a hold. */
async function holdView(ctx: Context, hold: Hold): Promise<Record<string, unknown>> {
  let status = hold.releasedAt !== undefined ? 'released' : 'active';
  if (status === 'active' && hold.releaseRequest !== undefined) {
    const waiting = await ctx.storage.db.selectFrom('approval_requests').select(['status', 'expires_at']).where('id', '=', hold.releaseRequest).executeTakeFirst();
    if (waiting?.status === 'pending' && Number(waiting.expires_at) > ctx.clock.now()) status = 'release_pending';
  }
  return {
    id: hold.id,
    kind: hold.kind,
    ...(hold.value !== undefined ? { value: hold.value } : {}),
    ...(hold.from !== undefined ? { since: new Date(hold.from).toISOString(), until: new Date(hold.to!).toISOString() } : {}),
    matter_ref: hold.matterRef,
    placed_by: hold.placedBy,
    placed_at: new Date(hold.placedAt).toISOString(),
    status,
    ...(hold.releaseRequest !== undefined && status !== 'active' ? { release_request: hold.releaseRequest } : {}),
    ...(hold.releasedAt !== undefined ? { released_at: new Date(hold.releasedAt).toISOString(), released_by: hold.releasedBy } : {}),
  };
}
