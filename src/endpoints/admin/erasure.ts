import { adminOperation } from '../../admin/authorize.ts';
import { EraseError, eraseSubject } from '../../audit/erase.ts';
import { objectBody, pathParams } from '../../http/api-operation.ts';
import { sendJson } from '../../http/json.ts';
import { findUser } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * POST <issuer>/admin/audit/subjects/{subject}/erase (`audit:hold`) `{ reason? }`: destroys the data
 * subject's keys (src/audit/erase.ts, docs/privacy.md "Erasure"), as `clearance audit erase-subject`
 * does. Only a person holding `compliance`, with their own token: an erasure is a legal decision
 * (GDPR Art. 17) made by a person, never by a client or a delegate. 200 with the subject, the key
 * generations destroyed and the number of events affected; 409 while a legal hold covers the
 * subject (naming the holds); 404 when nothing is recorded for it; 400 when it was erased already.
 */
export const adminErasure: Endpoint = {
  register(app, ctx) {
    app.post<{ Params: { subject: string }; Body: { reason?: unknown } }>(
      `${issuerPath(ctx.config.issuer)}/admin/audit/subjects/:subject/erase`,
      adminOperation(ctx, 'audit:hold', {
        tag: 'audit',
        summary: "Erase a data subject's personal fields from the audit log (crypto-shredding)",
        description: 'The events stay and verify; their personal fields no longer open. Refused (409) while a legal hold covers the subject. Recorded as `audit.subject_erased`.',
        params: pathParams({ subject: "the person's id, or a pseudonymous subject id (anon:…)" }),
        body: objectBody({ reason: { type: 'string', description: 'why (kept with the destroyed key, not in the log)' } }, []),
      }),
      async (request, reply) => {
        const claims = request.admin!;
        if (claims.grant_id === undefined || claims.act !== undefined || claims.sub === undefined) throw new OAuthError('access_denied', 'an erasure is decided by a person holding compliance, with their own token');
        const person = await findUser(ctx, claims.sub);
        if (person?.status !== 'active' || !person.roles.includes('compliance')) throw new OAuthError('access_denied', 'an erasure is decided by a person holding compliance');
        const reason = typeof request.body?.reason === 'string' ? request.body.reason : undefined;
        try {
          const erased = await eraseSubject(ctx, request.params.subject, { actor: claims.sub, reason, requestId: request.id });
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
