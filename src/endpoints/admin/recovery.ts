import type { FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import type { Context } from '../../context.ts';
import { objectBody, pathParams } from '../../http/api-operation.ts';
import { sendJson } from '../../http/json.ts';
import { acr } from '../../identity/acr.ts';
import { personCaller } from '../../admin/person-caller.ts';
import { enrolmentLink, helpDeskRole, helpDeskVerificationMethods, lostFactors, maxEvidenceRefLength, openRecoveryByHelpDesk, type OpenRefusal } from '../../identity/recovery/requests.ts';
import { findUserByUsername, type User } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The help desk opens a recovery of a person's lost authenticator (docs/recovery.md "Who opens"):
 *
 * POST /admin/users/{username}/recovery  (scope `recovery:request`)
 *   { "verification_method": "in_person_id_check", "evidence_ref": "HD-1234", "lost": ["passkeys"] }
 *
 * 1. an access token for `<issuer>/admin` with `recovery:request` (requireAdmin: live, bound as
 *    presented), else 401/403; then the body's shape (the operation's schema: members of the wrong
 *    type, a required one missing), else 400 invalid_request naming the member;
 * 2. a person's own token — issued under their consent (`grant_id`), so a client's own token, which
 *    no person stands behind, never opens one; not delegated (no `act`: an agent or client acting
 *    for a help-desk person does not open recoveries, as in the approvals and break-glass APIs) —
 *    at a phishing-resistant level (`acr` `:phr` or above: the help desk is who a caller tries to
 *    talk round), of an active person holding `help-desk`; else 403 access_denied, recorded as
 *    `recovery.refused` (docs/recovery.md: every refused opening is);
 * 3. the person named exists (exactly this username), else 404;
 * 4. the body: `verification_method` from the closed list, `evidence_ref` (1–200 characters, no
 *    secret), `lost` optional (default both); else 400 invalid_request naming the member;
 * 5. openRecoveryByHelpDesk: refused → 400 (403 for the help desk's own account or a person
 *    whose password the help-desk person set, 409 when a recovery of the person already
 *    waits); else 201 with the request's id and expiry and the
 *    enrolment link — returned here once, to the help desk, and useless without the person's
 *    password (but for a leaver whose credentials are on hold, who holds none: the link alone
 *    enrols, src/lifecycle/credential-hold.ts); it works only after a second person approves.
 *    no-store.
 */
export const adminRecovery: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/users`;
    app.post<{ Params: { username: string } }>(`${base}/:username/recovery`, adminOperation(ctx, 'recovery:request', {
      tag: 'users',
      summary: "Open a recovery of a person's lost authenticator (the help desk)",
      description:
        "By a help-desk person's own token at a phishing-resistant level. Returns the enrolment link once; it works only with the person's password " +
        '(a returning leaver holds none: then the link alone), after a second person approves.',
      params: pathParams({ username: 'the person, by their stored (lowercase) username' }),
      body: openingBody,
      success: { status: 201, description: 'The recovery request, waiting for approval, and the enrolment link' },
    }), async (request, reply) => {
      const helpDesk = await helpDeskOf(ctx, request);
      const subject = await findUserByUsername(ctx, request.params.username);
      if (!subject || subject.username !== request.params.username) throw new OAuthError('not_found', 'no such user');
      const body = readBody(request.body);
      const opened = await openRecoveryByHelpDesk(ctx, { helpDesk, subject, ...body, requestId: request.id });
      if (!opened.ok) throw refusal(opened.reason, opened.detail);
      return sendJson(
        reply,
        {
          request_id: opened.request.id,
          status: opened.request.status,
          person: subject.username,
          lost: (opened.request.content as { lost: string[] }).lost,
          expires_at: new Date(opened.request.expiresAt).toISOString(),
          enrolment_link: enrolmentLink(ctx.config.issuer, opened.token),
        },
        { status: 201 },
      );
    });
  },
};

/**
 * The body of rule 4, typed only: the list of methods, the evidence reference and the lost factors
 * are checked by openRecoveryByHelpDesk, which audits each refusal.
 */
const openingBody = objectBody(
  {
    verification_method: { type: 'string', description: `how the person's identity was checked: one of ${helpDeskVerificationMethods.join(', ')}` },
    evidence_ref: { type: 'string', description: `the reference of the identity check (1–${maxEvidenceRefLength} characters, no secret)` },
    lost: { type: 'array', items: { type: 'string' }, maxItems: lostFactors.length, description: `the lost factors, of ${lostFactors.join(', ')} (default: all)` },
  },
  ['verification_method', 'evidence_ref'],
);

