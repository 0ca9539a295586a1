import type { FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import { personCaller, type CallerRefusal } from '../../admin/person-caller.ts';
import type { Context } from '../../context.ts';
import type { User } from '../../identity/users.ts';
import { objectBody, pathParams, queryParams, text, type JsonSchema } from '../../http/api-operation.ts';
import { AuditGuardError, assertNoSecrets } from '../../audit/guard.ts';
import { OAuthError } from '../../oauth-error.ts';
import type { ActivePrincipal } from '../../risk/anomalies/activity.ts';
import { findAnomaly, listAnomalies, listSuspensions, principalFields, reinstate, resolveAnomaly, type AdminActor, type Anomaly, type Page, type Suspension } from '../../risk/anomalies/store.ts';
import { signInChallenge, trustChangeSignIn } from '../admin/step-up.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The admin API of anomalies and suspensions (docs/risk.md "Baselines and anomalies"), authorized
 * like the rest of the admin API (admin:read to read, admin:write to act):
 * - GET /admin/risk/anomalies[?status=open|resolved][&principal=User:<id>|Client:<id>][&limit=][&after=]
 *   newest first; `limit` 1 to 500 (default 100); `next`, when there are more, is the `after` of the
 *   next page;
 * - GET /admin/risk/anomalies/{id};
 * - POST /admin/risk/anomalies/{id}/resolve `{note?}` (admin:write): the anomaly is resolved
 *   (`risk.anomaly_resolved`), its step-up ends; 409 when it already was;
 * - GET /admin/risk/suspensions[?active=true|false][&principal=][&limit=][&after=];
 * - POST /admin/risk/suspensions/{id}/reinstate `{note?}` (admin:write): by a person with their own
 *   token, signed in with a passkey in the last 5 minutes, who is not the principal suspended
 *   (`reinstatingPerson`: else 401 insufficient_user_authentication or 403, each refusal recorded
 *   as `risk.reinstate_refused`), the principal gets tokens and signs in again
 *   (`risk.reinstated`); 409 when it already was reinstated.
 * Each query parameter at most once (a repeated or malformed one is 400 invalid_request, never "all").
 */
export const adminRisk: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/risk`;
    const anomaly = pathParams({ id: "the anomaly's id" });
    const suspension = pathParams({ id: "the suspension's id" });

    app.get<{ Querystring: Record<string, unknown> }>(`${base}/anomalies`, adminOperation(ctx, 'admin:read', {
      tag: 'risk',
      summary: 'List anomalies, newest first',
      querystring: queryParams({ status: parameter('open or resolved'), ...listParameters }),
    }), async (request) => {
      const status = once(request.query, 'status');
      if (status !== undefined && status !== 'open' && status !== 'resolved') throw new OAuthError('invalid_request', 'status must be given once, as open or resolved');
      const principal = principalParameter(request.query);
      const page = pageParameters(request.query);
      const rows = await listAnomalies(ctx.storage.db, { ...(status !== undefined ? { status } : {}), ...(principal ? { principal } : {}) }, { ...page, limit: page.limit + 1 });
      return { anomalies: rows.slice(0, page.limit).map(anomalyView), ...nextPage(rows, page.limit, (a) => ({ createdAt: a.createdAt, id: a.id })) };
    });

    app.get<{ Params: { id: string } }>(`${base}/anomalies/:id`, adminOperation(ctx, 'admin:read', { tag: 'risk', summary: 'Read one anomaly', params: anomaly }), async (request) => {
      const anomaly = await findAnomaly(ctx.storage.db, request.params.id.slice(0, 64));
      if (!anomaly) throw new OAuthError('not_found', 'no such anomaly');
      return anomalyView(anomaly);
    });

    app.post<{ Params: { id: string } }>(`${base}/anomalies/:id/resolve`, adminOperation(ctx, 'admin:write', {
      tag: 'risk',
      summary: 'Resolve an anomaly (its step-up ends)',
      description: '409 when it already was.',
      params: anomaly,
      body: noteBody,
      bodyOptional: true,
    }), async (request) => {
      const outcome = await resolveAnomaly(ctx, request.params.id.slice(0, 64), adminActor(request));
      if (!outcome) throw new OAuthError('not_found', 'no such anomaly');
      if (outcome === 'already_resolved') throw new OAuthError('invalid_request', 'the anomaly is already resolved', { status: 409 });
      return anomalyView(outcome);
    });

    app.get<{ Querystring: Record<string, unknown> }>(`${base}/suspensions`, adminOperation(ctx, 'admin:read', {
      tag: 'risk',
      summary: 'List suspensions, newest first',
      querystring: queryParams({ active: parameter('true or false'), ...listParameters }),
    }), async (request) => {
      const active = once(request.query, 'active');
      if (active !== undefined && active !== 'true' && active !== 'false') throw new OAuthError('invalid_request', 'active must be given once, as true or false');
      const principal = principalParameter(request.query);
      const page = pageParameters(request.query);
      const rows = await listSuspensions(ctx.storage.db, { ...(active !== undefined ? { active: active === 'true' } : {}), ...(principal ? { principal } : {}) }, { ...page, limit: page.limit + 1 });
      return { suspensions: rows.slice(0, page.limit).map(suspensionView), ...nextPage(rows, page.limit, (s) => ({ createdAt: s.suspendedAt, id: s.id })) };
    });

    app.post<{ Params: { id: string } }>(`${base}/suspensions/:id/reinstate`, adminOperation(ctx, 'admin:write', {
      tag: 'risk',
      summary: 'Reinstate a suspended principal: it gets tokens and signs in again',
      description:
        "By a person's own token, signed in with a passkey in the last 5 minutes (else 401 insufficient_user_authentication naming acr_values and max_age); " +
        "never a client's own token, a delegate's, the suspended person's or one issued to the suspended client (403). Each refusal is recorded as `risk.reinstate_refused`. " +
        '409 when it already was reinstated.',
      params: suspension,
      body: noteBody,
      bodyOptional: true,
    }), async (request) => {
      const id = request.params.id.slice(0, 64);
      const person = await reinstatingPerson(ctx, request, id);
      const outcome = await reinstate(ctx, id, { ...adminActor(request), actor: person.id });
      if (!outcome) throw new OAuthError('not_found', 'no such suspension');
      if (outcome === 'already_reinstated') throw new OAuthError('invalid_request', 'the principal is already reinstated', { status: 409 });
      return suspensionView(outcome);
    });
  },
};

/**
 * Who lifts a suspension. The risk engine suspends a person or a client on a suspected compromise,
 * and lifting it opens access again: a person does it, with their own token, signed in with a
 * passkey in the last 5 minutes (src/admin/person-caller.ts `personCaller` with ../admin/step-up.ts
 * trustChangeSignIn, as a policy set's activation asks) — not a client's own token (an automation
 * lifts nothing), not a delegate's, not a console token standing on a sign-in of hours ago.
 * Four-eyes is not asked: a reinstatement undoes a machine's reaction, reviewed by one person. Nor
 * does the suspended principal lift its own suspension: the suspension ended its tokens
 * (src/risk/anomalies/store.ts suspendIn), and should one still be presented — a token of a node
 * that has not yet reloaded the client's cut-off — the suspended person's own token, or a token
 * issued to the suspended client, is refused. Each refusal is recorded as `risk.reinstate_refused` (naming
 * the suspension's principal when it exists), then answered: a sign-in too weak or too old with
 * 401 insufficient_user_authentication, anything else with 403 access_denied.
 */
async function reinstatingPerson(ctx: Context, request: FastifyRequest, id: string): Promise<User> {
  const claims = request.admin!;
  const suspended = await suspendedPrincipal(ctx, id);
  const record = async (reason: CallerRefusal | 'own_suspension', details: Record<string, unknown>): Promise<void> => {
    await ctx.audit.record({
      type: 'risk.reinstate_refused',
      requestId: request.id,
      actor: claims.sub ?? claims.client_id,
      ...(suspended ? principalFields(suspended) : {}),
      decision: { allow: false, reasons: [reason] },
      // The id only when stored: one nobody stored is the caller's text.
      details: { ...(suspended ? { suspension_id: id, principal_type: suspended.type } : {}), admin_client: claims.client_id, ...details },
    });
  };
  const caller = await personCaller(ctx, claims, trustChangeSignIn);
  if (!caller.ok) return refuseReinstating(request, caller.reason, record);
  const person = caller.user;
  if (suspended && ((suspended.type === 'User' && suspended.id === person.id) || (suspended.type === 'Client' && suspended.id === claims.client_id))) {
    await record('own_suspension', { outcome: 'refused' });
    throw new OAuthError('access_denied', 'a suspended person or client does not lift its own suspension: another person does, with their own token');
  }
  return person;
}

/** A reinstatement's caller refused: recorded, then answered 401 (a new sign-in cures it) or 403. */
async function refuseReinstating(request: FastifyRequest, reason: CallerRefusal, record: (reason: CallerRefusal, details: Record<string, unknown>) => Promise<void>): Promise<never> {
  const challenge = signInChallenge(request, reason, 'lifting a suspension');
  await record(reason, challenge?.details ?? { outcome: 'refused' });
  if (challenge) throw challenge.error;
  if (reason === 'client_token') throw new OAuthError('access_denied', 'a suspension is lifted by a person, with their own token');
  if (reason === 'delegated_token') throw new OAuthError('access_denied', 'a delegated token cannot lift a suspension: a person does, with their own token');
  throw new OAuthError('access_denied', 'the person of this token may not lift a suspension');
}

/** The principal a suspension names, if there is one of that id. */
async function suspendedPrincipal(ctx: Context, id: string): Promise<ActivePrincipal | undefined> {
  const row = await ctx.storage.db.selectFrom('risk_suspensions').select(['principal_type', 'principal_id']).where('id', '=', id).executeTakeFirst();
  return row && { type: row.principal_type as ActivePrincipal['type'], id: row.principal_id };
}

/** A query parameter as `once` reads it. */
function parameter(description: string): JsonSchema {
  return text(description, 300);
}

/** The principal filter and the page of a list. */
const listParameters = {
  principal: parameter('User:<user id> or Client:<client_id>'),
  limit: { type: 'string', pattern: '^[0-9]{1,3}$', description: 'how many, 1 to 500 (default 100)' },
  after: parameter('the `next` of the previous page'),
};

/** The body of a resolution or a reinstatement, which may be left out. */
const noteBody = objectBody({ note: { type: 'string', maxLength: 2000, description: 'for the audit log; never a token or a key' } });

/** A query parameter given at most once (a repeated one arrives as an array and is refused). */
function once(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  if (value !== undefined && (typeof value !== 'string' || value.length === 0 || value.length > 300)) throw new OAuthError('invalid_request', `${name} must be given once`);
  return value;
}

/** `principal=User:<id>` or `Client:<id>`. */
function principalParameter(query: Record<string, unknown>): ActivePrincipal | undefined {
  const value = once(query, 'principal');
  if (value === undefined) return undefined;
  const match = /^(User|Client):(.+)$/.exec(value);
  if (!match) throw new OAuthError('invalid_request', 'principal must be User:<user id> or Client:<client_id>');
  return { type: match[1] as ActivePrincipal['type'], id: match[2]! };
}

function pageParameters(query: Record<string, unknown>): Page {
  const limit = once(query, 'limit') ?? '100';
  if (!/^[0-9]{1,3}$/.test(limit) || Number(limit) < 1 || Number(limit) > 500) throw new OAuthError('invalid_request', 'limit must be an integer from 1 to 500');
  const after = once(query, 'after');
  if (after === undefined) return { limit: Number(limit) };
  const match = /^(\d{1,15})\.([0-9a-f-]{36})$/.exec(Buffer.from(after, 'base64url').toString());
  if (!match) throw new OAuthError('invalid_request', 'after must be the next of a previous page');
  return { limit: Number(limit), after: { createdAt: Number(match[1]), id: match[2]! } };
}

/** `next` when a row beyond the page was read: the cursor of the page's last item. */
function nextPage<T>(rows: T[], limit: number, cursor: (row: T) => { createdAt: number; id: string }): { next?: string } {
  if (rows.length <= limit) return {};
  const last = cursor(rows[limit - 1]!);
  return { next: Buffer.from(`${last.createdAt}.${last.id}`).toString('base64url') };
}

function adminActor(request: FastifyRequest): AdminActor {
  const claims = request.admin!;
  const note = (request.body as { note?: unknown } | undefined)?.note;
  if (note !== undefined && (typeof note !== 'string' || note.length > 2000)) throw new OAuthError('invalid_request', 'note must be a string of at most 2000 characters');
  // The note goes into the audit event, which never records a secret: refused here, not at the write.
  try {
    if (note !== undefined) assertNoSecrets(note);
  } catch (error) {
    if (error instanceof AuditGuardError) throw new OAuthError('invalid_request', 'note looks like a token or a key, which the audit log never records');
    throw error;
  }
  return { actor: claims.sub, client: claims.client_id, requestId: request.id, ...(note !== undefined ? { note } : {}) };
}

function anomalyView(a: Anomaly) {
  return {
    id: a.id,
    principal: a.principal,
    class: a.class,
    window_start: a.windowStart,
    window_end: a.windowStart + a.windowMs,
    last_window_start: a.lastWindowStart,
    windows: a.windows,
    observed: a.observed,
    baseline: a.baseline,
    reaction: a.reaction,
    status: a.status,
    created_at: a.createdAt,
    resolved_by: a.resolvedBy ?? null,
    resolved_at: a.resolvedAt ?? null,
    resolution_note: a.resolutionNote ?? null,
  };
}

function suspensionView(s: Suspension) {
  return {
    id: s.id,
    principal: s.principal,
    anomaly_id: s.anomalyId,
    suspended_at: s.suspendedAt,
    reinstated_at: s.reinstatedAt ?? null,
    reinstated_by: s.reinstatedBy ?? null,
    note: s.note ?? null,
  };
}
