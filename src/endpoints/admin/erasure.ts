import { adminOperation } from '../../admin/authorize.ts';
import { EraseError, eraseSubject, recordErasureRefused, type ErasureRefusal } from '../../audit/erase.ts';
import { auditScopeOf, AuditScopeError, entityScopeOf, leisOfDesks, partyInScope } from '../../audit/scope.ts';
import type { Context } from '../../context.ts';
import { objectBody, pathParams } from '../../http/api-operation.ts';
import { sendJson } from '../../http/json.ts';
import { personCaller } from '../../admin/person-caller.ts';
import { findUser } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { signInChallenge, trustChangeSignIn } from './step-up.ts';

/**
 * POST <issuer>/admin/audit/subjects/{subject}/erase (`audit:hold`) `{ reason? }`: destroys the data
 * subject's keys (src/audit/erase.ts, docs/privacy.md "Erasure"), as `clearance audit erase-subject`
 * does. Only a person holding `compliance`, with their own token, signed in with a passkey in the
 * last 5 minutes (./step-up.ts trustChangeSignIn: an erasure cannot be undone, and the console
 * renews its token silently over a sign-in of hours ago; else 401 insufficient_user_authentication
 * naming acr_values and max_age, RFC 9470 §3): an erasure is a legal decision
 * (GDPR Art. 17) made by a person, never by a client or a delegate — and a firm's decision about
 * its own people: the subject must be a person of one of the legal entities of the caller's desks.
 * A subject of no firm — a pseudonymous one (`anon:…`, an address nobody is named for), a person
 * with no desk of any legal entity, an id no longer in the directory — belongs to no firm's
 * compliance: only a compliance person who also reads the whole log (holds `auditor` or `admin`)
 * erases it; the CLI, the operator's, erases any. Every refusal of the role, the scope or a legal
 * hold, the sign-in is recorded (`audit.erasure_refused`).
 * 200 with the subject, the key generations destroyed and the number of events affected; 401 for
 * a sign-in too weak or too old; 403 for a caller who may not erase it; 409 while a legal hold
 * covers the subject (naming the holds); 404 when nothing is recorded for it; 400 when it was
 * erased already.
 */
export const adminErasure: Endpoint = {
  register(app, ctx) {
    app.post<{ Params: { subject: string }; Body: { reason?: unknown } }>(
      `${issuerPath(ctx.config.issuer)}/admin/audit/subjects/:subject/erase`,
      adminOperation(ctx, 'audit:hold', {
        tag: 'audit',
        summary: "Erase a data subject's personal fields from the audit log (crypto-shredding)",
        description:
          "The events stay and verify; their personal fields no longer open. Only a person holding compliance, for a person of their own desks' legal entities; a subject of no firm (anon:…) only by one who also reads the whole log (auditor or admin). " +
          'Their own token, signed in with a passkey in the last 5 minutes (else 401 insufficient_user_authentication naming acr_values and max_age). ' +
          'Refused (409) while a legal hold covers the subject. Recorded as `audit.subject_erased`; a refusal as `audit.erasure_refused`.',
        params: pathParams({ subject: "the person's id, or a pseudonymous subject id (anon:…)" }),
        body: objectBody({ reason: { type: 'string', description: 'why (kept with the destroyed key, not in the log)' } }, []),
      }),
      async (request, reply) => {
        const claims = request.admin!;
        const subject = request.params.subject;
        const by = { actor: claims.sub ?? claims.client_id, requestId: request.id };
        const refuse = async (why: ErasureRefusal, message: string): Promise<never> => {
          await recordErasureRefused(ctx, subject, by, why);
          throw new OAuthError('access_denied', message);
        };
        const caller = await personCaller(ctx, claims, { ...trustChangeSignIn, role: 'compliance' });
        const challenge = caller.ok ? undefined : signInChallenge(request, caller.reason, 'an erasure');
        if (!caller.ok && challenge) {
          // RFC 9470 §3: a new sign-in cures it; the challenge names the level and the age it must meet.
          await recordErasureRefused(ctx, subject, by, caller.reason as 'insufficient_authentication' | 'stale_authentication', challenge.details);
          throw challenge.error;
        }
        if (!caller.ok) {
          // One recorded reason for each: who decides an erasure is a compliance person acting themselves.
          return refuse('not_compliance', caller.reason === 'client_token' || caller.reason === 'delegated_token' ? 'an erasure is decided by a person holding compliance, with their own token' : 'an erasure is decided by a person holding compliance');
        }
        const person = caller.user;
        const scope = await erasureScope(ctx, claims, person.desks, subject);
        if (scope !== 'allowed') {
          return refuse(
            scope,
            scope === 'no_firm'
              ? 'this subject is of no legal entity (a pseudonymous subject, or a person of no firm): only a compliance person who also reads the whole log (auditor or admin) erases it'
              : "you erase the personal data of your legal entities' people only",
          );
        }
        const reason = typeof request.body?.reason === 'string' ? request.body.reason : undefined;
        try {
          const erased = await eraseSubject(ctx, subject, { actor: claims.sub, reason, requestId: request.id });
          return sendJson(reply, { subject: erased.subject, generations: erased.generations, events: erased.events, erased_at: new Date(erased.erasedAt).toISOString() });
        } catch (error) {
          if (!(error instanceof EraseError)) throw error;
          if (error.holds.length > 0) throw new OAuthError('invalid_request', error.message, { status: 409 });
          if (/no personal data/.test(error.message)) throw new OAuthError('not_found', error.message);
          throw new OAuthError('invalid_request', error.message);
        }
      },
    );
  },
};

/**
 * Whether a compliance person (their desks) may erase `subject`: a person of one of the legal
 * entities of those desks (src/audit/scope.ts entityScopeOf, partyInScope) — whatever else the
 * caller reads; a subject of no firm (pseudonymous, a person with no legal entity, or no longer in
 * the directory) only when the caller reads the whole log (auditScopeOf: `auditor` or `admin`).
 */
async function erasureScope(ctx: Pick<Context, 'storage' | 'entities' | 'clients'>, claims: NonNullable<Parameters<typeof auditScopeOf>[1]>, desks: readonly string[], subject: string): Promise<'allowed' | 'outside_scope' | 'no_firm'> {
  const target = subject.startsWith('anon:') ? undefined : await findUser(ctx, subject);
  const firms = target ? await leisOfDesks(ctx, target.desks) : new Set<string>();
  if (firms.size === 0) {
    try {
      return (await auditScopeOf(ctx, claims)).kind === 'all' ? 'allowed' : 'no_firm';
    } catch (error) {
      if (error instanceof AuditScopeError) return 'no_firm';
      throw error;
    }
  }
  const own = await entityScopeOf(ctx, desks);
  return own !== undefined && partyInScope(own, subject) ? 'allowed' : 'outside_scope';
}
