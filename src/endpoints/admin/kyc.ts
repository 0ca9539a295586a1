import type { FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import type { Context } from '../../context.ts';
import { mergePatchOf, nullableMembers, objectBody, pathParams, queryParams, type JsonSchema } from '../../http/api-operation.ts';
import { personCaller } from '../../admin/person-caller.ts';
import { findUser, findUserByUsername, type User } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { recordPeopleRead } from '../../audit/reads.ts';
import { KycChangeRefused, changeKycByAdmin } from '../../risk/kyc/admin.ts';
import { KycConflict, recordJson } from '../../risk/kyc/changes.ts';
import { kycStatuses, readKycFields, type KycPrincipal, type KycRecord } from '../../risk/kyc/record.ts';
import { MatchDecisionRefused, decideScreeningMatch, maxDecisionReasonLength, type MatchDecision } from '../../risk/screening/decisions.ts';
import { findScreeningMatch, listScreeningMatches, type MatchStatus, type ScreeningMatch } from '../../risk/screening/matches.ts';
import { Validator, formatProblem } from '../../validation.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { acceptMergePatch, mergePatchType, patchBody, putBody, type Representation } from './representation.ts';
import { signInChallenge, trustChangeSignIn } from './step-up.ts';

/**
 * The admin API of KYC records and sanctions/PEP screening (docs/risk.md "KYC/AML lifecycle",
 * "Sanctions and PEP screening"), authorized like the rest of the admin API (admin:read to read,
 * admin:write to change; a decision on a match `screening:decide` and a compliance person: below):
 *
 * - GET /admin/kyc/users/{username}, GET /admin/kyc/legal-entities/{lei}: the record, its status
 *   as of now (a `verified` past its review date reads `expired`); `status: none` without one
 * - PUT the same paths: the record replaced under the admin API's write rule (./representation.ts):
 *   `status`, `level`, `provider`, `review_due`, `evidence_ref` (every member the record has;
 *   `null` removes one), optionally `reason` (audited) and `version` (the version read: a record
 *   changed meanwhile is 409). A freeze held by an open or confirmed screening match is lifted by
 *   compliance's decision only (409). Audited `kyc.updated` with before and after.
 * - PATCH the same paths with a JSON Merge Patch (RFC 7396): only the members it names change
 *   (`{"status": "frozen", "reason": "…"}`), validated and audited as a PUT; the version compared
 *   is the one the patch was applied to, unless the patch names one. 404 without a record.
 * - GET /admin/screening: the list this node holds (file, version, entries, when loaded)
 * - GET /admin/screening/matches[?status=open|confirmed|cleared]: newest first (100)
 * - GET /admin/screening/matches/{id}
 * Each read of a person's KYC record and of screening matches is recorded as `people.reviewed`
 * (via `kyc` / `screening`) before the answer leaves: personal data (AMENDMENTS, console).
 * - POST /admin/screening/matches/{id}/decision `{ decision: confirm | clear, reason }`: only a
 *   person holding `compliance`, active, with their own token (not a client's, not a delegate's),
 *   signed in phishing-resistantly in the last 5 minutes (`complianceOf`; a sign-in too weak or
 *   too old 401 insufficient_user_authentication, anything else 403 access_denied, each audited
 *   `screening.refused`); audited `screening.decided`; clearing the last open match lifts the
 *   freeze screening put there (a freeze of another source stays: src/risk/screening/decisions.ts).
 */
export const adminKyc: Endpoint = {
  register(app, ctx) {
    const admin = `${issuerPath(ctx.config.issuer)}/admin`;
    const person = pathParams({ username: 'the username, in its stored (lowercase) form' });
    const entity = pathParams({ lei: "the legal entity's LEI" });

    app.get<{ Params: { username: string } }>(`${admin}/kyc/users/:username`, adminOperation(ctx, 'admin:read', {
      tag: 'kyc',
      summary: "Read a person's KYC record (status `none` without one)",
      params: person,
    }), async (request) => {
      const principal = await personPrincipal(ctx, request.params.username);
      const answer = await view(ctx, principal);
      // A person's KYC status, level and evidence are personal data: the read is on the record before the answer leaves.
      await recordPeopleRead(ctx, request.admin!, request.id, { people: 1, via: 'kyc' }, principal.id);
      return answer;
    });
    acceptMergePatch(app);
    app.put<{ Params: { username: string } }>(`${admin}/kyc/users/:username`, adminOperation(ctx, 'admin:write', { ...putRecord, params: person }), async (request) =>
      writeRecord(ctx, request, putBody, await personPrincipal(ctx, request.params.username)));
    app.patch<{ Params: { username: string } }>(`${admin}/kyc/users/:username`, adminOperation(ctx, 'admin:write', { ...patchRecord, params: person }), async (request) =>
      writeRecord(ctx, request, patchBody, await personPrincipal(ctx, request.params.username)));
    app.get<{ Params: { lei: string } }>(`${admin}/kyc/legal-entities/:lei`, adminOperation(ctx, 'admin:read', {
      tag: 'kyc',
      summary: "Read a legal entity's KYC record (status `none` without one)",
      params: entity,
    }), async (request) => view(ctx, await entityPrincipal(ctx, request.params.lei)));
    app.put<{ Params: { lei: string } }>(`${admin}/kyc/legal-entities/:lei`, adminOperation(ctx, 'admin:write', { ...putRecord, params: entity }), async (request) =>
      writeRecord(ctx, request, putBody, await entityPrincipal(ctx, request.params.lei)));
    app.patch<{ Params: { lei: string } }>(`${admin}/kyc/legal-entities/:lei`, adminOperation(ctx, 'admin:write', { ...patchRecord, params: entity }), async (request) =>
      writeRecord(ctx, request, patchBody, await entityPrincipal(ctx, request.params.lei)));

    app.get(`${admin}/screening`, adminOperation(ctx, 'admin:read', { tag: 'kyc', summary: 'The sanctions/PEP list this node holds (file, version, entries, when loaded)' }), async () => {
      const index = ctx.risk.screening.index;
      const screened = index ? await ctx.storage.db.selectFrom('screening_lists').select('screened_at').where('digest', '=', index.digest).executeTakeFirst() : undefined;
      return {
        configured: ctx.risk.screening.path !== undefined,
        ...(index
          ? {
              list_digest: index.digest,
              entries: index.size,
              loaded_at: new Date(ctx.risk.screening.loadedAt!).toISOString(),
              screened_at: screened?.screened_at != null ? new Date(Number(screened.screened_at)).toISOString() : null,
            }
          : {}),
      };
    });
    app.get<{ Querystring: { status?: unknown } }>(`${admin}/screening/matches`, adminOperation(ctx, 'admin:read', {
      tag: 'kyc',
      summary: 'List screening matches, newest first (100)',
      querystring: queryParams({ status: { type: 'string', enum: [...matchStatuses], description: 'only the matches in this status' } }),
    }), async (request) => {
      const status = request.query.status;
      if (status !== undefined && (typeof status !== 'string' || !(matchStatuses as readonly string[]).includes(status))) throw new OAuthError('invalid_request', 'status must be given once, as open, confirmed or cleared');
      const matches = await listScreeningMatches(ctx.storage.db, status === undefined ? {} : { status: status as MatchStatus });
      const answer = { matches: await Promise.all(matches.map((m) => matchView(ctx, m))) };
      // Who matched a sanctions or PEP list is personal data: the read is on the record.
      await recordPeopleRead(ctx, request.admin!, request.id, { people: matches.filter((m) => m.principal.type === 'User').length, via: 'screening' });
      return answer;
    });
    const matchParams = pathParams({ id: "the screening match's id" });
    app.get<{ Params: { id: string } }>(`${admin}/screening/matches/:id`, adminOperation(ctx, 'admin:read', { tag: 'kyc', summary: 'Read one screening match', params: matchParams }), async (request) => {
      const match = await findScreeningMatch(ctx.storage.db, request.params.id);
      if (!match) throw new OAuthError('not_found', 'no such screening match');
      const answer = await matchView(ctx, match);
      const person = match.principal.type === 'User' ? match.principal.id : undefined;
      await recordPeopleRead(ctx, request.admin!, request.id, { people: person ? 1 : 0, via: 'screening', match: match.id }, person);
      return answer;
    });
    app.post<{ Params: { id: string } }>(`${admin}/screening/matches/:id/decision`, adminOperation(ctx, 'screening:decide', {
      tag: 'kyc',
      summary: 'Confirm or clear a screening match (audited screening.decided)',
      description:
        'Only a person holding compliance, with their own token signed in with a passkey in the last 5 minutes (else 401 insufficient_user_authentication naming acr_values and max_age, or 403; audited screening.refused). ' +
        'Clearing the last open match of a principal lifts the freeze screening put there, restoring the KYC status it kept; a freeze of another source stays.',
      params: matchParams,
      body: objectBody(
        {
          decision: { type: 'string', enum: [...matchDecisions] },
          reason: { type: 'string', maxLength: maxDecisionReasonLength, description: 'why (audited)' },
        },
        ['decision', 'reason'],
      ),
    }), async (request) => {
      const { decision, reason } = decisionBody(request.body);
      const decider = await complianceOf(ctx, request, decision);
      if (!(await findScreeningMatch(ctx.storage.db, request.params.id))) throw new OAuthError('not_found', 'no such screening match');
      try {
        const decided = await decideScreeningMatch(ctx, request.params.id, decision, reason, { actor: decider.id, requestId: request.id });
        return matchView(ctx, decided);
      } catch (error) {
        if (error instanceof MatchDecisionRefused) throw new OAuthError(error.status === 404 ? 'not_found' : 'invalid_request', error.message, { status: error.status });
        throw error;
      }
    });
  },
};

/** Why a decision's caller is refused, as `screening.refused` records it. */
type DeciderRefusal = 'client_token' | 'delegated_token' | 'insufficient_authentication' | 'stale_authentication' | 'not_compliance';

/**
 * Who decides a screening match: a person holding `compliance`, active, with their own token
 * (a grant's, not a client's own, not a delegate's), signed in phishing-resistantly
 * (AMENDMENTS "Console and operations": compliance's minimum acr) in the last 5 minutes
 * (./step-up.ts trustChangeSignIn): clearing a sanctions hit cannot be undone, and the console
 * renews its token silently over a sign-in of hours ago. Clearing a sanctions hit is
 * compliance's legal decision, as an erasure or a hold's release is (./erasure.ts, ./holds.ts):
 * admin:write alone does not make it. Every refusal is recorded (`screening.refused`), then
 * answered: a sign-in too weak or too old with 401 insufficient_user_authentication (RFC 9470
 * §3: a new sign-in cures it), anything else with 403 access_denied.
 */
async function complianceOf(ctx: Context, request: FastifyRequest<{ Params: { id: string } }>, decision: MatchDecision): Promise<User> {
  const claims = request.admin!;
  const refuse = async (why: DeciderRefusal, description: string): Promise<never> => {
    const challenge = signInChallenge(request, why, 'deciding a screening match');
    await ctx.audit.record({
      type: 'screening.refused',
      requestId: request.id,
      actor: claims.sub ?? claims.client_id,
      decision: { allow: false, reasons: [why] },
      details: {
        match_id: request.params.id,
        decision,
        client: claims.client_id,
        ...(claims.act !== undefined ? { delegated: true } : {}),
        ...challenge?.details,
      },
    });
    throw challenge?.error ?? new OAuthError('access_denied', description);
  };
  const caller = await personCaller(ctx, claims, { ...trustChangeSignIn, role: complianceRole });
  if (caller.ok) return caller.user;
  switch (caller.reason) {
    case 'client_token':
      return refuse('client_token', 'a screening match is decided by a person holding compliance, not by a client on its own');
    case 'delegated_token':
      return refuse('delegated_token', 'a delegated token cannot decide a screening match: the compliance person decides with their own');
    case 'insufficient_authentication':
      return refuse('insufficient_authentication', 'compliance signs in phishing-resistantly (a passkey) to decide a screening match');
    case 'stale_authentication':
      return refuse('stale_authentication', 'deciding a screening match needs an authentication of the last 5 minutes: sign in again');
    default:
      return refuse('not_compliance', `only a person holding ${complianceRole} decides a screening match`);
  }
}

const complianceRole = 'compliance';

/** Who acts: the person of a person's admin token, else the admin client. */
function actorOf(request: FastifyRequest): string {
  return request.admin!.sub ?? request.admin!.client_id;
}

async function personPrincipal(ctx: Context, username: string): Promise<KycPrincipal & { username: string }> {
  const user = await findUserByUsername(ctx, username);
  // The path names the stored, lowercase username exactly (as /admin/users does).
  if (!user || user.username !== username) throw new OAuthError('not_found', 'no such user');
  return { type: 'User', id: user.id, username: user.username };
}

async function entityPrincipal(ctx: Context, lei: string): Promise<KycPrincipal> {
  if (!(await ctx.entities.snapshot()).legalEntities.has(lei)) throw new OAuthError('not_found', 'no such legal entity');
  return { type: 'LegalEntity', id: lei };
}

function principalJson(principal: KycPrincipal & { username?: string }): Record<string, string> {
  return principal.type === 'User' ? { type: 'user', id: principal.id, ...(principal.username ? { username: principal.username } : {}) } : { type: 'legal_entity', lei: principal.id };
}

/** The record as GET shows it; undefined `record`: `status: none`. */
function recordView(principal: KycPrincipal & { username?: string }, record: KycRecord | undefined): Record<string, unknown> {
  if (!record) return { principal: principalJson(principal), status: 'none', version: 0 };
  return {
    principal: principalJson(principal),
    ...recordJson(record),
    updated_at: new Date(record.updatedAt).toISOString(),
    updated_by: record.updatedBy,
  };
}

async function view(ctx: Context, principal: KycPrincipal & { username?: string }): Promise<Record<string, unknown>> {
  return recordView(principal, await ctx.risk.kyc.get(principal));
}

const writable = ['status', 'level', 'provider', 'review_due', 'evidence_ref'] as const;
const readOnly = ['principal', 'previous_status', 'frozen_by', 'updated_at', 'updated_by'] as const;

/** The statuses of a screening match, and the decisions on one. */
const matchStatuses = ['open', 'confirmed', 'cleared'] as const satisfies readonly MatchStatus[];
const matchDecisions = ['confirm', 'clear'] as const satisfies readonly MatchDecision[];

/** A KYC record as GET shows it and a write reads it (readKycFields checks the writable members). */
const record = objectBody(
  {
    level: { type: 'string', description: 'a lowercase level such as basic, standard or enhanced' },
    provider: { type: 'string', description: 'the id of the KYC provider' },
    review_due: { type: 'string', description: 'an ISO 8601 date (2027-06-30) or an RFC 3339 date-time' },
    evidence_ref: { type: 'string', description: 'a reference to the evidence, never a token or a key' },
    reason: { type: 'string', maxLength: maxDecisionReasonLength, description: 'why (audited)' },
    version: { type: 'integer', minimum: 0, description: 'the version read: a record changed meanwhile is 409' },
    // Shown by GET; sent back unchanged they are ignored, changed they are refused.
    principal: { type: 'object', readOnly: true },
    previous_status: { type: 'string', readOnly: true },
    frozen_by: { type: 'string', readOnly: true, description: 'who froze it besides screening: a freeze clearing the screening matches does not lift' },
    updated_at: { type: 'string', readOnly: true },
    updated_by: { type: 'string', readOnly: true },
  },
  [],
  'A KYC record as GET shows it (docs/risk.md "KYC/AML lifecycle")',
);

/** A record always has a status: a `null`, which would remove it, is refused like a value off the list. */
function withStatus(body: JsonSchema): JsonSchema {
  return { ...body, properties: { status: { type: 'string', enum: [...kycStatuses] }, ...(body.properties as JsonSchema) } };
}

/** PUT and PATCH of a KYC record, for a person or a legal entity (the path parameters added). */
const putRecord = {
  tag: 'kyc',
  summary: 'Create or replace a KYC record',
  description: 'Replacing needs every member the record has (`null` removes an optional one). A freeze held by an open or confirmed screening match is lifted by its decision only (409).',
  body: { ...withStatus(nullableMembers(record)), required: ['status'] },
} as const;
const patchRecord = {
  tag: 'kyc',
  summary: 'Change members of a KYC record (JSON Merge Patch, RFC 7396)',
  description: 'The version compared is the one the patch was applied to, unless the patch names one.',
  body: withStatus(mergePatchOf(record)),
  consumes: [mergePatchType],
} as const;

async function writeRecord(ctx: Context, request: FastifyRequest, bodyOf: typeof putBody, principal: KycPrincipal & { username?: string }): Promise<Record<string, unknown>> {
  // What GET shows, for the write rule; the version given is compared in the change's transaction.
  const current = await ctx.risk.kyc.get(principal);
  const rep: Representation = { name: 'KYC record', current: current && recordView(principal, current), writable, readOnly };
  const body = bodyOf(request, rep);
  const v = new Validator();
  const { reason: givenReason, version: givenVersion, ...members } = body;
  const fields = readKycFields(v, '', members);
  const reason = givenReason === undefined ? undefined : v.string('reason', givenReason, { maxLength: maxDecisionReasonLength, pattern: /^[^\p{Cc}]*$/u, patternMessage: 'must not contain control characters' });
  const version = givenVersion === undefined ? undefined : v.integer('version', givenVersion, { min: 0, max: Number.MAX_SAFE_INTEGER });
  if (!fields || !v.ok) throw new OAuthError('invalid_request', v.problems.map(formatProblem).join('; '));
  try {
    // A merge patch that names no status rewrites the freeze it read (an evidence_ref corrected on a
    // record screening froze): it does not make the administrator a holder of that freeze.
    const namesStatus = bodyOf === putBody || (typeof request.body === 'object' && request.body !== null && Object.hasOwn(request.body, 'status'));
    const changed = await changeKycByAdmin(ctx, principal, fields, {
      actor: actorOf(request),
      ...(namesStatus ? {} : { claimsFreeze: false }),
      requestId: request.id,
      ...(reason !== undefined ? { reason } : {}),
      ...(version !== undefined ? { expectedVersion: version } : {}),
    });
    return { ...recordView(principal, changed.after), outcome: !changed.before ? 'created' : changed.changed ? 'updated' : 'unchanged' };
  } catch (error) {
    if (error instanceof KycChangeRefused) throw new OAuthError('invalid_request', error.message, { status: error.status });
    if (error instanceof KycConflict) throw new OAuthError('invalid_request', 'the KYC record changed meanwhile: read it again', { status: 409 });
    throw error;
  }
}

function decisionBody(body: unknown): { decision: MatchDecision; reason: string } {
  const v = new Validator();
  const o = v.object('', body);
  if (o) {
    v.knownKeys('', o, ['decision', 'reason']);
    v.string('decision', o.decision, { oneOf: matchDecisions });
    v.string('reason', o.reason, { maxLength: maxDecisionReasonLength, pattern: /^[^\p{Cc}]*$/u, patternMessage: 'must not contain control characters' });
  }
  if (!o || !v.ok) throw new OAuthError('invalid_request', v.problems.map(formatProblem).join('; '));
  return { decision: o.decision as MatchDecision, reason: o.reason as string };
}

async function matchView(ctx: Context, match: ScreeningMatch): Promise<Record<string, unknown>> {
  const username = match.principal.type === 'User' ? (await findUser(ctx, match.principal.id))?.username : undefined;
  return {
    id: match.id,
    principal: principalJson({ ...match.principal, ...(username ? { username } : {}) }),
    entry_id: match.entryId,
    list: match.list,
    ...(match.programme !== undefined ? { programme: match.programme } : {}),
    matched_on: match.matchedOn,
    list_digest: match.listDigest,
    status: match.status,
    created_at: new Date(match.createdAt).toISOString(),
    ...(match.decidedAt !== undefined ? { decided_at: new Date(match.decidedAt).toISOString(), decided_by: match.decidedBy, reason: match.reason } : {}),
  };
}
