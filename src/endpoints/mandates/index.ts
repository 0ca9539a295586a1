import type { FastifyRequest } from 'fastify';
import { requireAdmin } from '../../admin/authorize.ts';
import { AuditGuardError, assertNoSecrets } from '../../audit/guard.ts';
import { checkMandateEntry } from '../../mandates/apply.ts';
import {
  acceptMandate,
  amendMandate,
  createMandate,
  getMandate,
  listMandates,
  MandateError,
  mandateStatuses,
  mandateView,
  revokeMandate,
  type Actor,
  type MandateStatus,
  type MandateVersion,
} from '../../mandates/store.ts';
import { mandateEntryFields, readAcceptance, readMandateEntry, readTerms } from '../../mandates/terms.ts';
import { jsonObjectBody } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { formatProblem, Validator } from '../../validation.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * Mandates in the admin API (src/mandates), authorized like the rest of /admin by Clearance's own
 * tokens for `<issuer>/admin` (admin:read to read, admin:write to change). Bodies are JSON with the
 * fields of a `mandates[]` entry of `clearance apply` (docs/mandates.md), validated by the same
 * code; problems come back as one invalid_request naming each field.
 * - GET /admin/mandates?status=&grantor=&grantee= : current versions, newest change first;
 * - GET /admin/mandates/{id} : the current version and `history` (every version, oldest first);
 * - POST /admin/mandates : create (201); proposed, or active with accepted_by (accepted_at defaults to now);
 * - POST /admin/mandates/{id}/accept {version, accepted_by, accepted_at?} : proposed → active;
 * - POST /admin/mandates/{id}/amend {version, ...terms, accepted_by?, accepted_at?} : a new version;
 *   `version` is superseded at once (its tokens become inactive);
 * - POST /admin/mandates/{id}/revoke {reason, revoked_by?} : its tokens are inactive from now on.
 * `version` is the version the caller read: a step on a mandate that changed meanwhile is 409.
 * Unknown mandate: 404. A step the mandate's status does not allow: 409.
 */
