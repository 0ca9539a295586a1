import type { FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import { objectBody, pathParams, queryParams, type JsonSchema } from '../../http/api-operation.ts';
import { AuditGuardError, assertNoSecrets } from '../../audit/guard.ts';
import { countPeople, recordPeopleRead } from '../../audit/reads.ts';
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
 * fields of a `mandates[]` entry of `clearance apply` (docs/mandates.md): each operation's schema
 * (src/http/api-operation.ts) refuses first a body missing a required member or with one of the
 * wrong type; the values are then validated by the same code as apply, whose problems come back
 * as one invalid_request naming each field.
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
    const mandate = pathParams({ id: "the mandate's id" });

    app.get<{ Querystring: Record<string, unknown> }>(base, adminOperation(ctx, 'admin:read', {
      tag: 'mandates',
      summary: 'List mandates (their current versions), newest change first',
      querystring: queryParams({
        status: { type: 'string', enum: [...mandateStatuses], description: "the current version's status" },
        grantor: 'the grantor: an LEI or an account',
        grantee: 'the grantee: an LEI, a client_id or a user id',
      }),
    }), async (request) => {
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
      const answer = { mandates: mandates.map(mandateView) };
      // An empty page names no one.
      if (mandates.length > 0) await recordMandatesRead(request, mandates, { mandates: mandates.length });
      return answer;
    });

    app.get<{ Params: { id: string } }>(`${base}/:id`, adminOperation(ctx, 'admin:read', {
      tag: 'mandates',
      summary: 'Read a mandate: its current version and its history (every version, oldest first)',
      params: mandate,
    }), async (request) => {
      const mandate = await getMandate(ctx, request.params.id);
      if (!mandate) throw new OAuthError('not_found', 'no such mandate');
      const answer = { ...mandateView(mandate.current), history: mandate.history.map(mandateView) };
      const grantee = mandate.current.terms.grantee;
      await recordMandatesRead(request, mandate.history, { mandate: mandate.current.id }, grantee.kind === 'user' ? grantee.id : undefined);
      return answer;
    });

    app.post(base, adminOperation(ctx, 'admin:write', {
      tag: 'mandates',
      summary: 'Create a mandate: proposed, or active with accepted_by',
      description: 'The body is a `mandates[]` entry of `clearance apply` (docs/mandates.md), validated by the same code. 409 when the id exists.',
      body: objectBody({ id: { type: 'string' }, ...termsMembers, ...acceptanceMembers }, ['id', ...requiredTerms], 'A mandates[] entry of clearance apply'),
      success: { status: 201, description: 'The mandate created, with its history' },
    }), async (request, reply) => {
      const body = bodyOf(request);
      const v = new Validator();
      const entry = readMandateEntry(v, '', body, { acceptedAtDefault: ctx.clock.now() });
      if (entry && (await getMandate(ctx, entry.id))) throw new OAuthError('invalid_request', `mandate ${entry.id} already exists; amend it`, { status: 409 });
      const checked = entry && (await checkMandateEntry(ctx, v, '', entry));
      if (!checked) throw problems(v);
      const created = await step(() => createMandate(ctx, checked.entry, actorOf(request)));
      return reply.code(201).send({ ...mandateView(created), history: [mandateView(created)] });
    });

    app.post<{ Params: { id: string } }>(`${base}/:id/accept`, adminOperation(ctx, 'admin:write', {
      tag: 'mandates',
      summary: 'Accept a proposed mandate: it becomes active',
      description: '`accepted_by` is required. 409 when `version` is no longer the current one or the mandate is not proposed.',
      params: mandate,
      body: objectBody({ version, ...acceptanceMembers }, ['version']),
    }), async (request) => {
      const body = bodyOf(request);
      const v = new Validator();
      v.knownKeys('', body, ['version', 'accepted_by', 'accepted_at']);
      const version = v.integer('version', body.version, { min: 1, max: 2 ** 31 - 1 });
      if (body.accepted_by === undefined) v.fail('accepted_by', 'is required');
      const acceptance = readAcceptance(v, '', body, ctx.clock.now());
      if (!v.ok || version === undefined || !acceptance) throw problems(v);
      return withHistory(await step(() => acceptMandate(ctx, request.params.id, version, acceptance, actorOf(request))));
    });

    app.post<{ Params: { id: string } }>(`${base}/:id/amend`, adminOperation(ctx, 'admin:write', {
      tag: 'mandates',
      summary: 'Amend a mandate: new terms as a new version; `version` is superseded at once',
      description: '409 when `version` is no longer the current one.',
      params: mandate,
      body: objectBody({ version, ...termsMembers, ...acceptanceMembers }, ['version', ...requiredTerms]),
    }), async (request) => {
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

    app.post<{ Params: { id: string } }>(`${base}/:id/revoke`, adminOperation(ctx, 'admin:write', {
      tag: 'mandates',
      summary: 'Revoke a mandate: its tokens are inactive from now on',
      description: '`reason` is required.',
      params: mandate,
      body: objectBody({ reason: { type: 'string', description: 'at most 500 characters' }, revoked_by: { type: 'string', description: 'who decided, at most 200 characters' } }),
    }), async (request) => {
      const body = bodyOf(request);
      const v = new Validator();
      v.knownKeys('', body, ['reason', 'revoked_by']);
      const reason = auditableText(v, 'reason', body.reason, 500);
      const by = body.revoked_by === undefined ? undefined : auditableText(v, 'revoked_by', body.revoked_by, 200);
      if (!v.ok || reason === undefined) throw problems(v);
      const revoked = await step(() => revokeMandate(ctx, request.params.id, { reason, ...(by !== undefined ? { by } : {}) }, actorOf(request)));
      return withHistory(revoked);
    });

    /**
     * Puts a read of mandates on the record (`people.reviewed`) before the answer leaves: a mandate
     * names people — a grantee person, the person who signed for the grantor (`people` counts them),
     * and whoever `accepted_by` and `revoked_by` name (free text) — so every answer that holds one
     * is recorded, even one naming no person of the directory (AMENDMENTS, console).
     */
    async function recordMandatesRead(request: FastifyRequest, versions: readonly MandateVersion[], read: Record<string, unknown>, subject?: string): Promise<void> {
      const people = await countPeople(ctx, { ids: versions.flatMap(peopleNamedBy) });
      await recordPeopleRead(ctx, request.admin!, request.id, { people, via: 'mandates', ...read }, subject);
    }

    /** The changed version with the mandate's history, as GET /admin/mandates/{id} answers. */
    async function withHistory(version: MandateVersion): Promise<Record<string, unknown>> {
      const mandate = await getMandate(ctx, version.id);
      return { ...mandateView(version), history: (mandate?.history ?? [version]).map(mandateView) };
    }
  },
};

// The shape of the bodies (docs/mandates.md); src/mandates/terms.ts checks every value.
const instant = (description: string): JsonSchema => ({ type: 'string', description: `${description}: an RFC 3339 date and time with an offset` });
const termsMembers: Record<string, JsonSchema> = {
  grantor: { type: 'object', description: 'exactly one of lei, account' },
  grantee: { type: 'object', description: 'exactly one of lei, client_id, user' },
  scopes: { type: 'array', items: { type: 'string' }, description: 'business verb scopes such as order:create' },
  constraints: { type: 'object', description: 'instrument_classes, venues, max_notional, regions, time_window' },
  legal_basis: { type: 'object', properties: { reference: { type: 'string' }, text: { type: 'string' } } },
  effective_from: instant('in force from'),
  effective_to: { ...instant('in force until'), type: ['string', 'null'] },
  granted_by: { type: 'string', description: 'the person (username or user id) who signed for the grantor; their leaving marks the mandate for reassignment' },
};
const requiredTerms = ['grantor', 'grantee', 'scopes', 'legal_basis', 'effective_from'];
const acceptanceMembers: Record<string, JsonSchema> = {
  accepted_by: { type: 'string', description: 'who accepted on the grantee side' },
  accepted_at: instant('when (with accepted_by; now by default)'),
};
const version: JsonSchema = { type: 'integer', description: 'the version the caller read' };

/** The people of the directory a version names by id: a grantee person, the person who signed for the grantor. */
function peopleNamedBy(v: MandateVersion): string[] {
  return [...(v.terms.grantee.kind === 'user' ? [v.terms.grantee.id] : []), ...(v.terms.grantedBy !== undefined ? [v.terms.grantedBy] : [])];
}

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