/** Why rule 2 refuses a token, as `recovery.refused` records it. */
type CallerRefusal = 'client_token' | 'delegated_token' | 'insufficient_authentication' | 'not_help_desk';

/** The help-desk person behind the request's token (rule 2); a refusal is recorded, then answered 403. */
async function helpDeskOf(ctx: Context, request: FastifyRequest<{ Params: { username: string } }>): Promise<User> {
  const claims = request.admin!;
  const refuse = async (reason: CallerRefusal, description: string): Promise<never> => {
    // Whom it was about, when that person exists: the answer stays the same 403 either way.
    const subject = await findUserByUsername(ctx, request.params.username);
    await ctx.audit.record({
      type: 'recovery.refused',
      requestId: request.id,
      actor: claims.sub,
      ...(subject && subject.username === request.params.username ? { subject: subject.id } : {}),
      decision: { allow: false, reasons: [reason] },
      details: { opened_by: 'help_desk', ...(claims.act !== undefined ? { delegated: true } : {}) },
    });
    throw new OAuthError('access_denied', description);
  };
  const caller = await personCaller(ctx, claims, { level: acr.phishingResistant, role: helpDeskRole });
  if (caller.ok) return caller.user;
  switch (caller.reason) {
    case 'client_token':
      return refuse('client_token', 'a recovery is opened by a help-desk person, not by a client on its own');
    case 'delegated_token':
      return refuse('delegated_token', 'a delegated token cannot open a recovery: the help-desk person opens it with their own');
    case 'insufficient_authentication':
      return refuse('insufficient_authentication', 'the help desk signs in phishing-resistantly (a passkey) to open a recovery');
    default:
      return refuse('not_help_desk', `only a person holding ${helpDeskRole} opens a recovery for someone else`);
  }
}

function readBody(body: unknown): { verificationMethod: string; evidenceRef: string; lost?: string[] } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new OAuthError('invalid_request', 'the body is a JSON object');
  const o = body as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !['verification_method', 'evidence_ref', 'lost'].includes(k));
  if (unknown.length > 0) throw new OAuthError('invalid_request', `unknown member ${unknown[0]}`);
  if (typeof o.verification_method !== 'string') throw new OAuthError('invalid_request', "verification_method is required: how the person's identity was checked");
  if (typeof o.evidence_ref !== 'string') throw new OAuthError('invalid_request', 'evidence_ref is required: the reference of the identity check');
  if (o.lost !== undefined && (!Array.isArray(o.lost) || o.lost.length > lostFactors.length || o.lost.some((f) => typeof f !== 'string'))) {
    throw new OAuthError('invalid_request', `lost is an array of ${lostFactors.join(', ')}`);
  }
  return { verificationMethod: o.verification_method, evidenceRef: o.evidence_ref, ...(o.lost !== undefined ? { lost: o.lost as string[] } : {}) };
}

function refusal(reason: OpenRefusal, detail?: string): OAuthError {
  switch (reason) {
    case 'own_account':
      return new OAuthError('access_denied', 'the help desk never opens a recovery of its own account');
    case 'set_password':
      return new OAuthError('access_denied', "the help desk never opens a recovery of a person whose password it set: it would hold both halves of the link");
    case 'not_help_desk':
      return new OAuthError('access_denied', `only a person holding ${helpDeskRole} opens a recovery for someone else`);
    case 'already_pending':
      return new OAuthError('invalid_request', 'a recovery of this person already waits for approval', { status: 409 });
    case 'no_password':
      return new OAuthError('invalid_request', 'this person has no password, which the enrolment link needs beside it');
    case 'person_not_active':
      return new OAuthError('invalid_request', 'this person is disabled or locked by an administrator');
    default:
      return new OAuthError('invalid_request', detail ?? 'the recovery request is not valid');
  }
}