export const adminMandates: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/mandates`;
    const read = { preHandler: requireAdmin(ctx, 'admin:read') };
    const write = { preHandler: requireAdmin(ctx, 'admin:write') };

    app.get<{ Querystring: Record<string, unknown> }>(base, read, async (request) => {
      const { status, grantor, grantee } = request.query;
      for (const [name, value] of Object.entries({ status, grantor, grantee })) {
        if (value !== undefined && typeof value !== 'string') throw new OAuthError('invalid_request', `${name} is given once`);
      }
      if (status !== undefined && !mandateStatuses.includes(status as MandateStatus)) {
        throw new OAuthError('invalid_request', `status must be one of ${mandateStatuses.join(', ')}`);
      }
      const mandates = await listMandates(ctx, {
        ...(status !== undefined ? { status: status as MandateStatus } : {}),
        ...(grantor !== undefined ? { grantor: grantor as string } : {}),
        ...(grantee !== undefined ? { grantee: grantee as string } : {}),
      });
      return { mandates: mandates.map(mandateView) };
    });

    app.get<{ Params: { id: string } }>(`${base}/:id`, read, async (request) => {
      const mandate = await getMandate(ctx, request.params.id);
      if (!mandate) throw new OAuthError('not_found', 'no such mandate');
      return { ...mandateView(mandate.current), history: mandate.history.map(mandateView) };
    });

    app.post(base, write, async (request, reply) => {
      const body = bodyOf(request);
      const v = new Validator();
      const entry = readMandateEntry(v, '', body, { acceptedAtDefault: ctx.clock.now() });
      if (entry && (await getMandate(ctx, entry.id))) throw new OAuthError('invalid_request', `mandate ${entry.id} already exists; amend it`, { status: 409 });
      const checked = entry && (await checkMandateEntry(ctx, v, '', entry));
      if (!checked) throw problems(v);
      const created = await step(() => createMandate(ctx, checked.entry, actorOf(request)));
      return reply.code(201).send({ ...mandateView(created), history: [mandateView(created)] });
    });

    app.post<{ Params: { id: string } }>(`${base}/:id/accept`, write, async (request) => {
      const body = bodyOf(request);
      const v = new Validator();
      v.knownKeys('', body, ['version', 'accepted_by', 'accepted_at']);
      const version = v.integer('version', body.version, { min: 1, max: 2 ** 31 - 1 });
      if (body.accepted_by === undefined) v.fail('accepted_by', 'is required');
      const acceptance = readAcceptance(v, '', body, ctx.clock.now());
      if (!v.ok || version === undefined || !acceptance) throw problems(v);
      return withHistory(await step(() => acceptMandate(ctx, request.params.id, version, acceptance, actorOf(request))));
    });

    app.post<{ Params: { id: string } }>(`${base}/:id/amend`, write, async (request) => {
      const body = bodyOf(request);
      const v = new Validator();
      v.knownKeys('', body, ['version', ...mandateEntryFields.filter((f) => f !== 'id')]);
      const version = v.integer('version', body.version, { min: 1, max: 2 ** 31 - 1 });
      const terms = readTerms(v, '', body);
      const acceptance = readAcceptance(v, '', body, ctx.clock.now());
      const checked = terms && (await checkMandateEntry(ctx, v, '', { id: request.params.id, terms }, undefined, { againstStored: false }));
      if (!v.ok || version === undefined || !checked) throw problems(v);
      const amended = await step(() => amendMandate(ctx, request.params.id, version, checked.entry.terms, acceptance, actorOf(request)));
      return withHistory(amended);
    });

    app.post<{ Params: { id: string } }>(`${base}/:id/revoke`, write, async (request) => {
      const body = bodyOf(request);
      const v = new Validator();
      v.knownKeys('', body, ['reason', 'revoked_by']);
      const reason = auditableText(v, 'reason', body.reason, 500);
      const by = body.revoked_by === undefined ? undefined : auditableText(v, 'revoked_by', body.revoked_by, 200);
      if (!v.ok || reason === undefined) throw problems(v);
      const revoked = await step(() => revokeMandate(ctx, request.params.id, { reason, ...(by !== undefined ? { by } : {}) }, actorOf(request)));
      return withHistory(revoked);
    });

    /** The changed version with the mandate's history, as GET /admin/mandates/{id} answers. */
    async function withHistory(version: MandateVersion): Promise<Record<string, unknown>> {
      const mandate = await getMandate(ctx, version.id);
      return { ...mandateView(version), history: (mandate?.history ?? [version]).map(mandateView) };
    }
  },
};

function bodyOf(request: FastifyRequest): Record<string, unknown> {
  return jsonObjectBody(request.body);
}

function actorOf(request: FastifyRequest): Actor {
  return { actor: request.admin!.client_id, requestId: request.id };
}

function problems(v: Validator): OAuthError {
  return new OAuthError('invalid_request', v.problems.map(formatProblem).join('; ') || 'invalid request');
}

/** Runs a lifecycle step, turning its refusal into the admin API's error. */
async function step<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (!(error instanceof MandateError)) throw error;
    if (error.code === 'not_found') throw new OAuthError('not_found', 'no such mandate');
    if (error.code === 'conflict') throw new OAuthError('invalid_request', error.message, { status: 409 });
    throw new OAuthError('invalid_request', error.message);
  }
}

const controlCharacters = /[\u0000-\u001f\u007f]/;

/** Text that goes into an audit event: no control characters, nothing the audit guard refuses. */
function auditableText(v: Validator, path: string, value: unknown, maxLength: number): string | undefined {
  const s = v.string(path, value, { maxLength });
  if (s === undefined) return undefined;
  if (controlCharacters.test(s)) return v.fail(path, 'must not contain control characters');
  try {
    assertNoSecrets(s);
  } catch (error) {
    if (!(error instanceof AuditGuardError)) throw error;
    return v.fail(path, 'looks like a token or a key, which the audit log never records');
  }
  return s;
}
